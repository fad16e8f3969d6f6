"""Shared LightningDataModule for the LRA tasks.

A task subclass sets the class attributes below (or instance attributes in its
``__init__`` before/after calling ``super().__init__``) and implements
:meth:`LRADataModule.load_split`. Everything else (source validation, caching,
limits for smoke runs, dataloaders, padding collate) lives here.
"""

from __future__ import annotations

import difflib
import logging
import os
import time
from pathlib import Path
from typing import Any, Callable, ClassVar

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Subset

from lra_mega.data.cache import default_cache_dir, load_split as load_cached, save_split, split_cache_dir
from lra_mega.data.errors import LRAConfigError, LRADataError
from lra_mega.data.sampling import EpochShuffleSampler, LengthGroupedSampler
from lra_mega.data.sequences import PadCollate

log = logging.getLogger(__name__)

SPLITS = ("train", "val", "test")
_STAGE_SPLITS = {"fit": ("train", "val"), "validate": ("val",), "test": ("test",), "predict": ("test",)}


class LRADataModule(L.LightningDataModule):
    """Base datamodule: subclasses provide per-split datasets via :meth:`load_split`.

    Args:
        batch_size: examples per batch (all splits).
        num_workers: dataloader worker processes; default ``min(4, cpu count)``.
        pin_memory: pin host memory; default ``True`` when CUDA is available.
        cache_dir: root of the decoded-split cache; default ``$LRA_MEGA_CACHE``
            or ``~/.cache/lra_mega``. The LRA release is looked for in
            ``<cache_dir>/lra_release`` when ``root`` is not given.
        seed: seed of generated data and fixed splits (``data.seed``; fixed across runs).
        shuffle_seed: seed of the training order (the run's ``seed``); ``None`` = ``seed``.
        group_by_length: training batches of similar length (variable-length token tasks):
            less padding, the same examples per epoch (:class:`LengthGroupedSampler`).
        source: where the data comes from; one of the subclass's ``sources``
            (``None`` = ``default_source``).
        root: local data directory (the LRA release, or a parquet directory for
            hub tasks); ``None`` = default location / the hub.
        limit_examples: cap examples per split for smoke runs: an int for every
            split or a dict such as ``{"train": 64, "val": 16}``; ``None`` = all.
    """

    #: Sources built locally from ``seed`` (no files read): ``root`` means nothing to them.
    generated_sources: ClassVar[tuple[str, ...]] = ("generate",)

    task: ClassVar[str] = ""
    sources: ClassVar[tuple[str, ...]] = ()
    default_source: ClassVar[str] = ""
    #: Bumped by a subclass whenever its cached content changes meaning.
    cache_version: ClassVar[int] = 1

    num_classes: int
    vocab_size: int | None
    input_kind: str
    seq_len: int
    dual: bool = False
    #: Pixel normalisation applied in the collate: (x/255 - mean) / std.
    pixel_mean: float = 0.0
    pixel_std: float = 1.0

    def __init__(
        self,
        batch_size: int = 32,
        num_workers: int | None = None,
        pin_memory: bool | None = None,
        cache_dir: str | os.PathLike | None = None,
        seed: int = 0,
        source: str | None = None,
        root: str | os.PathLike | None = None,
        limit_examples: int | dict[str, int] | None = None,
        shuffle_seed: int | None = None,
        group_by_length: bool = False,
    ) -> None:
        super().__init__()
        if source is None:
            source = self.default_source
        if source not in self.sources:
            raise LRAConfigError(
                f"task {self.task!r}: data.source={source!r} is not supported; "
                f"allowed values: {', '.join(self.sources)}"
            )
        self._require_int("batch_size", batch_size, 1)
        if num_workers is not None:
            self._require_int("num_workers", num_workers, 0, "or null (min(4, CPUs))")
        if pin_memory is not None and not isinstance(pin_memory, bool):
            raise LRAConfigError(f"task {self.task!r}: data.pin_memory={pin_memory!r} is not valid; "
                                 f"use true, false or null (when CUDA is available)")
        self._require_int("seed", seed, 0)
        if shuffle_seed is not None:
            self._require_int("shuffle_seed", shuffle_seed, 0)
        if not isinstance(group_by_length, bool):
            raise LRAConfigError(f"task {self.task!r}: data.group_by_length={group_by_length!r} is not "
                                 f"valid; use true (batches of similar length) or false")
        if root is not None and source in self.generated_sources:
            raise LRAConfigError(
                f"task {self.task!r}: data.root={root} is not read by data.source={source!r} (the data is "
                f"generated from data.seed); drop data.root, or read files with "
                f"data.source={next((s for s in self.sources if s not in self.generated_sources), '?')}"
            )
        self.batch_size = int(batch_size)
        self.num_workers = min(4, os.cpu_count() or 1) if num_workers is None else int(num_workers)
        self.pin_memory = torch.cuda.is_available() if pin_memory is None else bool(pin_memory)
        self.cache_dir = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
        self.seed = int(seed)
        self.shuffle_seed = self.seed if shuffle_seed is None else int(shuffle_seed)
        self.source = source
        self.root = Path(root).expanduser() if root is not None else None
        self.limit_examples = self._parse_limits(limit_examples)
        self.group_by_length = group_by_length
        self.datasets: dict[str, Dataset] = {}
        self._resume: tuple[int, int] | None = None

    # ----- to implement in subclasses -------------------------------------------------

    def load_split(self, split: str) -> Dataset:
        """Return the full dataset of ``split`` (``train``, ``val`` or ``test``).

        Items are ``(x, label)`` as produced by the datasets in
        :mod:`lra_mega.data.sequences`; use :meth:`cached` to avoid decoding twice.
        """
        raise NotImplementedError

    # ----- helpers for subclasses ----------------------------------------------------

    def cache_key(self, split: str, **extra: Any) -> dict[str, Any]:
        """Cache key of ``split``: task, split, source, cache version plus ``extra``."""
        key = {"task": self.task, "split": split, "source": self.source, "v": self.cache_version}
        key.update(extra)
        return key

    def cached(self, key: dict[str, Any],
               build: Callable[[], tuple[dict[str, np.ndarray], dict[str, Any]]]) -> tuple[dict[str, np.ndarray], Path]:
        """Load the split identified by ``key`` from the cache, building and saving it on a miss.

        ``build`` returns ``(arrays, meta)``. Returns the memory-mapped arrays and their directory.
        """
        path = split_cache_dir(self.cache_dir, self.task, key)
        arrays = load_cached(path)
        if arrays is None:
            t0 = time.perf_counter()
            built, meta = build()
            save_split(path, built, {**meta, "key": key})
            log.info("%s %s: built cache in %.1fs at %s", self.task, key.get("split"), time.perf_counter() - t0, path)
            arrays = load_cached(path)
            if arrays is None:
                raise LRADataError(f"task {self.task!r}: cache at {path} could not be read back right after writing; "
                                   f"check free disk space and permissions of data.cache_dir={self.cache_dir}")
        return arrays, path

    def keep_other_splits(
        self,
        built: dict[str, tuple[dict[str, np.ndarray], dict[str, Any]]],
        want: str,
        key_of: Callable[[str], dict[str, Any]],
    ) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        """For a build that makes several splits in one pass: cache every split but ``want``
        (keyed by ``key_of``) and return ``want``'s ``(arrays, meta)`` for the calling
        :meth:`cached` to save."""
        for split, result in built.items():
            if split != want:
                self.cached(key_of(split), lambda r=result: r)
        return built[want]

    def release_path(self, *candidates: str) -> Path:
        """Find a file/directory of the official LRA release.

        Each candidate is a path relative to ``lra_release/`` (e.g. ``listops-1000``); it is
        looked for under ``root``, ``root/lra_release`` and, without ``root``,
        ``<cache_dir>/lra_release``. ``root`` may also point at the candidate itself.
        """
        bases = [self.root, self.root / "lra_release"] if self.root is not None else [self.cache_dir / "lra_release"]
        for rel in candidates:
            for base in bases:
                if (base / rel).exists():
                    return base / rel
            if self.root is not None and self.root.name == Path(rel).name and self.root.exists():
                return self.root
        where = f"data.root={self.root}" if self.root is not None else f"the default {self.cache_dir / 'lra_release'}"
        raise LRADataError(
            f"task {self.task!r}: LRA release files {', '.join(candidates)} not found under {where}; "
            f"run `python scripts/download_lra.py --tasks {self.task}` or set data.root=<directory holding lra_release/>"
        )

    # ----- LightningDataModule -------------------------------------------------------

    def prepare_data(self) -> None:
        """Build the caches once (rank 0 only under DDP) so that ranks only read them."""
        for split in SPLITS:
            self.load_split(split)

    def setup(self, stage: str | None = None) -> None:
        """Build the datasets the stage needs (all splits when ``stage`` is None)."""
        for split in _STAGE_SPLITS.get(stage, SPLITS) if stage else SPLITS:
            if split in self.datasets:
                continue
            ds = self.load_split(split)
            limit = self.limit_examples.get(split)
            if limit is not None and limit < len(ds):
                ds = Subset(ds, range(limit))
            if len(ds) == 0:
                raise LRADataError(
                    f"task {self.task!r}: the {split} split is empty (source={self.source!r}, root={self.root}); "
                    f"check the data files or data.limit_examples"
                )
            self.datasets[split] = ds

    def collate(self) -> PadCollate:
        """The batch collate for this task (picklable, for worker processes)."""
        return PadCollate(self.input_kind, self.seq_len, self.dual, self.pixel_mean, self.pixel_std)

    def resume_at(self, epoch: int, batches: int, replicas: int = 1) -> None:
        """Make the next train loader continue epoch ``epoch`` after ``batches`` batches (per
        process, ``replicas`` processes): the order a resumed run needs to equal an uninterrupted one."""
        self._resume = (int(epoch), int(batches) * self.batch_size * max(1, int(replicas)))

    def _loader(self, split: str, shuffle: bool) -> DataLoader:
        if split not in self.datasets:
            self.setup({"train": "fit", "val": "validate", "test": "test"}[split])
        sampler = None
        if shuffle:
            sampler = self._train_sampler(self.datasets[split])
            if self._resume is not None:
                sampler.resume_at(*self._resume)
                self._resume = None
        return DataLoader(
            self.datasets[split],
            batch_size=self.batch_size,
            sampler=sampler,
            drop_last=False,
            num_workers=self.num_workers,
            pin_memory=self.pin_memory,
            persistent_workers=self.num_workers > 0,
            collate_fn=self.collate(),
            # worker seeds come from here, not from the global RNG the model's dropout draws from
            generator=torch.Generator().manual_seed(self.shuffle_seed),
        )

    def _train_sampler(self, ds: Dataset) -> EpochShuffleSampler:
        lengths = getattr(ds.dataset if isinstance(ds, Subset) else ds, "lengths", None)
        if not self.group_by_length or lengths is None:
            return EpochShuffleSampler(len(ds), self.shuffle_seed)
        lengths = lengths()
        if isinstance(ds, Subset):
            lengths = lengths[np.asarray(ds.indices)]
        return LengthGroupedSampler(lengths, self.batch_size, self.shuffle_seed)

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", shuffle=False)

    # ----- internals -----------------------------------------------------------------

    def _require_int(self, key: str, value: Any, low: int, alt: str = "") -> None:
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
            raise LRAConfigError(f"task {self.task!r}: data.{key}={value!r} is not valid; it must be an "
                                 f"integer >= {low}{' ' + alt if alt else ''}")

    def _parse_limits(self, limit: int | dict[str, int] | None) -> dict[str, int]:
        if limit is None:
            return {}
        if isinstance(limit, bool) or not isinstance(limit, (int, dict)) and not hasattr(limit, "items"):
            raise LRAConfigError(f"task {self.task!r}: data.limit_examples={limit!r} is not valid; use a "
                                 f"positive int (every split) or a mapping such as {{train: 256, val: 64}}")
        if isinstance(limit, int):
            limits = {s: limit for s in SPLITS}
        else:
            limits = {str(k): v for k, v in dict(limit).items() if v is not None}
        for k, v in limits.items():
            if k not in SPLITS:
                near = difflib.get_close_matches(k, SPLITS, n=1)
                raise LRAConfigError(f"task {self.task!r}: data.limit_examples has unknown split {k!r}"
                                     f"{f' (did you mean {near[0]!r}?)' if near else ''}; "
                                     f"use positive ints keyed by {', '.join(SPLITS)}")
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
                raise LRAConfigError(f"task {self.task!r}: data.limit_examples.{k}={v!r} is not valid; "
                                     f"it must be a positive integer")
        return {k: int(v) for k, v in limits.items()}

    def describe(self) -> dict[str, Any]:
        """The attributes the model is built from (docs/INTERFACES.md)."""
        return {"task": self.task, "num_classes": self.num_classes, "vocab_size": self.vocab_size,
                "input_kind": self.input_kind, "seq_len": self.seq_len, "dual": self.dual}
