"""Progress a log file can show, and the warning a CPU user needs before a months-long run.

:class:`LogProgress` writes one line every N steps (step, loss, accuracy, samples/s, time left)
and one per validation when the output is not a terminal (``nohup … > log``, SLURM), where
Lightning's progress bar prints nothing useful. :class:`CpuRunEstimate` measures the first
steps of a run on the CPU and, when the whole run would take longer than a few hours, says how
long and which ``_lite`` preset to run instead.
"""

from __future__ import annotations

import logging
import math
import statistics
import sys
import time
from collections.abc import Mapping
from typing import Any

import lightning as L
import torch

from lra_mega.run.callbacks import total_steps

log = logging.getLogger(__name__)

WHEN = ("auto", "always", "never")


def duration(seconds: float) -> str:
    """``3d 04h``, ``2h 05m``, ``4m 10s`` or ``12s``."""
    if not math.isfinite(seconds):
        return "?"
    s = int(round(max(0.0, seconds)))
    days, s = divmod(s, 86400)
    hours, s = divmod(s, 3600)
    minutes, s = divmod(s, 60)
    if days:
        return f"{days}d {hours:02d}h"
    if hours:
        return f"{hours}h {minutes:02d}m"
    return f"{minutes}m {s:02d}s" if minutes else f"{s}s"


def _total_steps(trainer: L.Trainer) -> int:
    return int(total_steps(trainer))


def _metric(metrics: Mapping[str, Any], *keys: str) -> float | None:
    for key in keys:
        if key in metrics:
            return float(metrics[key])
    return None


def _is_terminal() -> bool:
    return bool(getattr(sys.stdout, "isatty", lambda: False)())


class LogProgress(L.Callback):
    """One log line every ``every_n_steps`` optimizer steps and one per validation.

    ``when``: ``auto`` writes the lines only when standard output is not a terminal (a terminal
    has the progress bar), ``always`` / ``never`` as they say. Samples/s is measured over the
    steps since the previous line; the time left extrapolates the average step time of this
    invocation, validations included.
    """

    def __init__(self, every_n_steps: int = 50, when: str = "auto") -> None:
        if isinstance(every_n_steps, bool) or not isinstance(every_n_steps, int) or every_n_steps < 1:
            raise ValueError(f"callbacks.log_progress.every_n_steps={every_n_steps!r} must be an "
                             f"integer >= 1")
        if when not in WHEN:
            raise ValueError(f"callbacks.log_progress.when={when!r}; choose one of: {', '.join(WHEN)}")
        self.every_n_steps, self.when = every_n_steps, when
        self._start: tuple[float, int] | None = None
        self._window: tuple[float, int] = (0.0, 0)
        self._samples = 0
        self._last_step = -1

    @property
    def active(self) -> bool:
        return self.when == "always" or (self.when == "auto" and not _is_terminal())

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        now = time.perf_counter()
        self._start = (now, trainer.global_step)
        self._window = (now, trainer.global_step)
        self._samples = 0
        if self.active and trainer.is_global_zero:
            log.info("training from step %d to %d; a line every %d steps", trainer.global_step,
                     _total_steps(trainer), self.every_n_steps)

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any,
                           batch: Any, batch_idx: int) -> None:
        label = batch.get("label") if isinstance(batch, Mapping) else None
        self._samples += len(label) if label is not None else 0
        step = trainer.global_step
        if (not self.active or not trainer.is_global_zero or self._start is None
                or step % self.every_n_steps or step == self._last_step):
            return
        self._last_step = step
        now = time.perf_counter()
        started, first = self._start
        window_time, window_step = self._window
        total = _total_steps(trainer)
        rate = self._samples * trainer.world_size / max(now - window_time, 1e-9)
        per_step = (now - started) / max(1, step - first)
        metrics = trainer.callback_metrics
        loss = _metric(metrics, "train/loss_step", "train/loss")
        acc = _metric(metrics, "train/acc_step", "train/acc", "train/masked_acc_step", "train/masked_acc")
        log.info(
            "step %d/%d (%.1f%%) | loss %s | acc %s | %.1f samples/s | %.2f s/step | elapsed %s | left %s",
            step, total, 100.0 * step / max(1, total), "?" if loss is None else f"{loss:.4f}",
            "?" if acc is None else f"{acc:.3f}", rate, (now - window_time) / max(1, step - window_step),
            duration(now - started), duration(per_step * (total - step)),
        )
        self._window = (now, step)
        self._samples = 0

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking or not self.active or not trainer.is_global_zero:
            return
        metrics = trainer.callback_metrics
        parts = [f"{key} {float(metrics[key]):.4f}" for key in ("val/loss", "val/acc", "val/acc_best",
                                                                  "val/masked_acc", "val/loss_best")
                 if key in metrics]
        log.info("validation at step %d: %s", trainer.global_step, " | ".join(parts) or "no metrics")


def _preset(task: str) -> str:
    """The run's preset: the ``experiment`` Hydra composed, else the task."""
    from hydra.core.hydra_config import HydraConfig

    if HydraConfig.initialized():
        return HydraConfig.get().runtime.choices.get("experiment") or task
    return task


def is_lite(preset: str) -> bool:
    """``listops_lite``, ``pathfinder_lite_spt``, ``text_megalodon_lite``: a CPU-sized preset."""
    return preset.endswith("_lite") or "_lite_" in preset


def lite_preset(task: str, preset: str) -> str:
    """The ``_lite`` preset to suggest instead of ``preset``: its own (``<preset>_lite``) where one
    is shipped, else the task's."""
    from importlib import resources

    experiments = resources.files("lra_mega.configs") / "experiment"
    for name in (f"{preset}_lite", f"{task}_lite"):
        if (experiments / f"{name}.yaml").is_file():
            return name
    return f"{task or '<task>'}_lite"


class CpuRunEstimate(L.Callback):
    """On the CPU, one warning when the whole run would take longer than ``max_hours``: the
    seconds per step, the time it takes, and (unless the run is a ``_lite`` preset already) the
    ``_lite`` command to run instead. The run itself goes on.

    The estimate is the median of the settled steps' times: each step from the end of the one
    before, the first step and any step that a validation interrupts left out, so the one or two
    steps that compile a new graph (torch.compile meets a second length) do not count. It is made
    after ``after_steps`` timed steps, or after ``after_seconds`` with at least
    ``MIN_TIMED_STEPS`` timed, whichever comes first. ``preset``: the run's preset (default: the
    experiment Hydra composed, else ``task``)."""

    MIN_TIMED_STEPS = 3

    def __init__(self, task: str = "", after_steps: int = 20, max_hours: float = 3.0,
                 after_seconds: float = 60.0, preset: str | None = None) -> None:
        if isinstance(after_steps, bool) or not isinstance(after_steps, int) or after_steps < 2:
            raise ValueError(f"callbacks.cpu_run_estimate.after_steps={after_steps!r} must be an "
                             f"integer >= 2")
        self.task, self.after_steps, self.max_hours = task, after_steps, float(max_hours)
        self.after_seconds = float(after_seconds)
        self.preset = preset
        self._last: float | None = None  # end of the previous step (None: the next one is not timed)
        self._started: float | None = None
        self._times: list[float] = []
        self.seconds_per_step: float | None = None

    @staticmethod
    def on_cpu(pl_module: L.LightningModule) -> bool:
        return pl_module.device.type == "cpu"

    def on_validation_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._last = None  # the step after a validation would count its time

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any,
                           batch: Any, batch_idx: int) -> None:
        if self.seconds_per_step is not None or not self.on_cpu(pl_module):
            return
        now = time.perf_counter()
        if self._last is not None:
            self._times.append(now - self._last)
        self._last = now
        if self._started is None:  # the first step compiles and warms caches: timing starts after it
            self._started = now
            return
        timed = len(self._times)
        if timed < self.after_steps and (now - self._started < self.after_seconds or timed < self.MIN_TIMED_STEPS):
            return  # a slow run is judged after a minute: a paper step can take a minute and more
        self.seconds_per_step = statistics.median(self._times)
        self._warn(trainer)

    def _warn(self, trainer: L.Trainer) -> None:
        whole = self.seconds_per_step * _total_steps(trainer)
        if whole <= self.max_hours * 3600 or not trainer.is_global_zero:
            return
        preset = self.preset or _preset(self.task)
        head = (f"no GPU: this run measures {self.seconds_per_step:.2f} s/step on the CPU "
                f"({torch.get_num_threads()} threads; the median of {len(self._times)} settled steps), so its "
                f"{_total_steps(trainer)} steps take about {duration(whole)} ({whole / 86400:.1f} days).")
        if is_lite(preset):
            advice = (f"{preset} is already the lite preset: lower trainer.max_steps to end sooner, or run it "
                      "on a GPU (docs/CPU_RUNS.md).")
        else:
            advice = (f"On a CPU run the lite preset instead, which ends within the hour: `python -m lra_mega "
                      f"experiment={lite_preset(self.task, preset)}` (docs/CPU_RUNS.md, docs/RESULTS.md).")
        log.warning("%s %s This run goes on.", head, advice)
