"""End-to-end runs: every task's smoke run through the CLI, and a run that really learns."""

from __future__ import annotations

import csv
import json
import math

import pytest
from harness import TASKS, compose_config

from lra_mega.run.train import train


@pytest.mark.parametrize("task", TASKS)
def test_smoke_run_writes_results(task, run_cli, data_overrides, tmp_path):
    run_dir = tmp_path / "run"
    proc = run_cli(f"task={task}", "trainer=smoke", f"hydra.run.dir={run_dir}", *data_overrides[task])
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads((run_dir / "results.json").read_text())
    assert results["task"] == task
    assert results["steps"] == 6  # trainer=smoke: max_steps 6
    assert 0.0 <= results["test_acc"] <= 1.0 and 0.0 <= results["best_val_acc"] <= 1.0
    assert len(results["config_digest"]) == 64 and results["versions"]["torch"]
    # run identity: which preset and trainer ran, with which overrides; smoke runs are marked
    assert results["experiment"] is None and results["trainer"] == "smoke" and results["limited"] is True
    assert results["overrides"][:2] == [f"task={task}", "trainer=smoke"] and results["seed"] == 42
    assert len(results["seed_free_digest"]) == 64 and "at_chance" in results
    assert (run_dir / "checkpoints" / "last.ckpt").is_file()
    best = list((run_dir / "checkpoints").glob("best-*.ckpt"))
    assert [str(p) for p in best] == [results["best_checkpoint"]]
    assert (run_dir / "csv" / "version_0" / "metrics.csv").is_file()
    assert results["wandb_run_id"] == (run_dir / "wandb_id.txt").read_text().strip()
    # what ran: on the CPU the PyTorch paths (softmax: blockwise to train, SDPA without gradients)
    fn = "softmax" if task in ("listops", "text", "retrieval") else "laplace"
    paths = ["blockwise", "sdpa"] if fn == "softmax" else ["blockwise"]
    assert results["ran"]["attention_paths"] == {f"{fn} attention": paths}
    assert results["ran"]["precision"] == "32-true" and results["ran"]["compiled"] is False
    assert results["ran"]["self_check_fallbacks"] == []


def test_listops_training_loss_falls(tmp_path, offline_env):
    """Overfit 16 short ListOps expressions: the loss starts at ln(10) and ends far below."""
    cfg = compose_config(
        ["task=listops", "trainer=smoke", "logger=csv", "callbacks.progress_bar=null",
         "data.limit_examples.train=16", "data.batch_size=16", "data.min_len=10", "data.max_len=60",
         "trainer.max_steps=60", "trainer.val_check_interval=30", "optim.lr=1e-2",
         "optim.warmup_steps=5", "model.dropout=0.0"],
        output_dir=tmp_path,
    )
    results = train(cfg)
    assert results["steps"] == 60
    with open(tmp_path / "csv" / "version_0" / "metrics.csv") as f:
        losses = [float(r["train/loss_step"]) for r in csv.DictReader(f) if r.get("train/loss_step")]
    assert len(losses) == 60
    assert losses[0] == pytest.approx(math.log(10), abs=0.1)  # untrained: uniform over 10 classes
    assert max(losses[-5:]) < 0.5, losses
