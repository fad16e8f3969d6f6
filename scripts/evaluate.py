#!/usr/bin/env python
"""Re-evaluate a checkpoint on the whole val or test split of its task.

    python scripts/evaluate.py outputs/listops/runs/<time>/checkpoints/last.ckpt test
    python scripts/evaluate.py CKPT val data.root=/data/lra --out val.json

The datamodule and model are rebuilt from the config stored in the checkpoint;
``key=value`` arguments edit that config (e.g. a different data.root).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from lra_mega.data.errors import LRADataError
from lra_mega.evaluation import SPLITS, evaluate_checkpoint


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("checkpoint", type=Path)
    p.add_argument("split", nargs="?", default="test", choices=SPLITS)
    p.add_argument("overrides", nargs="*", help="key=value edits of the stored run config")
    p.add_argument("--out", type=Path, help="JSON file (default: CKPT with .<split>.json)")
    p.add_argument("--accelerator", default="auto")
    args = p.parse_args(argv)
    if not args.checkpoint.is_file():
        print(f"evaluate: error: checkpoint {args.checkpoint} does not exist", file=sys.stderr)
        return 1
    try:
        result = evaluate_checkpoint(args.checkpoint, args.split, args.overrides, args.accelerator)
    except (LRADataError, ValueError) as e:
        print(f"evaluate: error: {' '.join(str(e).split())}", file=sys.stderr)
        return 1
    out = args.out or args.checkpoint.with_suffix(f".{args.split}.json")
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"{result['task']} {args.split} accuracy: {100 * result['acc']:.2f}% "
          f"({result['examples']} examples, step {result['global_step']}) -> {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
