"""Megalodon against Mega, device-free: parameters, saved activations, FLOPs and the CPU step.

    python scripts/bench/benchmark_megalodon.py                                  # the defaults below
    python scripts/bench/benchmark_megalodon.py --tasks listops --sizes lite --length 64 --steps 1   # smoke

For each task and size the two presets are composed and built as the harness builds them:

- ``lite``: ``experiment=<task>_lite`` against ``<task>_megalodon_lite`` (the same dims, chunk and
  batch; docs/CPU_RUNS.md);
- ``paper``: ``experiment=<task>_paper`` against ``<task>_megalodon`` (each its paper architecture:
  Megalodon attends over the whole sequence, docs/MEGALODON.md).

Measured in one process, fp32, eager (the lite presets compile both encoders alike):

- saved activations: bytes autograd saves for the backward of one training forward, at batches
  B1 < B2: per example and fixed (``benchmark_memory.saved_bytes``);
- forward + backward FLOPs per example (``torch.utils.flop_counter``: the FFT convolutions count 0);
- the median CPU training step (forward, backward, AdamW) at the lite preset's batch (paper: batch
  1), the two encoders interleaved step by step so a shared machine's drift hits both alike.

Inputs are full-length random batches without padding. Writes ``<out>.{json,md}`` (default
docs/benchmarks/megalodon).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import torch

sys.path[:0] = [str(Path(__file__).resolve().parent), str(Path(__file__).resolve().parents[1])]
from out_paths import require_writable  # noqa: E402
from bench_common import TASKS, build, environment, error_text, paper_shapes  # noqa: E402
from benchmark_memory import MIB, saved_bytes, step_times  # noqa: E402

SIZES = {"lite": ("{task}_lite", "{task}_megalodon_lite"), "paper": ("{task}_paper", "{task}_megalodon")}
MODELS = ("Mega", "Megalodon")
HEADER = ("| task | size | model | params | chunk | saved MiB / example | fixed MiB | fwd+bwd GFLOP / example "
          "| CPU step ms (batch) | step ÷ Mega's |\n|---|---|---|---|---|---|---|---|---|---|")


def measure(task: str, size: str, args: argparse.Namespace) -> list[dict]:
    """Rows of one task and size: each model's memory and FLOPs, then the interleaved step times."""
    shapes = {m: paper_shapes([task], args.length, preset)[task] for m, preset in zip(MODELS, SIZES[size])}
    batch = shapes["Mega"].batch if size == "lite" else 1
    b1, b2 = args.memory_batches
    rows, models = [], {}
    for name, shape in shapes.items():
        row = {"task": task, "size": size, "model": name, "preset": SIZES[size][MODELS.index(name)].format(task=task),
               "length": shape.length, "chunk": shape.model["chunk_size"], "batches": [b1, b2], "step_batch": batch}
        try:
            torch.manual_seed(0)
            model = build("lra_mega", shape).train()
            row["params"] = sum(p.numel() for p in model.parameters())
            s1, flops = saved_bytes(model, shape, b1, "fp32", count_flops=True)
            s2, _ = saved_bytes(model, shape, b2, "fp32")
            per_example = (s2 - s1) / (b2 - b1)
            row.update(saved_mib_per_example=per_example / MIB, fixed_mib=(s1 - b1 * per_example) / MIB,
                       gflop_per_example=flops / b1 / 1e9)
            models[name] = model
        except Exception as err:  # one failing model must not end the comparison
            row["error"] = error_text(err)
        rows.append(row)
        print(format_row(row), flush=True)
    if args.steps and len(models) == len(MODELS):
        times = step_times(models, shapes["Mega"], args.steps, args.warmup, batch=batch)
        for row in rows:
            row["cpu_step_ms"] = times[row["model"]]
            row["step_vs_mega"] = times[row["model"]] / times["Mega"]
            print(f"{task} {size} {row['model']}: CPU step {row['cpu_step_ms']:.0f} ms at batch {batch}", flush=True)
    return rows


def format_row(row: dict) -> str:
    """One markdown row."""
    head = f"| {row['task']} | {row['size']} | {row['model']} |"
    if "error" in row:
        return f"{head} {row['error']} | | | | | | |"
    step = f"{row['cpu_step_ms']:.0f} ({row['step_batch']})" if "cpu_step_ms" in row else ""
    ratio = f"{row['step_vs_mega']:.2f}" if "step_vs_mega" in row else ""
    chunk = "whole" if row["chunk"] < 1 or row["chunk"] >= row["length"] else row["chunk"]
    return (f"{head} {row['params'] / 1e3:.0f}k | {chunk} | {row['saved_mib_per_example']:.1f} | "
            f"{row['fixed_mib']:.1f} | {row['gflop_per_example']:.2f} | {step} | {ratio} |")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", nargs="+", default=["listops", "pathfinder"], choices=list(TASKS))
    parser.add_argument("--sizes", nargs="+", default=list(SIZES), choices=list(SIZES))
    parser.add_argument("--steps", type=int, default=3, help="timed steps per model (0: no step times)")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--memory-batches", nargs=2, type=int, default=(1, 2), metavar=("B1", "B2"))
    parser.add_argument("--length", type=int, help="override every preset's length (smoke runs)")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    parser.add_argument("--out", type=Path, default=Path("docs/benchmarks/megalodon"), help="output stem")
    args = parser.parse_args(argv)
    require_writable("benchmark_megalodon", "--out", args.out, is_file=True)
    if args.memory_batches[0] >= args.memory_batches[1]:
        parser.error(f"--memory-batches {args.memory_batches[0]} {args.memory_batches[1]}: give B1 < B2, e.g. 1 2")
    torch.set_num_threads(args.threads)

    print(HEADER, flush=True)
    load_before = os.getloadavg()[0]
    rows = [row for task in args.tasks for size in args.sizes for row in measure(task, size, args)]
    env = {**environment("cpu"), "load average (1 min) before, after": f"{load_before:.1f}, {os.getloadavg()[0]:.1f}"}
    note = (f"fp32, eager; saved activations at batches {args.memory_batches[0]} and {args.memory_batches[1]}, "
            f"FLOPs at batch {args.memory_batches[0]}; CPU step: median of {args.steps} after {args.warmup} "
            f"warm-up at the lite preset's batch (paper: 1), Mega and Megalodon interleaved, {args.threads} "
            "torch thread(s); full-length inputs without padding")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    record = {"environment": env, "note": note, "results": rows}
    args.out.with_suffix(".json").write_text(json.dumps(record, indent=2) + "\n")
    env_line = ", ".join(f"{k} {v}" for k, v in env.items())
    table = "\n".join(format_row(r) for r in rows)
    args.out.with_suffix(".md").write_text(f"Environment: {env_line}\n\n{note}.\n\n{HEADER}\n{table}\n")


if __name__ == "__main__":
    main()
