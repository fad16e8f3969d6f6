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
from lra_mega.model import attention_report, start_attention_record
from lra_mega.run import resolvers  # noqa: F401  (registers ${lra.*} for the configs)
from lra_mega.run.callbacks import SaveRunConfig
from lra_mega.run.identity import RunIdentity, config_digest, hydra_overrides, run_identity
from lra_mega.run.init_from import PRETRAIN_STAGE, Pretrained, find_pretrained, load_encoder
from lra_mega.training.classifier import LRAClassifier
from lra_mega.training.pretrain import SelfPretrainer
from lra_mega.run.resume import RESULTS_FILE, RunState, plan_resume
from lra_mega.run.validate import check_config, check_run_settings, trainer_error_message

log = logging.getLogger(__name__)
# The datamodule restores the position in the training order itself (RunState -> resume_at).
warnings.filterwarnings("ignore", message=r"You're resuming from a checkpoint that ended before the epoch")

WANDB_ID_FILE = "wandb_id.txt"
__all__ = ["train", "build_model", "config_digest", "check_run_settings", "RESULTS_FILE"]


def build_model(cfg: DictConfig, datamodule: L.LightningDataModule) -> L.LightningModule:
    """The run's LightningModule, sized from the datamodule's contract attributes
    (docs/INTERFACES.md): the classifier, or for ``stage=pretrain`` the self-pretrainer of the same
    encoder."""
    encoder = OmegaConf.to_container(cfg.model, resolve=True)
    encoder.update(
        vocab_size=datamodule.vocab_size,
        input_kind=datamodule.input_kind,
        max_len=datamodule.seq_len,
    )
    optim = OmegaConf.to_container(cfg.optim, resolve=True)
    if cfg.get("stage") == PRETRAIN_STAGE:
        return SelfPretrainer(
            encoder=encoder,
            dual=datamodule.dual,
            pixel_mean=datamodule.pixel_mean,
            pixel_std=datamodule.pixel_std,
            compile=cfg.get("compile", False),
            **OmegaConf.to_container(cfg.pretrain, resolve=True),
            **optim,
        )
    head = OmegaConf.to_container(cfg.head, resolve=True)
    head.update(dim=cfg.model.dim, num_classes=datamodule.num_classes)
    return LRAClassifier(
        encoder=encoder,
        head=head,
        num_classes=datamodule.num_classes,
        dual=datamodule.dual,
        compile=cfg.get("compile", False),
        **optim,
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
    from lra_mega.results.curves import CURVES_FILE, plot_run_curves

    if not any(output_dir.glob("csv/version_*/metrics.csv")):
        return
    try:
        plot_run_curves(output_dir, results)
    except Exception as err:  # noqa: BLE001  (a figure must never cost the run its results)
        log.warning("could not draw %s: %s", output_dir / CURVES_FILE, err)


def what_ran(model: L.LightningModule, trainer: L.Trainer) -> dict[str, Any]:
    """What computed the run (for results.json and the wandb config): the attention path per
    layer kind, as recorded by the model layer since the run began (a GPU path that failed its
    self-check appears as the PyTorch path that replaced it, with the finding under
    ``self_check_fallbacks``), the precision, and whether the encoder was compiled."""
    record = attention_report()
    encoder = getattr(model, "encoder", None)
    return {
        "attention_paths": record["paths"],
        "precision": str(trainer.precision),
        "compiled": encoder is not None and getattr(encoder, "_compiled_call_impl", None) is not None,
        "self_checks": [f"{c['path']} ({c['fn']}, {c['device']}, {c['dtype']}, "
                        f"{'causal' if c['causal'] else 'bidirectional'}, {'masked' if c['masked'] else 'unmasked'}): "
                        + ("passed" if c["ok"] else "FAILED") for c in record["self_checks"]],
        "self_check_fallbacks": [{"path": f["path"], "replaced_by": f["fallback"], "reason": f["reason"],
                                  **{k: f[k] for k in ("fn", "device", "dtype", "causal", "masked")}}
                                 for f in record["fallbacks"]],
    }


def _at_chance(trainer: L.Trainer) -> bool | None:
    """``at_chance`` of the first callback that reports one (None when none does)."""
    for cb in trainer.callbacks:
        value = getattr(cb, "at_chance", None)
        if value is not None:
            return bool(value)
    return None


def _scores(stage: str, fit: dict[str, float], test: dict[str, float], best: float | None) -> dict[str, Any]:
    """The run's numbers in ``results.json``: accuracy of a classifier; loss and masked accuracy
    (the share of hidden or next positions predicted exactly) of a pretraining run."""
    if stage == PRETRAIN_STAGE:
        return {"val_loss": fit.get("val/loss"),
                "best_val_loss": best if best is not None else fit.get("val/loss"),
                "val_masked_acc": fit.get("val/masked_acc"), "test_loss": test.get("test/loss"),
                "test_masked_acc": test.get("test/masked_acc"), "train_loss": fit.get("train/loss_epoch")}
    return {"val_acc": fit.get("val/acc"), "best_val_acc": best if best is not None else fit.get("val/acc"),
            "test_acc": test.get("test/acc"), "test_loss": test.get("test/loss"),
            "train_loss": fit.get("train/loss_epoch")}


def start_from(cfg: DictConfig, model: L.LightningModule, resumed: bool) -> Pretrained | None:
    """``init_from``: read the pretraining checkpoint and, on a fresh start, load its encoder into
    ``model`` (a resumed run has its own weights; there an unreadable ``init_from`` is only noted)."""
    spec = cfg.get("init_from")
    if spec is None:
        return None
    if not resumed:
        pretrained = find_pretrained(str(spec), str(cfg.task_name))
        load_encoder(model, pretrained, str(spec))
        log.info("Encoder initialised from %s (a fresh head)", pretrained.path)
        pretrained.checkpoint = {}  # the weights are in the model now; the config names the run
        return pretrained
    try:
        pretrained = find_pretrained(str(spec), str(cfg.task_name))
        pretrained.checkpoint = {}
        return pretrained
    except ValueError as err:
        log.warning("resumed run: its init_from cannot be read any more (%s); results.json names it as given", err)
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
    start_attention_record()  # results.json names the attention paths this run takes

    # everything that can be checked without data: datamodule arguments, model, trainer
    log.info("Instantiating datamodule <%s>", cfg.data._target_)
    datamodule = _unwrapped(instantiate, cfg.data)
    try:
        model = _unwrapped(build_model, cfg, datamodule)
    except ValueError as err:  # the model layer names its argument: say which section it is in
        key = str(err).split("=", 1)[0]
        section = next((s for s in ("model", "head", "optim", "pretrain")
                        if key.isidentifier() and key in (cfg.get(s) or {})), None)
        if section is None:
            raise
        raise ValueError(f"{section}.{err}") from None
    pretrained = start_from(cfg, model, resumed=plan.ckpt_path is not None)
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
    best_score = float(best_score) if best_score is not None else None
    wandb_ids = [lg.version for lg in loggers if isinstance(lg, WandbLogger)]
    init_config = pretrained.config if pretrained is not None else None
    results = {
        "task": cfg.task_name,
        "stage": identity.stage,
        "model": str(cfg.model.get("_target_", "")).rsplit(".", 1)[-1] or None,  # the encoder's class
        "experiment": identity.experiment,
        "trainer": identity.trainer,
        "overrides": identity.overrides,
        "limited": identity.limited,
        "seed": identity.seed,
        "config_digest": config_digest(config, init=init_config),
        "seed_free_digest": config_digest(config, seed=False, init=init_config),
        **_scores(identity.stage, fit_metrics, test_metrics, best_score),
        "at_chance": at_chance,
        "steps": trainer.global_step,
        "wall_time_s": round(run_state.wall_time(), 2),
        "best_checkpoint": best_path or None,
        "init_from": str(pretrained.path.resolve()) if pretrained is not None else cfg.get("init_from"),
        "wandb_run_id": wandb_ids[0] if wandb_ids else None,
        "run_dir": str(output_dir),
        "machine": machine(),
        "versions": versions(),
        "ran": what_ran(model, trainer),
    }
    if trainer.is_global_zero:
        output_dir.mkdir(parents=True, exist_ok=True)
        (output_dir / RESULTS_FILE).write_text(json.dumps(results, indent=2) + "\n")
        write_curves(output_dir, results)
        for lg in loggers:
            lg.log_hyperparams({"ran": results["ran"]})  # the wandb config (and hparams.yaml) too
            lg.save()
            if isinstance(lg, WandbLogger):
                lg.experiment.summary.update({f"results/{k}": v for k, v in results.items()})
                lg.experiment.finish()  # several runs may share a process (multirun, tests)
    pretraining = identity.stage == PRETRAIN_STAGE
    shown = ("best_val_loss", "test_masked_acc") if pretraining else ("best_val_acc", "test_acc")
    log.info("Results: %s; ran: %s", {k: results[k] for k in ("task", "stage", *shown)},
             {k: results["ran"][k] for k in ("attention_paths", "precision", "compiled")})
    return results
