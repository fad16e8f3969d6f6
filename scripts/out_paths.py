"""The check every script runs on its output paths before any long work: one line and exit 1
when a directory cannot be written (a file in the way, no permission, a read-only disk)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from lra_mega.data.errors import writable_dir_problem


def require_writable(prog: str, flag: str, path: str | os.PathLike, is_file: bool = False) -> None:
    """Exit with ``<prog>: error: <flag> <path>: <why>; ...`` unless ``path`` (a directory, or
    with ``is_file`` the directory a file goes in) can be written."""
    path = Path(path)
    if is_file and path.is_dir():
        problem = "is a directory; give a file name"
    else:
        problem = writable_dir_problem(path.parent if is_file else path)
    if problem:
        print(f"{prog}: error: {flag} {path}: {problem}; choose a path you can write", file=sys.stderr)
        raise SystemExit(1)
