"""Exact resume: a run killed mid-epoch and re-run equals the uninterrupted run, loss for loss;
a longer trainer.max_steps continues the LR schedule by the documented rule, without a jump."""

from __future__ import annotations

import json

import pytest
import torch
from harness import SMOKE, Crash, compose_config, csv_column

from lra_mega.run.train import train

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
    # rule (docs/RESUME.md): from the last LR used, m = lr(3) / peak, linearly to 0 at the new end:
    # lr(t) = peak * m * (T - t) / (T - s + 1), s = 4, T = 8
    m = lr_before[3] / 1e-2
    for t in range(4, 8):
        assert lr_after[t] == pytest.approx(1e-2 * m * (8 - t) / (8 - 4 + 1), rel=1e-6)
    assert lr_after[4] < lr_before[3]  # no jump up
    second = json.loads((run_dir / "results.json").read_text())
    assert second["steps"] == 8
    assert second["wall_time_s"] > first["wall_time_s"]  # accumulates over invocations


@pytest.mark.parametrize("saved_at", [4, 3], ids=["mid_epoch", "epoch_end"])
def test_killed_after_a_timed_checkpoint_continues_exactly(tmp_path, offline_env, saved_at):
    """last.ckpt written by the timed checkpoint (in on_train_batch_end, between validations) resumes
    exactly: the batch it was taken after counts as done, in the epoch and in the shuffled order."""
    run = [*RUN, "trainer.val_check_interval=3"]  # validation at the end of each 3-batch epoch
    whole = tmp_path / "whole"
    train(compose_config(run, output_dir=whole))
    expected = csv_column(whole, "train/loss_step")

    cut = tmp_path / "cut"
    # the same save path as the 10-minute timer, triggered by step so the test knows where it lands
    timed = ["callbacks.timed_checkpoint.train_time_interval=null",
             f"+callbacks.timed_checkpoint.every_n_train_steps={saved_at}"]
    crash = ["+callbacks.crash._target_=harness.CrashAt", f"+callbacks.crash.step={saved_at + 1}"]
    if saved_at == 3:  # no validation at step 3, whose last.ckpt would replace the timed one
        timed += ["trainer.val_check_interval=null", "trainer.check_val_every_n_epoch=2"]
    with pytest.raises(Crash):
        train(compose_config([*run, *timed, *crash], output_dir=cut))
    ckpt = torch.load(cut / "checkpoints" / "last.ckpt", weights_only=False)
    assert ckpt["global_step"] == saved_at
    batches = ckpt["loops"]["fit_loop"]["epoch_loop.batch_progress"]["current"]
    assert batches["processed"] == batches["completed"] + 1  # written in on_train_batch_end
    results = train(compose_config(run, output_dir=cut))
    assert results["steps"] == 6
    resumed = csv_column(cut, "train/loss_step", version=1)
    assert sorted(resumed) == list(range(saved_at, 6))
    for step, loss in resumed.items():
        assert loss == expected[step], (step, loss, expected[step])
    assert csv_column(cut, "val/acc", version=1) == {
        s: v for s, v in csv_column(whole, "val/acc").items() if s >= saved_at}
