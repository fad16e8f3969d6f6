"""Re-evaluate a checkpoint written by ``lra_mega.train`` on its task's val or test split."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import lightning as L
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf

from lra_mega.callbacks import CONFIG_KEY
from lra_mega.module import LRAClassifier
from lra_mega.resolvers import auto_precision

SPLITS = ("val", "test")


def load_run_config(ckpt_path: str | Path) -> dict[str, Any]:
    """The resolved run config stored in a checkpoint by ``SaveRunConfig``."""
    ckpt = torch.load(ckpt_path, map_location="cpu", weights_only=False)
    if CONFIG_KEY not in ckpt:
        raise ValueError(f"{ckpt_path} holds no run config ({CONFIG_KEY!r}); "
                         "only checkpoints written by `python -m lra_mega` can be re-evaluated")
    return {"config": ckpt[CONFIG_KEY], "global_step": ckpt.get("global_step")}


def evaluate_checkpoint(ckpt_path: str | Path, split: str = "test", overrides: Sequence[str] = (),
                        accelerator: str = "auto") -> dict[str, Any]:
    """Rebuild datamodule + model from the checkpoint, run the whole split, return metrics.

    ``overrides`` are ``key=value`` edits of the stored config (e.g. ``data.root=/data``).
    """
    if split not in SPLITS:
        raise ValueError(f"split={split!r} is not valid; choose one of: {', '.join(SPLITS)}")
    stored = load_run_config(ckpt_path)
    cfg = OmegaConf.merge(
        OmegaConf.create(stored["config"]), OmegaConf.from_dotlist(list(overrides))
    )
    datamodule = instantiate(cfg.data)
    model = LRAClassifier.load_from_checkpoint(ckpt_path, map_location="cpu")
    trainer = L.Trainer(
        accelerator=accelerator, devices=1, precision=auto_precision(), logger=False,
        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
    )
    run = trainer.validate if split == "val" else trainer.test
    metrics = run(model, datamodule=datamodule, verbose=False)[0]
    return {
        "checkpoint": str(ckpt_path),
        "task": cfg.task_name,
        "split": split,
        "acc": metrics[f"{split}/acc"],
        "loss": metrics[f"{split}/loss"],
        "examples": len(datamodule.datasets[split]),
        "global_step": stored["global_step"],
    }
