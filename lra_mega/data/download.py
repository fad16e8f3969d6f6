"""Fetch the data the LRA tasks need: the official release archive and hub datasets.

* :func:`download_file` — HTTP(S) download with resume (``Range``), size check,
  optional sha256, free-disk check and a rich progress bar.
* :func:`extract_tasks` — one streaming pass over ``lra_release.gz`` extracting only
  the members of the requested tasks into ``<dest>/lra_release/``.
* :func:`fetch_hub` — save a hub dataset (IMDB, CIFAR-10) as parquet files under
  ``<cache_dir>/hub/<task>/``, where the datamodules look first.

Every failure is one :class:`LRADataError` line saying what failed and how to fix it by hand;
a destination that cannot be written (a file in the way, permissions, a full disk) is named as
such, and nothing half-written keeps a final name (``.part``/``.tmp`` files until complete).
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import socket
import tarfile
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path, PurePosixPath

from lra_mega.data.cache import file_sha256
from lra_mega.data.errors import LRADataError, write_error
from lra_mega.data.hub import HUB_DATASETS, local_parquet_dir

log = logging.getLogger(__name__)

RELEASE_URL = "https://storage.googleapis.com/long-range-arena/lra_release.gz"
ARCHIVE_NAME = "lra_release.gz"
#: task -> paths inside lra_release/ whose members belong to it
TASK_MEMBERS = {
    "listops": ("listops-1000/",),
    "retrieval": ("tsv_data/new_aan_pairs",),
    "pathfinder": ("pathfinder32/",),
    "pathx": ("pathfinder128/",),
}
RELEASE_TASKS = tuple(TASK_MEMBERS)
HUB_TASKS = tuple(HUB_DATASETS)
ALL_TASKS = RELEASE_TASKS + HUB_TASKS
_CHUNK = 1 << 20


def _offline_hint(dest: Path) -> str:
    return (f"download {RELEASE_URL} elsewhere, then either put {ARCHIVE_NAME} in {dest} and rerun (a file "
            f"already there is used without contacting the server), or pass --url file:///path/to/{ARCHIVE_NAME}")


def _dest_fix(where: Path) -> str:
    return f"free space or fix the permissions of {where}, or pass --dest DIR (--cache-dir DIR for text/image)"


@contextlib.contextmanager
def _local_write(what: str, path: Path, fix: str) -> Iterator[None]:
    """Turn an OSError of the enclosed local file operation into one line about ``path``."""
    try:
        yield
    except OSError as e:
        raise write_error(what, path, e, fix) from e


@contextlib.contextmanager
def _writer(what: str, path: Path, fix: str, mode: str = "wb",
            shown: Path | None = None) -> Iterator[Callable[[bytes], None]]:
    """Open ``path`` and yield ``write(block)`` (written and flushed at once); a write the system
    refuses is one line about ``shown`` (default ``path``), and the file is closed either way."""
    shown = shown or path
    with _local_write(what, shown, fix):
        f = open(path, mode)

    def write(block: bytes) -> None:
        with _local_write(what, shown, fix):
            f.write(block)
            f.flush()

    try:
        yield write
    except BaseException:
        with contextlib.suppress(OSError):  # the data that failed would only fail again
            f.close()
        raise
    with _local_write(what, shown, fix):
        f.close()


def _open(url: str, start: int = 0, method: str = "GET", timeout: float = 30.0):
    req = urllib.request.Request(url, method=method, headers={"User-Agent": "lra_mega"})
    if start > 0:
        req.add_header("Range", f"bytes={start}-")
    return urllib.request.urlopen(req, timeout=timeout)


def remote_size(url: str, timeout: float = 30.0) -> int | None:
    """Content-Length of ``url`` from a HEAD request (None if the server does not say)."""
    with _open(url, method="HEAD", timeout=timeout) as r:
        n = r.headers.get("Content-Length")
    return int(n) if n is not None else None


def download_file(url: str, dest: str | os.PathLike, expected_size: int | None = None,
                  sha256: str | None = None, timeout: float = 30.0, progress: bool = True) -> Path:
    """Download ``url`` to ``dest``, resuming ``dest.part`` when present.

    Checks free disk space before starting, the final size against ``expected_size``
    (or the server's), and ``sha256`` when given. Returns ``dest``. A complete ``dest`` already
    there (only finished downloads get that name; or a copy put there by hand) is used without
    contacting the server, so a manually downloaded archive works offline; a truncated copy is
    caught when it is extracted. ``url`` may be a ``file://`` URL.
    """
    dest = Path(dest)
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise write_error("the download directory", dest.parent, e, _dest_fix(dest.parent)) from e
    part = dest.with_name(dest.name + ".part")
    if dest.exists() and (expected_size is None or dest.stat().st_size == expected_size):
        log.info("%s already there; not downloading", dest)
        return _check_sha(dest, sha256)
    try:
        total = remote_size(url, timeout) if expected_size is None else expected_size
        have = part.stat().st_size if part.exists() else 0
        if total is not None and have > total:
            part.unlink()
            have = 0
        if total is not None:
            free = shutil.disk_usage(dest.parent).free
            if free < (total - have):
                raise LRADataError(f"not enough disk space in {dest.parent}: need {(total - have) / 1e9:.2f} GB "
                                   f"for {dest.name}, have {free / 1e9:.2f} GB; free space or pass --dest elsewhere")
        if total is None or have < total:
            with _open(url, start=have, timeout=timeout) as r:
                if have and r.status != 206:  # server ignored Range: start over
                    log.warning("server did not resume %s; downloading from the start", url)
                    have = 0
                if total is None and r.headers.get("Content-Length") is not None:
                    total = have + int(r.headers["Content-Length"])
                fix = _dest_fix(dest.parent) + "; rerun the same command to resume from the bytes already there"
                with _writer("the download", part, fix, "ab" if have else "wb") as write, \
                        _Bar(dest.name, total, have, progress) as bar:
                    while True:
                        block = r.read(_CHUNK)  # network errors propagate as they are
                        if not block:
                            break
                        write(block)
                        bar.advance(len(block))
        size = part.stat().st_size
        if total is not None and size != total:
            raise LRADataError(f"download of {url} ended at {size} of {total} bytes; rerun the same command "
                               f"to resume from {part}")
        os.replace(part, dest)
    except (urllib.error.URLError, socket.timeout, ConnectionError, TimeoutError) as e:
        reason = getattr(e, "reason", e)
        raise LRADataError(f"could not reach {url} ({reason}); {_offline_hint(dest.parent)}") from e
    return _check_sha(dest, sha256)


def _check_sha(path: Path, sha256: str | None) -> Path:
    if sha256:
        digest = file_sha256(path)
        if digest != sha256.lower():
            raise LRADataError(f"{path} has sha256 {digest}, expected {sha256}; delete it and download again")
    return path


def _release_relpath(name: str) -> PurePosixPath | None:
    """Path of a member relative to lra_release/ (leading ``./`` and ``lra_release/`` dropped)."""
    parts = [p for p in PurePosixPath(name).parts if p not in ("", ".")]
    while parts and parts[0] == "lra_release":
        parts = parts[1:]
    if not parts or any(p == ".." for p in parts) or PurePosixPath(name).is_absolute():
        return None
    return PurePosixPath(*parts)


def extract_tasks(archive: str | os.PathLike, dest: str | os.PathLike, tasks: list[str],
                  progress: bool = True) -> dict[str, int]:
    """Extract the members of ``tasks`` into ``<dest>/lra_release/``; returns files per task.

    One streaming pass, so it works on the 8 GB archive without random access.
    Files already present with the same size are skipped (re-running is cheap).
    """
    unknown = [t for t in tasks if t not in TASK_MEMBERS]
    if unknown:
        raise LRADataError(f"cannot extract {unknown} from the LRA release; release tasks are {list(RELEASE_TASKS)}")
    out_root = Path(dest) / "lra_release"
    counts = {t: 0 for t in tasks}
    fix = _dest_fix(Path(dest)) + "; the archive is fine: rerun the same command"
    try:
        with tarfile.open(archive, "r|*") as tf, _Bar("extracting", None, 0, progress) as bar:
            for m in tf:
                rel = _release_relpath(m.name)
                if rel is None or not m.isfile():
                    continue
                task = next((t for t in tasks if any(str(rel).startswith(p) for p in TASK_MEMBERS[t])), None)
                if task is None:
                    continue
                target = out_root / rel
                if target.exists() and target.stat().st_size == m.size:
                    counts[task] += 1
                    continue
                _extract_member(tf, m, target, fix)
                counts[task] += 1
                bar.advance(1)
    except LRADataError:
        raise
    except (tarfile.TarError, EOFError, OSError) as e:
        raise LRADataError(f"cannot read archive {archive} ({e}); it may be truncated: delete it and rerun "
                           f"`python scripts/download_lra.py`") from e
    empty = [t for t, n in counts.items() if n == 0]
    if empty:
        raise LRADataError(f"archive {archive} holds no files for {empty}: truncated, or not the LRA release "
                           f"({RELEASE_URL})? delete it and rerun `python scripts/download_lra.py`")
    return counts


def _extract_member(tf: tarfile.TarFile, member: tarfile.TarInfo, target: Path, fix: str) -> None:
    """Copy one archive member to ``target`` through ``<target>.tmp``: a write the system refuses
    is one line about the destination (not the archive), and no ``.tmp`` is left behind."""
    src = tf.extractfile(member)
    tmp = target.with_name(target.name + ".tmp")
    with _local_write("the extracted data", target.parent, fix):
        target.parent.mkdir(parents=True, exist_ok=True)
    try:
        with _writer("the extracted file", tmp, fix, shown=target) as write:
            while True:
                block = src.read(_CHUNK)  # a truncated archive raises here, as a read error
                if not block:
                    break
                write(block)
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def fetch_hub(task: str, cache_dir: str | os.PathLike) -> Path:
    """Save the train/test splits of a hub task as parquet under ``<cache_dir>/hub/<task>``."""
    name, _ = HUB_DATASETS[task]
    out = local_parquet_dir(Path(cache_dir), task)
    fix = _dest_fix(out)
    with _local_write("the parquet files", out, fix):
        out.mkdir(parents=True, exist_ok=True)
    try:
        import datasets

        dd = datasets.load_dataset(name)
    except Exception as e:  # noqa: BLE001 - datasets raises many types when offline
        first = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
        raise LRADataError(f"could not fetch hub dataset {name!r} ({type(e).__name__}: {first}); when online rerun "
                           f"this command, or place its train-*.parquet/test-*.parquet files in {out} "
                           f"(or anywhere and set data.root=<that dir>)") from e
    for split in ("train", "test"):
        final = out / f"{split}-00000-of-00001.parquet"
        tmp = final.with_name(f".{final.name}.tmp")  # not matched by train-*.parquet until complete
        try:
            with _local_write("the parquet file", final, fix):
                dd[split].to_parquet(str(tmp))
                os.replace(tmp, final)
        finally:
            tmp.unlink(missing_ok=True)
    return out


class _Bar:
    """Rich progress bar context (bytes when ``total`` is known, a counter otherwise)."""

    def __init__(self, label: str, total: int | None, done: int, enabled: bool) -> None:
        self.enabled = enabled
        self.label, self.total, self.done = label, total, done

    def __enter__(self) -> "_Bar":
        if self.enabled:
            from rich.progress import (BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn,
                                       TransferSpeedColumn)
            cols = [TextColumn("{task.description}"), BarColumn()]
            if self.label != "extracting":
                cols += [DownloadColumn(), TransferSpeedColumn(), TimeRemainingColumn()]
            else:
                cols += [TextColumn("{task.completed} files")]
            self._p = Progress(*cols, transient=True)
            self._t = self._p.add_task(self.label, total=self.total, completed=self.done)
            self._p.start()
        return self

    def advance(self, n: int) -> None:
        if self.enabled:
            self._p.advance(self._t, n)

    def __exit__(self, *exc) -> None:
        if self.enabled:
            self._p.stop()
