"""The configs live in configs/ at the top level and ship inside the package: a non-editable
install into a fresh virtual environment runs from any directory (slow: it installs)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_non_editable_install_runs_from_another_directory(tmp_path):
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    python = str(venv / "bin" / "python")
    pip = [python, "-m", "pip", "install", "-q"]
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    # the CPU build of torch first (as .ci/run does), then the project itself, not editable
    subprocess.run([*pip, f"torch=={__import__('torch').__version__.split('+')[0]}"], check=True, env=env)
    subprocess.run([*pip, str(REPO)], check=True, env=env)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env.update(WANDB_MODE="offline", LRA_MEGA_CACHE=str(tmp_path / "cache"))
    where = subprocess.run([python, "-c", "import lra_mega.configs as c; print(c.__file__)"],
                           cwd=elsewhere, env=env, capture_output=True, text=True, check=True).stdout
    assert str(venv) in where and str(REPO) not in where  # the installed copy, not the clone
    run = subprocess.run([python, "-m", "lra_mega", "task=listops", "trainer=smoke", "logger=csv",
                          f"hydra.run.dir={elsewhere / 'run'}"], cwd=elsewhere, env=env,
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    assert (elsewhere / "run" / "results.json").is_file()
    choices = subprocess.run([python, "-m", "lra_mega", "--help"], cwd=elsewhere, env=env,
                             capture_output=True, text=True, check=True).stdout
    assert "listops_lite" in choices and "submitit_local" in choices


def test_configs_live_at_the_top_level():
    assert (REPO / "configs" / "config.yaml").is_file() and (REPO / "configs" / "__init__.py").is_file()
    assert not (REPO / "lra_mega" / "configs").exists()
    from importlib import resources

    assert (resources.files("lra_mega.configs") / "task" / "listops.yaml").is_file()


def test_config_dir_supplies_the_optional_local_config(run_cli, tmp_path):
    (tmp_path / "local").mkdir()
    (tmp_path / "local" / "default.yaml").write_text("# @package _global_\nseed: 7\n")
    out = run_cli("--config-dir", str(tmp_path), "task=listops", "trainer=smoke", "--cfg", "job")
    assert out.returncode == 0, out.stderr[-2000:]
    assert "\nseed: 7\n" in "\n" + out.stdout


def test_every_package_is_listed_for_the_install():
    """pyproject lists the packages (configs/ is mapped onto lra_mega.configs); a new package
    folder must be added there or a non-editable install leaves it out."""
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+

    listed = set(tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    on_disk = {".".join(p.parent.relative_to(REPO).parts) for p in (REPO / "lra_mega").rglob("__init__.py")}
    assert on_disk | {"lra_mega.configs"} == listed
