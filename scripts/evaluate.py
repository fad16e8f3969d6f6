#!/usr/bin/env python
"""Re-evaluate a checkpoint on the whole val or test split of its task.

    python scripts/evaluate.py outputs/listops/runs/<time>/checkpoints/last.ckpt test
    python scripts/evaluate.py CKPT val data.root=/data/lra --out val.json

The datamodule and model are rebuilt from the config stored in the checkpoint;
``key=value`` arguments edit where the data is and how it is batched (data.root,
data.cache_dir, data.num_workers, data.pin_memory, data.batch_size, data.limit_examples).
Errors print one line and exit with status 1.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from lra_mega.data.errors import LRADataError
from lra_mega.run.evaluation import SPLITS, evaluate_checkpoint


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("checkpoint", type=Path)
    p.add_argument("rest", nargs="*", metavar="[split] [key=value ...]",
                   help=f"split: {' or '.join(SPLITS)} (default test); then key=value edits")
    p.add_argument("--out", type=Path, help="JSON file (default: CKPT with .<split>.json)")
    p.add_argument("--accelerator", default="auto")
    args = p.parse_args(argv)
    rest = list(args.rest)
    args.split = rest.pop(0) if rest and "=" not in rest[0] else "test"
    args.overrides = rest
    if not args.checkpoint.is_file():
        print(f"evaluate: error: checkpoint {args.checkpoint} does not exist", file=sys.stderr)
        return 1
    try:
        result = evaluate_checkpoint(args.checkpoint, args.split, args.overrides, args.accelerator)
    except (LRADataError, ValueError) as e:
        print(f"evaluate: error: {' '.join(str(e).split())}", file=sys.stderr)
        return 1
    out = args.out or args.checkpoint.with_suffix(f".{args.split}.json")
    try:
        out.write_text(json.dumps(result, indent=2) + "\n")
    except OSError as e:
        print(f"evaluate: error: cannot write {out} ({e.strerror}); pass --out FILE", file=sys.stderr)
        return 1
    print(f"{result['task']} {args.split} accuracy: {100 * result['acc']:.2f}% "
          f"({result['examples']} examples, step {result['global_step']}) -> {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
