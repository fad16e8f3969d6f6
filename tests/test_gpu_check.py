"""scripts/gpu_check.sh: its dry run on the CPU, its time budget, and its wheel selection.

The dry run is the whole GPU check with tiny shapes and steps (about a minute and a half on one
CPU thread), so the script cannot rot between the rare GPU windows.
"""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "scripts" / "gpu_check.sh"
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
    done = subprocess.run(["bash", str(SCRIPT), str(out), "--dry-run"], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=420)
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
    for heading in ("## Machine", "## Steps", "## pytest -m gpu", "## SDPA", "## Speed", "## Short paper runs"):
        assert heading in summary


def load_script(name: str):
    spec = importlib.util.spec_from_file_location(name, REPO / "scripts" / f"{name}.py")
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


def test_run_summary_reads_loss_and_steps_per_second():
    run = load_script("gpu_run")
    rows = ["step,train/loss_step,train/batches,train/time"]
    rows += [f"{s},{2.0 - 0.1 * s},," for s in range(8)]
    rows += [f"{s},,{s + 1},{0.5 * (s + 1)}" for s in range(8)]
    summary = run.metrics_summary("\n".join(rows) + "\n")
    assert summary["loss_fell"] and summary["loss_start"] == pytest.approx(1.8)
    assert summary["loss_end"] == pytest.approx(1.35)
    assert summary["steps_per_s"] == pytest.approx(2.0)
