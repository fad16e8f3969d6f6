"""Resumable, parallel production of numbered shards (``shard_00012.npz``).

A shard file is written to a temporary name and renamed into place, so a file with the
final name is complete; it is still read back and checked before it is trusted. A killed
run or a full disk leaves only complete shards (and temporaries, removed on the next run), and
the next run makes only the missing ones. A write the system refuses (full disk, permissions)
ends in one :class:`~lra_mega.data.errors.LRADataError` line naming the file and the fix.
"""

from __future__ import annotations

import json
import logging
import multiprocessing
import os
import shutil
import uuid
import zipfile
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from pathlib import Path
from typing import Any, Callable

import numpy as np

from lra_mega.data.cache import CACHE_FIX
from lra_mega.data.errors import write_error
from lra_mega.data.progress import count_progress

log = logging.getLogger(__name__)

SPEC = "spec.json"


def shard_path(shard_dir: str | os.PathLike, index: int) -> Path:
    """Path of shard ``index`` in ``shard_dir``."""
    return Path(shard_dir) / f"shard_{index:05d}.npz"


def _atomic_write(path: Path, write: Callable[[Any], None], what: str) -> None:
    """``write(f)`` into a temporary sibling of ``path``, fsync, rename into place; on any failure
    the temporary goes, and a refused write raises one :class:`LRADataError` line."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}")
    try:
        with open(tmp, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as err:
        tmp.unlink(missing_ok=True)
        if isinstance(err, OSError):
            raise write_error(what, path, err, CACHE_FIX) from err
        raise


def write_shard(path: str | os.PathLike, arrays: dict[str, np.ndarray]) -> None:
    """Write ``arrays`` as an ``.npz`` atomically (temporary file, fsync, rename)."""
    _atomic_write(Path(path), lambda f: np.savez(f, **arrays), "the data shard")


def read_shard(path: str | os.PathLike, rows: int | None = None) -> dict[str, np.ndarray] | None:
    """Arrays of a shard, or None if it is missing, unreadable, or not ``rows`` long."""
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}  # reading every member checks the zip CRCs
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, KeyError):
        return None
    if not arrays or (rows is not None and any(len(a) != rows for a in arrays.values())):
        return None
    return arrays


def prepare_shard_dir(shard_dir: str | os.PathLike, spec: dict[str, Any]) -> Path:
    """Create ``shard_dir`` for the job described by ``spec``; shards of another spec are wiped."""
    shard_dir = Path(shard_dir)
    spec_file = shard_dir / SPEC
    blob = json.dumps(spec, sort_keys=True, default=str)
    if shard_dir.exists():
        try:
            same = spec_file.read_text() == blob
        except OSError:
            same = False
        if not same:
            log.warning("shards in %s belong to different settings; discarding them", shard_dir)
            shutil.rmtree(shard_dir)
    try:
        shard_dir.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise write_error("the shard directory", shard_dir, err, CACHE_FIX) from err
    for stale in shard_dir.glob(".*.tmp-*"):
        stale.unlink(missing_ok=True)
    if not spec_file.exists():  # atomic: a half-written spec would discard good shards next time
        _atomic_write(spec_file, lambda f: f.write(blob.encode()), "the shard spec")
    return shard_dir


def mp_context() -> multiprocessing.context.BaseContext:
    """``fork`` where available: works from unguarded scripts and notebooks, and the workers
    only run numpy code; ``spawn`` elsewhere."""
    methods = multiprocessing.get_all_start_methods()
    return multiprocessing.get_context("fork" if "fork" in methods else "spawn")


def _make_and_write(make: Callable[[int], dict[str, np.ndarray]], path: str, index: int) -> int:
    write_shard(path, make(index))
    return index


def run_shards(shard_dir: str | os.PathLike, rows: list[int], make: Callable[[int], dict[str, np.ndarray]], *,
               workers: int = 1, description: str = "shards", progress: bool = True, unit: str = "rows",
               on_shard_done: Callable[[int], None] | None = None) -> list[Path]:
    """Make every shard ``i`` (with ``rows[i]`` rows) of ``shard_dir`` not already complete.

    ``make(i)`` returns the arrays of shard ``i``; it must be picklable (a module-level
    function or a ``functools.partial`` of one) when ``workers > 1``. ``on_shard_done(i)``
    is called in this process after each newly written shard. The bar counts rows (named
    ``unit``) with their rate and the time left. Returns all shard paths.
    """
    shard_dir = Path(shard_dir)
    paths = [shard_path(shard_dir, i) for i in range(len(rows))]
    todo = [i for i, p in enumerate(paths) if read_shard(p, rows[i]) is None]
    if len(todo) < len(paths):
        log.info("%s: %d of %d shards already complete in %s", description, len(paths) - len(todo),
                 len(paths), shard_dir)
    with count_progress(progress, unit=unit) as bar:
        # counted in rows (e.g. images), so the rate and the time left are in the user's unit
        task = bar.add_task(description, total=sum(rows), completed=sum(rows) - sum(rows[i] for i in todo))

        def done(i: int) -> None:
            bar.advance(task, rows[i])
            if on_shard_done is not None:
                on_shard_done(i)

        if workers <= 1 or len(todo) <= 1:
            for i in todo:
                done(_make_and_write(make, str(paths[i]), i))
            return paths
        with ProcessPoolExecutor(max_workers=min(workers, len(todo)), mp_context=mp_context()) as pool:
            queue = list(reversed(todo))
            running = set()
            try:
                while queue or running:
                    while queue and len(running) < 2 * workers:  # bounded, so a stop wastes little
                        i = queue.pop()
                        running.add(pool.submit(_make_and_write, make, str(paths[i]), i))
                    finished, running = wait(running, return_when=FIRST_COMPLETED)
                    for fut in finished:
                        done(fut.result())
            except BaseException:
                for fut in running:
                    fut.cancel()
                raise
    return paths
