"""Hydra multirun: one results.json per job; the Optuna preset runs trials (slow)."""

from __future__ import annotations

import importlib.util
import json

import pytest
import yaml


def test_multirun_grid_writes_one_result_per_job(run_cli, tmp_path):
    sweep_dir = tmp_path / "sweep"
    proc = run_cli("-m", "task=listops", "trainer=smoke", "logger=csv", "optim.lr=1e-3,3e-3",
                   f"hydra.sweep.dir={sweep_dir}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = sorted(sweep_dir.glob("*/results.json"))
    assert [p.parent.name for p in results] == ["0", "1"]
    lrs = []
    for path in results:
        cfg = yaml.safe_load((path.parent / ".hydra" / "config.yaml").read_text())
        lrs.append(cfg["optim"]["lr"])
        assert json.loads(path.read_text())["steps"] == 6
    assert lrs == [1e-3, 3e-3]
    digests = {json.loads(p.read_text())["config_digest"] for p in results}
    assert len(digests) == 2  # the digest tells the two configurations apart


@pytest.mark.skipif(importlib.util.find_spec("hydra_plugins.hydra_optuna_sweeper") is None,
                    reason="needs the sweep extra (hydra-optuna-sweeper)")
def test_optuna_sweep_runs_trials(run_cli, tmp_path):
    sweep_dir = tmp_path / "optuna"
    proc = run_cli("task=listops", "trainer=smoke", "logger=csv", "sweep=optuna",
                   "hydra.sweeper.n_trials=2", "hydra.sweeper.sampler.n_startup_trials=2",
                   f"hydra.sweep.dir={sweep_dir}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert len(list(sweep_dir.glob("*/results.json"))) == 2
    best = yaml.safe_load((sweep_dir / "optimization_results.yaml").read_text())
    assert set(best["best_params"]) == {"optim.lr", "optim.weight_decay", "model.dropout"}


_SUBMITIT = importlib.util.find_spec("hydra_plugins.hydra_submitit_launcher") is None


@pytest.mark.slow
@pytest.mark.skipif(_SUBMITIT, reason="needs the sweep extra (hydra-submitit-launcher)")
def test_submitit_local_sweep_runs_each_job_through_submitit(run_cli, tmp_path):
    sweep_dir = tmp_path / "sweep"
    proc = run_cli("-m", "task=listops", "trainer=smoke", "logger=csv", "seed=1,2", "sweep=submitit_local",
                   f"hydra.sweep.dir={sweep_dir}", timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = [json.loads(p.read_text()) for p in sorted(sweep_dir.glob("*/results.json"))]
    assert [r["seed"] for r in results] == [1, 2] and all(r["steps"] == 6 for r in results)
    # each job went through submitit: a pickled job and its result file per job
    assert len(list(sweep_dir.glob(".submitit/*/*_submitted.pkl"))) == 2
    assert len(list(sweep_dir.glob(".submitit/*/*_result.pkl"))) == 2


@pytest.mark.slow
@pytest.mark.skipif(_SUBMITIT, reason="needs the sweep extra (hydra-submitit-launcher)")
def test_killed_submitit_job_resumes_when_relaunched(cli_env, tmp_path):
    """A preempted job (killed mid-run) relaunched with the same command continues from
    last.ckpt through resume=auto, as a requeued SLURM job does."""
    import os
    import signal
    import subprocess
    import sys
    import time

    import torch

    sweep_dir = tmp_path / "sweep"
    cmd = [sys.executable, "-m", "lra_mega", "-m", "task=listops", "trainer=smoke", "logger=csv",
           "sweep=submitit_local", "trainer.max_steps=40", "trainer.val_check_interval=4",
           f"hydra.sweep.dir={sweep_dir}"]
    last = sweep_dir / "0" / "checkpoints" / "last.ckpt"

    def step() -> int:
        try:
            return int(torch.load(last, map_location="cpu", weights_only=False)["global_step"])
        except Exception:  # not written yet, or being written
            return -1

    proc = subprocess.Popen(cmd, env=cli_env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    deadline = time.time() + 600
    while step() < 8 and proc.poll() is None and time.time() < deadline:
        time.sleep(0.5)
    os.killpg(proc.pid, signal.SIGKILL)  # the launcher and its job process: a preemption
    proc.wait()
    killed_at = step()
    assert 8 <= killed_at < 40, "the job must be killed mid-way for this test to mean anything"
    assert not (sweep_dir / "0" / "results.json").exists()

    again = subprocess.run(cmd, env=cli_env, capture_output=True, text=True, timeout=900)
    assert again.returncode == 0, again.stderr[-3000:]
    results = json.loads((sweep_dir / "0" / "results.json").read_text())
    assert results["steps"] == 40
    log = (sweep_dir / "0" / "lra_mega.log").read_text()
    assert f"Resuming from {last}" in log and f"(step {killed_at})" in log
