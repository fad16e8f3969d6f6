"""Measure Pathfinder generation speed (images per second per core) at 32 and 128 pixels.

    python scripts/bench/benchmark_pathfinder.py                 # writes docs/benchmarks/pathfinder_gen.{json,md}
    python scripts/bench/benchmark_pathfinder.py --blocks 2 --out /tmp/pf   # quick

One process generates ``--blocks`` blocks of 256 images per resolution (after one warm-up
block, which also loads or compiles the numba kernel); a second measurement runs the
sharded, parallel ``generate_split`` with all cores.
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

from lra_mega.data.pathfinder import generate_split
from lra_mega.data.pathfinder_generate import BLOCK_SIZE, generate_block, pathfinder_settings

sys.path[:0] = [str(Path(__file__).resolve().parent), str(Path(__file__).resolve().parents[1])]  # bench/, scripts/
from bench_common import cpu_model  # noqa: E402
from out_paths import require_writable  # noqa: E402

TARGET = {32: 500, 128: 50}  # images/s per core the generator must reach on a 2-core machine


def measure(resolution: int, blocks: int, workers: int) -> dict:
    s = pathfinder_settings(resolution)
    generate_block(s, 0, 10_000)  # warm-up
    t0 = time.perf_counter()
    for b in range(blocks):
        generate_block(s, 0, b)
    single = blocks * BLOCK_SIZE / (time.perf_counter() - t0)
    n = blocks * BLOCK_SIZE * workers
    with tempfile.TemporaryDirectory() as d:
        t0 = time.perf_counter()
        generate_split(Path(d) / "split", s, n, seed=1, shard_size=BLOCK_SIZE, workers=workers, progress=False)
        parallel = n / (time.perf_counter() - t0)
    return {"resolution": resolution, "settings": s.to_dict(), "images_single": blocks * BLOCK_SIZE,
            "img_per_s_per_core": round(single, 1), "images_parallel": n, "workers": workers,
            "img_per_s_parallel": round(parallel, 1), "target_per_core": TARGET[resolution]}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--blocks", type=int, default=8, help="blocks of 256 images per measurement")
    p.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    p.add_argument("--out", default="docs/benchmarks/pathfinder_gen")
    args = p.parse_args()
    require_writable("benchmark_pathfinder", "--out", args.out, is_file=True)
    rows = [measure(r, args.blocks, args.workers) for r in (32, 128)]
    machine = {"cpu_count": os.cpu_count(), "cpu": cpu_model(), "python": platform.python_version(),
               "load_average_1min_after": round(os.getloadavg()[0], 2)}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps({"machine": machine, "results": rows}, indent=1) + "\n")
    lines = ["# Pathfinder generation speed", "",
             f"Machine: {machine['cpu_count']}-core CPU container ({machine['cpu']}), Python {machine['python']}; "
             f"1-minute load average {machine['load_average_1min_after']} at the end (other jobs share the machine).",
             "Produced by `python scripts/bench/benchmark_pathfinder.py`; LRA settings, contour length 14.", "",
             "| set | img/s, one process (per core) | target per core | img/s, generate_split with N workers | N |",
             "|---|---|---|---|---|"]
    for r in rows:
        name = "PF32 (Pathfinder)" if r["resolution"] == 32 else "PF128 (Path-X)"
        lines.append(f"| {name} | {r['img_per_s_per_core']} | {r['target_per_core']} | "
                     f"{r['img_per_s_parallel']} | {r['workers']} |")
    lines += ["", "The parallel figure includes process start-up, shard writes and the cache consolidation.",
              "Other processes sharing the machine lower both figures; compare runs on an idle machine.",
              "", "## Settings (`pathfinder_settings(resolution)`)", "",
              "| field | PF32 | PF128 |", "|---|---|---|"]
    for field in rows[0]["settings"]:
        lines.append(f"| {field} | {rows[0]['settings'][field]} | {rows[1]['settings'][field]} |")
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
