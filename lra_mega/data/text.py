"""Text classification: IMDB reviews as UTF-8 bytes.

Token ids (``vocab_size = 257``): byte ``b`` → ``b + 1`` (so 0 stays padding).
Reviews are truncated to ``seq_len`` bytes (4096). The test split doubles as
validation, as in LRA.
"""

from __future__ import annotations

import logging

import numpy as np
from torch.utils.data import Dataset

from lra_mega.data.base import LRADataModule
from lra_mega.data.cache import pack_sequences
from lra_mega.data.errors import LRADataError
from lra_mega.data.hub import load_table, source_fingerprint
from lra_mega.data.sequences import TokenDataset

log = logging.getLogger(__name__)

BYTE_SHIFT = 1
BYTE_VOCAB_SIZE = 257


def encode_texts(texts: list, labels: list, num_classes: int, where: str) -> tuple[dict[str, np.ndarray], dict]:
    """UTF-8 bytes of each text, skipping (and counting) null texts and bad labels."""
    seqs: list[bytes] = []
    keep: list[int] = []
    skipped: list[str] = []
    for i, (t, y) in enumerate(zip(texts, labels)):
        if t is None or y is None or not isinstance(y, (int, np.integer)) or not 0 <= y < num_classes:
            skipped.append(f"row {i}: text={'null' if t is None else 'ok'}, label={y!r}")
            continue
        seqs.append(t.encode("utf-8"))
        keep.append(int(y))
    if skipped:
        log.warning("%s: skipped %d rows with a null text or a label outside 0..%d (first: %s)",
                    where, len(skipped), num_classes - 1, skipped[0])
    if not seqs:
        raise LRADataError(f"{where}: no usable rows ({len(skipped)} skipped); check the files")
    tokens, offsets = pack_sequences(seqs)
    return {"tokens": tokens, "offsets": offsets, "labels": np.asarray(keep, np.int64)}, \
        {"count": len(keep), "skipped": len(skipped)}


class TextDataModule(LRADataModule):
    """IMDB byte-level classification (2 classes, ``seq_len`` 4096).

    ``source="hub"`` (the only one): ``root`` = a local directory with the parquet files
    (hub layout or flat); without it, the directory written by ``scripts/download_lra.py``,
    else ``stanfordnlp/imdb`` through ``datasets``.
    """

    task = "text"
    sources = ("hub",)
    default_source = "hub"
    num_classes = 2
    vocab_size = BYTE_VOCAB_SIZE
    input_kind = "tokens"
    dual = False

    def __init__(self, seq_len: int = 4096, **kwargs) -> None:
        super().__init__(**kwargs)
        self.seq_len = int(seq_len)

    def load_split(self, split: str) -> Dataset:
        hub_split = "train" if split == "train" else "test"  # IMDB: test doubles as val
        key = self.cache_key(hub_split, files=source_fingerprint(self.task, self.root, self.cache_dir))

        def build() -> tuple[dict[str, np.ndarray], dict]:
            table, origin = load_table(self.task, hub_split, self.root, self.cache_dir)
            arrays, meta = encode_texts(table.column("text").to_pylist(), table.column("label").to_pylist(),
                                        self.num_classes, f"IMDB {hub_split} ({origin})")
            return arrays, {**meta, "origin": origin}

        arrays, path = self.cached(key, build)
        return TokenDataset(arrays, max_len=self.seq_len, shift=BYTE_SHIFT, path=path)
