"""Pathfinder (32x32) and Path-X (128x128): generated (default) or read from the LRA release.

``resolution`` selects the other official sizes (64, and 256 = Path-256 with 65,536 pixels).

Batches carry the image flattened row-major to ``(B, H*W)`` float32, normalised
``(x/255 - 0.5) / 0.5``, with an all-true mask. Generated splits are independent streams
of one seed (``[seed, 0|1|2]`` for train/val/test), made in resumable shards by a process
pool and cached; release splits are a fixed-seed 80/10/10 shuffle of all images.
"""

from __future__ import annotations

import errno
import functools
import logging
import os
import shutil
from pathlib import Path
from typing import Any, Callable, ClassVar

import numpy as np
from torch.utils.data import Dataset

from lra_mega.data.base import LRADataModule
from lra_mega.data.cache import files_fingerprint, load_split as load_cached, save_split, split_cache_dir
from lra_mega.data.errors import LRAConfigError
from lra_mega.data.pathfinder_generate import (BLOCK_SIZE, DIFFICULTIES, GENERATOR_VERSION, RESOLUTIONS,
                                               PathfinderSettings, Seed, generate, pathfinder_settings)
from lra_mega.data.pathfinder_release import read_release, release_subdir, split_indices
from lra_mega.data.sequences import PixelDataset
from lra_mega.data.shards import prepare_shard_dir, read_shard, run_shards

log = logging.getLogger(__name__)

SPLIT_STREAM = {"train": 0, "val": 1, "test": 2}


def _make_shard(settings: PathfinderSettings, seed: Seed, shard_size: int, n: int, index: int
                ) -> dict[str, np.ndarray]:
    start = index * shard_size
    block = generate(settings, min(shard_size, n - start), seed, start=start)
    return {"pixels": block.images.reshape(len(block.images), -1), "labels": block.labels}


def generate_split(out_dir: str | os.PathLike, settings: PathfinderSettings, n: int, seed: Seed, *,
                   shard_size: int = 8 * BLOCK_SIZE, workers: int | None = None, progress: bool = True,
                   meta: dict[str, Any] | None = None,
                   on_shard_done: Callable[[int], None] | None = None) -> dict[str, np.ndarray]:
    """Generate ``n`` images into the cache directory ``out_dir`` and return its arrays.

    Shards go to the sibling ``<out_dir>.shards`` (resumable: a re-run after a kill makes
    only the missing shards), then are consolidated with :func:`cache.save_split` into
    ``pixels`` (n, H*W) uint8 and ``labels`` (n,) int64, and the shards are removed.
    The content depends only on ``(settings, seed)`` (not on ``shard_size`` or ``workers``).
    """
    if n < 1:
        raise LRAConfigError(f"pathfinder: number of images must be >= 1, got n={n}")
    if shard_size < 1 or shard_size % BLOCK_SIZE:
        raise LRAConfigError(f"pathfinder: shard_size must be a positive multiple of {BLOCK_SIZE}, "
                             f"got {shard_size}")
    out_dir = Path(out_dir)
    spec = {"settings": settings.to_dict(), "seed": seed, "n": n, "shard_size": shard_size,
            "gen": GENERATOR_VERSION}
    shard_dir = prepare_shard_dir(out_dir.with_name(out_dir.name + ".shards"), spec)
    rows = [min(shard_size, n - i) for i in range(0, n, shard_size)]
    workers = min(os.cpu_count() or 1, len(rows)) if workers is None else max(1, int(workers))
    make = functools.partial(_make_shard, settings, seed, shard_size, n)
    paths = run_shards(shard_dir, rows, make, workers=workers, progress=progress,
                       description=f"pathfinder{settings.image_size}: {n} images", unit="images",
                       on_shard_done=on_shard_done)
    side = settings.image_size
    need = 2 * n * side * side  # the consolidation array, then the cache file written from it
    free = shutil.disk_usage(shard_dir).free
    if free < need:  # a memory-mapped write past the free space ends in SIGBUS, not an error
        raise OSError(errno.ENOSPC, f"consolidating {n} images needs {need / 1e9:.2f} GB",
                      str(shard_dir / "pixels.npy"))
    # consolidate through a file-backed array so Path-X (GBs) never sits in memory twice
    pixels = np.lib.format.open_memmap(shard_dir / "pixels.npy", mode="w+", dtype=np.uint8, shape=(n, side * side))
    labels = np.zeros(n, np.int64)
    for i, path in enumerate(paths):
        shard = read_shard(path, rows[i])
        if shard is None:
            raise RuntimeError(f"shard {path} vanished or broke during consolidation; re-run to rebuild it")
        lo = i * shard_size
        pixels[lo:lo + rows[i]] = shard["pixels"]
        labels[lo:lo + rows[i]] = shard["labels"]
    pixels.flush()
    save_split(out_dir, {"pixels": pixels, "labels": labels},
               {**(meta or {}), **spec, "count": n, "positives": int(labels.sum())})
    del pixels
    shutil.rmtree(shard_dir, ignore_errors=True)
    arrays = load_cached(out_dir)
    if arrays is None:
        raise RuntimeError(f"pathfinder: cache {out_dir} unreadable right after writing it")
    return arrays


class PathfinderDataModule(LRADataModule):
    """LRA Pathfinder: 32x32 images, 2 classes, ``seq_len`` 1024 (``resolution`` x ``resolution``).

    Args:
        resolution: image size: 32, 64, 128 or 256 (default: 32 here, 128 for Path-X).
        n_train, n_val, n_test: split sizes for ``source="generate"`` (LRA: 160k/20k/20k).
            A smaller size of the same seed is a prefix of a larger one.
        difficulty: contour length: 6 (curv_baseline), 9 or 14 (LRA's choice, default).
        workers: generator / decoder processes (default: all CPUs); data do not depend on it.
        shard_size: images per resumable generation shard (multiple of 256; default
            2048 at 32 px, 1024 at 64, 512 at 128, 256 at 256).
        generator: overrides of :class:`PathfinderSettings` fields (e.g. ``{"margin": 1.0}``).
        train_difficulties: a curriculum of mixed contour lengths, e.g. ``[6, 9, 14]``: the
            training split holds an equal share of each (the first ``n_train / k`` images of each
            length's own split, shuffled together), validation and test stay at ``difficulty``.
            None (default): train at ``difficulty``.
        **kwargs: :class:`~lra_mega.data.base.LRADataModule` arguments (``batch_size``,
            ``seed``, ``cache_dir``, ``source`` ∈ {generate, release}, ``root`` for release).
    """

    task: ClassVar[str] = "pathfinder"
    resolution: ClassVar[int] = 32
    sources = ("generate", "release")
    default_source = "generate"
    num_classes = 2
    vocab_size = None
    input_kind = "pixels"
    dual = False
    pixel_mean = 0.5
    pixel_std = 0.5

    def __init__(self, n_train: int = 160_000, n_val: int = 20_000, n_test: int = 20_000,
                 difficulty: int = 14, resolution: int | None = None, workers: int | None = None,
                 shard_size: int | None = None, generator: dict[str, Any] | None = None,
                 train_difficulties: list[int] | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        resolution = type(self).resolution if resolution is None else resolution
        if resolution not in RESOLUTIONS:
            raise LRAConfigError(f"task {self.task!r}: data.resolution={resolution!r} is not an official size; "
                                 f"use one of {list(RESOLUTIONS)}")
        self.resolution = int(resolution)
        if shard_size is None:
            shard_size = {32: 2048, 64: 1024, 128: 512, 256: 256}[self.resolution]
        sizes = {"train": n_train, "val": n_val, "test": n_test}
        for name, n in sizes.items():
            if int(n) < 1:
                raise LRAConfigError(f"task {self.task!r}: data.n_{name} must be >= 1, got {n}")
        given = [("difficulty", difficulty, [difficulty])]
        if train_difficulties is not None:
            given.append(("train_difficulties", list(train_difficulties), list(train_difficulties)))
        for key, shown, values in given:
            if any(d not in DIFFICULTIES for d in values):
                raise LRAConfigError(f"task {self.task!r}: data.{key}={shown!r} is not a contour length of the "
                                     f"benchmark; use one of {sorted(DIFFICULTIES)} (6 = curv_baseline)")
        if train_difficulties is not None and (not train_difficulties or len(set(train_difficulties))
                                               != len(train_difficulties)):
            raise LRAConfigError(f"task {self.task!r}: data.train_difficulties={list(train_difficulties)!r} must "
                                 "list distinct contour lengths, e.g. [6, 9, 14] (null: train at data.difficulty)")
        if int(shard_size) < 1 or int(shard_size) % BLOCK_SIZE:
            raise LRAConfigError(f"task {self.task!r}: data.shard_size must be a positive multiple of "
                                 f"{BLOCK_SIZE}, got {shard_size}")
        self.sizes = {k: int(v) for k, v in sizes.items()}
        self.difficulty = int(difficulty)
        self.train_difficulties = None if train_difficulties is None else [int(d) for d in train_difficulties]
        self.workers = workers
        self.shard_size = int(shard_size)
        self.generator = dict(generator or {})
        self.settings = pathfinder_settings(self.resolution, self.difficulty, **self.generator)
        self.seq_len = self.resolution * self.resolution

    def _settings(self, difficulty: int) -> PathfinderSettings:
        """The generator's settings at contour length ``difficulty`` (``self.settings`` at ``self.difficulty``)."""
        if difficulty == self.difficulty:
            return self.settings
        return pathfinder_settings(self.resolution, difficulty, **self.generator)

    def _key(self, split: str, difficulty: int | None = None, n: int | None = None) -> dict[str, Any]:
        difficulty = self.difficulty if difficulty is None else difficulty
        if self.source == "generate":
            return self.cache_key(split, seed=self.seed, n=self.sizes[split] if n is None else n,
                                  gen=GENERATOR_VERSION, settings=self._settings(difficulty).to_dict())
        set_dir = self.release_path(release_subdir(self.resolution, difficulty))
        metadata = files_fingerprint((set_dir / "metadata").glob("*.npy"))
        return self.cache_key(split, dir=str(set_dir.resolve()), seed=self.seed, meta=metadata)

    def _release_all(self, want: str, difficulty: int) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        """Decode the release once; cache every split, return ``want`` for the caller."""
        set_dir = self.release_path(release_subdir(self.resolution, difficulty))
        pixels, labels, skipped = read_release(set_dir, self.resolution, workers=self.workers)
        out = {split: ({"pixels": pixels[idx], "labels": labels[idx]},
                       {"count": len(idx), "skipped_in_release": skipped})
               for split, idx in split_indices(len(labels), self.seed).items()}
        return self.keep_other_splits(out, want, lambda s: self._key(s, difficulty))

    def _arrays(self, split: str, difficulty: int, n: int | None = None) -> tuple[dict[str, np.ndarray], Path]:
        """The cached arrays of ``split`` at contour length ``difficulty`` (``n`` images when generated)."""
        key = self._key(split, difficulty, n)
        if self.source == "release":
            return self.cached(key, lambda: self._release_all(split, difficulty))
        path = split_cache_dir(self.cache_dir, self.task, key)
        arrays = load_cached(path)
        if arrays is None:
            arrays = generate_split(path, self._settings(difficulty), self.sizes[split] if n is None else n,
                                    [self.seed, SPLIT_STREAM[split]], shard_size=self.shard_size,
                                    workers=self.workers, meta={"key": key})
        return arrays, path

    def load_split(self, split: str) -> Dataset:
        if split != "train" or self.train_difficulties is None:
            arrays, path = self._arrays(split, self.difficulty)
            return PixelDataset(arrays, path=path)
        return PixelDataset(self._mixed_train())

    def _mixed_train(self) -> dict[str, np.ndarray]:
        """Equal shares of each of ``train_difficulties``, in that order (the sampler shuffles them)."""
        k, total = len(self.train_difficulties), self.sizes["train"]
        shares = [total // k + (i < total % k) for i in range(k)]
        parts = []
        for difficulty, share in zip(self.train_difficulties, shares):
            arrays, _ = self._arrays("train", difficulty, share if self.source == "generate" else None)
            if len(arrays["labels"]) < share:
                raise LRAConfigError(f"task {self.task!r}: contour length {difficulty} has "
                                     f"{len(arrays['labels'])} training images, fewer than the {share} "
                                     "data.train_difficulties asks of it; lower data.n_train")
            parts.append({name: np.asarray(a[:share]) for name, a in arrays.items()})
        out = {name: np.concatenate([p[name] for p in parts]) for name in parts[0]}
        out["difficulty"] = np.repeat(np.array(self.train_difficulties, np.int64), shares)
        log.info("pathfinder: training on contour lengths %s, %s images each", self.train_difficulties, shares)
        return out


class PathXDataModule(PathfinderDataModule):
    """LRA Path-X: Pathfinder at 128x128, ``seq_len`` 16384 (same arguments)."""

    task: ClassVar[str] = "pathx"
    resolution: ClassVar[int] = 128


__all__ = ["PathfinderDataModule", "PathXDataModule", "generate_split"]
