#!/usr/bin/env python
"""How far rules that read almost nothing get on ListOps: the floor a model must clear.

    python scripts/listops_baselines.py --out docs/results/listops_baselines.json

Each rule maps a key of the input to the most frequent label of that key on the training split
and is scored on the test split:

- ``label prior``: one key for every input (the most frequent label);
- ``outermost operator``: the first token (``[MAX``, ``[MIN``, ``[MED`` or ``[SM``);
- ``operator + direct digits``: the first token and that operator applied to the digits that are
  its direct arguments (nested lists ignored; ``[MED`` keeps only the operator).

The data is the task's own (generated, or ``--root`` for the release), read from the cache the
training runs use. Writes JSON and a markdown table beside it; errors print one line.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from out_paths import require_writable

DIGIT_MAX, MIN, MAX, MED, SM, CLOSE = 10, 11, 12, 13, 14, 15  # token ids of lra_mega.data.listops


def rule_keys(tokens: np.ndarray, offsets: np.ndarray) -> dict[str, np.ndarray]:
    """The key each rule reads, one integer per sequence (whole balanced expressions, stored flat)."""
    tokens = np.asarray(tokens, dtype=np.int64)
    op = tokens[offsets[:-1]]
    is_op = (tokens >= MIN) & (tokens <= SM)
    depth = np.cumsum(is_op.astype(np.int64) - (tokens == CLOSE))  # back to 0 after each expression
    direct = (depth == 1) & (tokens >= 1) & (tokens <= DIGIT_MAX)  # digits whose list is the outermost
    seq = np.repeat(np.arange(len(op)), np.diff(offsets))
    digit = np.where(direct, tokens - 1, 0)
    n = np.bincount(seq, weights=direct, minlength=len(op))
    lo = np.full(len(op), 10)
    np.minimum.at(lo, seq[direct], digit[direct])
    hi = np.full(len(op), -1)
    np.maximum.at(hi, seq[direct], digit[direct])
    total = np.bincount(seq, weights=digit, minlength=len(op)).astype(np.int64) % 10
    value = np.select([op == MIN, op == MAX, op == SM], [lo, hi, total], default=-1)
    value[n == 0] = -1
    return {
        "label prior": np.zeros(len(op), dtype=np.int64),
        "outermost operator": op,
        "operator + direct digits": op * 16 + value + 1,
    }


def score(train: dict[str, np.ndarray], test: dict[str, np.ndarray]) -> dict[str, float]:
    """Test accuracy of each rule fit on ``train`` (unseen keys fall back to the label prior)."""
    keys_train = rule_keys(train["tokens"], train["offsets"])
    keys_test = rule_keys(test["tokens"], test["offsets"])
    prior = int(np.bincount(train["labels"]).argmax())
    acc = {}
    for rule, keys in keys_train.items():
        best = {}
        for key in np.unique(keys):
            best[int(key)] = int(np.bincount(train["labels"][keys == key]).argmax())
        guess = np.array([best.get(int(k), prior) for k in keys_test[rule]])
        acc[rule] = float((guess == test["labels"]).mean())
    return acc


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, default=Path("docs/results/listops_baselines.json"))
    p.add_argument("--root", help="directory holding lra_release/ (default: the generated data)")
    p.add_argument("--cache-dir", help="data cache (default: the harness's)")
    p.add_argument("--sizes", type=int, nargs=3, default=(96_000, 2_000, 2_000), metavar=("TRAIN", "VAL", "TEST"),
                   help="generated split sizes (default: the LRA ones, which the training runs cache)")
    args = p.parse_args(argv)
    require_writable("listops_baselines", "--out", args.out, is_file=True)

    from lra_mega.data.errors import LRADataError
    from lra_mega.data.listops import ListOpsDataModule

    try:
        n_train, n_val, n_test = args.sizes
        dm = ListOpsDataModule(source="release" if args.root else "generate", root=args.root,
                               cache_dir=args.cache_dir, n_train=n_train, n_val=n_val, n_test=n_test)
        splits = {s: dm.load_split(s) for s in ("train", "test")}
    except LRADataError as e:
        print(f"listops_baselines: error: {e}", file=sys.stderr)
        return 1
    data = {s: ds.arrays for s, ds in splits.items()}
    acc = score(data["train"], data["test"])
    result = {"source": dm.source, "n_train": len(data["train"]["labels"]), "n_test": len(data["test"]["labels"]),
              "test_accuracy": acc}
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    lines = ["| rule (fit on train) | test accuracy |", "|---|---|"]
    lines += [f"| {rule} | {100 * a:.2f}% |" for rule, a in acc.items()]
    args.out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
