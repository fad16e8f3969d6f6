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
