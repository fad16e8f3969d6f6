#!/usr/bin/env python
"""Training samples/s of the ``_lite`` presets: this checkout against an earlier revision.

    python scripts/bench/benchmark_lite.py [--tasks listops pathfinder pathx] [--before REV]
                                     [--steps 80] [--threads N] [--out DIR]

Each task trains ``--steps`` steps of ``experiment=<task>_lite`` through ``python -m lra_mega``
(the real data, loader and Lightning loop), once with this checkout and once with the code of
``--before`` (extracted with ``git archive``), which runs the same model, batch and data as
explicit ``task=<task> model.*=… data.batch_size=…`` overrides (that revision has no lite
presets). Samples/s is the ThroughputMonitor's reading over the last ``--window`` steps, so
start-up and compilation are left out. Both runs use the same ``--threads`` (default: all
cores), one after the other; the load average is recorded, and so are a one-thread matmul and
memory-copy rate taken just before and after each run (a shared host's own speed drifts: it can
run 2x slower for an hour, so a ratio means something only where those rates held). Writes
DIR/lite_speed.{json,md} (default docs/benchmarks/).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import subprocess
import sys
import tarfile
import tempfile
import time
from io import BytesIO
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # scripts/ (the scripts are run as files)
from out_paths import require_writable  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
OUT = ROOT / "docs" / "benchmarks"


def lite_overrides(task: str) -> list[str]:
    """The lite preset's model and batch as plain overrides any revision understands."""
    from hydra import compose, initialize_config_module

    with initialize_config_module("lra_mega.configs", version_base="1.3"):
        cfg = compose("config", overrides=[f"experiment={task}_lite"])
    out = [f"task={task}", "trainer=cpu"]
    for key, value in cfg.model.items():
        if key != "_target_" and key != "checkpoint_blocks":
            out.append(f"model.{key}={'null' if value is None else value}")
    for key in ("batch_size", "seq_len"):
        if key in cfg.data:
            out.append(f"data.{key}={cfg.data[key]}")
    return out + [f"optim.lr={cfg.optim.lr}"]


def extract(rev: str, dest: Path) -> Path:
    """The tree of ``rev`` under ``dest`` (git archive; nothing is checked out here)."""
    blob = subprocess.run(["git", "-C", str(ROOT), "archive", "--format=tar", rev],
                          check=True, capture_output=True).stdout
    with tarfile.open(fileobj=BytesIO(blob)) as tar:
        tar.extractall(dest, filter="data")
    return dest


def host_gauge(seconds: float = 1.0) -> dict[str, float]:
    """The host's one-thread speed now: a float32 matmul in cache (GFLOP/s) and a 256 MB copy
    (GB/s, memory bound like most of a small model's step). Gauges of its drift between runs."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    a, b = torch.randn(256, 256), torch.randn(256, 256)
    src, dst = torch.ones(64 * 2**20), torch.empty(64 * 2**20)
    rates = {}
    for name, work, amount in (("gflops", lambda: a @ b, 2 * 256**3 / 1e9),
                               ("copy_gbps", lambda: dst.copy_(src), 2 * src.nbytes / 1e9)):
        n, t0 = 0, time.perf_counter()
        while time.perf_counter() - t0 < seconds:
            work()
            n += 1
        rates[name] = round(amount * n / (time.perf_counter() - t0), 1)
    torch.set_num_threads(threads)
    return rates


def run(code: Path, overrides: list[str], steps: int, window: int, threads: int, rundir: Path) -> dict:
    """Train ``steps`` steps with the package at ``code``; samples/s of the last window."""
    args = [sys.executable, "-m", "lra_mega", *overrides, f"trainer.max_steps={steps}",
            f"trainer.val_check_interval={steps}", "trainer.limit_val_batches=1", "test=false",
            # one reading, at the last step: it covers the last `window` steps, after compilation
            # and the early recompilations of variable lengths
            "logger=csv", f"trainer.log_every_n_steps={steps}", f"callbacks.throughput.window_size={window}",
            "trainer.num_sanity_val_steps=0", f"hydra.run.dir={rundir}"]
    env = {**os.environ, "PYTHONPATH": str(code), "OMP_NUM_THREADS": str(threads),
           "WANDB_MODE": "offline", "LRA_MEGA_ROOT": str(rundir)}
    gauge = [host_gauge()]
    t0 = time.perf_counter()
    proc = subprocess.run(args, cwd=code, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    gauge.append(host_gauge())
    if proc.returncode:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        raise SystemExit(f"benchmark run failed ({code}): {' | '.join(tail)}")
    rows = list(csv.DictReader(open(next(rundir.glob("csv/version_*/metrics.csv")))))
    speed = [r for r in rows if r.get("train/device/samples_per_sec")]
    if not speed:
        raise SystemExit(f"no throughput reading in {rundir}: raise --steps above --window")
    last = speed[-1]
    return {"samples_per_s": round(float(last["train/device/samples_per_sec"]), 2),
            "tokens_per_s": round(float(last.get("train/device/items_per_sec") or 0.0), 1),
            "wall_s": round(wall, 1), "host": gauge}


def _gauge(run: dict, key: str) -> str:
    return " → ".join(str(g.get(key, "–")) for g in run.get("host", [{}]))


def markdown(result: dict) -> str:
    lines = [
        "# `_lite` training speed: this code vs before",
        "",
        f"Machine: {result['machine']}; torch {result['torch']}; {result['threads']} torch thread(s); "
        f"load average before / after: {result['load_before']} / {result['load_after']}.",
        "",
        f"Samples/s of training (ThroughputMonitor, last {result['window']} of {result['steps']} steps: "
        f"start-up and compilation left out), real data through `python -m lra_mega`. Before = "
        f"revision `{result['before']}` given the same model and batch as overrides. Host gauges, timed on "
        f"one thread just before and just after each run (before run → after run): a matmul in cache "
        f"(GFLOP/s) and a 256 MB copy (GB/s); where they differ between the two runs, the host's speed "
        f"drifted.",
        "",
        "| preset | before samples/s | after samples/s | speed-up | before tokens/s | after tokens/s "
        "| host GFLOP/s before / after | host copy GB/s before / after |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in result["rows"]:
        lines.append(f"| {r['preset']} | {r['before']['samples_per_s']} | {r['after']['samples_per_s']} | "
                     f"{r['speedup']}× | {r['before']['tokens_per_s']:.0f} | {r['after']['tokens_per_s']:.0f} | "
                     f"{_gauge(r['before'], 'gflops')} / {_gauge(r['after'], 'gflops')} | "
                     f"{_gauge(r['before'], 'copy_gbps')} / {_gauge(r['after'], 'copy_gbps')} |")
    lines += ["", f"Reproduce: `python scripts/bench/benchmark_lite.py --before {result['before']} "
                  f"--threads {result['threads']}`.", ""]
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tasks", nargs="+", default=["listops", "pathfinder", "pathx"])
    p.add_argument("--before", default="e915eef", help="revision to compare with (default: the code "
                   "before the CPU training work)")
    p.add_argument("--steps", type=int, default=80, help="training steps per run")
    p.add_argument("--window", type=int, default=60, help="steps the reading averages over (the "
                   "length-grouped batches vary in length: average over many)")
    p.add_argument("--pathx-steps", type=int, default=12, help="training steps of the Path-X runs")
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    p.add_argument("--out", type=Path, default=OUT)
    args = p.parse_args()
    if args.window >= args.steps:
        p.error(f"--window {args.window} must be below --steps {args.steps}")
    require_writable("benchmark_lite", "--out", args.out)
    import torch

    load_before = os.getloadavg()[0]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        old = extract(args.before, tmp / "before")
        for task in args.tasks:
            shared = lite_overrides(task)
            steps = args.steps if task != "pathx" else args.pathx_steps  # a Path-X step is ~16x longer
            window = min(args.window, steps - 4)
            warmup = f"optim.warmup_steps={steps // 2}"  # a short run still needs warmup < max_steps
            before = run(old, [*shared, warmup], steps, window, args.threads, tmp / f"{task}-before")
            after = run(ROOT, [f"experiment={task}_lite", warmup], steps, window, args.threads,
                        tmp / f"{task}-after")
            row = {"preset": f"{task}_lite", "overrides": shared, "steps": steps, "before": before,
                   "after": after, "speedup": round(after["samples_per_s"] / before["samples_per_s"], 2)}
            print(json.dumps(row), flush=True)
            rows.append(row)
    result = {"machine": f"{platform.machine()} {os.cpu_count()} CPUs, {platform.platform()}",
              "torch": torch.__version__, "threads": args.threads, "before": args.before,
              "steps": args.steps, "window": args.window, "load_before": round(load_before, 2),
              "load_after": round(os.getloadavg()[0], 2), "rows": rows}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "lite_speed.json").write_text(json.dumps(result, indent=2) + "\n")
    (args.out / "lite_speed.md").write_text(markdown(result))
    print(f"wrote {args.out / 'lite_speed.md'}")


if __name__ == "__main__":
    main()
