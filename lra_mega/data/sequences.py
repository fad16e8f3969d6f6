"""Map-style datasets over (memory-mapped) numpy arrays, and the padding collate.

Each dataset item is ``(x, label)`` where ``x`` is a 1-D numpy array (tokens or
uint8 pixels) or, for dual-input tasks, a pair of them. :class:`PadCollate` turns
a list of items into the batch dict of docs/INTERFACES.md.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from lra_mega.data.cache import load_split as load_cached


class ArrayDataset(Dataset):
    """Base for datasets backed by a dict of arrays.

    When ``path`` (a cache directory) is given, pickling drops the arrays and the
    unpickled copy re-opens them memory-mapped, so worker processes share pages
    instead of receiving copies.
    """

    def __init__(self, arrays: dict[str, np.ndarray], path: str | Path | None = None) -> None:
        self.arrays = arrays
        self.path = None if path is None else str(path)

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        if self.path is not None:
            state["arrays"] = None
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        if self.arrays is None:
            arrays = load_cached(self.path)
            if arrays is None:
                raise RuntimeError(f"cache directory {self.path} vanished while in use")
            self.arrays = arrays

    def __len__(self) -> int:
        return int(self.arrays["labels"].shape[0])


class TokenDataset(ArrayDataset):
    """Variable-length token sequences stored flat.

    Arrays: ``tokens`` (flat), ``offsets`` (N+1), ``labels`` (N). Item ``i`` is built as the
    official fairseq pipeline builds it: the stored tokens cut to ``content_len`` (the data's own
    truncation; ``None``: none) and moved up by ``shift``, then the ``eos`` id appended when given
    (what ``fairseq-preprocess`` writes after every line), then the whole cut to ``max_len`` (the
    model's positions, fairseq's ``TruncateDataset``), as int64.
    """

    def __init__(self, arrays: dict[str, np.ndarray], max_len: int, shift: int = 0,
                 path: str | Path | None = None, eos: int | None = None,
                 content_len: int | None = None) -> None:
        super().__init__(arrays, path)
        self.max_len = max_len
        self.shift = shift
        self.eos = eos
        self.content_len = content_len

    def _seq(self, flat: np.ndarray, offsets: np.ndarray, i: int) -> np.ndarray:
        start, stop = int(offsets[i]), int(offsets[i + 1])
        if self.content_len is not None:
            stop = min(stop, start + self.content_len)
        seq = flat[start:min(stop, start + self.max_len)].astype(np.int64) + self.shift
        if self.eos is not None:
            seq = np.append(seq, np.int64(self.eos))
        return seq[:self.max_len]

    def _lengths(self, offsets: np.ndarray) -> np.ndarray:
        n = np.diff(offsets)
        if self.content_len is not None:
            n = np.minimum(n, self.content_len)
        return np.minimum(n + (self.eos is not None), self.max_len)

    def __getitem__(self, i: int) -> tuple[np.ndarray, int]:
        a = self.arrays
        return self._seq(a["tokens"], a["offsets"], i), int(a["labels"][i])

    def lengths(self) -> np.ndarray:
        """Length of every item as the collate sees it (after the ``max_len`` cut)."""
        return self._lengths(self.arrays["offsets"])


class PairDataset(TokenDataset):
    """Two token sequences per example (retrieval).

    Arrays: ``tokens1``/``offsets1``, ``tokens2``/``offsets2``, ``labels``.
    """

    def __getitem__(self, i: int) -> tuple[tuple[np.ndarray, np.ndarray], int]:
        a = self.arrays
        x1 = self._seq(a["tokens1"], a["offsets1"], i)
        x2 = self._seq(a["tokens2"], a["offsets2"], i)
        return (x1, x2), int(a["labels"][i])

    def lengths(self) -> np.ndarray:
        """The longer of the two documents of every item (both are padded to a common length)."""
        a = self.arrays
        return np.maximum(self._lengths(a["offsets1"]), self._lengths(a["offsets2"]))


class PixelDataset(ArrayDataset):
    """Fixed-size uint8 images flattened to rows. Arrays: ``pixels`` (N, L), ``labels`` (N)."""

    def __getitem__(self, i: int) -> tuple[np.ndarray, int]:
        a = self.arrays
        return np.asarray(a["pixels"][i]), int(a["labels"][i])


class PadCollate:
    """Collate items into ``{"input", "mask", "label"}`` (see docs/INTERFACES.md).

    tokens: right-pad with 0 to the batch's longest sequence (capped at ``seq_len``);
    pixels: uint8 → float32 ``(x/255 - mean) / std``, length always ``seq_len``;
    dual: both documents padded to a common length, giving ``(B, 2, L)``.
    """

    def __init__(self, input_kind: str, seq_len: int, dual: bool = False,
                 pixel_mean: float = 0.0, pixel_std: float = 1.0) -> None:
        if input_kind not in ("tokens", "pixels"):
            raise ValueError(f"input_kind must be 'tokens' or 'pixels', got {input_kind!r}")
        self.input_kind = input_kind
        self.seq_len = seq_len
        self.dual = dual
        self.pixel_mean = pixel_mean
        self.pixel_std = pixel_std

    def _pad(self, seqs: list[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
        length = max(1, min(self.seq_len, max(len(s) for s in seqs)))
        out = np.zeros((len(seqs), length), dtype=np.int64)
        mask = np.zeros((len(seqs), length), dtype=bool)
        for j, s in enumerate(seqs):
            n = min(len(s), length)
            out[j, :n] = s[:n]
            mask[j, :n] = True
        return torch.from_numpy(out), torch.from_numpy(mask)

    def __call__(self, items: list[tuple[Any, int]]) -> dict[str, torch.Tensor]:
        xs = [x for x, _ in items]
        label = torch.tensor([y for _, y in items], dtype=torch.int64)
        if self.input_kind == "pixels":
            pix = torch.from_numpy(np.stack(xs)).to(torch.float32)
            inp = (pix / 255.0 - self.pixel_mean) / self.pixel_std
            return {"input": inp, "mask": torch.ones(inp.shape, dtype=torch.bool), "label": label}
        if self.dual:
            inp, mask = self._pad([s for pair in xs for s in pair])
            b = len(items)
            return {"input": inp.view(b, 2, -1), "mask": mask.view(b, 2, -1), "label": label}
        inp, mask = self._pad(xs)
        return {"input": inp, "mask": mask, "label": label}
