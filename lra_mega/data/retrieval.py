"""Retrieval: ACL Anthology Network (AAN) document pairs from the LRA release.

Files ``tsv_data/new_aan_pairs.{train,eval,test}.tsv``: no header, tab-separated
``label, id1, id2, text1, text2``, read with quoting off (plain split on tabs).
Labels may be written as floats (``1.0``). Both documents become UTF-8 byte tokens as in
:mod:`lra_mega.data.text` (byte ``b`` → ``b + 1``; with ``eos`` the end token ``</s>`` = 257
follows): each document is its first ``max_bytes`` bytes (4000, LRA's ``max_length``), then
``</s>``, cut to ``seq_len`` positions (the official ``max_positions``, 4002).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np
from torch.utils.data import Dataset

from lra_mega.data.base import LRADataModule
from lra_mega.data.cache import files_fingerprint, pack_sequences
from lra_mega.data.errors import LRADataError
from lra_mega.data.sequences import PairDataset
from lra_mega.data.text import BYTE_EOS, BYTE_SHIFT, BYTE_VOCAB_SIZE, check_byte_options

log = logging.getLogger(__name__)

RELEASE_DIR = "tsv_data"
RELEASE_FILES = {"train": "new_aan_pairs.train.tsv", "val": "new_aan_pairs.eval.tsv",
                 "test": "new_aan_pairs.test.tsv"}


def read_aan_tsv(path: str | os.PathLike) -> tuple[dict[str, np.ndarray], int]:
    """Read one AAN pairs file into flat byte arrays; malformed rows are skipped and counted.

    Returns the arrays (``tokens1/offsets1/tokens2/offsets2/labels``) and the skip count.
    """
    path = Path(path)
    if not path.is_file():
        raise LRADataError(f"AAN file {path} does not exist; run `python scripts/download_lra.py --tasks retrieval` "
                           f"or set data.root=<directory holding lra_release/>")
    docs1: list[bytes] = []
    docs2: list[bytes] = []
    labels: list[int] = []
    skipped: list[str] = []
    with open(path, "rb") as f:
        for lineno, raw in enumerate(f, start=1):
            line = raw.rstrip(b"\r\n")
            if not line:
                continue
            cols = line.split(b"\t")
            try:
                if len(cols) != 5:
                    raise ValueError(f"{len(cols)} columns, expected 5")
                value = float(cols[0])
                if value not in (0.0, 1.0):
                    raise ValueError(f"label {cols[0].decode(errors='replace')!r} not 0 or 1")
            except ValueError as e:
                skipped.append(f"line {lineno}: {e}")
                continue
            labels.append(int(value))
            docs1.append(cols[3])
            docs2.append(cols[4])
    if skipped:
        log.warning("AAN %s: skipped %d malformed rows (first: %s)", path, len(skipped), skipped[0])
    if not labels:
        raise LRADataError(f"AAN file {path} holds no usable rows ({len(skipped)} malformed); "
                           f"re-download it with `python scripts/download_lra.py --tasks retrieval`")
    t1, o1 = pack_sequences(docs1)
    t2, o2 = pack_sequences(docs2)
    return {"tokens1": t1, "offsets1": o1, "tokens2": t2, "offsets2": o2,
            "labels": np.asarray(labels, np.int64)}, len(skipped)


class RetrievalDataModule(LRADataModule):
    """AAN document matching (2 classes, two byte documents per example).

    Args:
        seq_len: positions the model takes per document (the official ``max_positions`` 4002).
        max_bytes: bytes kept per document before the end token (4000); ``None``: only ``seq_len``.
        eos: append the end token ``</s>`` (id 257) after each document's bytes.
        **kwargs: :class:`~lra_mega.data.base.LRADataModule` arguments.

    ``source="release"`` (the only one): ``root`` = directory holding ``lra_release/``
    (or ``lra_release`` / ``tsv_data`` itself); default ``<cache_dir>/lra_release``.
    """

    task = "retrieval"
    sources = ("release",)
    default_source = "release"
    num_classes = 2
    vocab_size = BYTE_VOCAB_SIZE
    input_kind = "tokens"
    dual = True

    def __init__(self, seq_len: int = 4000, max_bytes: int | None = None, eos: bool = False, **kwargs) -> None:
        super().__init__(**kwargs)
        check_byte_options(self, seq_len, max_bytes, eos)
        self.seq_len = int(seq_len)
        self.max_bytes = None if max_bytes is None else int(max_bytes)
        self.eos = eos
        self.vocab_size = BYTE_VOCAB_SIZE + int(eos)

    def load_split(self, split: str) -> Dataset:
        path = self.release_path(RELEASE_DIR) / RELEASE_FILES[split]
        key = self.cache_key(split, files=files_fingerprint([path]))

        def build() -> tuple[dict[str, np.ndarray], dict]:
            arrays, skipped = read_aan_tsv(path)
            return arrays, {"count": len(arrays["labels"]), "skipped": skipped, "file": str(path)}

        arrays, cache_path = self.cached(key, build)
        return PairDataset(arrays, max_len=self.seq_len, shift=BYTE_SHIFT, path=cache_path,
                           eos=BYTE_EOS if self.eos else None, content_len=self.max_bytes)
