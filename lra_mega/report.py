"""Collect ``results.json`` files into a markdown table against the paper, and plot curves."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

TASK_ORDER = ("listops", "text", "retrieval", "image", "pathfinder", "pathx")
# Test accuracy (%) from DESIGN.md §4: Mega, Mega-chunk (Ma et al. 2022), S4 v2.
PAPER = {
    "listops": (63.14, 58.76, 59.60),
    "text": (90.43, 90.19, 86.82),
    "retrieval": (91.25, 90.97, 90.90),
    "image": (90.44, 85.80, 88.65),
    "pathfinder": (96.01, 94.41, 94.20),
    "pathx": (97.98, 93.81, 96.35),
}


def collect(runs_dir: str | Path) -> list[dict[str, Any]]:
    """Every ``results.json`` under ``runs_dir``, in task order, then by path."""
    results = []
    for path in sorted(Path(runs_dir).rglob("results.json")):
        result = json.loads(path.read_text())
        result["_dir"] = path.parent
        results.append(result)
    order = {t: i for i, t in enumerate(TASK_ORDER)}
    return sorted(results, key=lambda r: (order.get(r["task"], len(order)), str(r["_dir"])))


def _pct(x: float | None) -> str:
    return "–" if x is None else f"{100 * x:.2f}"


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "–"
    minutes, s = divmod(int(round(seconds)), 60)
    h, m = divmod(minutes, 60)
    return f"{h}:{m:02d}:{s:02d}"


def markdown_table(results: list[dict[str, Any]], runs_dir: str | Path) -> str:
    """One row per run: our test accuracy beside the paper's Mega / Mega-chunk / S4 (all %)."""
    lines = [
        "| task | run | test acc | best val acc | paper Mega | paper Mega-chunk | S4 | steps "
        "| wall time |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        paper = [f"{x:.2f}" for x in PAPER.get(r["task"], ())] or ["–"] * 3
        cells = [
            r["task"], str(Path(r["_dir"]).relative_to(runs_dir)), _pct(r.get("test_acc")),
            _pct(r.get("best_val_acc")), *paper, str(r.get("steps", "–")),
            _duration(r.get("wall_time_s")),
        ]
        lines.append(f"| {' | '.join(cells)} |")
    return "\n".join(lines) + "\n"


def read_curves(run_dir: str | Path) -> dict[str, list[tuple[int, float]]]:
    """(step, value) series of train loss and val accuracy from all csv-logger versions of a run."""
    series: dict[str, list[tuple[int, float]]] = {"train/loss_step": [], "val/acc": []}
    versions = sorted(Path(run_dir).glob("csv/version_*/metrics.csv"),
                      key=lambda p: int(p.parent.name.split("_")[-1]))
    for path in versions:
        with open(path, newline="") as f:
            for row in csv.DictReader(f):
                for key, points in series.items():
                    if row.get(key):
                        points.append((int(row["step"]), float(row[key])))
    return series


def plot_curves(results: list[dict[str, Any]], runs_dir: str | Path, out_png: str | Path) -> Path:
    """Training loss and validation accuracy against step, one line per run, to a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(12, 4.5))
    for r in results:
        label = f"{r['task']} ({Path(r['_dir']).relative_to(runs_dir)})"
        curves = read_curves(r["_dir"])
        for ax, key in ((ax_loss, "train/loss_step"), (ax_acc, "val/acc")):
            if curves[key]:
                steps, values = zip(*curves[key])
                ax.plot(steps, values, label=label, marker="." if len(steps) < 50 else None)
    ax_loss.set(title="training loss", xlabel="step", ylabel="cross-entropy")
    ax_acc.set(title="validation accuracy", xlabel="step", ylabel="accuracy")
    if results:
        ax_acc.legend(fontsize="small")
    fig.tight_layout()
    out_png = Path(out_png)
    fig.savefig(out_png, dpi=120)
    plt.close(fig)
    return out_png
