"""The package's layers, read from its source (ast, nothing imported): no import runs upward.

model/ imports only torch (triton for its fused kernels) and itself; data/ knows nothing of the
model or of the layers above; training/ joins model/ and data/ but never reaches the run layer;
results/ reads what runs leave on disk and imports nothing else of the package; run/ (and
``__main__``) may import everything. Every module sits in one of these folders, so a new one must
be placed (and this table extended) before it can import anything.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "lra_mega"
ALL = {"lra_mega", "model", "data", "training", "results", "run"}
#: layer -> the parts of lra_mega it may import ("lra_mega" is the package's own __init__)
MAY_IMPORT = {
    "model": {"model"},
    "data": {"data"},
    "training": {"model", "data", "training"},
    "results": {"results"},
    "run": ALL,
    "__main__": ALL,
    "lra_mega": {"lra_mega"},
}
#: third-party packages model/ may import (the standard library is always allowed)
MODEL_LIBRARIES = {"torch", "triton"}


def layer_of(path: Path, package: Path) -> str:
    """``model``, ``data``, … for a module of that folder; ``lra_mega`` for the package's own."""
    parts = path.relative_to(package).parts
    if len(parts) > 1:
        return parts[0]
    entry = {"__init__.py": "lra_mega", "__main__.py": "__main__"}
    return entry.get(parts[0], f"<root {parts[0]}>")


def module_name(path: Path, package: Path) -> str:
    parts = list(path.relative_to(package.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path, package: Path) -> list[tuple[int, str]]:
    """(line, absolute dotted name) of every import in the file, lazy and TYPE_CHECKING ones
    included; ``from a import b`` gives ``a.b`` (b may be a module), relative imports resolved."""
    own = module_name(path, package)
    here = own if path.name == "__init__.py" else own.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = here.split(".")[: len(here.split(".")) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module
            found += [(node.lineno, f"{module}.{alias.name}") for alias in node.names]
    return found


def part_of(name: str, package: Path) -> str | None:
    """The part of lra_mega a dotted name is in (``lra_mega.run.train``: ``run``); None outside."""
    parts = name.split(".")
    if parts[0] != "lra_mega":
        return None
    if len(parts) > 1 and (parts[1] in ALL or (package / f"{parts[1]}.py").exists()):
        return parts[1]
    return "lra_mega"  # the package's __init__ (lra_mega.__version__)


def violations(package: Path = PACKAGE) -> list[str]:
    found = []
    for path in sorted(package.rglob("*.py")):
        layer = layer_of(path, package)
        allowed = MAY_IMPORT.get(layer)
        where = path.relative_to(package.parent)
        if allowed is None:
            found.append(f"{where}: not in a layer folder (model, data, training, results, run)")
            continue
        for line, name in imports(path, package):
            part = part_of(name, package)
            if part is not None and part not in allowed:
                found.append(f"{where}:{line}: {layer}/ imports {name}; "
                             f"it may import only {', '.join(sorted(allowed))}")
            top = name.split(".")[0]
            if (layer == "model" and part is None and top not in sys.stdlib_module_names
                    and top not in MODEL_LIBRARIES and top != "__future__"):
                found.append(f"{where}:{line}: model/ imports {name} (only torch)")
    return found


def test_no_layer_imports_a_higher_one():
    found = violations()
    assert not found, "\n".join(found)


def test_the_package_root_holds_only_the_entry_points():
    root = sorted(p.name for p in PACKAGE.glob("*.py"))
    assert root == ["__init__.py", "__main__.py"], root
    folders = sorted(p.parent.name for p in PACKAGE.glob("*/__init__.py"))
    assert folders == sorted(ALL - {"lra_mega"}), folders


@pytest.mark.parametrize("folder", sorted(ALL - {"lra_mega"}))
def test_every_folder_says_what_it_holds_and_may_import(folder):
    init = PACKAGE / folder / "__init__.py"
    doc = ast.get_docstring(ast.parse(init.read_text()))
    assert doc and "import" in doc, f"{init}: say what it holds and may import"


@pytest.mark.parametrize("layer, source, forbidden", [
    ("model", "from lra_mega.data import DATAMODULES\n", True),
    ("model", "import lightning\n", True),
    ("model", "from .ema import MultiDimDampedEMA\nimport torch\n", False),
    ("data", "from lra_mega.model import MegaEncoder\n", True),
    ("data", "def f():\n    from lra_mega.run.validate import check_config\n", True),
    ("training", "from lra_mega.run import resolvers\n", True),
    ("training", "from lra_mega.model import MegaEncoder\nfrom ..data import DATAMODULES\n", False),
    ("results", "from lra_mega.training.classifier import LRAClassifier\n", True),
    ("run", "from lra_mega.results import curves\nfrom ..training import optim\n", False),
])
def test_the_check_catches_an_upward_import(tmp_path, layer, source, forbidden):
    """The walk itself, on a copy of a package with one module added to a layer."""
    package = tmp_path / "lra_mega"
    for part in ALL - {"lra_mega"}:
        (package / part).mkdir(parents=True)
        (package / part / "__init__.py").write_text("")
    (package / "__init__.py").write_text("")
    (package / layer / "added.py").write_text(source)
    found = violations(package)
    assert bool(found) == forbidden, found
