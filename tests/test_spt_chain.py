"""Self-pretraining then fine-tuning, end to end on tiny data for every task (the official-format
fixtures for text, retrieval and image): the pretraining run's results.json holds its loss and
masked accuracy, and the fine-tuning run starts from it."""

from __future__ import annotations

import pytest
from harness import TASKS, compose_config

from lra_mega.run.train import train

TINY = ["trainer=smoke", "logger=csv", "callbacks.progress_bar=null", "data.limit_examples=8",
        "trainer.max_steps=2", "trainer.val_check_interval=2", "optim.warmup_steps=0"]


@pytest.mark.parametrize("task", TASKS)
def test_pretrain_then_finetune_runs_for_every_task(task, data_overrides, tmp_path, offline_env):
    pre_dir, ft_dir = tmp_path / "pretrain", tmp_path / "finetune"
    pre = train(compose_config([f"task={task}", "stage=pretrain", *TINY, *data_overrides[task]],
                               output_dir=pre_dir))
    assert pre["stage"] == "pretrain" and pre["steps"] == 2 and pre["init_from"] is None
    assert pre["best_val_loss"] > 0 and 0.0 <= pre["test_masked_acc"] <= 1.0
    assert "best_val_acc" not in pre and "loss" in pre["best_checkpoint"]
    ft = train(compose_config([f"task={task}", *TINY, f"init_from={pre_dir}", *data_overrides[task]],
                              output_dir=ft_dir))
    assert ft["stage"] == "classify" and ft["steps"] == 2 and 0.0 <= ft["test_acc"] <= 1.0
    assert ft["init_from"] == pre["best_checkpoint"]
