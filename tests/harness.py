"""Helpers for the harness tests: in-process config composition, task names, CLI errors."""

from __future__ import annotations

from pathlib import Path

from hydra import compose, initialize_config_module
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, open_dict

import lra_mega.run.resolvers  # noqa: F401

TASKS = ("listops", "text", "retrieval", "image", "pathfinder", "pathx")


def compose_config(overrides: list[str], output_dir: Path | None = None) -> DictConfig:
    """The job config for ``overrides``; with ``output_dir``, ready for ``train(cfg)``."""
    GlobalHydra.instance().clear()
    with initialize_config_module("lra_mega.configs", version_base="1.3"):
        cfg = compose("config", overrides=overrides, return_hydra_config=True)
    if output_dir is not None:
        cfg.hydra.runtime.output_dir = str(output_dir)
        cfg.hydra.job.override_dirname = ""
    HydraConfig.instance().set_config(cfg)
    with open_dict(cfg):
        del cfg["hydra"]
    return cfg


def error_lines(stderr: str) -> list[str]:
    """The ``lra_mega: error:`` lines of a CLI's stderr."""
    return [ln for ln in stderr.splitlines() if ln.startswith("lra_mega: error:")]


# ----- run helpers ------------------------------------------------------------------------

# The tiny smoke run every harness test builds on, deterministic, no wandb, no progress bar.
SMOKE = ["task=listops", "trainer=smoke", "logger=csv", "callbacks.progress_bar=null",
         "trainer.deterministic=true"]


class Crash(RuntimeError):
    """Raised by :class:`CrashAt` to stand for a killed process."""


class CrashAt:
    """Callback (``+callbacks.crash._target_=harness.CrashAt +callbacks.crash.step=K``) that ends
    the run after its update K, as a kill would: no checkpoint beyond the last validation."""

    def __new__(cls, step: int):
        import lightning as L

        class _CrashAt(L.Callback):
            def on_train_batch_end(self, trainer, *args) -> None:
                if trainer.global_step >= step:
                    raise Crash(f"crash after update {step}")

        return _CrashAt()


def csv_column(run_dir: Path, column: str, version: int = 0) -> dict[int, float]:
    """``step -> value`` of one metric in ``<run_dir>/csv/version_<k>/metrics.csv``."""
    import csv

    with open(run_dir / "csv" / f"version_{version}" / "metrics.csv") as f:
        return {int(r["step"]): float(r[column]) for r in csv.DictReader(f) if r.get(column)}


def load_script(name: str):
    """``scripts/<name>.py`` imported as a module (its own imports resolved from scripts/)."""
    import importlib.util
    import sys

    scripts = Path(__file__).parents[1] / "scripts"
    sys.path.insert(0, str(scripts))
    spec = importlib.util.spec_from_file_location(name, scripts / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
