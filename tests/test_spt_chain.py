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


def test_megalodon_pretrains_fine_tunes_from_it_and_resumes(tmp_path, offline_env):
    """The SPT chain with model=megalodon: the fine-tuning run starts from the pretrained encoder
    (at a learning rate of 1e-12 its encoder weights stay the pretraining run's to 1e-9), and
    the same command with more steps resumes it from last.ckpt."""
    import torch

    pre_dir, ft_dir = tmp_path / "pretrain", tmp_path / "finetune"
    lodon = ["task=listops", "model=megalodon", *TINY]
    pre = train(compose_config([*lodon, "stage=pretrain"], output_dir=pre_dir))
    assert (pre["stage"], pre["steps"], pre["model"]) == ("pretrain", 2, "MegalodonEncoder")
    finetune = [*lodon, f"init_from={pre_dir}", "optim.lr=1e-12", "optim.warmup_init_lr=0.0"]
    ft = train(compose_config(finetune, output_dir=ft_dir))
    assert ft["init_from"] == pre["best_checkpoint"] and ft["model"] == "MegalodonEncoder"

    def encoder(path) -> dict:
        state = torch.load(path, map_location="cpu", weights_only=False)["state_dict"]
        return {k.removeprefix("encoder."): v for k, v in state.items() if k.startswith("encoder.")}

    pretrained, tuned = encoder(pre["best_checkpoint"]), encoder(ft_dir / "checkpoints" / "last.ckpt")
    assert pretrained.keys() == tuned.keys() and any(".move." in k for k in tuned)
    assert all(torch.allclose(pretrained[k], tuned[k], rtol=0, atol=1e-9) for k in tuned)
    resumed = train(compose_config([*finetune, "trainer.max_steps=4"], output_dir=ft_dir))
    assert resumed["steps"] == 4 and resumed["init_from"] == pre["best_checkpoint"]
