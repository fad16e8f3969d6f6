"""Training orchestration: config in, fitted + tested model and ``results.json`` out.

Order: check the config (no data needed) -> decide how to use the run directory (resume, refuse,
or report a finished run) -> build datamodule, model and trainer (still no data work) -> prepare
the data -> fit -> test the best checkpoint -> write ``results.json``.
"""

from __future__ import annotations

import json
import logging
import os
import platform
import secrets
import time
import warnings
from pathlib import Path
from typing import Any

import hydra
import lightning as L
import torch
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from lightning.pytorch.loggers import Logger, WandbLogger
from lightning.pytorch.utilities import rank_zero_only
from omegaconf import DictConfig, OmegaConf

import lra_mega
from lra_mega import resolvers  # noqa: F401  (registers ${lra.*} for the configs)
from lra_mega.callbacks import SaveRunConfig
from lra_mega.identity import RunIdentity, config_digest, hydra_overrides, run_identity
from lra_mega.module import LRAClassifier
from lra_mega.resume import RESULTS_FILE, RunState, plan_resume
from lra_mega.validate import check_config, check_run_settings, trainer_error_message

log = logging.getLogger(__name__)
# The datamodule restores the position in the training order itself (RunState -> resume_at).
warnings.filterwarnings("ignore", message=r"You're resuming from a checkpoint that ended before the epoch")

WANDB_ID_FILE = "wandb_id.txt"
CURVES_FILE = "curves.png"
__all__ = ["train", "build_model", "config_digest", "check_run_settings", "RESULTS_FILE"]


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
        compile=cfg.get("compile", False),
        **OmegaConf.to_container(cfg.optim, resolve=True),
    )


def _cause(err: BaseException) -> BaseException:
    return err.__cause__ if isinstance(err, InstantiationException) and err.__cause__ else err


def build_trainer(cfg: DictConfig, **kwargs: Any) -> L.Trainer:
    """The Lightning Trainer of ``cfg.trainer``; a setting Lightning refuses gives one line."""
    try:
        return instantiate(cfg.trainer, **kwargs)
    except Exception as err:  # noqa: BLE001  (Lightning raises several types for bad flags)
        cause = _cause(err)
        if isinstance(cause, (ValueError, TypeError, RuntimeError, ImportError)) or \
                "Misconfiguration" in type(cause).__name__:
            raise ValueError(trainer_error_message(cfg, cause)) from err
        raise


def _unwrapped(build: Any, *args: Any, **kwargs: Any) -> Any:
    """``build(...)``, raising the user's ValueError itself rather than Hydra's wrapper of it."""
    try:
        return build(*args, **kwargs)
    except InstantiationException as err:
        if isinstance(err.__cause__, ValueError):
            raise err.__cause__ from None
        raise


def wandb_run_id(output_dir: Path, fresh: bool) -> str:
    """The run dir's wandb id (created once), so a resumed run continues the same wandb run."""
    path = output_dir / WANDB_ID_FILE
    if path.exists() and not fresh:
        return path.read_text().strip()
    run_id = secrets.token_hex(4)  # wandb ids: lowercase letters and digits
    output_dir.mkdir(parents=True, exist_ok=True)
    path.write_text(run_id + "\n")
    return run_id


def instantiate_loggers(cfg: DictConfig, output_dir: Path, identity: RunIdentity,
                        fresh: bool) -> list[Logger]:
    """Loggers from ``cfg.logger``; wandb gets the run dir's id, and (unless set) the run's
    name, group and tags from its preset, trainer and overrides."""
    loggers = []
    for lg_cfg in (cfg.get("logger") or {}).values():
        if lg_cfg is None:
            continue
        extra: dict[str, Any] = {}
        if str(lg_cfg._target_).endswith("WandbLogger"):
            extra["id"] = wandb_run_id(output_dir, fresh=fresh)
            for key, value in (("name", identity.name), ("group", identity.group), ("tags", identity.tags)):
                if lg_cfg.get(key) is None:
                    extra[key] = value
        loggers.append(instantiate(lg_cfg, **extra))
    return loggers


def record_config(cfg: DictConfig, output_dir: Path) -> None:
    """Write ``.hydra/`` (config, hydra config, overrides) once the run is accepted, so a refused
    or finished re-run never replaces the record of the run that is there."""
    from hydra.core.hydra_config import HydraConfig

    out = output_dir / ".hydra"
    out.mkdir(parents=True, exist_ok=True)
    OmegaConf.save(cfg, out / "config.yaml")
    if HydraConfig.initialized():
        hc = HydraConfig.get()
        OmegaConf.save(OmegaConf.create({"hydra": hc}), out / "hydra.yaml")
        OmegaConf.save(hc.overrides.task, out / "overrides.yaml")


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


def machine() -> str:
    """The hardware a result was measured on, e.g. ``x86_64, 2 CPUs, no GPU``."""
    gpus = ", ".join(torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count()))
    return (f"{platform.machine()}, {os.cpu_count()} CPUs ({torch.get_num_threads()} torch threads), "
            f"{gpus or 'no GPU'}")


def write_curves(output_dir: Path, results: dict[str, Any]) -> None:
    """``curves.png`` of the run (training loss, validation accuracy) from its csv logs."""
    from lra_mega.curves import plot_curves

    if not any(output_dir.glob("csv/version_*/metrics.csv")):
        return
    try:
        plot_curves([{**results, "_dir": output_dir, "_name": output_dir.name}], output_dir / CURVES_FILE)
    except Exception as err:  # noqa: BLE001  (a figure must never cost the run its results)
        log.warning("could not draw %s: %s", output_dir / CURVES_FILE, err)


def _at_chance(trainer: L.Trainer) -> bool | None:
    """``at_chance`` of the first callback that reports one (None when none does)."""
    for cb in trainer.callbacks:
        value = getattr(cb, "at_chance", None)
        if value is not None:
            return bool(value)
    return None


def train(cfg: DictConfig) -> dict[str, Any]:
    """Fit, test the best checkpoint, write ``results.json``; returns the results dict."""
    started = time.time()
    output_dir = Path(cfg.paths.output_dir)
    check_config(cfg, hydra_overrides())
    config = OmegaConf.to_container(cfg, resolve=True)
    identity = run_identity(config)
    plan = plan_resume(cfg.resume, output_dir, config)
    if plan.finished:
        log.info("This run already finished (%d steps); nothing changed. Results: %s. To train longer "
                 "raise trainer.max_steps; to start over pass resume=never.", plan.step,
                 output_dir / RESULTS_FILE)
        return plan.results
    L.seed_everything(cfg.seed, workers=True)

    # everything that can be checked without data: datamodule arguments, model, trainer
    log.info("Instantiating datamodule <%s>", cfg.data._target_)
    datamodule = _unwrapped(instantiate, cfg.data)
    try:
        model = _unwrapped(build_model, cfg, datamodule)
    except ValueError as err:  # the model layer names its argument: say which section it is in
        key = str(err).split("=", 1)[0]
        section = next((s for s in ("model", "head", "optim") if key.isidentifier() and key in cfg[s]), None)
        if section is None:
            raise
        raise ValueError(f"{section}.{err}") from None
    callbacks = [instantiate(c) for c in (cfg.callbacks or {}).values() if c is not None]
    run_state = RunState(cfg.optim.warmup_steps, started=started)
    loggers = instantiate_loggers(cfg, output_dir, identity, fresh=cfg.resume == "never")
    trainer = build_trainer(cfg, callbacks=[*callbacks, SaveRunConfig(config), run_state],
                            logger=loggers or False)

    if rank_zero_only.rank == 0:
        record_config(cfg, output_dir)
        # fetch / generate / decode now, so a data problem ends the run before any wandb run is
        # created; fit() calls it again and finds the cache
        datamodule.prepare_data()
    for lg in loggers:
        lg.log_hyperparams({**config, "run": identity.to_dict()})

    if plan.ckpt_path:
        log.info("Resuming from %s (step %d)", plan.ckpt_path, plan.step)
    trainer.fit(model, datamodule=datamodule, ckpt_path=plan.ckpt_path)
    fit_metrics = {k: float(v) for k, v in trainer.callback_metrics.items()}
    # the run's own verdict: testing the best checkpoint restores the callbacks' state of that
    # (possibly early) step
    at_chance = _at_chance(trainer)

    checkpoint = trainer.checkpoint_callback
    best_path = checkpoint.best_model_path if checkpoint is not None else ""
    test_metrics = {}
    if cfg.get("test", True):
        time_before = run_state.time_before  # the test restores the callbacks' state of the best step
        test_metrics = trainer.test(model, datamodule=datamodule, ckpt_path=best_path or None)[0]
        run_state.time_before = time_before

    best_score = checkpoint.best_model_score if checkpoint is not None else None
    wandb_ids = [lg.version for lg in loggers if isinstance(lg, WandbLogger)]
    results = {
        "task": cfg.task_name,
        "experiment": identity.experiment,
        "trainer": identity.trainer,
        "overrides": identity.overrides,
        "limited": identity.limited,
        "seed": identity.seed,
        "config_digest": config_digest(config),
        "seed_free_digest": config_digest(config, seed=False),
        "val_acc": fit_metrics.get("val/acc"),
        "best_val_acc": float(best_score) if best_score is not None else fit_metrics.get("val/acc"),
        "test_acc": test_metrics.get("test/acc"),
        "test_loss": test_metrics.get("test/loss"),
        "train_loss": fit_metrics.get("train/loss_epoch"),
        "at_chance": at_chance,
        "steps": trainer.global_step,
        "wall_time_s": round(run_state.wall_time(), 2),
        "best_checkpoint": best_path or None,
        "wandb_run_id": wandb_ids[0] if wandb_ids else None,
        "run_dir": str(output_dir),
        "machine": machine(),
        "versions": versions(),
    }
    if trainer.is_global_zero:
        output_dir.mkdir(parents=True, exist_ok=True)
        (output_dir / RESULTS_FILE).write_text(json.dumps(results, indent=2) + "\n")
        write_curves(output_dir, results)
        for lg in loggers:
            if isinstance(lg, WandbLogger):
                lg.experiment.summary.update({f"results/{k}": v for k, v in results.items()})
                lg.experiment.finish()  # several runs may share a process (multirun, tests)
    log.info("Results: %s", {k: results[k] for k in ("task", "best_val_acc", "test_acc")})
    return results
