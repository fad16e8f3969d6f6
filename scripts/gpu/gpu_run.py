"""One short training run of ``python -m lra_mega`` for the GPU check, measured in-process.

    python scripts/gpu/gpu_run.py --name listops --record runs.json [--loss-must-fall] [--dry-run] \
        -- experiment=listops_paper trainer.max_steps=200 ... hydra.run.dir=DIR

Runs the Hydra app with the given overrides (``hydra.run.dir`` is required: the run's files are
read from there), then adds one entry under ``--name`` to the JSON file ``--record``: exit status,
wall time, peak CUDA memory (allocated and reserved), steps/s from the throughput columns of
metrics.csv (the first one or two readings left out: compilation), the training loss at the start
and the end, whether it fell, and the run's ``results.json`` and ``metrics.csv`` as they are.
Exits 1 when the run failed, or, with ``--loss-must-fall`` outside a dry run, when the loss did
not fall (mean of the last quarter of logged steps not below the mean of the first five).

Killed by ``timeout`` (SIGTERM), it writes its entry at once, with the verdict "killed at the
time limit; no results.json", and exits 124: Lightning would catch the signal, stop the run and
exit 0 with nothing written, which read as "the run failed (exit status 0)".
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
import signal
import statistics
import sys
import time
import traceback
from pathlib import Path
from typing import Any

import torch


def run_app(overrides: list[str]) -> int:
    """``python -m lra_mega OVERRIDES`` in this process; its exit status."""
    from lra_mega.__main__ import main

    sys.argv = ["lra_mega", *overrides]
    try:
        main()
    except SystemExit as stop:
        return stop.code if isinstance(stop.code, int) else (0 if stop.code is None else 1)
    except BaseException:  # noqa: BLE001  (recorded: the check goes on)
        traceback.print_exc()
        return 1
    return 0


def column(rows: list[dict[str, str]], key: str) -> list[tuple[float, float]]:
    """(step, value) of every row where ``key`` is set."""
    return [(float(r["step"]), float(r[key])) for r in rows if r.get(key) not in (None, "")]


def metrics_summary(text: str) -> dict[str, Any]:
    """Loss at the start and end and steps/s, from a metrics.csv."""
    rows = list(csv.DictReader(io.StringIO(text)))
    out: dict[str, Any] = {}
    loss = [v for _, v in column(rows, "train/loss_step")]
    if loss:
        start, end = statistics.mean(loss[:5]), statistics.mean(loss[-max(1, len(loss) // 4):])
        out.update(logged_losses=len(loss), loss_start=start, loss_end=end, loss_fell=end < start)
    batches, times = column(rows, "train/batches"), column(rows, "train/time")
    skip = 2 if len(times) >= 5 else 1  # the first steps compile
    if len(times) >= skip + 2:  # cumulative training batches and seconds (validation excluded)
        (b0, b1), (t0, t1) = (batches[skip][1], batches[-1][1]), (times[skip][1], times[-1][1])
        if t1 > t0:
            out["steps_per_s"] = (b1 - b0) / (t1 - t0)
    return out


def collect(run_dir: Path, rc: int, wall: float) -> dict[str, Any]:
    """The entry for one run."""
    entry: dict[str, Any] = {"exit_status": rc, "wall_s": round(wall, 1), "run_dir": str(run_dir)}
    if torch.cuda.is_available():
        entry["peak_allocated_gib"] = torch.cuda.max_memory_allocated() / 2**30
        entry["peak_reserved_gib"] = torch.cuda.max_memory_reserved() / 2**30
        entry["gpu"] = torch.cuda.get_device_name(0)
    results = run_dir / "results.json"
    entry["results"] = json.loads(results.read_text()) if results.exists() else None
    metrics = sorted(run_dir.glob("csv/version_*/metrics.csv"))
    text = metrics[-1].read_text() if metrics else ""
    entry["metrics_csv"] = text
    entry.update(metrics_summary(text) if text else {})
    return entry


KILLED = "killed at the time limit"


def write_entry(record: Path, name: str, entry: dict[str, Any]) -> None:
    """Add ``entry`` under ``name`` to the JSON file ``record``."""
    runs = json.loads(record.read_text()) if record.exists() else {}
    runs[name] = entry
    record.write_text(json.dumps(runs, indent=2))


def on_kill(record: Path, name: str, run_dir: Path, overrides: list[str], start: float):
    """A SIGTERM handler that records the run as killed and ends the process (installed before
    Lightning's, which calls it after its own)."""

    def handler(signum, frame) -> None:  # noqa: ARG001
        entry = collect(run_dir, 124, time.perf_counter() - start)
        entry["overrides"] = overrides
        entry["verdict"] = f"{KILLED}; " + ("results.json written" if entry["results"] else "no results.json")
        write_entry(record, name, entry)
        print(f"gpu_run: {name}: {entry['verdict']}", flush=True)
        os._exit(124)

    return handler


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--name", required=True, help="key of this run in the record")
    parser.add_argument("--record", type=Path, required=True, help="JSON file the entry is added to")
    parser.add_argument("--loss-must-fall", action="store_true")
    parser.add_argument("--dry-run", action="store_true", help="the loss verdict is recorded, not judged")
    parser.add_argument("overrides", nargs="+", help="lra_mega overrides (after --)")
    args = parser.parse_args(argv)
    run_dir = next((Path(o.split("=", 1)[1]) for o in args.overrides if o.startswith("hydra.run.dir=")), None)
    if run_dir is None:
        parser.error("the overrides must set hydra.run.dir=DIR")

    start = time.perf_counter()
    signal.signal(signal.SIGTERM, on_kill(args.record, args.name, run_dir, args.overrides, start))
    rc = run_app(args.overrides)
    entry = collect(run_dir, rc, time.perf_counter() - start)
    entry["overrides"] = args.overrides
    failures = []
    if rc != 0 or entry["results"] is None:
        failures.append(f"the run failed (exit status {rc})")
    if args.loss_must_fall:
        entry["loss_must_fall"] = "not judged (dry run)" if args.dry_run else True
        if not args.dry_run and not entry.get("loss_fell"):
            failures.append("the training loss did not fall")
    entry["verdict"] = "; ".join(failures) or "ok"

    write_entry(args.record, args.name, entry)
    steps_s = f"{entry['steps_per_s']:.2f} steps/s" if "steps_per_s" in entry else "steps/s unknown"
    loss = (f"loss {entry['loss_start']:.4f} -> {entry['loss_end']:.4f}" if "loss_start" in entry
            else "no loss logged")
    print(f"gpu_run: {args.name}: {entry['verdict']}; {loss}; {steps_s}; "
          f"peak {entry.get('peak_allocated_gib', float('nan')):.2f} GiB", flush=True)
    return 0 if not failures else 1


if __name__ == "__main__":
    sys.exit(main())
