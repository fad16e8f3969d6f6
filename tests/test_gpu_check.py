"""scripts/gpu/gpu_check.sh: its dry run on the CPU, its time budget, and its wheel selection.

The dry run is the whole GPU check with tiny shapes and steps (about a minute and a half on one
CPU thread), so the script cannot rot between the rare GPU windows. Its step limits are the GPU's
times GPU_CHECK_DRY_SCALE (default 5): it checks the sequence, not the speed.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import signal
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "scripts" / "gpu" / "gpu_check.sh"
BUDGET_S = 540  # 9 minutes: the bound, under the device's 10 minutes a command


def step_limits() -> dict[str, int]:
    """The per-step limits declared in gpu_check.sh (``declare -A LIMIT=( [name]=seconds ... )``)."""
    block = re.search(r"^declare -A LIMIT=\((.*?)^\)", SCRIPT.read_text(), re.S | re.M)
    assert block, "gpu_check.sh declares no LIMIT table"
    return {name: int(seconds) for name, seconds in re.findall(r"\[(\w+)\]=(\d+)", block.group(1))}


def test_step_limits_sum_to_at_most_nine_minutes():
    limits = step_limits()
    assert sum(limits.values()) <= BUDGET_S, limits
    text = SCRIPT.read_text()
    used = set(re.findall(r"^\s*(?:step|skip|paper_run|record) (\w+) ", text, re.M))
    assert used and used <= set(limits), f"steps without a limit: {used - set(limits)}"


@pytest.fixture(scope="module")
def dry_run(tmp_path_factory) -> tuple[subprocess.CompletedProcess, Path]:
    out = tmp_path_factory.mktemp("gpu_check_out")
    env = {**os.environ, "PYTHON": sys.executable, "OMP_NUM_THREADS": "1", "TMPDIR": str(out.parent)}
    scale = int(env.get("GPU_CHECK_DRY_SCALE", "5"))
    done = subprocess.run(["bash", str(SCRIPT), str(out), "--dry-run"], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=sum(step_limits().values()) * scale + 60)
    return done, out


def test_dry_run_passes_every_step(dry_run):
    done, out = dry_run
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    steps = re.findall(r"^gpu_check: (\w+): (ok|skipped|FAIL|TIMEOUT)\b", done.stdout, re.M)
    assert {name for name, _ in steps} == set(step_limits()), steps
    assert all(status in ("ok", "skipped") for _, status in steps), steps
    assert dict(steps)["pytest"] == "ok" and "passed" in (out / "pytest.txt").read_text()


def test_dry_run_writes_every_file_the_summary_names(dry_run):
    _, out = dry_run
    summary = (out / "summary.md").read_text()
    files_section = summary.split("## Files", 1)[1]
    named = re.findall(r"^- `([^`]+)`", files_section, re.M)
    assert len(named) >= 7, files_section
    missing = [name for name in named if not (out / name).is_file()]
    assert not missing, f"summary.md names files the dry run did not write: {missing}"
    written = {p.name for p in out.iterdir()}
    assert written == set(named) and len(written) <= 8, written  # the device brings back 8 files at most
    assert "MISSING" not in summary
    for heading in ("## Machine", "## Steps", "## Self-check", "## pytest -m gpu", "## SDPA", "## Speed",
                    "## Short paper runs"):
        assert heading in summary


def test_dry_run_reports_the_self_check_per_combination(dry_run):
    done, out = dry_run
    report = json.loads((out / "selfcheck.json").read_text())
    rows = report["results"]
    assert report["dry_run"] and {(r["fn"], r["masked"]) for r in rows} == {("softmax", True), ("laplace", False)}
    assert all(r["verdict"] in ("passed", "skipped: triton is not installed (auto takes the blockwise path)")
               for r in rows), rows
    assert re.search(r"^gpu_check: selfcheck: ok", done.stdout, re.M)
    summary = (out / "summary.md").read_text()
    assert "| laplace | triton | 8 | 12 | dense | float32 | image, pathfinder, pathx |" in summary


def test_dry_run_limits_scale_and_a_killed_step_is_named_killed(tmp_path):
    """A dry run's limits are the GPU's times GPU_CHECK_DRY_SCALE; a step that outlives its limit is
    recorded as killed at the time limit, not as failed."""
    text = SCRIPT.read_text()
    assert re.search(r"SCALE=\$\{GPU_CHECK_DRY_SCALE:-5\}", text)
    assert 'LIMIT[$name]=$(( LIMIT[$name] * SCALE ))' in text
    assert 'note="killed at the time limit (${LIMIT[$name]} s)"' in text


def load_script(name: str):
    spec = importlib.util.spec_from_file_location(name, REPO / "scripts" / "gpu" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_install_shadows_pinned_and_fills_missing_only(tmp_path):
    install = load_script("gpu_install")
    have = metadata.version("pytest")
    (tmp_path / "PINNED").write_text("pytest\nhydra_core\n")
    wheels = [
        "pytest-0.0.1-py3-none-any.whl",                       # pinned, another version here: install
        "pluggy-0.0.1-py3-none-any.whl",                       # not pinned, installed (any version): keep
        "no_such_dist_for_gpu_check-1.0-py3-none-any.whl",     # absent: install
        "old_dist_for_gpu_check-1.0-cp27-cp27mu-manylinux1_x86_64.whl",  # wrong interpreter: skip
    ]
    for name in wheels:
        (tmp_path / name).touch()
    chosen, lines = install.choose(tmp_path)
    assert sorted(p.name for p in chosen) == sorted([wheels[0], wheels[2]]), lines
    assert any(f"shadows {have}" in line for line in lines)
    only, _ = install.choose(tmp_path, only={"pytest"})
    assert [p.name for p in only] == [wheels[0]]
    skipped, _ = install.choose(tmp_path, skip={"pytest"})
    assert [p.name for p in skipped] == [wheels[2]]


def _metrics_csv(losses: list[float], times: list[float]) -> str:
    """A metrics.csv: one loss row per step, and cumulative (batches, seconds) readings."""
    rows = ["step,train/loss_step,train/batches,train/time"]
    rows += [f"{s},{loss},," for s, loss in enumerate(losses)]
    rows += [f"{s},,{s + 1},{t}" for s, t in enumerate(times)]
    return "\n".join(rows) + "\n"


def test_run_summary_reads_loss_and_steps_per_second():
    """Inputs where a wrong rule gives another answer: losses that are not a straight line (the
    median or another count of first / last steps differs from the means of the first five and
    of the last quarter), and two slow compile readings before 2 steps/s."""
    run = load_script("gpu_run")
    losses = [3.0, 1.0, 2.5, 0.5, 2.0, 9.0, 1.2, 0.4, 0.8, 0.6, 0.2, 0.3]
    # the first reading at 10 s, the second 3 s later (compiling), then 0.5 s a batch
    times = [10.0, 13.0, 14.5, 15.0, 15.5, 16.0, 16.5, 17.0]
    summary = run.metrics_summary(_metrics_csv(losses, times))
    assert summary["logged_losses"] == 12 and summary["loss_fell"]
    assert summary["loss_start"] == pytest.approx(1.8)  # mean of the first five (median 2.0, first six 3.0)
    assert summary["loss_end"] == pytest.approx(1.1 / 3)  # mean of the last 12 // 4 = 3 (last two: 0.25)
    assert summary["steps_per_s"] == pytest.approx(2.0)  # all readings: 1.0; after the first only: 1.5
    # fewer than five readings: only the first is left out
    short = run.metrics_summary(_metrics_csv(losses[:2], [10.0, 11.0, 11.4, 12.0]))
    assert short["steps_per_s"] == pytest.approx(2.0)  # leaving two out: 1.67; none: 1.5


def test_run_killed_by_timeout_is_recorded_as_killed(tmp_path):
    """SIGTERM (what `timeout` sends) while the app runs: Lightning would catch it and return 0
    without results.json; the entry must say the run was killed, not that it failed with status 0."""
    record = tmp_path / "runs.json"
    child = f"""
import signal, sys, time
sys.path.insert(0, {str(REPO / "scripts" / "gpu")!r})
import gpu_run

def app(overrides):
    previous = signal.getsignal(signal.SIGTERM)
    # as Lightning does: its own handler notes the signal, then calls the one that was there
    signal.signal(signal.SIGTERM, lambda signum, frame: previous(signum, frame))
    print("running", flush=True)
    time.sleep(600)
    return 0

gpu_run.run_app = app
sys.exit(gpu_run.main(["--name", "pathx", "--record", {str(record)!r}, "--", "hydra.run.dir={tmp_path / 'run'}"]))
"""
    proc = subprocess.Popen([sys.executable, "-c", child], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "running", proc.stderr.read()
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=300)
    finally:
        proc.kill()
    assert proc.returncode == 124, err[-2000:]
    entry = json.loads(record.read_text())["pathx"]
    assert entry["verdict"] == "killed at the time limit; no results.json"
    assert "gpu_run: pathx: killed at the time limit; no results.json" in out
