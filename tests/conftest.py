"""Shared fixtures for the harness tests: isolated cache/outputs, CLI runner, data fixtures."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def lra_cache(tmp_path_factory) -> Path:
    """One data cache for the session, so generated smoke data is built once."""
    return tmp_path_factory.mktemp("lra_cache")


@pytest.fixture(scope="session")
def cli_env(lra_cache) -> dict[str, str]:
    """Environment of a CLI subprocess: offline wandb, the session cache, this checkout first."""
    env = dict(os.environ)
    env.update(
        WANDB_MODE="offline",
        WANDB_SILENT="true",
        HF_HUB_OFFLINE="1",
        HF_DATASETS_OFFLINE="1",
        LRA_MEGA_CACHE=str(lra_cache),
        PYTHONPATH=os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")]).rstrip(os.pathsep),
    )
    env.pop("LRA_MEGA_DEBUG", None)
    env.pop("HYDRA_FULL_ERROR", None)
    return env


@pytest.fixture
def offline_env(monkeypatch, lra_cache) -> None:
    """In-process runs: same isolation as the CLI subprocesses."""
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.setenv("LRA_MEGA_CACHE", str(lra_cache))


@pytest.fixture(scope="session")
def run_cli(cli_env):
    """Run ``python -m lra_mega ARGS`` (or a script) and return the completed process."""

    def run(*args: str, script: str | None = None, env: dict | None = None,
            timeout: float = 300) -> subprocess.CompletedProcess:
        cmd = [sys.executable, str(REPO / "scripts" / script)] if script else [sys.executable, "-m", "lra_mega"]
        return subprocess.run(
            [*cmd, *args], cwd=REPO, env={**cli_env, **(env or {})}, capture_output=True,
            text=True, timeout=timeout,
        )

    return run


@pytest.fixture(scope="session")
def data_overrides(tmp_path_factory) -> dict[str, list[str]]:
    """Per-task overrides pointing text/retrieval/image at tiny files in their real formats."""
    from lra_mega.data import fixtures

    root = tmp_path_factory.mktemp("lra_data")
    fixtures.write_imdb_parquet(root / "imdb", 16)
    fixtures.write_aan_release(root / "aan", 16)
    fixtures.write_cifar_parquet(root / "cifar", 48)
    return {
        "listops": [],
        "text": [f"data.root={root / 'imdb'}"],
        "retrieval": [f"data.root={root / 'aan'}"],
        "image": [f"data.root={root / 'cifar'}"],
        "pathfinder": [],
        "pathx": [],
    }


@pytest.fixture(scope="session")
def saved_per_example():
    """``measure(attention, length)``: bytes autograd saves per example for one call
    ``attention(q, k, v)`` with q, k (B, length, 16), v (B, length, 40): batch 2 minus batch 1."""
    import torch

    def measure(attention, length: int = 256) -> int:
        sizes = []
        for batch in (1, 2):
            torch.manual_seed(0)
            q, k, v = (torch.randn(batch, length, d, requires_grad=True) for d in (16, 16, 40))
            seen = {}

            def pack(t):
                seen[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
                return t

            with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
                attention(q, k, v)
            sizes.append(sum(seen.values()))
        return sizes[1] - sizes[0]

    return measure
