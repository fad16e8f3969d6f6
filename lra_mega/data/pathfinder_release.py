"""Reader for the Pathfinder images of the official LRA release.

Layout: ``pathfinder{32,64,128,256}/<difficulty>/imgs/<k>/sample_<n>.png`` plus
``metadata/<k>.npy``, which is a *text* file despite its name: one line per image with
whitespace-separated fields ``subdir filename index label ...`` (e.g.
``imgs/0 sample_0.png 0 1 ...``). Some release PNGs are empty or corrupt (e.g.
``pathfinder32/curv_baseline/imgs/0/sample_172.png``): they are skipped and counted.
"""

from __future__ import annotations

import logging
import os
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from lra_mega.data.errors import LRADataError
from lra_mega.data.progress import count_progress
from lra_mega.data.shards import mp_context

log = logging.getLogger(__name__)

RESOLUTIONS = (32, 64, 128, 256)
DIFFICULTY_DIRS = {6: "curv_baseline", 9: "curv_contour_length_9", 14: "curv_contour_length_14"}
_CHUNK = 512  # images per decode task


def release_subdir(resolution: int, difficulty: int) -> str:
    """Relative directory of one Pathfinder set, e.g. ``pathfinder32/curv_contour_length_14``."""
    if resolution not in RESOLUTIONS:
        raise LRADataError(f"pathfinder release: resolution {resolution!r} is not one of {RESOLUTIONS}")
    if difficulty not in DIFFICULTY_DIRS:
        raise LRADataError(f"pathfinder release: difficulty {difficulty!r} is not one of "
                           f"{sorted(DIFFICULTY_DIRS)} (contour length; 14 is LRA's)")
    return f"pathfinder{resolution}/{DIFFICULTY_DIRS[difficulty]}"


def read_metadata(set_dir: str | os.PathLike) -> tuple[list[Path], np.ndarray, int]:
    """Image paths and labels listed by ``set_dir/metadata/*.npy``; malformed lines are counted."""
    set_dir = Path(set_dir)
    meta_dir = set_dir / "metadata"
    files = sorted(meta_dir.glob("*.npy"), key=lambda p: (len(p.stem), p.stem)) if meta_dir.is_dir() else []
    if not files:
        raise LRADataError(
            f"pathfinder release: no metadata files in {meta_dir}; point data.root at the directory "
            f"holding lra_release/ (or run `python scripts/download_lra.py --tasks pathfinder`), "
            f"or use data.source=generate"
        )
    paths: list[Path] = []
    labels: list[int] = []
    bad = 0
    for meta in files:
        with open(meta, encoding="utf-8", errors="replace") as f:
            for line in f:
                fields = line.split()
                if not fields:
                    continue
                try:
                    label = int(fields[3])
                    if label not in (0, 1):
                        raise ValueError(label)
                except (IndexError, ValueError):
                    bad += 1
                    continue
                paths.append(set_dir / fields[0] / fields[1])
                labels.append(label)
    if bad:
        log.warning("pathfinder release %s: skipped %d malformed metadata lines", set_dir, bad)
    return paths, np.asarray(labels, np.int64), bad


def _decode_chunk(paths: list[str], side: int) -> tuple[np.ndarray, np.ndarray]:
    """Decode PNGs to (n, side*side) uint8 gray; second array flags the usable ones."""
    out = np.zeros((len(paths), side * side), np.uint8)
    ok = np.zeros(len(paths), bool)
    for i, p in enumerate(paths):
        try:
            with Image.open(p) as im:
                gray = im.convert("L")
            if gray.size != (side, side):
                continue
            out[i] = np.asarray(gray, np.uint8).reshape(-1)
            ok[i] = True
        except (OSError, UnidentifiedImageError, ValueError, SyntaxError):
            continue
    return out, ok


def read_release(set_dir: str | os.PathLike, resolution: int, *, workers: int | None = None,
                 progress: bool = True) -> tuple[np.ndarray, np.ndarray, int]:
    """Decode one Pathfinder set: returns ``(pixels (N, res*res) uint8, labels (N,), skipped)``.

    Missing, empty, corrupt or wrongly sized PNGs are skipped, counted, and logged once.
    """
    set_dir = Path(set_dir)
    if not set_dir.is_dir():
        raise LRADataError(
            f"pathfinder release: directory {set_dir} does not exist; point data.root at the directory "
            f"holding lra_release/ (run `python scripts/download_lra.py --tasks pathfinder`), "
            f"or use data.source=generate"
        )
    paths, labels, bad_meta = read_metadata(set_dir)
    chunks = [[str(p) for p in paths[i:i + _CHUNK]] for i in range(0, len(paths), _CHUNK)]
    workers = min(os.cpu_count() or 1, 8) if workers is None else max(1, int(workers))
    pixels = np.zeros((len(paths), resolution * resolution), np.uint8)
    ok = np.zeros(len(paths), bool)
    with count_progress(progress) as bar:
        task = bar.add_task(f"decoding {set_dir.name}", total=len(paths))
        if workers <= 1 or len(chunks) <= 1:
            results = (_decode_chunk(c, resolution) for c in chunks)
            pool = None
        else:
            pool = ProcessPoolExecutor(max_workers=workers, mp_context=mp_context())
            results = pool.map(_decode_chunk, chunks, [resolution] * len(chunks))
        try:
            for j, (px, good) in enumerate(results):
                lo = j * _CHUNK
                pixels[lo:lo + len(good)] = px
                ok[lo:lo + len(good)] = good
                bar.advance(task, len(good))
        finally:
            if pool is not None:
                pool.shutdown(cancel_futures=True)
    skipped = int((~ok).sum())
    if skipped:
        first = paths[int(np.flatnonzero(~ok)[0])]
        log.warning("pathfinder release %s: skipped %d of %d images that are missing, empty or corrupt "
                    "(first: %s)", set_dir, skipped, len(paths), first)
    if not ok.any():
        raise LRADataError(f"pathfinder release {set_dir}: none of the {len(paths)} listed images could be "
                           f"decoded; the release is damaged, re-download it or use data.source=generate")
    return pixels[ok], labels[ok], skipped + bad_meta


def split_indices(n: int, seed: int, fractions: tuple[float, float] = (0.8, 0.1)) -> dict[str, np.ndarray]:
    """Fixed-seed shuffle of ``range(n)`` cut into train/val/test (LRA/S4 convention 80/10/10)."""
    perm = np.random.default_rng(seed).permutation(n)
    n_train = int(round(fractions[0] * n))
    n_val = int(round(fractions[1] * n))
    return {"train": np.sort(perm[:n_train]), "val": np.sort(perm[n_train:n_train + n_val]),
            "test": np.sort(perm[n_train + n_val:])}
