"""The rich progress bar of long data work (generation, decoding): counts items, shows time left."""

from __future__ import annotations

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn


def count_progress(enabled: bool) -> Progress:
    """A transient bar of done/total items; silent when ``enabled`` is False."""
    return Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
        disable=not enabled, transient=True,
    )
