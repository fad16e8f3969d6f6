"""Compact on-disk cache of decoded dataset splits.

One split lives in one directory: a ``.npy`` file per array plus ``manifest.json``
(format version, per-array dtype/shape/size/sha256, creation time, caller meta).
Directories are written atomically (temporary sibling, fsync, rename), so a
killed run or a full disk never leaves a directory that looks complete; a write the system
refuses ends in one :class:`~lra_mega.data.errors.LRADataError` line naming the directory.
Arrays are read back memory-mapped, so a second load costs only the manifest check.

Variable-length sequences are stored flat: ``tokens`` (all sequences concatenated,
uint8 where values fit) plus ``offsets`` (int64, length N+1); see :func:`pack_sequences`.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import time
import uuid
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

from lra_mega.data.errors import write_error

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
MANIFEST = "manifest.json"


def default_cache_dir() -> Path:
    """``$LRA_MEGA_CACHE`` if set, else ``~/.cache/lra_mega``."""
    env = os.environ.get("LRA_MEGA_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "lra_mega"


def key_digest(key: dict[str, Any]) -> str:
    """Stable 12-hex-digit digest of a JSON-serialisable key."""
    blob = json.dumps(key, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:12]


def split_cache_dir(cache_dir: str | os.PathLike, task: str, key: dict[str, Any]) -> Path:
    """Directory for one cached split: ``<cache_dir>/<task>/<prefix>-<digest>``.

    ``key`` must hold everything that determines the content (source, split, seed,
    sizes, generator version, ...). The prefix is made of the key's short scalar
    values (in key order) so a human can tell directories apart; the digest covers the whole key.
    """
    parts = [str(v) for k, v in key.items() if k != "task" and (
        (isinstance(v, str) and len(v) <= 16) or (isinstance(v, int) and abs(v) < 10**7))]
    prefix = "_".join(parts)
    prefix = "".join(c if c.isalnum() or c in "-_." else "-" for c in prefix)[:60] or "split"
    return Path(cache_dir).expanduser() / task / f"{prefix}-{key_digest(key)}"


def files_fingerprint(paths: Iterable[str | os.PathLike]) -> list[str]:
    """``path:size:mtime_ns`` of each existing file (sorted), for cache keys of decoded files:
    the key changes when any source file is replaced or edited."""
    stamps = []
    for p in sorted(Path(p).resolve() for p in paths):
        try:
            st = p.stat()
        except OSError:
            continue
        stamps.append(f"{p}:{st.st_size}:{st.st_mtime_ns}")
    return stamps


def file_sha256(path: str | os.PathLike) -> str:
    """Hex sha256 of a file, read in blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            h.update(block)
    return h.hexdigest()


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


#: what to do when the cache cannot be written
CACHE_FIX = ("free space there, or set paths.cache_dir=DIR (or $LRA_MEGA_CACHE) to a writable directory "
             "on a disk with room")


def save_split(path: str | os.PathLike, arrays: dict[str, np.ndarray], meta: dict[str, Any]) -> None:
    """Write ``arrays`` and a manifest to ``path`` atomically, replacing any old content.

    A refused write (full disk, permissions, a file in the way) removes the temporary directory
    and raises :class:`LRADataError` naming ``path``, the reason and the fix.
    """
    path = Path(path)
    try:
        _save_split(path, arrays, meta)
    except OSError as err:
        raise write_error("the data cache", path, err, CACHE_FIX) from err


def _save_split(path: Path, arrays: dict[str, np.ndarray], meta: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        entries = {}
        for name, arr in arrays.items():
            arr = np.ascontiguousarray(arr)
            fname = tmp / f"{name}.npy"
            with open(fname, "wb") as f:
                np.save(f, arr, allow_pickle=False)
                f.flush()
                os.fsync(f.fileno())
            entries[name] = {
                "dtype": arr.dtype.str,
                "shape": list(arr.shape),
                "bytes": fname.stat().st_size,
                "sha256": file_sha256(fname),
            }
        manifest = {
            "format_version": FORMAT_VERSION,
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "arrays": entries,
            "meta": meta,
        }
        with open(tmp / MANIFEST, "w") as f:
            json.dump(manifest, f, indent=1, default=str)
            f.flush()
            os.fsync(f.fileno())
        _fsync_dir(tmp)
        if path.exists():
            old = path.parent / f".{path.name}.old-{uuid.uuid4().hex[:8]}"
            os.rename(path, old)
            shutil.rmtree(old, ignore_errors=True)
        os.rename(tmp, path)
        _fsync_dir(path.parent)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def read_manifest(path: str | os.PathLike) -> dict[str, Any] | None:
    """The manifest of a cached split, or None if absent/unreadable."""
    try:
        with open(Path(path) / MANIFEST) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def load_split(path: str | os.PathLike, verify: bool = False) -> dict[str, np.ndarray] | None:
    """Memory-map the arrays of a cached split, or return None (logging why) if unusable.

    Always checks the manifest, format version, each file's size, dtype and shape;
    ``verify=True`` also re-hashes every file (slow for large splits).
    """
    path = Path(path)
    if not path.is_dir():
        log.info("cache miss: %s does not exist", path)
        return None
    manifest = read_manifest(path)
    if manifest is None:
        log.warning("cache at %s has no readable manifest (partial write?); rebuilding", path)
        return None
    if manifest.get("format_version") != FORMAT_VERSION:
        log.warning("cache at %s has format version %s, expected %s; rebuilding",
                    path, manifest.get("format_version"), FORMAT_VERSION)
        return None
    out: dict[str, np.ndarray] = {}
    for name, entry in manifest.get("arrays", {}).items():
        fname = path / f"{name}.npy"
        try:
            size = fname.stat().st_size
        except OSError:
            log.warning("cache at %s is missing %s; rebuilding", path, fname.name)
            return None
        if size != entry["bytes"]:
            log.warning("cache file %s has %d bytes, manifest says %d; rebuilding", fname, size, entry["bytes"])
            return None
        if verify and file_sha256(fname) != entry["sha256"]:
            log.warning("cache file %s fails its checksum; rebuilding", fname)
            return None
        try:
            arr = np.load(fname, mmap_mode="r", allow_pickle=False)
        except (OSError, ValueError) as e:
            log.warning("cache file %s is unreadable (%s); rebuilding", fname, e)
            return None
        if arr.dtype.str != entry["dtype"] or list(arr.shape) != entry["shape"]:
            log.warning("cache file %s has dtype/shape %s%s, manifest says %s%s; rebuilding",
                        fname, arr.dtype.str, list(arr.shape), entry["dtype"], entry["shape"])
            return None
        out[name] = arr
    return out


def pack_sequences(seqs: Sequence[bytes | np.ndarray | Sequence[int]]) -> tuple[np.ndarray, np.ndarray]:
    """Concatenate variable-length sequences into ``(flat, offsets)``.

    ``bytes`` objects and small non-negative ints pack as uint8, else int16/int32.
    Sequence ``i`` is ``flat[offsets[i]:offsets[i + 1]]``.
    """
    lengths = np.fromiter((len(s) for s in seqs), dtype=np.int64, count=len(seqs))
    offsets = np.zeros(len(seqs) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    if seqs and all(isinstance(s, (bytes, bytearray)) for s in seqs):
        flat = np.frombuffer(b"".join(seqs), dtype=np.uint8).copy()
        return flat, offsets
    parts = [np.asarray(s, dtype=np.int64) for s in seqs]
    flat64 = np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)
    lo = int(flat64.min()) if flat64.size else 0
    hi = int(flat64.max()) if flat64.size else 0
    for dt in (np.uint8, np.int16, np.int32, np.int64):
        info = np.iinfo(dt)
        if info.min <= lo and hi <= info.max:
            return flat64.astype(dt), offsets
    raise AssertionError("unreachable")
