"""``scripts/bench/benchmark.py --memory``: what autograd saves, FLOPs and the CPU step, per implementation.

For each task's paper config and each implementation (one process, implementations alternating):

- saved activations: bytes of the tensors autograd saves for the backward of one training
  forward (``saved_tensors_hooks``, deduplicated by storage, parameters left out), at two batch
  sizes B1 < B2: per example = (S(B2) − S(B1)) / (B2 − B1), fixed = S(B1) − B1 · per example;
- FLOPs of forward + backward per example (``torch.utils.flop_counter``, batch B1 / B1);
- the median CPU training step (forward + backward + AdamW) at batch 1, implementations
  interleaved step by step.

Rows measured with fewer layers (``--layers pathx=1``, for rows the RAM cannot hold) are scaled
to the config's depth and marked ``scaled_from_layers``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from bench_common import (
    TaskShape, autocast_for, build, environment, error_text, make_batch, paper_shapes,
)

MIB = 2**20
HEADER = (
    "| task | impl | precision | saved MiB / example | fixed MiB | fwd+bwd GFLOP / example | CPU step ms (batch 1) |\n"
    "|---|---|---|---|---|---|---|"
)


def saved_bytes(model: nn.Module, shape: TaskShape, batch: int, precision: str, count_flops: bool = False) -> tuple[int, int]:
    """(bytes autograd saves for one training forward, fwd+bwd FLOPs) at ``batch``."""
    device = torch.device("cpu")
    x, mask, y = make_batch(shape, batch, device)
    params = {p.untyped_storage().data_ptr() for p in model.parameters()}
    seen: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        storage = t.untyped_storage()
        ptr = storage.data_ptr()
        if ptr and ptr not in params:
            seen[ptr] = max(seen.get(ptr, 0), storage.nbytes())
        return t

    counter = FlopCounterMode(display=False) if count_flops else None
    model.zero_grad(set_to_none=True)
    with counter or torch.autograd.graph.saved_tensors_hooks(lambda t: t, lambda t: t):
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t), autocast_for(precision, device):
            loss = F.cross_entropy(model(x, mask).float(), y)
        loss.backward()
    return sum(seen.values()), (counter.get_total_flops() if counter else 0)


def step_times(models: dict[str, nn.Module], shape: TaskShape, steps: int, warmup: int, batch: int = 1
               ) -> dict[str, float]:
    """Median CPU training step (ms) at ``batch``, the implementations interleaved step by step."""
    device = torch.device("cpu")
    x, mask, y = make_batch(shape, batch, device)
    optimizers = {k: torch.optim.AdamW(m.parameters(), lr=1e-4) for k, m in models.items()}
    times: dict[str, list[float]] = {k: [] for k in models}
    for i in range(warmup + steps):
        for name, model in models.items():
            start = time.perf_counter()
            optimizers[name].zero_grad(set_to_none=True)
            F.cross_entropy(model(x, mask).float(), y).backward()
            optimizers[name].step()
            if i >= warmup:
                times[name].append((time.perf_counter() - start) * 1000)
    return {k: statistics.median(v) for k, v in times.items()}


def measure_task(shape: TaskShape, args: argparse.Namespace, layers: int | None) -> list[dict]:
    """Rows for one task: every implementation × precision, plus the interleaved step times."""
    depth = shape.model["depth"]
    if layers:
        shape = dataclasses.replace(shape, model={**shape.model, "depth": layers})
    scale = depth / layers if layers else 1.0
    b1, b2 = args.memory_batches
    models, rows = {}, []
    for impl in args.impls:
        try:
            torch.manual_seed(0)
            models[impl] = build(impl, shape).train()
        except Exception as err:
            rows.append({"task": shape.task, "impl": impl, "error": error_text(err)})
            print(format_row(rows[-1]), flush=True)
    precisions = ["fp32", "bf16"] if args.precision == "fp32" else [args.precision]
    for precision in precisions:
        if args.steps_only:
            rows += [{"task": shape.task, "impl": impl, "precision": "fp32", "length": shape.length, "depth": depth,
                      **({"scaled_from_layers": layers} if layers else {})} for impl in models]
            break
        for impl, model in models.items():
            if precision == "bf16" and impl not in args.bf16_impls:
                continue
            row = {"task": shape.task, "impl": impl, "precision": precision, "length": shape.length,
                   "batches": [b1, b2], "depth": depth}
            if layers:
                row["scaled_from_layers"] = layers
            try:
                s1, flops = saved_bytes(model, shape, b1, precision, count_flops=True)
                s2, _ = saved_bytes(model, shape, b2, precision)
                per_example = (s2 - s1) / (b2 - b1)
                row.update(saved_mib_per_example=scale * per_example / MIB,
                           fixed_mib=scale * (s1 - b1 * per_example) / MIB,
                           gflop_per_example=scale * flops / b1 / 1e9)
            except Exception as err:
                row["error"] = error_text(err)
            rows.append(row)
            print(format_row(row), flush=True)
    if args.steps and models:
        for impl, ms in step_times(models, shape, args.steps, args.warmup).items():
            for row in rows:
                if row.get("impl") == impl and row.get("precision") == "fp32":
                    row["cpu_step_ms_batch1"] = scale * ms
        for row in rows:
            if "cpu_step_ms_batch1" in row:
                print(f"{shape.task} {row['impl']}: CPU step {row['cpu_step_ms_batch1']:.0f} ms", flush=True)
    return rows


def format_row(row: dict) -> str:
    if "saved_mib_per_example" not in row and "error" not in row:
        return f"| {row['task']} | {row['impl']} | {row['precision']} | | | | {row.get('cpu_step_ms_batch1', 0):.0f} |"
    if "error" in row:
        return f"| {row['task']} | {row['impl']} | {row.get('precision', '')} | {row['error']} | | | |"
    step = row.get("cpu_step_ms_batch1")
    scaled = f" (×{row['depth']}/{row['scaled_from_layers']} layers)" if "scaled_from_layers" in row else ""
    return (
        f"| {row['task']}{scaled} | {row['impl']} | {row['precision']} | {row['saved_mib_per_example']:.1f} | "
        f"{row['fixed_mib']:.1f} | {row['gflop_per_example']:.2f} | {'' if step is None else f'{step:.0f}'} |"
    )


def main(args: argparse.Namespace) -> None:
    """Measure, print and write ``<out>.{json,md}`` (default docs/benchmarks/memory)."""
    torch.set_num_threads(args.threads)
    layers = {k: int(v) for k, v in (item.split("=", 1) for item in args.layers)}
    out = args.out or Path("docs/benchmarks/memory")
    print(HEADER, flush=True)
    rows = []
    for task, shape in paper_shapes(args.tasks, args.length).items():
        rows += measure_task(shape, args, layers.get(task))
    env = environment("cpu")
    out.parent.mkdir(parents=True, exist_ok=True)
    note = (f"saved activations: batch {args.memory_batches[0]} and {args.memory_batches[1]}; "
            f"FLOPs at batch {args.memory_batches[0]}; CPU step: median of {args.steps} at batch 1 after "
            f"{args.warmup} warm-up, implementations interleaved, {args.threads} torch thread(s)")
    out.with_suffix(".json").write_text(json.dumps({"environment": env, "note": note, "results": rows}, indent=2) + "\n")
    env_line = ", ".join(f"{k} {v}" for k, v in env.items())
    table = "\n".join(format_row(r) for r in rows)
    out.with_suffix(".md").write_text(f"Environment: {env_line}\n\n{note}.\n\n{HEADER}\n{table}\n")
