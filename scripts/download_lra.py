#!/usr/bin/env python
"""Download the data of the LRA tasks.

    python scripts/download_lra.py --tasks listops retrieval pathfinder pathx text image

Release tasks (listops, retrieval, pathfinder, pathx) come from lra_release.gz, extracted
into <dest>/lra_release/; hub tasks (text, image) are saved as parquet into
<cache_dir>/hub/<task>/. ListOps, Pathfinder and Path-X can also be generated instead.

Offline (e.g. a cluster node without internet): download lra_release.gz elsewhere, then either
copy it to <dest>/lra_release.gz and run this command (an archive already there is used without
contacting the server), or point at it:

    python scripts/download_lra.py --tasks listops retrieval --url file:///path/to/lra_release.gz

Errors print one line (``error: ...``) and exit with status 1: an unreachable server, a bad
archive, or a destination that cannot be written (``--dest``/``--cache-dir`` a file, not
writable, or a full disk; nothing half-written is left under a final name).
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from lra_mega.data.cache import default_cache_dir
from lra_mega.data.download import (ALL_TASKS, ARCHIVE_NAME, HUB_TASKS, RELEASE_TASKS, RELEASE_URL,
                                    download_file, extract_tasks, fetch_hub)
from lra_mega.data.errors import LRADataError, os_reason


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tasks", nargs="+", choices=ALL_TASKS, default=list(ALL_TASKS))
    p.add_argument("--dest", type=Path, default=None,
                   help="where lra_release.gz and lra_release/ go (default: the cache dir)")
    p.add_argument("--cache-dir", type=Path, default=None, help="default $LRA_MEGA_CACHE or ~/.cache/lra_mega")
    p.add_argument("--url", default=RELEASE_URL,
                   help="where to get the archive; file:///path/to/lra_release.gz for a local copy")
    p.add_argument("--sha256", default=None, help="expected sha256 of the archive (optional)")
    p.add_argument("--remove-archive", action="store_true",
                   help="delete lra_release.gz after extraction (kept by default so other tasks need no new download)")
    p.add_argument("--no-progress", action="store_true")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    cache_dir = args.cache_dir or default_cache_dir()
    dest = args.dest or cache_dir
    progress = not args.no_progress
    try:
        release = [t for t in args.tasks if t in RELEASE_TASKS]
        if release:
            archive = download_file(args.url, dest / ARCHIVE_NAME, sha256=args.sha256, progress=progress)
            counts = extract_tasks(archive, dest, release, progress=progress)
            for task, n in counts.items():
                print(f"{task}: {n} files in {dest / 'lra_release'}")
            if args.remove_archive:
                archive.unlink(missing_ok=True)
        for task in (t for t in args.tasks if t in HUB_TASKS):
            out = fetch_hub(task, cache_dir)
            print(f"{task}: parquet files in {out}")
    except LRADataError as e:
        print(f"error: {' '.join(str(e).split())}", file=sys.stderr)
        return 1
    except OSError as e:  # a local file operation the wrappers above do not name
        where = e.filename or dest
        print(f"error: cannot write {where}: {os_reason(e, where)}; free space or fix the permissions there, "
              f"or pass --dest DIR (--cache-dir DIR for text/image)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
