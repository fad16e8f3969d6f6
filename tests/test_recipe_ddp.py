"""Two-process DDP on CPU (gloo): the cheapest check that data-parallel training works at all.

Any ddp strategy turns BatchNorm into SyncBatchNorm, which only runs on GPUs; on CPU the
BatchNorm tasks keep a plain BatchNorm (one warning) instead of ending the run.
"""

from __future__ import annotations

import json

import pytest


@pytest.mark.parametrize("task", ["listops", "pathfinder"])  # layernorm / batchnorm
def test_two_process_cpu_ddp_smoke_run(task, run_cli, tmp_path):
    run_dir = tmp_path / "run"
    proc = run_cli(
        f"task={task}", "trainer=smoke", "trainer.strategy=ddp", "trainer.devices=2",
        "trainer.accelerator=cpu", "logger=csv", "callbacks.progress_bar=null",
        "data.limit_examples.train=16", f"hydra.run.dir={run_dir}", timeout=400,
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-3000:]
    assert "SyncBatchNorm layers only work with GPU modules" not in out
    assert out.count("keeping plain BatchNorm") == 1  # one warning, not one per process
    assert "Starting with 2 processes" in out
    results = json.loads((run_dir / "results.json").read_text())
    assert results["task"] == task and results["steps"] == 6
    assert 0.0 <= results["test_acc"] <= 1.0
