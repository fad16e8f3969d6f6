"""The data progress bar shows the rate and the time left, not only the elapsed time."""

from __future__ import annotations

from rich.progress import ProgressSample, TimeRemainingColumn

from lra_mega.data.progress import RateColumn, count_progress


def test_bar_has_rate_and_time_left_columns():
    bar = count_progress(True, unit="images")
    assert any(isinstance(c, RateColumn) for c in bar.columns)
    assert any(isinstance(c, TimeRemainingColumn) for c in bar.columns)


def test_rate_column_renders_items_per_second():
    bar = count_progress(True, unit="images")
    bar.add_task("gen", total=1000)
    task = bar.tasks[0]
    assert RateColumn("images").render(task).plain == "? images/s"
    # rich estimates the speed from timestamped samples: 1000 images in 2 s
    task._progress.extend([ProgressSample(10.0, 0), ProgressSample(12.0, 1000)])
    assert RateColumn("images").render(task).plain == "500 images/s"
