"""Re-evaluate a checkpoint written by ``lra_mega.run.train`` on its task's val or test split."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import lightning as L
from hydra.utils import instantiate
from omegaconf import OmegaConf

from lra_mega.run.callbacks import CONFIG_KEY
from lra_mega.training.classifier import LRAClassifier
from lra_mega.run.resolvers import auto_precision
from lra_mega.run.resume import flatten, load_checkpoint
from lra_mega.run.validate import unknown_key_message

SPLITS = ("val", "test")
#: What an evaluation may change: where the data is and how it is batched. The model and its
#: data settings come from the checkpoint.
OVERRIDABLE = ("data.root", "data.cache_dir", "data.num_workers", "data.pin_memory", "data.batch_size",
               "data.limit_examples", "data.workers")


def load_run_config(ckpt_path: str | Path) -> dict[str, Any]:
    """The resolved run config stored in a checkpoint by ``SaveRunConfig``."""
    ckpt = load_checkpoint(ckpt_path, fix="evaluate another checkpoint of the run (checkpoints/best-*.ckpt "
                                          "or last.ckpt)")
    if CONFIG_KEY not in ckpt:
        raise ValueError(f"{ckpt_path} holds no run config ({CONFIG_KEY!r}); "
                         "only checkpoints written by `python -m lra_mega` can be re-evaluated")
    if ckpt[CONFIG_KEY].get("stage", "classify") != "classify":
        raise ValueError(f"{ckpt_path} is a pretraining checkpoint (stage={ckpt[CONFIG_KEY]['stage']}), not a "
                         f"classifier: its loss and masked accuracy are in its run's results.json; evaluate the "
                         f"run fine-tuned from it (init_from=...)")
    return {"config": ckpt[CONFIG_KEY], "global_step": ckpt.get("global_step")}


def parse_overrides(overrides: Sequence[str], stored: dict[str, Any]) -> list[str]:
    """Check ``key=value`` edits: well formed, and keys an evaluation may change."""
    known = [k for k in flatten(stored) if any(k == p or k.startswith(p + ".") for p in OVERRIDABLE)]
    known += [p for p in OVERRIDABLE if p not in known]
    for item in overrides:
        key, eq, _ = item.partition("=")
        if not eq or not key:
            raise ValueError(f"override {item!r} is not key=value, e.g. data.root=/data/lra")
        if key in OVERRIDABLE or any(key.startswith(p + ".") for p in OVERRIDABLE):
            continue
        flat = flatten(stored)
        if key in flat or any(k.startswith(key + ".") for k in flat):
            raise ValueError(f"{key} cannot be changed at evaluation: the model and its data settings "
                             f"come from the checkpoint; only {', '.join(OVERRIDABLE)} can")
        raise ValueError(unknown_key_message(key, known))
    return list(overrides)


def evaluate_checkpoint(ckpt_path: str | Path, split: str = "test", overrides: Sequence[str] = (),
                        accelerator: str = "auto") -> dict[str, Any]:
    """Rebuild datamodule + model from the checkpoint, run the whole split, return metrics.

    ``overrides`` are ``key=value`` edits of the stored config's data location and batching
    (e.g. ``data.root=/data``).
    """
    if split not in SPLITS:
        raise ValueError(f"split={split!r} is not valid; choose one of: {', '.join(SPLITS)}")
    stored = load_run_config(ckpt_path)
    edits = parse_overrides(overrides, stored["config"])
    try:
        cfg = OmegaConf.merge(OmegaConf.create(stored["config"]), OmegaConf.from_dotlist(edits))
    except Exception as err:  # noqa: BLE001  (omegaconf grammar errors)
        raise ValueError(f"overrides {' '.join(edits)} cannot be applied: {str(err).splitlines()[0]}") from err
    datamodule = instantiate(cfg.data)
    model = LRAClassifier.load_from_checkpoint(ckpt_path, map_location="cpu")
    try:
        trainer = L.Trainer(
            accelerator=accelerator, devices=1, precision=auto_precision(), logger=False,
            enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
        )
    except Exception as err:  # noqa: BLE001  (Lightning's MisconfigurationException and others)
        raise ValueError(f"--accelerator {accelerator}: {' '.join(str(err).split()).split('. ')[0]}; "
                         f"use --accelerator cpu or auto") from err
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
