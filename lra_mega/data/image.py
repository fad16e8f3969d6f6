"""Image classification: CIFAR-10 in grayscale, one pixel per position.

Grayscale is PIL's ``convert("L")``: ``L = (299 R + 587 G + 114 B) / 1000`` (ITU-R 601-2),
stored as uint8 rows of 1024 pixels (row-major). Batches carry
``(x / 255 - 0.48) / 0.24`` as float32 (the paper's normalisation). Validation is a
fixed-seed ``val_fraction`` (10% → 45k/5k) of the train split; test is the 10k test split.
"""

from __future__ import annotations

import io
import logging

import numpy as np
from PIL import Image, UnidentifiedImageError
from torch.utils.data import Dataset

from lra_mega.data.base import LRADataModule
from lra_mega.data.errors import LRAConfigError, LRADataError
from lra_mega.data.hub import load_table, source_fingerprint
from lra_mega.data.sequences import PixelDataset

log = logging.getLogger(__name__)

SIDE = 32


def decode_images(images: list, labels: list, num_classes: int, where: str) -> tuple[np.ndarray, np.ndarray, int]:
    """Decode hub ``img`` structs ({"bytes", "path"}) to (N, 1024) uint8 grayscale.

    Undecodable images, wrong sizes and labels outside the classes are skipped and counted.
    """
    rows: list[np.ndarray] = []
    keep: list[int] = []
    skipped: list[str] = []
    for i, (img, y) in enumerate(zip(images, labels)):
        try:
            if y is None or not 0 <= int(y) < num_classes:
                raise ValueError(f"label {y!r} outside 0..{num_classes - 1}")
            data = img.get("bytes") if isinstance(img, dict) else img
            if not data:
                raise ValueError("no image bytes")
            with Image.open(io.BytesIO(data)) as im:
                gray = im.convert("L")
            if gray.size != (SIDE, SIDE):
                raise ValueError(f"size {gray.size}, expected {SIDE}x{SIDE}")
        except (ValueError, OSError, UnidentifiedImageError) as e:
            skipped.append(f"row {i}: {e}")
            continue
        rows.append(np.asarray(gray, dtype=np.uint8).reshape(-1))
        keep.append(int(y))
    if skipped:
        log.warning("%s: skipped %d bad rows (first: %s)", where, len(skipped), skipped[0])
    if not rows:
        raise LRADataError(f"{where}: no usable images ({len(skipped)} skipped); check the files")
    return np.stack(rows), np.asarray(keep, np.int64), len(skipped)


class ImageDataModule(LRADataModule):
    """CIFAR-10 grayscale (10 classes, pixels, ``seq_len`` 1024).

    Args:
        val_fraction: share of the train split held out for validation (0.1 → 5k).
        split_seed: seed of that fixed split (independent of ``seed``).
        **kwargs: :class:`~lra_mega.data.base.LRADataModule` arguments (``source="hub"``,
            ``root`` = local parquet directory).
    """

    task = "image"
    sources = ("hub",)
    default_source = "hub"
    num_classes = 10
    vocab_size = None
    input_kind = "pixels"
    seq_len = SIDE * SIDE
    dual = False
    pixel_mean = 0.48
    pixel_std = 0.24

    def __init__(self, val_fraction: float = 0.1, split_seed: int = 0, **kwargs) -> None:
        super().__init__(**kwargs)
        if not 0.0 < float(val_fraction) < 1.0:
            raise LRAConfigError(f"task 'image': data.val_fraction must be in (0, 1), got {val_fraction}")
        self.val_fraction = float(val_fraction)
        self.split_seed = int(split_seed)

    def _key(self, split: str) -> dict:
        extra = {"val_fraction": self.val_fraction, "split_seed": self.split_seed} if split != "test" else {}
        return self.cache_key(split, files=source_fingerprint(self.task, self.root, self.cache_dir), **extra)

    def _decode(self, hub_split: str) -> tuple[np.ndarray, np.ndarray, dict]:
        table, origin = load_table(self.task, hub_split, self.root, self.cache_dir)
        pix, lab, skipped = decode_images(table.column("img").to_pylist(), table.column("label").to_pylist(),
                                          self.num_classes, f"CIFAR-10 {hub_split} ({origin})")
        return pix, lab, {"origin": origin, "skipped": skipped}

    def _build_train_val(self, want: str) -> tuple[dict[str, np.ndarray], dict]:
        pix, lab, meta = self._decode("train")
        n_val = max(1, int(round(len(lab) * self.val_fraction)))
        if n_val >= len(lab):
            raise LRADataError(f"task 'image': train split has only {len(lab)} images, too few to hold out "
                               f"val_fraction={self.val_fraction}")
        perm = np.random.default_rng(self.split_seed).permutation(len(lab))
        idx = {"val": np.sort(perm[:n_val]), "train": np.sort(perm[n_val:])}
        out = {s: ({"pixels": pix[i], "labels": lab[i]}, {**meta, "count": len(i)}) for s, i in idx.items()}
        return self.keep_other_splits(out, want, self._key)

    def load_split(self, split: str) -> Dataset:
        def build() -> tuple[dict[str, np.ndarray], dict]:
            if split == "test":
                pix, lab, meta = self._decode("test")
                return {"pixels": pix, "labels": lab}, {**meta, "count": len(lab)}
            return self._build_train_val(split)

        arrays, path = self.cached(self._key(split), build)
        return PixelDataset(arrays, path=path)
