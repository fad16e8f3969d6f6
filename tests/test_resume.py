"""resume=auto: the same command in the same run dir continues the run and its wandb run."""

from __future__ import annotations

import csv
import json

import pytest
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


def _checkpoint_step(path) -> int:
    try:
        return int(torch.load(path, map_location="cpu", weights_only=False)["global_step"])
    except Exception:  # not written yet
        return -1


def test_killed_run_resumes_where_it_stopped(cli_env, tmp_path):
    """SIGKILL mid-run, then the same command: the step counter and wandb run carry on."""
    import signal
    import subprocess
    import sys
    import time

    run_dir = tmp_path / "run"
    cmd = [sys.executable, "-m", "lra_mega", "task=listops", "trainer=smoke",
           f"hydra.run.dir={run_dir}", "trainer.max_steps=40", "trainer.val_check_interval=4",
           "callbacks.progress_bar=null"]
    last = run_dir / "checkpoints" / "last.ckpt"
    proc = subprocess.Popen(cmd, env=cli_env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 240
    while _checkpoint_step(last) < 8 and proc.poll() is None and time.time() < deadline:
        time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    killed_at = _checkpoint_step(last)
    assert 8 <= killed_at < 40, "the run must be killed mid-way for this test to mean anything"
    assert not (run_dir / "results.json").exists()
    wandb_id = (run_dir / "wandb_id.txt").read_text().strip()

    again = subprocess.run(cmd, env=cli_env, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr[-3000:]
    results = json.loads((run_dir / "results.json").read_text())
    assert results["steps"] == 40 and results["wandb_run_id"] == wandb_id
    with open(run_dir / "csv" / "version_1" / "metrics.csv") as f:
        steps = [int(r["step"]) for r in csv.DictReader(f) if r.get("train/loss_step")]
    assert steps[0] == killed_at  # continued, not restarted from zero


# ----- resume refuses what it cannot honour (in-process, one finished run shared) -------------

@pytest.fixture(scope="module")
def finished_run(tmp_path_factory, lra_cache):
    from harness import SMOKE, compose_config

    from lra_mega.run.train import train

    mp = pytest.MonkeyPatch()
    mp.setenv("WANDB_MODE", "offline")
    mp.setenv("LRA_MEGA_CACHE", str(lra_cache))
    run_dir = tmp_path_factory.mktemp("finished") / "run"
    base = [*SMOKE, "trainer.max_steps=2", "trainer.val_check_interval=2", "data.limit_examples=8",
            "optim.warmup_steps=1"]
    train(compose_config(base, output_dir=run_dir))
    yield run_dir, base, mp
    mp.undo()


def _snapshot(run_dir):
    return {p: p.read_bytes() for p in run_dir.rglob("*") if p.is_file()}


def _train(overrides, run_dir):
    from harness import compose_config

    from lra_mega.run.train import train

    return train(compose_config(overrides, output_dir=run_dir))


@pytest.mark.parametrize("change, keys", [
    (["optim.lr=3e-3"], ["optim.lr: 0.001 -> 0.003"]),
    (["model.dim=64", "seed=1"], ["model.dim: 32 -> 64", "seed: 42 -> 1"]),
])
def test_changed_run_is_refused_and_nothing_written(finished_run, change, keys):
    run_dir, base, _ = finished_run
    before = _snapshot(run_dir)
    with pytest.raises(ValueError) as err:
        _train([*base, *change, "trainer.max_steps=4"], run_dir)
    msg = str(err.value)
    assert "\n" not in msg and "resume=never" in msg and "new run directory" in msg
    for key in keys:
        assert key in msg
    assert _snapshot(run_dir) == before  # results.json and .hydra/config.yaml untouched


def test_finished_run_rerun_changes_nothing(finished_run, caplog):
    run_dir, base, _ = finished_run
    before = _snapshot(run_dir)
    caplog.set_level("INFO")
    results = _train([*base, "trainer.val_check_interval=1", "logger=none"], run_dir)  # may change
    assert results == json.loads((run_dir / "results.json").read_text())
    assert "already finished" in caplog.text and str(run_dir / "results.json") in caplog.text
    assert _snapshot(run_dir) == before


def test_corrupt_checkpoint_is_one_line(finished_run, tmp_path):
    import shutil

    run_dir, base, _ = finished_run
    copy = tmp_path / "copy"
    shutil.copytree(run_dir, copy)
    last = copy / "checkpoints" / "last.ckpt"
    last.write_bytes(last.read_bytes()[:4000])
    with pytest.raises(ValueError) as err:
        _train(base, copy)
    msg = str(err.value)
    assert "\n" not in msg and str(last) in msg and "resume=never" in msg and "corrupt" in msg


def test_fewer_steps_than_trained_is_refused(finished_run, tmp_path):
    import shutil

    run_dir, base, _ = finished_run
    copy = tmp_path / "copy"
    shutil.copytree(run_dir, copy)
    (copy / "results.json").unlink()  # as if killed during the test
    with pytest.raises(ValueError, match="trainer.max_steps=1 is below the 2 steps"):
        _train([*base, "trainer.max_steps=1", "trainer.val_check_interval=1"], copy)
