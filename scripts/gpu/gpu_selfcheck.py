"""The attention self-check's verdict for every combination the paper presets run on a GPU.

``impl=auto`` self-checks each fused path (Triton laplace / relu² kernels, SDPA fed our padded
q/k) once per process and combination before its first use, and falls back to the PyTorch path
when it fails (lra_mega/model/kernels/selfcheck.py). This runs those checks up front for each
paper task's activation and widths (masked keys where the task pads), in fp32 and bf16, and
writes one row per combination: passed, or the finding and the path a run would take instead.

    python scripts/gpu/gpu_selfcheck.py --out selfcheck.json            # CUDA, paper widths
    python scripts/gpu/gpu_selfcheck.py --out selfcheck.json --dry-run  # CPU: Triton's interpreter, tiny shapes

Exit status 1 when a check failed (a run would fall back), else 0.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))  # bench_common

TASKS = ("listops", "text", "retrieval", "image", "pathfinder", "pathx")
PADDED = {"listops", "text", "retrieval"}  # variable lengths: their batches mask keys


def combinations(dry_run: bool) -> list[dict[str, Any]]:
    """(fn, zdim, hdim, masked) of each paper task, duplicates merged (their tasks listed)."""
    if dry_run:  # no config composition: the dry run checks the sequence, not the shapes
        shapes = {t: {"attention": "softmax" if t in PADDED else "laplace", "zdim": 8, "hdim": 12} for t in TASKS}
    else:
        from bench_common import paper_shapes

        shapes = {t: s.model for t, s in paper_shapes(list(TASKS)).items()}
    merged: dict[tuple, dict[str, Any]] = {}
    for task, model in shapes.items():
        key = (model["attention"], int(model["zdim"]), int(model["hdim"]), task in PADDED)
        merged.setdefault(key, {"fn": key[0], "zdim": key[1], "hdim": key[2], "masked": key[3], "tasks": []})
        merged[key]["tasks"].append(task)
    return list(merged.values())


def run(args: argparse.Namespace) -> dict[str, Any]:
    if args.dry_run:  # the Triton kernels on CPU tensors; must be set before triton is imported
        os.environ["TRITON_INTERPRET"] = "1"
    import torch

    from lra_mega.model import attention
    from lra_mega.model.kernels import HAS_TRITON

    device = torch.device("cuda" if torch.cuda.is_available() and not args.dry_run else "cpu")
    if args.dry_run:
        attention.CHECK_LENGTH, attention.CHECK_REAL = 40, 29  # the interpreter is slow
    dtypes = [torch.float32]
    if device.type == "cuda" and torch.cuda.is_bf16_supported():  # the dry run: fp32 (the interpreter's)
        dtypes.append(torch.bfloat16)
    report: dict[str, Any] = {"device": str(device), "dry_run": args.dry_run, "length": attention.CHECK_LENGTH,
                              "triton": HAS_TRITON, "results": []}
    start = time.perf_counter()
    for combo in combinations(args.dry_run):
        for dtype in dtypes:
            row: dict[str, Any] = {**combo, "dtype": str(dtype).removeprefix("torch.")}
            path = "sdpa" if combo["fn"] == "softmax" else "triton"
            if time.perf_counter() - start > args.budget_s:
                row["verdict"] = "not run (the step's time budget was spent)"
            elif path == "triton" and not HAS_TRITON:
                row["verdict"] = "skipped: triton is not installed (auto takes the blockwise path)"
            else:
                began = time.perf_counter()
                finding = attention.self_check(combo["fn"], device, dtype, masked=combo["masked"],
                                               zdim=combo["zdim"], hdim=combo["hdim"])
                row.update(finding.as_dict(), seconds=round(time.perf_counter() - began, 2))
                row["verdict"] = ("passed" if finding.ok else
                                  f"FAILED: {finding.reason}; auto falls back to {finding.fallback}")
            report["results"].append(row)
            print(f"gpu_selfcheck: {combo['fn']} {path} z={combo['zdim']} h={combo['hdim']} "
                  f"{'masked' if combo['masked'] else 'unmasked'} {row['dtype']} ({', '.join(combo['tasks'])}): "
                  f"{row['verdict']}", flush=True)
            args.out.write_text(json.dumps(report, indent=2))  # a timeout keeps the rows so far
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True, help="JSON file to write")
    parser.add_argument("--dry-run", action="store_true", help="CPU, Triton's interpreter, tiny shapes")
    parser.add_argument("--budget-s", type=float, default=30.0, help="start no check after this many seconds")
    args = parser.parse_args(argv)
    report = run(args)
    return 1 if any(r["verdict"].startswith("FAILED") for r in report["results"]) else 0


if __name__ == "__main__":
    sys.exit(main())
