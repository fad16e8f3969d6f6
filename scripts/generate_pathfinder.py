"""Generate the Pathfinder / Path-X splits into the data cache (what training would do on first use).

    python scripts/generate_pathfinder.py                          # Pathfinder, 160k/20k/20k, contour 14
    python scripts/generate_pathfinder.py --task pathx --workers 16
    python scripts/generate_pathfinder.py --difficulty 6 --n-train 2048 --n-val 256 --n-test 256

Re-running after an interruption continues where it stopped; a finished split is not regenerated.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time

from lra_mega.data.errors import LRADataError
from lra_mega.data.pathfinder import PathfinderDataModule, PathXDataModule


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--task", choices=("pathfinder", "pathx"), default="pathfinder")
    p.add_argument("--difficulty", type=int, default=14, help="contour length: 6, 9 or 14 (default)")
    p.add_argument("--n-train", type=int, default=160_000)
    p.add_argument("--n-val", type=int, default=20_000)
    p.add_argument("--n-test", type=int, default=20_000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--cache-dir", default=None, help="default: $LRA_MEGA_CACHE or ~/.cache/lra_mega")
    p.add_argument("--workers", type=int, default=None, help="processes (default: all CPUs)")
    p.add_argument("--shard-size", type=int, default=None, help="images per shard (multiple of 256)")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    cls = PathXDataModule if args.task == "pathx" else PathfinderDataModule
    extra = {} if args.shard_size is None else {"shard_size": args.shard_size}
    try:
        dm = cls(n_train=args.n_train, n_val=args.n_val, n_test=args.n_test, difficulty=args.difficulty,
                 seed=args.seed, cache_dir=args.cache_dir, workers=args.workers, num_workers=0, **extra)
        t0 = time.perf_counter()
        dm.prepare_data()
    except LRADataError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"{args.task}: splits ready in {dm.cache_dir / dm.task} ({time.perf_counter() - t0:.1f}s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
