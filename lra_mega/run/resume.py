"""Resume a run only when it can be honoured, and then exactly.

* :func:`plan_resume` reads the checkpoint a run would continue from, refuses a corrupt one or one
  whose run was defined differently (one line listing the keys, and the two ways out), and notices a
  finished run (re-running it changes nothing).
* :class:`RunState` is the callback that makes resuming exact: RNG states, the position in the
  training order, the LR schedule when ``trainer.max_steps`` changes, and the accumulated wall time.

LR rule when ``trainer.max_steps`` changes on resume (docs/RESUME.md): a run still in warmup
keeps its warmup and plans the decay to the new end; otherwise the LR continues from the last LR
used, ``m`` (as a multiple of the peak), decaying linearly to 0 at the new ``max_steps``:
``lr(t) = peak * m * (T_new - t) / (T_new - s + 1)`` for every update ``t >= s`` (``s`` = the first
update of the resumed run). No jump, whatever the old schedule was.
"""

from __future__ import annotations

import json
import logging
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch

from lra_mega.run.callbacks import CONFIG_KEY

log = logging.getLogger(__name__)

RESULTS_FILE = "results.json"
LAST_CHECKPOINT = "last.ckpt"
RNG_KEY = "lra_mega_rng"
# Settings that may change between invocations of one run (prefixes of dotted keys); everything
# else defines the run (model, data, seed, optimizer, schedule shape, batch, precision, devices).
MAY_CHANGE = (
    "trainer.max_steps", "optim.total_steps", "trainer.val_check_interval",
    "trainer.check_val_every_n_epoch", "trainer.log_every_n_steps", "trainer.num_sanity_val_steps",
    "trainer.max_time", "trainer.limit_val_batches", "trainer.limit_test_batches",
    "trainer.enable_progress_bar", "trainer.enable_model_summary", "trainer.default_root_dir",
    "trainer.accelerator", "trainer.profiler", "trainer.benchmark",
    "data.root", "data.cache_dir", "data.num_workers", "data.pin_memory", "data.workers",
    "logger", "callbacks", "paths", "resume", "test", "optimized_metric", "run_name", "hydra", "compile",
    "model.attention_impl",  # the kernels of the same maths (a machine without a working fused path)
)


# Keys added after runs were stored, with the value a config that lacks them had in effect.
ADDED_LATER = {"stage": "classify", "init_from": None}

RESUME_FIX = ("delete it and resume from another checkpoint (resume=<path>.ckpt), or start over with "
              "resume=never")


def _one_line(err: BaseException) -> str:
    text = " ".join(str(err).split()).split(". ")[0]
    return (text if len(text) <= 120 else text[:117] + "...") or type(err).__name__


def load_checkpoint(path: str | Path, fix: str = RESUME_FIX) -> dict[str, Any]:
    """The checkpoint dict; a file torch cannot read gives one line naming it and ``fix``."""
    try:
        return torch.load(path, map_location="cpu", weights_only=False)
    except Exception as err:  # noqa: BLE001  (torch raises many types for a bad file)
        raise ValueError(
            f"checkpoint {path} cannot be read ({type(err).__name__}: {_one_line(err)}); it is truncated "
            f"or corrupt: {fix}"
        ) from err


def flatten(node: Any, prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` -> ``{"a.b": 1}`` (lists stay values)."""
    if not isinstance(node, dict) or not node:
        return {prefix.rstrip("."): node} if prefix else {}
    out: dict[str, Any] = {}
    for k, v in node.items():
        out.update(flatten(v, f"{prefix}{k}."))
    return out


def _may_change(key: str) -> bool:
    return any(key == p or key.startswith(p + ".") for p in MAY_CHANGE)


def config_differences(old: dict[str, Any], new: dict[str, Any]) -> list[tuple[str, Any, Any]]:
    """``(key, stored, new)`` for every setting that defines the run and differs. A key added to
    the configs later counts as its default in a config stored before (:data:`ADDED_LATER`)."""
    a, b = flatten(old), flatten(new)
    missing = object()
    diffs = []
    for key in sorted(set(a) | set(b)):
        if _may_change(key):
            continue
        va, vb = a.get(key, ADDED_LATER.get(key, missing)), b.get(key, ADDED_LATER.get(key, missing))
        if va != vb:
            diffs.append((key, "(unset)" if va is missing else va, "(unset)" if vb is missing else vb))
    return diffs


@dataclass
class ResumePlan:
    """What this invocation does with the run directory."""

    ckpt_path: str | None = None
    step: int = 0
    finished: bool = False
    results: dict[str, Any] = field(default_factory=dict)


def _checkpoint_path(resume: str, ckpt_dir: Path) -> str | None:
    if resume == "never":
        return None
    if resume == "auto":
        last = ckpt_dir / LAST_CHECKPOINT
        return str(last) if last.exists() else None
    if not Path(resume).is_file():
        raise ValueError(f"resume={resume!r} is not a checkpoint file; use auto, never or a .ckpt path")
    return str(resume)


def plan_resume(resume: str, output_dir: Path, config: dict[str, Any]) -> ResumePlan:
    """Decide how this invocation uses ``output_dir``; raise one ValueError line when it cannot."""
    ckpt_path = _checkpoint_path(resume, output_dir / "checkpoints")
    if ckpt_path is None:
        return ResumePlan()
    ckpt = load_checkpoint(ckpt_path)
    stored = ckpt.get(CONFIG_KEY)
    if not isinstance(stored, dict):
        raise ValueError(f"checkpoint {ckpt_path} holds no run config: it was not written by "
                         f"`python -m lra_mega`; start over with resume=never or use a new run directory")
    diffs = config_differences(stored, config)
    if diffs:
        shown = "; ".join(f"{k}: {_short(a)} -> {_short(b)}" for k, a, b in diffs[:6])
        more = f"; and {len(diffs) - 6} more" if len(diffs) > 6 else ""
        raise ValueError(
            f"cannot resume {ckpt_path}: it was trained with other settings that define the run "
            f"({shown}{more}); run these settings in a new run directory (hydra.run.dir=<new dir>), "
            f"or start over here with resume=never"
        )
    step = int(ckpt.get("global_step", 0))
    max_steps = int(config["trainer"]["max_steps"])
    results_path = output_dir / RESULTS_FILE
    if step >= max_steps and results_path.is_file():
        try:
            results = json.loads(results_path.read_text())
        except ValueError:
            results = {}
        if results.get("steps") == step:
            return ResumePlan(ckpt_path, step, finished=True, results=results)
    if step > max_steps:
        raise ValueError(f"trainer.max_steps={max_steps} is below the {step} steps {ckpt_path} already "
                         f"trained; give trainer.max_steps >= {step}, or start over with resume=never")
    return ResumePlan(ckpt_path, step)


def _short(value: Any) -> str:
    text = json.dumps(value, default=str) if not isinstance(value, str) else value
    return text if len(text) <= 40 else text[:37] + "..."


def _rng_state() -> dict[str, Any]:
    # tensors and plain values only, so Lightning's weights_only loading accepts the checkpoint
    name, keys, pos, has_gauss, gauss = np.random.get_state()
    numpy_state = [name, torch.from_numpy(keys.astype(np.int64)), int(pos), int(has_gauss), float(gauss)]
    state = {"torch": torch.get_rng_state(), "numpy": numpy_state, "python": random.getstate()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    name, keys, pos, has_gauss, gauss = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, gauss))
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(state["cuda"])


def _loop_position(ckpt: dict[str, Any]) -> tuple[int, int] | None:
    """(epoch, batches done in it) of the fit loop stored in a Lightning checkpoint."""
    try:
        fit = ckpt["loops"]["fit_loop"]
        return (int(fit["epoch_progress"]["current"]["processed"]),
                int(fit["epoch_loop.batch_progress"]["current"]["processed"]))
    except (KeyError, TypeError):
        return None


class RunState(L.Callback):
    """Saves and restores what Lightning leaves out of a checkpoint, so a resumed run continues
    exactly: RNG states, the position in the training order, the LR plan, the wall time."""

    def __init__(self, warmup_steps: int, started: float | None = None) -> None:
        self.warmup_steps = int(warmup_steps)
        self.started = time.time() if started is None else started
        self.time_before = 0.0          # wall time of earlier invocations, up to their checkpoint
        self.last_lr_scale: float | None = None  # LR of the last update / peak LR
        self.anchor: tuple[int, float, int] | None = None  # (first step, scale, total) of a re-plan
        self.planned_total: int | None = None
        self._rng: dict[str, Any] | None = None
        self._resumed = False

    # ----- wall time -------------------------------------------------------------------

    def wall_time(self) -> float:
        """Seconds of work behind the results: earlier invocations up to the checkpoint they left,
        plus this invocation so far."""
        return self.time_before + time.time() - self.started

    # ----- checkpoint ------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        return {"wall_time_s": self.wall_time(), "last_lr_scale": self.last_lr_scale,
                "anchor": self.anchor, "planned_total": self.planned_total}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.time_before = float(state.get("wall_time_s", 0.0))
        self.last_lr_scale = state.get("last_lr_scale")
        self.anchor = tuple(state["anchor"]) if state.get("anchor") else None
        self.planned_total = state.get("planned_total")

    def on_save_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule,
                           checkpoint: dict[str, Any]) -> None:
        checkpoint[RNG_KEY] = _rng_state()

    def on_load_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule,
                           checkpoint: dict[str, Any]) -> None:
        self._resumed = True
        self._rng = checkpoint.get(RNG_KEY)
        position = _loop_position(checkpoint)
        datamodule = trainer.datamodule
        if position is None or not hasattr(datamodule, "resume_at"):
            return
        if trainer.world_size > 1:
            # Lightning wraps the sampler in a DistributedSampler that needs whole epochs
            log.warning("resuming under %d processes: epoch %d restarts its training order (the "
                        "position within the epoch is restored in single-process runs only)",
                        trainer.world_size, position[0])
            return
        datamodule.resume_at(*position)

    # ----- training --------------------------------------------------------------------

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        total = int(trainer.max_steps)
        step = int(trainer.global_step)
        if self._resumed and self.planned_total is not None and total != self.planned_total:
            if step >= self.warmup_steps and self.last_lr_scale is not None:
                self.anchor = (step, float(self.last_lr_scale), total)
            else:
                self.anchor = None  # still warming up: the schedule built for the new total holds
            log.info("trainer.max_steps %d -> %d at step %d: %s", self.planned_total, total, step,
                     "LR decays linearly from its last value to 0 at the new end" if self.anchor
                     else "warmup continues, decay planned to the new end")
        self.planned_total = total
        if self.anchor is not None:
            self._install_anchor(trainer, step)

    def _install_anchor(self, trainer: L.Trainer, step: int) -> None:
        first, scale, total = self.anchor

        def continued(t: int) -> float:
            return max(0.0, scale * (total - t) / max(1, total - first + 1))

        for config in trainer.lr_scheduler_configs:
            scheduler = config.scheduler
            if not hasattr(scheduler, "lr_lambdas"):
                log.warning("LR scheduler %s cannot be re-planned; it keeps its schedule",
                            type(scheduler).__name__)
                continue
            scheduler.lr_lambdas = [continued] * len(scheduler.lr_lambdas)
            lrs = [base * continued(step) for base in scheduler.base_lrs]
            for group, lr in zip(scheduler.optimizer.param_groups, lrs):
                group["lr"] = lr
            scheduler._last_lr = lrs

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule,
                             batch: Any, batch_idx: int) -> None:
        if self._rng is not None:  # as late as possible: nothing else may draw after the restore
            _set_rng_state(self._rng)
            self._rng = None

    def on_before_optimizer_step(self, trainer: L.Trainer, pl_module: L.LightningModule,
                                 optimizer: torch.optim.Optimizer) -> None:
        for config in trainer.lr_scheduler_configs:
            base = getattr(config.scheduler, "base_lrs", None)
            if base and base[0] > 0:
                self.last_lr_scale = optimizer.param_groups[0]["lr"] / base[0]
            break
