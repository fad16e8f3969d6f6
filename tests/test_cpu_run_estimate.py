"""The CPU run estimate (lra_mega.run.progress.CpuRunEstimate) on scripted step times.

Issue 33: ``python -m lra_mega experiment=listops_lite seed=3 trainer.max_steps=3600
trainer.val_check_interval=900`` on a 2-core CPU was told "8.48 s/step … about 8h 28m … On a
CPU run the lite preset instead": the estimate timed torch.compile's recompilation for the second
length, and the advice named the preset being run. Its steps settle at about 2 s.
"""

from __future__ import annotations

import logging
from types import SimpleNamespace

import pytest
import torch

from lra_mega.run import progress
from lra_mega.run.progress import CpuRunEstimate

# the first step compiles (30 s), the second length recompiles (45 s), then 2 s a step
LISTOPS_LITE_STEPS = [30.0, 2.0, 45.0] + [2.0] * 40


def estimate(step_times: list[float], preset: str, task: str = "listops", max_steps: int = 3600,
             validate_after: int | None = None, **kwargs) -> tuple[CpuRunEstimate, list[str]]:
    """Feed ``step_times`` (seconds each) to the callback; its estimate and the warnings it logged."""
    callback = CpuRunEstimate(task=task, preset=preset, **kwargs)
    trainer = SimpleNamespace(global_step=0, max_steps=max_steps, is_global_zero=True)
    module = SimpleNamespace(device=torch.device("cpu"))
    clock = [100.0]
    records: list[str] = []
    handler = logging.Handler()
    handler.emit = lambda record: records.append(record.getMessage())
    progress.log.addHandler(handler)
    try:
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(progress.time, "perf_counter", lambda: clock[0])
            for step, seconds in enumerate(step_times, start=1):
                clock[0] += seconds
                trainer.global_step = step
                callback.on_train_batch_end(trainer, module, None, {}, step - 1)
                if validate_after == step:
                    clock[0] += 500.0  # a validation between two steps is no step's time
                    callback.on_validation_start(trainer, module)
    finally:
        progress.log.removeHandler(handler)
    return callback, [r for r in records if "no GPU" in r]


def test_listops_lite_command_of_the_issue_times_settled_steps_and_warns_nothing():
    callback, warnings = estimate(LISTOPS_LITE_STEPS, preset="listops_lite")
    assert callback.seconds_per_step == pytest.approx(2.0)  # not 8.48: the recompilation is left out
    assert warnings == []  # 3,600 × 2 s = 2 h: under the 3 hours


def test_a_lite_run_over_the_limit_is_not_told_to_run_lite():
    _, warnings = estimate(LISTOPS_LITE_STEPS, preset="listops_lite", max_hours=1.0)
    assert len(warnings) == 1, warnings
    assert "2.00 s/step" in warnings[0] and "about 2h 00m" in warnings[0]
    assert "experiment=listops_lite" not in warnings[0] and "run the lite preset instead" not in warnings[0]
    assert "listops_lite is already the lite preset" in warnings[0] and "trainer.max_steps" in warnings[0]


@pytest.mark.parametrize("preset, suggested", [("listops", "listops_lite"), ("listops_paper", "listops_lite"),
                                               ("listops_megalodon", "listops_megalodon_lite")])
def test_a_full_preset_is_told_its_lite_command(preset, suggested):
    _, warnings = estimate([60.0] + [10.0] * 30, preset=preset)
    assert len(warnings) == 1 and "10.00 s/step" in warnings[0]
    assert f"`python -m lra_mega experiment={suggested}`" in warnings[0]


def test_a_step_with_a_validation_inside_is_not_timed():
    callback, _ = estimate([30.0] + [2.0] * 5, preset="listops_lite", validate_after=3, after_steps=4,
                           after_seconds=1e4)
    assert callback.seconds_per_step == pytest.approx(2.0) and len(callback._times) == 4


def test_a_slow_run_is_judged_after_a_minute_on_three_settled_steps():
    callback, _ = estimate([100.0, 70.0, 40.0, 40.0, 40.0, 40.0], preset="listops_lite")
    assert callback.seconds_per_step == pytest.approx(40.0) and len(callback._times) == 3
