"""Exact resume: a run killed mid-epoch and re-run equals the uninterrupted run, loss for loss;
a longer trainer.max_steps continues the LR schedule by the documented rule, without a jump."""

from __future__ import annotations

import json

import pytest
import torch
from harness import SMOKE, Crash, compose_config, csv_column

from lra_mega.train import train

# 12 training examples in batches of 4: 3 batches an epoch; validation (and last.ckpt) every 2
RUN = [*SMOKE, "trainer.max_steps=6", "trainer.val_check_interval=2", "test=false",
       "data.limit_examples.train=12", "data.limit_examples.val=4"]


@pytest.mark.parametrize("order", [[], ["data.group_by_length=true"]], ids=["shuffle", "grouped"])
def test_killed_run_continues_exactly(tmp_path, offline_env, order):
    run = [*RUN, *order]
    whole = tmp_path / "whole"
    train(compose_config(run, output_dir=whole))
    expected = csv_column(whole, "train/loss_step")
    assert sorted(expected) == list(range(6))

    cut = tmp_path / "cut"
    crash = ["+callbacks.crash._target_=harness.CrashAt", "+callbacks.crash.step=5"]
    with pytest.raises(Crash):
        train(compose_config([*run, *crash], output_dir=cut))  # dies after update 5, last.ckpt at 4
    results = train(compose_config(run, output_dir=cut))
    assert results["steps"] == 6
    resumed = csv_column(cut, "train/loss_step", version=1)
    # epoch 1, batch 1: the position in the shuffled order and the dropout RNG are restored
    assert sorted(resumed) == [4, 5]
    for step, loss in resumed.items():
        assert loss == expected[step], (step, loss, expected[step])
    first = csv_column(cut, "train/loss_step", version=0)
    assert first and all(first[s] == expected[s] for s in first)
    # the best validation accuracy goes on from before the cut, through the checkpoint
    best = max(csv_column(whole, "val/acc").values())
    state = torch.load(cut / "checkpoints" / "last.ckpt", weights_only=False)["state_dict"]
    assert state["val_acc_best.max_value"].item() == pytest.approx(best)


def test_longer_max_steps_continues_the_decay(tmp_path, offline_env):
    run_dir = tmp_path / "run"
    base = [*SMOKE, "trainer.val_check_interval=2", "test=false", "optim.warmup_steps=2", "optim.lr=1e-2",
            "data.limit_examples.val=4"]
    first = train(compose_config([*base, "trainer.max_steps=4"], output_dir=run_dir))
    lr_before = csv_column(run_dir, "lr/all")
    train(compose_config([*base, "trainer.max_steps=8"], output_dir=run_dir))
    lr_after = csv_column(run_dir, "lr/all", version=1)
    assert sorted(lr_after) == [4, 5, 6, 7]
    # rule (README, Resume): from the last LR used, m = lr(3) / peak, linearly to 0 at the new end:
    # lr(t) = peak * m * (T - t) / (T - s + 1), s = 4, T = 8
    m = lr_before[3] / 1e-2
    for t in range(4, 8):
        assert lr_after[t] == pytest.approx(1e-2 * m * (8 - t) / (8 - 4 + 1), rel=1e-6)
    assert lr_after[4] < lr_before[3]  # no jump up
    second = json.loads((run_dir / "results.json").read_text())
    assert second["steps"] == 8
    assert second["wall_time_s"] > first["wall_time_s"]  # accumulates over invocations
