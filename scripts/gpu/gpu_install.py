"""Install the wheels of ``.whl/`` (scripts/gpu/gpu_wheels.sh) into a private target directory.

    python3 scripts/gpu/gpu_install.py .whl TARGET [--only NAME,...] [--skip NAME,...]

Never touches the interpreter's own site-packages (``pip install --target``, no index, no
dependencies). A wheel is installed when it fits this interpreter and either its distribution
is pinned (listed in ``.whl/PINNED``) and installed here at another version, or it is not
installed here at all; the rest are left to the machine's own copies, so the target directory
(first on PYTHONPATH) shadows only what has to be shadowed. ``--only`` / ``--skip`` restrict
the wheels looked at by distribution name. Prints one line per wheel.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from importlib import metadata
from pathlib import Path

from packaging.tags import sys_tags
from packaging.utils import canonicalize_name, parse_wheel_filename


def installed_version(name: str) -> str | None:
    """The version of distribution ``name`` this interpreter imports, or None."""
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def names(text: str | None) -> set[str] | None:
    """Canonical distribution names of a comma-separated list (None stays None)."""
    return None if text is None else {canonicalize_name(n) for n in text.split(",") if n}


def choose(wheel_dir: Path, only: set[str] | None = None,
           skip: set[str] | None = None) -> tuple[list[Path], list[str]]:
    """(wheels to install, one line of explanation per wheel)."""
    pinned_file = wheel_dir / "PINNED"
    pinned = ({canonicalize_name(n) for n in pinned_file.read_text().split()} if pinned_file.exists()
              else None)  # no list: pin every wheel
    supported = set(sys_tags())
    chosen, lines = [], []
    for wheel in sorted(wheel_dir.glob("*.whl")):
        name, version, _, tags = parse_wheel_filename(wheel.name)
        if only is not None and name not in only or skip and name in skip:
            continue
        have = installed_version(name)
        if not tags & supported:
            lines.append(f"skip    {wheel.name}: not for this interpreter")
        elif have is None or (pinned is None or name in pinned) and have != str(version):
            chosen.append(wheel)
            lines.append(f"install {name} {version}" + (f" (shadows {have})" if have else ""))
        else:
            lines.append(f"keep    {name} {have} (machine's own)")
    return chosen, lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("wheel_dir", type=Path)
    parser.add_argument("target", type=Path)
    parser.add_argument("--only", help="comma-separated distributions: look at these wheels alone")
    parser.add_argument("--skip", help="comma-separated distributions: leave these wheels out")
    args = parser.parse_args(argv)
    target = args.target
    chosen, lines = choose(args.wheel_dir, names(args.only), names(args.skip))
    print("\n".join(lines))
    if not chosen:
        return 0
    cmd = [sys.executable, "-m", "pip", "install", "--quiet", "--no-index", "--no-deps", "--no-compile",
           "--no-cache-dir", "--disable-pip-version-check", "--root-user-action=ignore", "--upgrade",
           "--target", str(target),
           *map(str, chosen)]
    return subprocess.run(cmd).returncode


if __name__ == "__main__":
    sys.exit(main())
