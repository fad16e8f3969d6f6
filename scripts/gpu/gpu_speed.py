"""scripts/bench/benchmark.py's speed measurement for the GPU check: both precisions, one process, a time budget.

Six paper configs × lra_mega, the HF port and mega-pytorch × fp32 (TF32 allowed) and bf16
autocast, in one process, with benchmark.py's model builders and timed step. Rows are written
to ``<out>.json`` after each one, so a step killed at its limit keeps what it measured; the
order puts the slow mega-pytorch last, and rows left when ``--budget-s`` is spent are recorded
as skipped. ``<out>.md`` gets the table and, per task and precision, lra_mega / HF ratios
against the goals (step time ≤ 1/4, peak memory ≤ 1/3).

    python scripts/gpu/gpu_speed.py --out OUT/speed                   # CUDA, paper batches
    python scripts/gpu/gpu_speed.py --out OUT/speed --dry-run         # CPU, length 32, batch 2
"""

from __future__ import annotations

import argparse
import gc
import importlib.util
import json
import sys
import time
import types
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))  # bench_common

from bench_common import TASKS, build, environment, error_text, paper_shapes, time_training_step  # noqa: E402

# (precision, implementations) in the order measured: what matters most first
PHASES = (("fp32", ("lra_mega", "hf")), ("bf16", ("lra_mega", "hf")),
          ("fp32", ("mega_pytorch",)), ("bf16", ("mega_pytorch",)))
# warm-up and timed steps per implementation (mega-pytorch's steps take about a second)
STEPS = {"lra_mega": (2, 5), "hf": (2, 5), "mega_pytorch": (1, 2)}
# Path-X at the paper's batch of 128 does not fit the HF port; the official runs took 2 per GPU
BATCH = {"pathx": 8}
GOAL_TIME, GOAL_MEMORY = 0.25, 1 / 3
HEADER = ("| task | impl | precision | batch | length | step ms | peak GiB |\n"
          "|---|---|---|---|---|---|---|")


def scipy_shim() -> str | None:
    """mega-pytorch imports scipy only for ``next_fast_len``: stand in for it where scipy is absent."""
    if importlib.util.find_spec("scipy") is not None:
        return None

    def next_fast_len(n: int) -> int:
        """Smallest 2^a·3^b·5^c ≥ n."""
        best, p2 = 2 * n, 1
        while p2 < 2 * n:
            p3 = p2
            while p3 < 2 * n:
                p5 = p3
                while p5 < n:
                    p5 *= 5
                best = min(best, p5)
                p3 *= 3
            p2 *= 2
        return best

    scipy, fftpack = types.ModuleType("scipy"), types.ModuleType("scipy.fftpack")
    fftpack.next_fast_len = next_fast_len
    scipy.fftpack = fftpack
    sys.modules.update({"scipy": scipy, "scipy.fftpack": fftpack})
    return "stand-in (next_fast_len only)"


def measure(args: argparse.Namespace, device: torch.device, report: dict[str, Any]) -> None:
    """Fill ``report['results']`` row by row, writing the JSON after each."""
    shapes = paper_shapes(list(args.tasks), args.length)
    deadline = time.monotonic() + args.budget_s
    rows = report["results"]
    for precision, impls in PHASES:
        for task, shape in shapes.items():
            for impl in impls:
                batch = args.batch or BATCH.get(task, shape.batch)
                row: dict[str, Any] = {"task": task, "impl": impl, "precision": precision, "batch": batch,
                                       "length": shape.length}
                warmup, steps = (1, 1) if args.dry_run else STEPS[impl]
                if time.monotonic() > deadline:
                    row["error"] = "skipped: time budget spent"
                else:
                    model = None
                    try:
                        torch.manual_seed(0)
                        model = build(impl, shape)
                        row.update(time_training_step(model, shape, batch, device, precision, warmup, steps))
                    except Exception as err:  # noqa: BLE001  (one broken impl must not end the comparison)
                        row["error"] = error_text(err)
                    finally:
                        del model
                        gc.collect()
                        if device.type == "cuda":
                            torch.cuda.empty_cache()
                rows.append(row)
                print(format_row(row), flush=True)
                write(args.out, report)


def format_row(row: dict[str, Any]) -> str:
    head = f"| {row['task']} | {row['impl']} | {row['precision']} | {row['batch']} | {row['length']} | "
    if "error" in row:
        return head + f"{row['error']} | |"
    return head + f"{row['ms_mean']:.1f} ± {row['ms_std']:.1f} | {row['peak_gib']:.2f} |"


def ratios(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """lra_mega / HF step time and peak memory per task and precision, with the goals' verdicts."""
    ok = {(r["task"], r["impl"], r["precision"]): r for r in rows if "error" not in r}
    out = []
    for (task, impl, precision), ours in ok.items():
        hf = ok.get((task, "hf", precision))
        if impl != "lra_mega" or hf is None:
            continue
        time_ratio = ours["ms_mean"] / hf["ms_mean"]
        memory_ratio = ours["peak_gib"] / hf["peak_gib"] if hf["peak_gib"] > 0 else float("nan")
        out.append({"task": task, "precision": precision,
                    "time_ratio": time_ratio, "memory_ratio": memory_ratio,
                    "time_goal_met": time_ratio <= GOAL_TIME, "memory_goal_met": memory_ratio <= GOAL_MEMORY})
    return out


def write(out: Path, report: dict[str, Any]) -> None:
    """``<out>.json`` and ``<out>.md`` from the rows so far."""
    report["ratios"] = ratios(report["results"])
    out.with_suffix(".json").write_text(json.dumps(report, indent=2))
    env_line = ", ".join(f"{k} {v}" for k, v in report["environment"].items())
    batches = ("paper batches, Path-X 8 (the HF port cannot hold the paper's 128 on one GPU)"
               if not report["dry_run"] else "2, length 32 (dry run)")
    lines = [f"Environment: {env_line}", "", f"Batches: {batches}; fp32 with TF32 matmuls, bf16 autocast.", "",
             HEADER, *map(format_row, report["results"]), ""]
    if report["ratios"]:
        lines += ["lra_mega / HF port, same process (goals: step time ≤ 0.25, peak memory ≤ 0.33):", "",
                  "| task | precision | step time ratio | peak memory ratio | goals |", "|---|---|---|---|---|"]
        for r in report["ratios"]:
            met = "met" if r["time_goal_met"] and r["memory_goal_met"] else "NOT met"
            met = "n/a (CPU dry run)" if report["dry_run"] else met
            lines.append(f"| {r['task']} | {r['precision']} | {r['time_ratio']:.3f} | "
                         f"{r['memory_ratio']:.3f} | {met} |")
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True, help="output stem: <out>.json and <out>.md")
    parser.add_argument("--tasks", nargs="+", default=list(TASKS), choices=list(TASKS))
    parser.add_argument("--dry-run", action="store_true", help="CPU, length 32, batch 2, one step")
    parser.add_argument("--batch", type=int, help="every task's batch (default: paper batches, Path-X 8)")
    parser.add_argument("--length", type=int, help="every task's length (default: the paper's)")
    parser.add_argument("--budget-s", type=float, default=140.0,
                        help="skip the rows left after this many seconds")
    args = parser.parse_args(argv)
    if args.dry_run:
        args.batch, args.length = args.batch or 2, args.length or 32
    device = torch.device("cuda" if torch.cuda.is_available() and not args.dry_run else "cpu")
    if device.type == "cuda":  # as scripts/bench/benchmark.py: fp32 runs with TF32 matmuls
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    env = environment(device.type)
    shim = scipy_shim()
    if shim:
        env["scipy"] = shim
    report: dict[str, Any] = {"environment": env, "dry_run": args.dry_run, "results": []}
    print(HEADER, flush=True)
    measure(args, device, report)
    write(args.out, report)


if __name__ == "__main__":
    main()
