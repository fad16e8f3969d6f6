"""Which SDPA backend lra_mega's softmax attention takes with its masks, and what each one costs.

For the softmax paper configs (listops, text, retrieval; shapes from ``experiment=<task>_paper``)
and three masks — full length without padding, full length with key padding, Mega-chunk 128
with key padding — in fp32 and bf16, one forward + backward of ``lra_mega.model.attend``:

- ``default``: the backend PyTorch picks (read off the profiler's aten op names), its time
  and peak memory;
- each backend forced with ``torch.nn.attention.sdpa_kernel`` (flash, efficient, cudnn, math):
  time and peak memory, or its refusal with PyTorch's reasons (the warnings it gives).

    python scripts/gpu/gpu_sdpa_probe.py --out sdpa.json            # CUDA, paper shapes
    python scripts/gpu/gpu_sdpa_probe.py --out sdpa.json --dry-run  # CPU, tiny shapes

On CUDA the path is ``impl="auto"`` (SDPA for softmax); on the CPU ``auto`` trains through the
blockwise path, so the dry run asks for ``impl="reference"``, which is SDPA for softmax too.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
import warnings
from pathlib import Path
from typing import Any, Callable

import torch
from torch.nn.attention import SDPBackend, sdpa_kernel

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))  # bench_common

TASKS = ("listops", "text", "retrieval")
BACKENDS = {"flash": SDPBackend.FLASH_ATTENTION, "efficient": SDPBackend.EFFICIENT_ATTENTION,
            "cudnn": SDPBackend.CUDNN_ATTENTION, "math": SDPBackend.MATH}
# aten op → backend, most specific first
OPS = (("_scaled_dot_product_flash_attention", "flash"),
       ("_scaled_dot_product_efficient_attention", "efficient"),
       ("_scaled_dot_product_cudnn_attention", "cudnn"),
       ("_scaled_dot_product_fused_attention_overrideable", "overrideable"),
       ("_scaled_dot_product_attention_math", "math"))
MASKS = {"full": (-1, False), "full+padding": (-1, True), "chunk128+padding": (128, True)}


def task_shapes(dry_run: bool) -> dict[str, dict[str, int]]:
    """batch (dual counted twice), length, zdim, hdim of each softmax paper config."""
    if dry_run:  # tiny, and no config composition needed to rot-check the measuring code
        return {t: {"batch": 2, "length": 48, "zdim": 8, "hdim": 12} for t in TASKS}
    from bench_common import paper_shapes

    return {t: {"batch": s.batch * (2 if s.dual else 1), "length": s.length, "zdim": s.model["zdim"],
                "hdim": s.model["hdim"]} for t, s in paper_shapes(list(TASKS)).items()}


def backend_taken(step: Callable[[], None]) -> str:
    """The SDPA backend one call of ``step`` runs, from the profiler's op names."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        step()
    names = {e.key for e in prof.key_averages()}
    for op, backend in OPS:
        if any(op in name for name in names):
            return backend
    return "none (no SDPA op ran)"


def measure(step: Callable[[], None], device: torch.device, repeats: int) -> dict[str, float]:
    """Median ms of ``step`` after one warm-up, and peak memory above the start (GiB, CUDA)."""
    cuda = device.type == "cuda"
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    step()
    sync()
    if cuda:
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        step()
        sync()
        times.append((time.perf_counter() - start) * 1000)
    peak = (torch.cuda.max_memory_allocated(device) - base) / 2**30 if cuda else float("nan")
    return {"ms": statistics.median(times), "peak_gib": peak}


def case_step(shape: dict[str, int], chunk: int, padded: bool, dtype: torch.dtype,
              device: torch.device) -> Callable[[], None]:
    """One forward + backward of attend() on random inputs of the case."""
    from lra_mega.model import attend
    from lra_mega.model.position import SimpleRelativePositionalBias

    gen = torch.Generator().manual_seed(0)
    b, length = shape["batch"], shape["length"]
    q, k = (torch.randn(b, length, shape["zdim"], generator=gen) for _ in range(2))
    v = torch.randn(b, length, shape["hdim"], generator=gen)
    q, k, v = (t.to(device, dtype).requires_grad_(True) for t in (q, k, v))
    mask = None
    if padded:  # every other example padded over its last third
        mask = torch.ones(b, length, dtype=torch.bool)
        mask[::2, length - length // 3:] = False
        mask = mask.to(device)
    bias = SimpleRelativePositionalBias(chunk if chunk > 0 else length).to(device)
    impl = "auto" if device.type == "cuda" else "reference"

    def step() -> None:
        out = attend(q, k, v, fn="softmax", bias=bias, key_mask=mask, chunk_size=chunk, impl=impl)
        out.float().square().mean().backward()
        for t in (q, k, v, bias.weight):
            t.grad = None

    return step


def error_line(err: BaseException) -> str:
    text = (str(err).strip().splitlines() or [type(err).__name__])[0]
    return f"{type(err).__name__}: {text[:160]}"


def run(args: argparse.Namespace) -> dict[str, Any]:
    device = torch.device("cpu" if args.dry_run or not torch.cuda.is_available() else "cuda")
    deadline = time.monotonic() + args.budget_s
    name = torch.cuda.get_device_name(0) if device.type == "cuda" else "cpu"
    env = {"device": name, "torch": torch.__version__}
    rows: list[dict[str, Any]] = []
    report = {"environment": env, "dry_run": args.dry_run, "results": rows}
    for task, shape in task_shapes(args.dry_run).items():
        for mask_name, (chunk, padded) in MASKS.items():
            for precision, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
                row: dict[str, Any] = {"task": task, "mask": mask_name, "precision": precision, **shape}
                rows.append(row)
                if time.monotonic() > deadline:
                    row["error"] = "skipped: time budget spent"
                    continue
                try:
                    step = case_step(shape, chunk, padded, dtype, device)
                    row["default"] = {"backend": backend_taken(step), **measure(step, device, args.repeats)}
                except Exception as err:  # noqa: BLE001  (one case must not end the probe)
                    row["default"] = {"error": error_line(err)}
                    step = None
                for name, backend in BACKENDS.items():
                    if step is None:
                        break
                    with warnings.catch_warnings(record=True) as caught:
                        warnings.simplefilter("always")
                        try:
                            with sdpa_kernel([backend]):
                                row[name] = measure(step, device, args.repeats)
                        except Exception as err:  # noqa: BLE001  (a refusing backend is a result)
                            # PyTorch says why a kernel was not used in warnings, one reason each
                            said = (str(w.message).split(" (Triggered")[0].strip() for w in caught)
                            reasons = list(dict.fromkeys(said))
                            row[name] = {"error": error_line(err), "reasons": reasons}
                    if device.type == "cuda":
                        torch.cuda.empty_cache()
                print(format_row(row), flush=True)
                args.out.write_text(json.dumps(report, indent=2))  # a timeout keeps the rows so far
    return report


def cell(entry: dict[str, Any] | None) -> str:
    if not entry:
        return ""
    if "error" in entry:
        refused = "No available kernel" in entry["error"] or "No viable backend" in entry["error"]
        return "refused" if refused else entry["error"][:40]
    peak = "" if entry["peak_gib"] != entry["peak_gib"] else f", {entry['peak_gib']:.2f} GiB"
    return f"{entry['ms']:.2f} ms{peak}"


HEADER = ("| task | mask | precision | default takes | default | flash | efficient | cudnn | math |\n"
          "|---|---|---|---|---|---|---|---|---|")


def format_row(row: dict[str, Any]) -> str:
    default = row.get("default") or {}
    taken = default.get("backend", row.get("error", default.get("error", "")))
    return (f"| {row['task']} | {row['mask']} | {row['precision']} | {taken} | {cell(row.get('default'))} | "
            + " | ".join(cell(row.get(name)) for name in BACKENDS) + " |")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True, help="JSON file to write")
    parser.add_argument("--dry-run", action="store_true", help="CPU, tiny shapes")
    parser.add_argument("--repeats", type=int, default=3, help="timed calls per measurement (median)")
    parser.add_argument("--budget-s", type=float, default=25.0,
                        help="skip the cases left after this many seconds")
    args = parser.parse_args(argv)
    print(HEADER, flush=True)
    args.out.write_text(json.dumps(run(args), indent=2))


if __name__ == "__main__":
    main()
