#!/usr/bin/env python
"""Benchmark the split cache: first load (decode/generate → cache) vs second load (from cache).

    python scripts/bench/benchmark_data.py [--listops-n 100000] [--imdb-n 25000] [--out DIR]

Writes DIR/data_cache.{json,md} (default docs/benchmarks/). Uses a fresh temporary cache directory.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import sys
import time
from pathlib import Path

import torch

from lra_mega.data import ListOpsDataModule, TextDataModule
from lra_mega.data.fixtures import write_imdb_parquet

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # scripts/ (the scripts are run as files)
from out_paths import require_writable  # noqa: E402

OUT = Path(__file__).resolve().parents[2] / "docs" / "benchmarks"


def _time_setup(make) -> tuple[float, object]:
    t0 = time.perf_counter()
    dm = make()
    dm.setup()
    n = sum(len(dm.datasets[s]) for s in ("train", "val", "test"))
    batch = next(iter(dm.train_dataloader()))  # touch the data once
    assert batch["input"].shape[0] > 0
    return time.perf_counter() - t0, n


def bench(name: str, make) -> dict:
    first, n = _time_setup(make)
    second, _ = _time_setup(make)
    row = {"dataset": name, "examples": n, "first_s": round(first, 3), "second_s": round(second, 3),
           "speedup": round(first / second, 1)}
    print(row)
    return row


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--listops-n", type=int, default=100_000, help="total expressions (96%%/2%%/2%% split)")
    p.add_argument("--imdb-n", type=int, default=25_000, help="reviews per split (train and test)")
    p.add_argument("--out", type=Path, default=OUT, help=f"output directory (default {OUT})")
    args = p.parse_args()
    out = args.out
    require_writable("benchmark_data", "--out", out)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        n_small = max(1, args.listops_n // 50)
        rows.append(bench(f"listops generate {args.listops_n}", lambda: ListOpsDataModule(
            n_train=args.listops_n - 2 * n_small, n_val=n_small, n_test=n_small, batch_size=64,
            num_workers=0, cache_dir=tmp / "cache")))
        write_imdb_parquet(tmp / "imdb", n_per_split=args.imdb_n, words=(50, 450))
        rows.append(bench(f"IMDB-format parquet 2x{args.imdb_n}", lambda: TextDataModule(
            root=tmp / "imdb", batch_size=50, num_workers=0, cache_dir=tmp / "cache")))
    info = {"machine": f"{platform.machine()} {os.cpu_count()} CPUs, {platform.processor() or platform.platform()}",
            "torch": torch.__version__, "note": "first = generate/decode + write cache; second = from cache "
            "(new datamodule, setup of all splits + one train batch)", "results": rows}
    out.mkdir(parents=True, exist_ok=True)
    (out / "data_cache.json").write_text(json.dumps(info, indent=2) + "\n")
    lines = ["# Data cache benchmark", "", f"Machine: {info['machine']}; torch {info['torch']}.", "",
             info["note"] + ".", "", "| dataset | examples | first load (s) | second load (s) | speedup |",
             "|---|---|---|---|---|"]
    lines += [f"| {r['dataset']} | {r['examples']} | {r['first_s']} | {r['second_s']} | {r['speedup']}x |" for r in rows]
    lines += ["", "Reproduce: `python scripts/bench/benchmark_data.py`.", ""]
    (out / "data_cache.md").write_text("\n".join(lines))
    for r in rows:
        if r["speedup"] < 10:
            raise SystemExit(f"cache speedup for {r['dataset']} is only {r['speedup']}x (< 10x)")


if __name__ == "__main__":
    main()
