"""resume=auto: the same command in the same run dir continues the run and its wandb run."""

from __future__ import annotations

import csv
import json

import torch


def test_rerun_continues_from_last_checkpoint(run_cli, tmp_path):
    run_dir = tmp_path / "run"
    base = ["task=listops", "trainer=smoke", f"hydra.run.dir={run_dir}", "trainer.val_check_interval=2"]

    first = run_cli(*base, "trainer.max_steps=4")
    assert first.returncode == 0, first.stderr[-3000:]
    r1 = json.loads((run_dir / "results.json").read_text())
    assert r1["steps"] == 4
    last = torch.load(run_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    assert last["global_step"] == 4

    second = run_cli(*base, "trainer.max_steps=8")
    assert second.returncode == 0, second.stderr[-3000:]
    r2 = json.loads((run_dir / "results.json").read_text())
    assert r2["steps"] == 8
    assert "Resuming from" in second.stdout + second.stderr
    # the same wandb run continues: same id, two offline run folders that carry it
    assert r2["wandb_run_id"] == r1["wandb_run_id"]
    runs = sorted(p.name for p in (run_dir / "wandb").glob("offline-run-*"))
    assert len(runs) == 2 and all(name.endswith(r1["wandb_run_id"]) for name in runs)
    # each (re)start logs to its own csv version: 0..3, then 4..7 (not 0..7 again)
    steps = []
    for version in (0, 1):
        with open(run_dir / "csv" / f"version_{version}" / "metrics.csv") as f:
            steps.append([int(r["step"]) for r in csv.DictReader(f) if r.get("train/loss_step")])
    assert steps == [[0, 1, 2, 3], [4, 5, 6, 7]]


def test_resume_never_starts_over(run_cli, tmp_path):
    run_dir = tmp_path / "run"
    base = ["task=listops", "trainer=smoke", f"hydra.run.dir={run_dir}", "trainer.max_steps=2",
            "logger=csv", "trainer.val_check_interval=2"]
    assert run_cli(*base).returncode == 0
    again = run_cli(*base, "resume=never")
    assert again.returncode == 0, again.stderr[-3000:]
    assert "Resuming from" not in again.stdout + again.stderr
    assert json.loads((run_dir / "results.json").read_text())["steps"] == 2
