"""Text classification: IMDB reviews as UTF-8 bytes.

Token ids: byte ``b`` → ``b + 1`` (so 0 stays padding), ``vocab_size = 257``; with ``eos``
the end token ``</s>`` that ``fairseq-preprocess`` appends to every line is id 257
(``vocab_size = 258``). A review is its first ``max_bytes`` bytes (the official Mega data:
``imdb-4000``), then ``</s>``, all cut to ``seq_len`` positions (the official architecture's
``max_positions``, 4002). The test split doubles as validation, as in LRA.
"""

from __future__ import annotations

import logging

import numpy as np
from torch.utils.data import Dataset

from lra_mega.data.base import LRADataModule
from lra_mega.data.cache import pack_sequences
from lra_mega.data.errors import LRAConfigError, LRADataError
from lra_mega.data.hub import load_table, source_fingerprint
from lra_mega.data.sequences import TokenDataset

log = logging.getLogger(__name__)

BYTE_SHIFT = 1
BYTE_VOCAB_SIZE = 257
#: Id of the end token ``</s>`` after the bytes (``data.eos``), one past the byte ids.
BYTE_EOS = BYTE_VOCAB_SIZE


def check_byte_options(dm: LRADataModule, seq_len: int, max_bytes: int | None, eos: bool) -> None:
    """Validate ``data.seq_len``, ``data.max_bytes`` and ``data.eos`` of a byte-level task."""
    dm._require_int("seq_len", seq_len, 1)
    if max_bytes is not None:
        dm._require_int("max_bytes", max_bytes, 1, "or null (no cut before seq_len)")
    if not isinstance(eos, bool):
        raise LRAConfigError(f"task {dm.task!r}: data.eos={eos!r} is not valid; use true (append the end token "
                             f"</s> after the bytes, as the official data) or false")


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
    """IMDB byte-level classification (2 classes).

    Args:
        seq_len: positions the model takes (the official ``max_positions`` 4002 in the presets).
        max_bytes: bytes kept per review before the end token (4000 in the presets); ``None``:
            only ``seq_len`` cuts.
        eos: append the end token ``</s>`` (id 257) after the bytes, as the official data has.
        **kwargs: :class:`~lra_mega.data.base.LRADataModule` arguments.

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

    def __init__(self, seq_len: int = 4096, max_bytes: int | None = None, eos: bool = False, **kwargs) -> None:
        super().__init__(**kwargs)
        check_byte_options(self, seq_len, max_bytes, eos)
        self.seq_len = int(seq_len)
        self.max_bytes = None if max_bytes is None else int(max_bytes)
        self.eos = eos
        self.vocab_size = BYTE_VOCAB_SIZE + int(eos)

    def load_split(self, split: str) -> Dataset:
        hub_split = "train" if split == "train" else "test"  # IMDB: test doubles as val
        key = self.cache_key(hub_split, files=source_fingerprint(self.task, self.root, self.cache_dir))

        def build() -> tuple[dict[str, np.ndarray], dict]:
            table, origin = load_table(self.task, hub_split, self.root, self.cache_dir)
            arrays, meta = encode_texts(table.column("text").to_pylist(), table.column("label").to_pylist(),
                                        self.num_classes, f"IMDB {hub_split} ({origin})")
            return arrays, {**meta, "origin": origin}

        arrays, path = self.cached(key, build)
        return TokenDataset(arrays, max_len=self.seq_len, shift=BYTE_SHIFT, path=path,
                            eos=BYTE_EOS if self.eos else None, content_len=self.max_bytes)
