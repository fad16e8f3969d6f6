"""What a run is: its preset, trainer, overrides, whether it is size-limited, and its digests.

These go into ``results.json`` and the wandb run (name, group, tags, config), so a smoke run or a
Mega-chunk run is never mistaken for the paper's setting.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from typing import Any

from omegaconf import DictConfig, OmegaConf

# What a run computes (the digest's input), minus where it reads and writes.
_DIGEST_KEYS = ("task_name", "seed", "data", "model", "head", "optim", "trainer")
_WHERE_KEYS = {
    "data": ("root", "cache_dir", "num_workers", "pin_memory"),
    "trainer": ("default_root_dir",),
    "model": ("attention_impl",),  # which kernels compute the same attention (results.json records it)
}
DEFAULT_STAGE = "classify"
# Settings added after runs were recorded, with the value that computes what those runs computed:
# left out of the digest at that value, so a run of today's preset groups with the earlier seeds.
_LATER_KEYS = {
    "data": {"eos": False, "train_difficulties": None},
    "model": {"ema_init": "official", "ema_timescales": [2, 1024]},
    "optim": {"ema_lr_scale": 1.0, "ema_weight_decay": None},
}
# Overrides that only say where a run lives or how it logs: left out of the wandb name.
_NAME_SKIP = ("task", "experiment", "stage", "logger", "callbacks", "resume", "paths", "hydra", "data.root",
              "data.cache_dir", "data.num_workers", "data.pin_memory", "data.path", "test",
              "optimized_metric", "sweep")
# limit_val_batches is not among them: validating on a share of the val split only picks the
# checkpoint (the lite presets do it); the test still reads the whole test split
_LIMIT_FLAGS = ("limit_train_batches", "limit_test_batches", "overfit_batches")


def config_digest(config: dict[str, Any], seed: bool = True, init: dict[str, Any] | None = None) -> str:
    """sha256 of the resolved settings that decide the result (not paths, loggers, workers).

    ``seed=False`` leaves out ``seed`` and the training order it sets (``data.shuffle_seed``):
    runs that differ only by seed share that digest. A pretraining run adds its ``stage`` and
    ``pretrain`` settings; a run started ``init_from`` a pretraining run adds that run's digest
    (``init``: its stored config; without it, the path as given), so fine-tuning runs group by the
    pretraining setting they started from, whatever its directory. Plain classification runs keep
    the digest they had before stages existed.
    """
    kept = {k: config.get(k) for k in _DIGEST_KEYS}
    for section, keys in _WHERE_KEYS.items():
        kept[section] = {k: v for k, v in (kept[section] or {}).items() if k not in keys}
    for section, earlier in _LATER_KEYS.items():
        kept[section] = {k: v for k, v in (kept[section] or {}).items()
                         if not (k in earlier and v == earlier[k])}
    if not seed:
        kept.pop("seed")
        kept["data"] = {k: v for k, v in kept["data"].items() if k != "shuffle_seed"}
    stage = config.get("stage") or DEFAULT_STAGE
    if stage != DEFAULT_STAGE:
        kept["stage"], kept["pretrain"] = stage, config.get("pretrain")
    if config.get("init_from") is not None:
        kept["init_from"] = config_digest(init, seed=seed) if init else str(config["init_from"])
    return hashlib.sha256(json.dumps(kept, sort_keys=True, default=str).encode()).hexdigest()


def _hydra() -> DictConfig | None:
    from hydra.core.hydra_config import HydraConfig

    return HydraConfig.get() if HydraConfig.initialized() else None


def hydra_overrides() -> list[str]:
    """The command line's config overrides (``hydra.overrides.task``); empty outside Hydra."""
    hc = _hydra()
    if hc is None:
        return []
    # unresolved: an override may itself hold a ${...} (reported by the checks, not here)
    return [str(o) for o in OmegaConf.to_container(hc.overrides.task, resolve=False)]


def is_limited(config: dict[str, Any], trainer_choice: str | None) -> bool:
    """True for runs that are not the full benchmark: trainer=smoke, data.limit_examples,
    trainer.limit_train_batches / limit_test_batches / overfit_batches, fast_dev_run."""
    trainer = config.get("trainer") or {}
    if trainer_choice == "smoke" or (config.get("data") or {}).get("limit_examples") is not None:
        return True
    if trainer.get("fast_dev_run"):
        return True
    for key in _LIMIT_FLAGS:
        value = trainer.get(key)
        if value is None or (key == "overfit_batches" and value == 0):
            continue
        if key != "overfit_batches" and isinstance(value, float) and value == 1.0:
            continue  # 1.0: all batches (an int 1 means one batch)
        return True
    return False


@dataclass
class RunIdentity:
    """The run's preset, trainer and overrides, and the names derived from them."""

    task: str
    experiment: str | None
    trainer: str | None
    overrides: list[str] = field(default_factory=list)
    limited: bool = False
    seed: int = 0
    stage: str = DEFAULT_STAGE
    init_from: str | None = None

    @property
    def preset(self) -> str:
        """``experiment`` when one was chosen, else the task (its ``task=<t>`` defaults)."""
        return self.experiment or self.task

    def _tail(self, with_seed: bool) -> list[str]:
        out = [] if self.stage == DEFAULT_STAGE else [f"stage={self.stage}"]
        out += [] if self.trainer in (None, "default") else [f"trainer={self.trainer}"]
        for ov in self.overrides:
            key = ov.lstrip("+~").split("=", 1)[0]
            if key == "trainer" or any(key == s or key.startswith(s + ".") for s in _NAME_SKIP):
                continue
            if key == "seed" and not with_seed:
                continue
            # a group holds the seeds of one setting: their init_from paths differ by seed
            out.append(ov if with_seed or key != "init_from" else "init_from")
        return out

    @property
    def name(self) -> str:
        """wandb run name, e.g. ``pathfinder_chunk[trainer=smoke,optim.lr=0.003]``; a pretraining
        run's starts with its stage, e.g. ``listops_lite[stage=pretrain,seed=1]``."""
        tail = self._tail(with_seed=True)
        return f"{self.preset}[{','.join(tail)}]" if tail else self.preset

    @property
    def group(self) -> str:
        """wandb group: the name without the seed, so the seeds of one setting group together."""
        tail = self._tail(with_seed=False)
        return f"{self.preset}[{','.join(tail)}]" if tail else self.preset

    @property
    def tags(self) -> list[str]:
        tags = [self.task, f"preset:{self.preset}", f"trainer:{self.trainer or 'default'}",
                f"stage:{self.stage}"]
        return tags + (["init:pretrained"] if self.init_from else []) + (["limited"] if self.limited else [])

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "preset": self.preset, "name": self.name, "group": self.group}


def run_identity(config: dict[str, Any]) -> RunIdentity:
    """Identity of the run being composed (Hydra's runtime choices and task overrides)."""
    hc = _hydra()
    choices = dict(hc.runtime.choices) if hc is not None else {}
    overrides = hydra_overrides()
    trainer = choices.get("trainer")
    return RunIdentity(
        task=str(config.get("task_name")),
        experiment=choices.get("experiment"),
        trainer=trainer,
        overrides=overrides,
        limited=is_limited(config, trainer),
        seed=int(config.get("seed", 0)),
        stage=str(config.get("stage") or DEFAULT_STAGE),
        init_from=None if config.get("init_from") is None else str(config["init_from"]),
    )
