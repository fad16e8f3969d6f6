"""The rich progress bar of long data work (generation, decoding): counts items, shows the rate
and the time left."""

from __future__ import annotations

from rich.progress import (BarColumn, MofNCompleteColumn, Progress, ProgressColumn, Task, TextColumn,
                           TimeElapsedColumn, TimeRemainingColumn)
from rich.text import Text


class RateColumn(ProgressColumn):
    """Items per second (``task.speed``, rich's moving average), e.g. ``812 items/s``."""

    def __init__(self, unit: str = "items") -> None:
        super().__init__()
        self.unit = unit

    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        shown = "?" if speed is None else (f"{speed:,.0f}" if speed >= 10 else f"{speed:.2f}")
        return Text(f"{shown} {self.unit}/s", style="progress.data.speed")


def count_progress(enabled: bool, unit: str = "items") -> Progress:
    """A transient bar of done/total items with rate, elapsed time and time left (ETA);
    silent when ``enabled`` is False."""
    return Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), RateColumn(unit),
        TimeElapsedColumn(), TextColumn("eta"), TimeRemainingColumn(),
        disable=not enabled, transient=True,
    )
