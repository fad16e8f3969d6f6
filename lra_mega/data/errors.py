"""The one exception type the data layer raises for user-facing problems, and the words for a
path the operating system refused (missing parent, a file in the way, permissions, full disk)."""

from __future__ import annotations

import errno
import os
import shutil
from pathlib import Path


class LRADataError(RuntimeError):
    """A data problem the user can fix: the message says what, the value, and the fix.

    The harness catches this type and prints its message as a single line.
    """


class LRAConfigError(LRADataError, ValueError):
    """A bad data setting (wrong source, bad limit, ...): also a ``ValueError``."""


def existing_ancestor(path: str | os.PathLike) -> Path:
    """``path`` itself or its nearest ancestor that exists."""
    p = Path(path).expanduser().absolute()
    while not p.exists() and p != p.parent:
        p = p.parent
    return p


def _free(path: str | os.PathLike) -> str:
    try:
        return f", {shutil.disk_usage(existing_ancestor(path)).free / 1e9:.2f} GB free"
    except OSError:
        return ""


def os_reason(err: OSError, path: str | os.PathLike | None = None) -> str:
    """Why the operating system refused ``path``, in words (``err.strerror`` made specific)."""
    path = path if path is not None else err.filename
    code = err.errno
    text = err.strerror or str(err) or type(err).__name__
    if path is None:
        return text
    anc = existing_ancestor(path)
    if code in (errno.ENOSPC, errno.EDQUOT):
        what = "no space left on the device" if code == errno.ENOSPC else "disk quota exceeded"
        return f"{what}{_free(path)}"
    if code == errno.EROFS:
        return "read-only file system"
    if code in (errno.EACCES, errno.EPERM):
        return f"permission denied (on {anc})" if anc != Path(path).expanduser().absolute() else "permission denied"
    if code == errno.EEXIST or (code == errno.ENOTDIR and anc.exists() and not anc.is_dir()):
        return f"{anc} is a file, not a directory"
    if code == errno.ENOENT and anc.is_dir():
        return f"{text}: {anc} exists but does not accept new files or directories"
    return text


def write_error(what: str, path: str | os.PathLike, err: OSError, fix: str) -> LRADataError:
    """``cannot write <what> <path>: <why>; <fix>`` as an :class:`LRADataError`."""
    return LRADataError(f"cannot write {what} {path}: {os_reason(err, getattr(err, 'filename', None) or path)}; {fix}")


def writable_dir_problem(path: str | os.PathLike, create: bool = True) -> str | None:
    """Why ``path`` cannot serve as an output directory (None when it can). With ``create`` the
    directory is made (parents too) the way a later write would; else only existing parts are
    checked."""
    path = Path(path).expanduser()
    if path.exists() and not path.is_dir():
        return f"{path} is a file, not a directory"
    if create:
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            return os_reason(err, path)
    anc = existing_ancestor(path)
    if not anc.is_dir():
        return f"{anc} is a file, not a directory"
    if not os.access(anc, os.W_OK | os.X_OK):
        return f"permission denied (on {anc})"
    return None
