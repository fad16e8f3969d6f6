"""Benchmark lra_mega against other Mega implementations on each task's paper config.

Task shapes (layers, widths, norm, attention, chunk, EMA truncation, dropout, length, batch,
classes, dual encoder) come from the composed ``experiment=<task>_paper`` configs in
``configs/``, not from a table here. Implementations: lra_mega always; the Hugging Face
port (transformers==4.46.3, ``models/deprecated/mega``) and mega-pytorch when installed. All run
in one process on the same device, so their numbers compare.

    python scripts/bench/benchmark.py                                   # speed: step time + peak memory
    python scripts/bench/benchmark.py --tasks listops --precision bf16
    python scripts/bench/benchmark.py --memory                          # saved activations, FLOPs, CPU step
    python scripts/bench/benchmark.py --tasks pathfinder --batch 2 --length 128 --steps 2   # CPU smoke

Speed mode writes ``<out>.{json,md}`` (default docs/benchmarks/speed); ``--memory`` writes
docs/benchmarks/memory (see scripts/bench/benchmark_memory.py).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

# the scripts are run as files: bench_common beside this file, out_paths in scripts/
sys.path[:0] = [str(Path(__file__).resolve().parent), str(Path(__file__).resolve().parents[1])]
from out_paths import require_writable  # noqa: E402
from bench_common import (  # noqa: E402
    IMPLEMENTATIONS, TASKS, build, environment, error_text, paper_shapes, time_training_step,
)

TABLE_HEADER = "| task | impl | batch | length | step ms | peak GiB |\n|---|---|---|---|---|---|"



def run(args: argparse.Namespace) -> list[dict]:
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    rows = []
    for task, shape in paper_shapes(args.tasks, args.length).items():
        batch = args.batch or shape.batch
        for impl in args.impls:
            row = {"task": task, "impl": impl, "batch": batch, "length": shape.length, "precision": args.precision}
            model = None
            try:
                torch.manual_seed(0)
                model = build(impl, shape)
                row.update(time_training_step(model, shape, batch, device, args.precision, args.warmup, args.steps))
            except Exception as err:  # one broken impl must not end the comparison
                row["error"] = error_text(err)
            finally:
                del model
                if device.type == "cuda":
                    torch.cuda.empty_cache()
            rows.append(row)
            print(format_row(row), flush=True)
    return rows


def format_row(row: dict) -> str:
    if "error" in row:
        return f"| {row['task']} | {row['impl']} | {row['batch']} | {row['length']} | {row['error']} | |"
    return (
        f"| {row['task']} | {row['impl']} | {row['batch']} | {row['length']} | "
        f"{row['ms_mean']:.1f} ± {row['ms_std']:.1f} | {row['peak_gib']:.2f} |"
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", nargs="+", default=list(TASKS), choices=list(TASKS))
    parser.add_argument("--impls", nargs="+", default=list(IMPLEMENTATIONS), choices=list(IMPLEMENTATIONS))
    parser.add_argument("--precision", choices=["fp32", "bf16"], default="fp32")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--batch", type=int, help="override every task's paper batch (smoke runs)")
    parser.add_argument("--length", type=int, help="override every task's paper length (smoke runs)")
    parser.add_argument("--device", help="cuda or cpu (default: cuda when available)")
    parser.add_argument("--out", type=Path, help="output stem (default docs/benchmarks/speed or /memory)")
    parser.add_argument("--memory", action="store_true",
                        help="saved activations, FLOPs and CPU step time instead of GPU speed")
    parser.add_argument("--memory-batches", nargs=2, type=int, default=(1, 2), metavar=("B1", "B2"),
                        help="batch pair for the per-example saved activations (default 1 2)")
    parser.add_argument("--bf16-impls", nargs="*", default=["lra_mega"], choices=list(IMPLEMENTATIONS),
                        help="implementations also measured under bf16 autocast in --memory")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch CPU threads in --memory (default 1: steadier on a shared machine)")
    parser.add_argument("--steps-only", action="store_true", help="--memory: CPU step times only")
    parser.add_argument("--layers", nargs="*", default=[], metavar="TASK=N",
                        help="measure TASK with N layers and scale to its depth (for RAM-bound rows)")
    args = parser.parse_args(argv)
    if args.out is not None:
        require_writable("benchmark", "--out", args.out, is_file=True)

    if args.memory:
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        from benchmark_memory import main as memory_main

        memory_main(args)
        return
    out = args.out or Path("docs/benchmarks/speed")
    print(TABLE_HEADER)
    rows = run(args)
    env = environment(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps({"environment": env, "results": rows}, indent=2))
    table = "\n".join(format_row(r) for r in rows)
    env_line = ", ".join(f"{k} {v}" for k, v in env.items())
    out.with_suffix(".md").write_text(f"Environment: {env_line}\n\n{TABLE_HEADER}\n{table}\n")


if __name__ == "__main__":
    main()
