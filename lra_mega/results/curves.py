"""Learning curves of runs from their csv logs: training loss and validation accuracy per step.

One line per run, each in its own colour; tasks with different class counts get their own
axes (a 10-class and a 2-class cross-entropy start at ln 10 and ln 2); the legend sits
outside the axes: the figure widens by the legend and grows taller when the legend would not fit.
"""

from __future__ import annotations

import csv
import math
import textwrap
from pathlib import Path
from typing import Any

from lra_mega.results.report import NUM_CLASSES

SERIES = ("train/loss_step", "val/acc")
CURVES_FILE = "curves.png"  # a run's own figure, in its directory


def read_curves(run_dir: str | Path) -> dict[str, list[tuple[int, float]]]:
    """(step, value) series of train loss and val accuracy of the run in ``run_dir``.

    Every (re)start writes a new ``csv/version_<k>``. A later version replaces the earlier
    points at or after its first step: a resumed run continues the line (and overrides what
    the killed run logged after its last checkpoint), a run started over (``resume=never``)
    replaces the old run instead of being joined to it. Only the training steps count: the
    ThroughputMonitor logs validation and test rows under their own batch count.
    """
    series: dict[str, list[tuple[int, float]]] = {key: [] for key in SERIES}
    versions = sorted(Path(run_dir).glob("csv/version_*/metrics.csv"),
                      key=lambda p: int(p.parent.name.split("_")[-1]))
    for path in versions:
        with open(path, newline="") as f:
            rows = [r for r in csv.DictReader(f) if r.get("step") and any(r.get(k) for k in SERIES)]
        if not rows:
            continue
        start = min(int(r["step"]) for r in rows)
        for key, points in series.items():
            points[:] = [p for p in points if p[0] < start]
            points.extend((int(r["step"]), float(r[key])) for r in rows if r.get(key))
    return series


def run_colors(n: int) -> list[tuple[float, ...]]:
    """``n`` distinct colours: tab10 up to 10 runs, tab20 up to 20, then evenly spaced hues."""
    from matplotlib import colormaps

    if n <= 10:
        return [colormaps["tab10"](i) for i in range(n)]
    if n <= 20:
        return [colormaps["tab20"](i) for i in range(n)]
    return [colormaps["turbo"](i / (n - 1)) for i in range(n)]


def run_label(result: dict[str, Any]) -> str:
    """Legend entry: run directory, preset and seed (each unless the directory already names it),
    whether it is limited or at chance; wrapped at 60 characters."""
    name = str(result.get("_name", result.get("task")))
    parts = [name]
    if result.get("experiment") and name.split("/")[0].split("+")[0] != result["experiment"]:
        parts.append(str(result["experiment"]))
    if result.get("seed") is not None and not name.endswith(f"seed{result['seed']}"):
        parts.append(f"seed {result['seed']}")
    label = " · ".join(parts).replace(",", ", ")
    if result.get("limited"):
        label += " (limited)"
    if result.get("at_chance"):
        label += " (at chance)"
    return textwrap.fill(label, 60, subsequent_indent="  ")


def curves_figure(results: list[dict[str, Any]]):
    """The matplotlib Figure: rows = class counts, columns = training loss, validation accuracy."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    classes = sorted({NUM_CLASSES.get(r["task"], 0) for r in results}, reverse=True) or [0]
    fig, axes = plt.subplots(len(classes), 2, figsize=(12, 4 * len(classes)), squeeze=False,
                             layout="constrained")
    row_of = {c: i for i, c in enumerate(classes)}
    for c, (ax_loss, ax_acc) in zip(classes, axes):
        named = f"{c} classes" if c else "classes unknown"
        ax_loss.set(title=f"training loss, {named}", xlabel="step", ylabel="cross-entropy")
        ax_acc.set(title=f"validation accuracy, {named}", xlabel="step", ylabel="accuracy")
        if c:
            ax_loss.axhline(math.log(c), color="grey", linestyle=":", linewidth=1)
            ax_acc.axhline(1.0 / c, color="grey", linestyle=":", linewidth=1)
    handles, labels = [], []
    for result, color in zip(results, run_colors(len(results))):
        curves = read_curves(result["_dir"])
        ax_row = axes[row_of[NUM_CLASSES.get(result["task"], 0)]]
        style = "--" if result.get("at_chance") else "-"
        line = None
        for ax, key in zip(ax_row, SERIES):
            if curves[key]:
                steps, values = zip(*curves[key])
                line, = ax.plot(steps, values, color=color, linestyle=style,
                                marker="." if len(steps) < 50 else None)
        if line is not None:
            handles.append(line)
            labels.append(run_label(result))
    fig.suptitle("one line per run (dashed: never left chance, dotted: chance level); "
                 "results.md gives mean ± std over seeds", fontsize="medium", x=0.01, ha="left")
    if handles:
        legend = fig.legend(handles, labels, loc="outside right upper", fontsize="small")
        width, height = legend.get_window_extent(fig.canvas.get_renderer()).size / fig.dpi
        fig.set_figwidth(12 + width)  # the axes keep their width beside the legend
        if height + 0.5 > fig.get_figheight():  # many runs: grow the figure rather than clip the legend
            fig.set_figheight(height + 0.5)
    return fig


def plot_curves(results: list[dict[str, Any]], out_png: str | Path) -> Path:
    """Write :func:`curves_figure` to a PNG."""
    import matplotlib.pyplot as plt

    fig = curves_figure(results)
    out_png = Path(out_png)
    fig.savefig(out_png, dpi=120)
    plt.close(fig)
    return out_png


def plot_run_curves(run_dir: str | Path, result: dict[str, Any]) -> Path:
    """A run's own ``curves.png`` in ``run_dir``, labelled by the directory's name."""
    run_dir = Path(run_dir)
    return plot_curves([{**result, "_dir": run_dir, "_name": run_dir.name}], run_dir / CURVES_FILE)
