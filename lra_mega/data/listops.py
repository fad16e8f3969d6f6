"""ListOps: generated on the fly (default) or read from the official LRA release.

Token ids (``vocab_size = 16``, 0 = pad): digits ``0``..``9`` → 1..10,
``[MIN`` 11, ``[MAX`` 12, ``[MED`` 13, ``[SM`` 14, ``]`` 15. Parentheses of the
official ``Source`` strings are dropped. With ``eos`` the end token ``</s>`` that
``fairseq-preprocess`` appends to every line follows as id 16 (``vocab_size = 17``).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np
from torch.utils.data import Dataset

from lra_mega.data.base import SPLITS, LRADataModule
from lra_mega.data.cache import files_fingerprint, pack_sequences
from lra_mega.data.errors import LRAConfigError, LRADataError
from lra_mega.data.listops_generate import GENERATOR_VERSION, VOCAB, VOCAB_SIZE, generate
from lra_mega.data.sequences import TokenDataset

log = logging.getLogger(__name__)

#: Id of the end token ``</s>`` (``data.eos``), one past the vocabulary.
EOS = VOCAB_SIZE
RELEASE_DIR = "listops-1000"
RELEASE_FILES = {"train": "basic_train.tsv", "val": "basic_val.tsv", "test": "basic_test.tsv"}


def tokenize_source(source: str) -> list[int]:
    """Token ids of an official ``Source`` string; raises ``KeyError`` on an unknown token."""
    return [VOCAB[t] for t in source.replace("(", " ").replace(")", " ").split()]


def read_listops_tsv(path: str | os.PathLike) -> tuple[list[list[int]], np.ndarray]:
    """Read one official ``basic_*.tsv`` file (header ``Source\\tTarget``).

    Rows with a wrong column count, an unknown token or a label outside 0..9 are
    skipped and counted in one warning; a missing file or header is an error.
    """
    path = Path(path)
    if not path.is_file():
        raise LRADataError(f"ListOps file {path} does not exist; run `python scripts/download_lra.py "
                           f"--tasks listops` or set data.root=<directory holding lra_release/>")
    seqs: list[list[int]] = []
    labels: list[int] = []
    skipped: list[str] = []
    with open(path, encoding="utf-8", errors="replace") as f:
        header = f.readline().rstrip("\r\n").split("\t")
        if header[:2] != ["Source", "Target"]:
            raise LRADataError(f"ListOps file {path}: first line must be the header 'Source<TAB>Target', "
                               f"got {header[:2]!r}; is this an official listops-1000 file?")
        for lineno, line in enumerate(f, start=2):
            line = line.rstrip("\r\n")
            if not line:
                continue
            cols = line.split("\t")
            try:
                if len(cols) != 2:
                    raise ValueError(f"{len(cols)} columns")
                label = int(float(cols[1]))
                if not 0 <= label <= 9 or float(cols[1]) != label:
                    raise ValueError(f"label {cols[1]!r} not in 0..9")
                toks = tokenize_source(cols[0])
                if not toks:
                    raise ValueError("empty Source")
            except (ValueError, KeyError) as e:
                skipped.append(f"line {lineno}: {e}")
                continue
            seqs.append(toks)
            labels.append(label)
    if skipped:
        log.warning("ListOps %s: skipped %d malformed rows (first: %s)", path, len(skipped), skipped[0])
    return seqs, np.asarray(labels, dtype=np.int64)


class ListOpsDataModule(LRADataModule):
    """ListOps (10 classes, tokens).

    Args:
        n_train, n_val, n_test: split sizes for ``source="generate"`` (LRA: 96k/2k/2k).
            The test split is taken first, then val, then train, so small smoke sizes
            and the full sizes share the same test set for one seed.
        min_len, max_len: the generator's exclusive token-count window (500, 2000).
        seq_len: positions the model takes (the official ``max_positions`` 2002 in the presets);
            longer inputs are cut.
        eos: append the end token ``</s>`` (id 16) after the tokens, as the official data has.
        workers: generator processes (default: all CPUs); the data do not depend on it.
        **kwargs: :class:`~lra_mega.data.base.LRADataModule` arguments
            (``source`` ∈ {generate, release}, ``root`` for release).
    """

    task = "listops"
    sources = ("generate", "release")
    default_source = "generate"
    num_classes = 10
    vocab_size = VOCAB_SIZE
    input_kind = "tokens"
    dual = False

    def __init__(self, n_train: int = 96_000, n_val: int = 2_000, n_test: int = 2_000,
                 min_len: int = 500, max_len: int = 2000, seq_len: int = 2000, eos: bool = False,
                 workers: int | None = None, **kwargs) -> None:
        super().__init__(**kwargs)
        self._require_int("seq_len", seq_len, 1)
        if not isinstance(eos, bool):
            raise LRAConfigError(f"task 'listops': data.eos={eos!r} is not valid; use true (append the end token "
                                 f"</s>, as the official data) or false")
        sizes = {"train": n_train, "val": n_val, "test": n_test}
        for name, n in sizes.items():
            if int(n) < 1:
                raise LRAConfigError(f"task 'listops': data.n_{name} must be >= 1, got {n}")
        if not 0 <= min_len < max_len:
            raise LRAConfigError(f"task 'listops': need 0 <= data.min_len < data.max_len, got {min_len}, {max_len}")
        self.sizes = {k: int(v) for k, v in sizes.items()}
        self.min_len, self.max_len = int(min_len), int(max_len)
        self.seq_len = int(seq_len)
        self.eos = eos
        self.vocab_size = VOCAB_SIZE + int(eos)
        self.workers = workers

    def _key(self, split: str) -> dict:
        if self.source == "generate":
            return self.cache_key(split, seed=self.seed, n_train=self.sizes["train"], n_val=self.sizes["val"],
                                  n_test=self.sizes["test"], min_len=self.min_len, max_len=self.max_len,
                                  gen=GENERATOR_VERSION)
        path = self.release_path(RELEASE_DIR) / RELEASE_FILES[split]
        return self.cache_key(split, files=files_fingerprint([path]))

    def _generate_all(self, want: str) -> tuple[dict[str, np.ndarray], dict]:
        """Generate all splits at once; cache the others, return ``want`` for the caller to cache."""
        n = self.sizes
        data = generate(n["test"] + n["val"] + n["train"], seed=self.seed, min_len=self.min_len,
                        max_len=self.max_len, workers=self.workers)
        bounds = {"test": (0, n["test"]), "val": (n["test"], n["test"] + n["val"]),
                  "train": (n["test"] + n["val"], n["test"] + n["val"] + n["train"])}
        out = {}
        for split in SPLITS:
            a, b = bounds[split]
            lo, hi = data.offsets[a], data.offsets[b]
            arrays = {"tokens": data.tokens[lo:hi], "offsets": data.offsets[a:b + 1] - lo,
                      "labels": data.labels[a:b]}
            out[split] = (arrays, {"count": b - a})
        return self.keep_other_splits(out, want, self._key)

    def load_split(self, split: str) -> Dataset:
        key = self._key(split)

        def build() -> tuple[dict[str, np.ndarray], dict]:
            if self.source == "generate":
                return self._generate_all(split)
            seqs, labels = read_listops_tsv(self.release_path(RELEASE_DIR) / RELEASE_FILES[split])
            tokens, offsets = pack_sequences(seqs)
            return {"tokens": tokens, "offsets": offsets, "labels": labels}, {"count": len(labels)}

        arrays, path = self.cached(key, build)
        return TokenDataset(arrays, max_len=self.seq_len, path=path, eos=EOS if self.eos else None)

