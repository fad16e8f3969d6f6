"""Training orchestration: config in, fitted + tested model and ``results.json`` out."""

from __future__ import annotations

import hashlib
import json
import logging
import platform
import secrets
import time
from pathlib import Path
from typing import Any

import hydra
import lightning as L
import torch
from hydra.utils import instantiate
from lightning.pytorch.loggers import Logger, WandbLogger
from lightning.pytorch.utilities import rank_zero_only
from omegaconf import DictConfig, OmegaConf

import lra_mega
from lra_mega import resolvers  # noqa: F401  (registers ${lra.*} for the configs)
from lra_mega.callbacks import SaveRunConfig
from lra_mega.module import LRAClassifier

log = logging.getLogger(__name__)

WANDB_ID_FILE = "wandb_id.txt"
RESULTS_FILE = "results.json"
# What a run computes (the digest's input), minus where it reads and writes.
_DIGEST_KEYS = ("task_name", "seed", "data", "model", "head", "optim", "trainer")
_WHERE_KEYS = {
    "data": ("root", "cache_dir", "num_workers", "pin_memory"),
    "trainer": ("default_root_dir",),
}


def build_model(cfg: DictConfig, datamodule: L.LightningDataModule) -> LRAClassifier:
    """Model sized from the datamodule's contract attributes (docs/INTERFACES.md)."""
    encoder = OmegaConf.to_container(cfg.model, resolve=True)
    encoder.update(
        vocab_size=datamodule.vocab_size,
        input_kind=datamodule.input_kind,
        max_len=datamodule.seq_len,
    )
    head = OmegaConf.to_container(cfg.head, resolve=True)
    head.update(dim=cfg.model.dim, num_classes=datamodule.num_classes)
    return LRAClassifier(
        encoder=encoder,
        head=head,
        num_classes=datamodule.num_classes,
        dual=datamodule.dual,
        **OmegaConf.to_container(cfg.optim, resolve=True),
    )


def _require(ok: bool, key: str, value: Any, what: str) -> None:
    if not ok:
        raise ValueError(f"{key}={value!r} is not valid; it must be {what}")


def check_run_settings(cfg: DictConfig) -> None:
    """Reject the run-level numbers a typo breaks, with the key and the fix, before any work."""
    steps = cfg.trainer.get("max_steps")
    _require(isinstance(steps, int) and steps >= 1, "trainer.max_steps", steps,
             "a positive integer (optimizer updates)")
    interval = cfg.trainer.get("val_check_interval")
    _require(interval is None or (isinstance(interval, (int, float)) and interval > 0),
             "trainer.val_check_interval", interval, "a positive number of training batches")
    lr = cfg.optim.get("lr")
    _require(isinstance(lr, (int, float)) and lr > 0, "optim.lr", lr, "a positive number")
    decay = cfg.optim.get("weight_decay")
    _require(isinstance(decay, (int, float)) and decay >= 0, "optim.weight_decay", decay,
             "a number >= 0")
    warmup = cfg.optim.get("warmup_steps")
    _require(isinstance(warmup, int) and 0 <= warmup <= steps, "optim.warmup_steps", warmup,
             f"an integer in [0, trainer.max_steps={steps}]")


def resume_checkpoint(resume: str | None, ckpt_dir: Path) -> str | None:
    """Checkpoint to continue from: ``auto`` (last.ckpt if present), ``never``, or a path."""
    if resume in (None, "never"):
        return None
    if resume == "auto":
        last = ckpt_dir / "last.ckpt"
        return str(last) if last.exists() else None
    if not Path(resume).is_file():
        raise ValueError(
            f"resume={resume!r} is not a checkpoint file; use auto, never or a .ckpt path"
        )
    return str(resume)


def wandb_run_id(output_dir: Path, fresh: bool) -> str:
    """The run dir's wandb id (created once), so a resumed run continues the same wandb run."""
    path = output_dir / WANDB_ID_FILE
    if path.exists() and not fresh:
        return path.read_text().strip()
    run_id = secrets.token_hex(4)  # wandb ids: lowercase letters and digits
    output_dir.mkdir(parents=True, exist_ok=True)
    path.write_text(run_id + "\n")
    return run_id


def instantiate_loggers(cfg: DictConfig, output_dir: Path) -> list[Logger]:
    """Loggers from ``cfg.logger`` (name -> ``_target_`` config); wandb gets the run dir's id."""
    loggers = []
    for lg_cfg in (cfg.get("logger") or {}).values():
        if lg_cfg is None:
            continue
        extra = {}
        if str(lg_cfg._target_).endswith("WandbLogger"):
            extra = {"id": wandb_run_id(output_dir, fresh=cfg.resume == "never")}
        loggers.append(instantiate(lg_cfg, **extra))
    return loggers


def config_digest(config: dict[str, Any]) -> str:
    """sha256 of the resolved settings that decide the result (not paths, loggers, workers)."""
    kept = {k: config.get(k) for k in _DIGEST_KEYS}
    for section, keys in _WHERE_KEYS.items():
        kept[section] = {k: v for k, v in (kept[section] or {}).items() if k not in keys}
    return hashlib.sha256(json.dumps(kept, sort_keys=True, default=str).encode()).hexdigest()


def versions() -> dict[str, str]:
    """Library versions recorded with every result."""
    return {
        "lra_mega": lra_mega.__version__,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "lightning": L.__version__,
        "hydra": hydra.__version__,
        "cuda": str(torch.version.cuda),
    }


def train(cfg: DictConfig) -> dict[str, Any]:
    """Fit, test the best checkpoint, write ``results.json``; returns the results dict."""
    started = time.time()
    output_dir = Path(cfg.paths.output_dir)
    config = OmegaConf.to_container(cfg, resolve=True)
    check_run_settings(cfg)
    ckpt_path = resume_checkpoint(cfg.resume, output_dir / "checkpoints")
    L.seed_everything(cfg.seed, workers=True)

    log.info("Instantiating datamodule <%s>", cfg.data._target_)
    datamodule = instantiate(cfg.data)
    if rank_zero_only.rank == 0:
        # fetch / generate / decode now, so a data problem ends the run before any logger or
        # wandb run is created; fit() calls it again and finds the cache
        datamodule.prepare_data()
    model = build_model(cfg, datamodule)
    callbacks = [instantiate(c) for c in (cfg.callbacks or {}).values() if c is not None]
    loggers = instantiate_loggers(cfg, output_dir)
    trainer: L.Trainer = instantiate(
        cfg.trainer, callbacks=[*callbacks, SaveRunConfig(config)], logger=loggers or False
    )
    for lg in loggers:
        lg.log_hyperparams(config)

    if ckpt_path:
        log.info("Resuming from %s", ckpt_path)
    trainer.fit(model, datamodule=datamodule, ckpt_path=ckpt_path)
    fit_metrics = {k: float(v) for k, v in trainer.callback_metrics.items()}

    checkpoint = trainer.checkpoint_callback
    best_path = checkpoint.best_model_path if checkpoint is not None else ""
    test_metrics = {}
    if cfg.get("test", True):
        test_metrics = trainer.test(model, datamodule=datamodule, ckpt_path=best_path or None)[0]

    best_score = checkpoint.best_model_score if checkpoint is not None else None
    wandb_ids = [lg.version for lg in loggers if isinstance(lg, WandbLogger)]
    results = {
        "task": cfg.task_name,
        "config_digest": config_digest(config),
        "val_acc": fit_metrics.get("val/acc"),
        "best_val_acc": float(best_score) if best_score is not None else fit_metrics.get("val/acc"),
        "test_acc": test_metrics.get("test/acc"),
        "test_loss": test_metrics.get("test/loss"),
        "train_loss": fit_metrics.get("train/loss_epoch"),
        "steps": trainer.global_step,
        "wall_time_s": round(time.time() - started, 2),
        "best_checkpoint": best_path or None,
        "wandb_run_id": wandb_ids[0] if wandb_ids else None,
        "run_dir": str(output_dir),
        "versions": versions(),
    }
    if trainer.is_global_zero:
        output_dir.mkdir(parents=True, exist_ok=True)
        (output_dir / RESULTS_FILE).write_text(json.dumps(results, indent=2) + "\n")
        for lg in loggers:
            if isinstance(lg, WandbLogger):
                lg.experiment.summary.update({f"results/{k}": v for k, v in results.items()})
                lg.experiment.finish()  # several runs may share a process (multirun, tests)
    log.info("Results: %s", {k: results[k] for k in ("task", "best_val_acc", "test_acc")})
    return results
