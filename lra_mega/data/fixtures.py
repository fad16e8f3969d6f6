"""Tiny datasets in the real official formats, for tests and harness smoke runs.

Each writer returns what it wrote, so a test can compare a reader's output with
values it computes itself.
"""

from __future__ import annotations

import io
import random
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image

from lra_mega.data.listops_generate import generate, to_source

SPLITS = ("train", "val", "test")


def write_listops_release(root: str | Path, n_per_split: int = 8, seed: int = 0) -> dict[str, list[tuple[str, int]]]:
    """Write ``root/lra_release/listops-1000/basic_{train,val,test}.tsv``.

    Returns ``{split: [(source, target), ...]}``. Uses short expressions (10..60 tokens)
    to stay small; the format is the official one.
    """
    out_dir = Path(root) / "lra_release" / "listops-1000"
    out_dir.mkdir(parents=True, exist_ok=True)
    data = generate(3 * n_per_split, seed=seed, min_len=10, max_len=60, workers=1, progress=False)
    rows_all = [(to_source(data.tokens[data.offsets[i]:data.offsets[i + 1]]), int(data.labels[i]))
                for i in range(3 * n_per_split)]
    written = {}
    for k, split in enumerate(SPLITS):
        rows = rows_all[k * n_per_split:(k + 1) * n_per_split]
        with open(out_dir / f"basic_{split}.tsv", "w") as f:
            f.write("Source\tTarget\n")
            for src, tgt in rows:
                f.write(f"{src}\t{tgt}\n")
        written[split] = rows
    return written


_WORDS = ["the", "model", "attention", "moving", "average", "gated", "long", "range", "arena", "café",
          "naïve", "\u00fcber", "\u4e2d\u6587", "emoji\U0001f600", "'quoted'", '"double"', "a,b", "x"]


def _text(rng: random.Random, n_words: int) -> str:
    return " ".join(rng.choice(_WORDS) for _ in range(n_words))


def write_aan_release(root: str | Path, n_per_split: int = 8, seed: int = 0,
                      words: tuple[int, int] = (5, 40)) -> dict[str, list[tuple[int, str, str, str, str]]]:
    """Write ``root/lra_release/tsv_data/new_aan_pairs.{train,eval,test}.tsv``.

    Rows are ``label, id1, id2, text1, text2`` with float labels (``1.0``) as in the
    release; texts contain quotes and non-ASCII. Returns ``{split: rows}`` (val = eval file).
    """
    rng = random.Random(seed)
    out_dir = Path(root) / "lra_release" / "tsv_data"
    out_dir.mkdir(parents=True, exist_ok=True)
    written = {}
    for split, fname in (("train", "train"), ("val", "eval"), ("test", "test")):
        rows = []
        for i in range(n_per_split):
            rows.append((rng.randint(0, 1), f"P{split}{i}a", f"P{split}{i}b",
                         _text(rng, rng.randint(*words)), _text(rng, rng.randint(*words))))
        with open(out_dir / f"new_aan_pairs.{fname}.tsv", "w", encoding="utf-8") as f:
            for label, a, b, t1, t2 in rows:
                f.write(f"{float(label)}\t{a}\t{b}\t{t1}\t{t2}\n")
        written[split] = rows
    return written


def write_imdb_parquet(directory: str | Path, n_per_split: int = 8, seed: int = 0,
                       words: tuple[int, int] = (5, 80), hub_layout: bool = True) -> dict[str, list[tuple[str, int]]]:
    """Write IMDB-format parquet (``text`` string, ``label`` int64) for train and test.

    ``hub_layout=True`` mirrors the hub (``plain_text/train-00000-of-00001.parquet``);
    else files sit directly in ``directory``. Returns ``{split: [(text, label), ...]}``.
    """
    rng = random.Random(seed)
    base = Path(directory) / ("plain_text" if hub_layout else "")
    base.mkdir(parents=True, exist_ok=True)
    written = {}
    for split in ("train", "test"):
        rows = [(_text(rng, rng.randint(*words)), rng.randint(0, 1)) for _ in range(n_per_split)]
        table = pa.table({"text": pa.array([t for t, _ in rows], pa.string()),
                          "label": pa.array([y for _, y in rows], pa.int64())})
        pq.write_table(table, base / f"{split}-00000-of-00001.parquet")
        written[split] = rows
    return written


def _png(rgb: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(rgb, mode="RGB").save(buf, format="PNG")
    return buf.getvalue()


def write_cifar_parquet(directory: str | Path, n_per_split: int = 8, seed: int = 0,
                        hub_layout: bool = True) -> dict[str, list[tuple[np.ndarray, int]]]:
    """Write CIFAR-10-format parquet: ``img`` struct {bytes: PNG, path}, ``label`` int64.

    Returns ``{split: [(rgb uint8 (32, 32, 3), label), ...]}`` for train and test.
    """
    rng = np.random.default_rng(seed)
    base = Path(directory) / ("plain_text" if hub_layout else "")
    base.mkdir(parents=True, exist_ok=True)
    written = {}
    for split in ("train", "test"):
        rows = [(rng.integers(0, 256, size=(32, 32, 3), dtype=np.uint8), int(rng.integers(0, 10)))
                for _ in range(n_per_split)]
        img_type = pa.struct([("bytes", pa.binary()), ("path", pa.string())])
        imgs = pa.array([{"bytes": _png(rgb), "path": None} for rgb, _ in rows], type=img_type)
        table = pa.table({"img": imgs, "label": pa.array([y for _, y in rows], pa.int64())})
        pq.write_table(table, base / f"{split}-00000-of-00001.parquet")
        written[split] = rows
    return written
