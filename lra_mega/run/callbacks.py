"""Small callbacks and helper functions referenced from ``configs/callbacks``."""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from typing import Any

import lightning as L
import torch
from torch import Tensor

log = logging.getLogger(__name__)

CONFIG_KEY = "lra_mega_config"


def batch_size(batch: Mapping[str, Tensor]) -> int:
    """Examples in a batch (for ``ThroughputMonitor(batch_size_fn=...)``)."""
    return len(batch["label"])


def num_tokens(batch: Mapping[str, Tensor]) -> int:
    """Real (non-pad) positions in a batch, both documents for retrieval."""
    return int(batch["mask"].sum())


def total_steps(trainer: L.Trainer) -> int | float:
    """The run's optimizer steps: ``trainer.max_steps``, else Lightning's estimate from the epochs."""
    total = trainer.max_steps if trainer.max_steps and trainer.max_steps > 0 else None
    return total or trainer.estimated_stepping_batches


class SaveRunConfig(L.Callback):
    """Stores the resolved run config in every checkpoint, so a checkpoint alone can
    rebuild its datamodule (``scripts/evaluate.py``)."""

    def __init__(self, config: Mapping[str, Any]) -> None:
        self.config = dict(config)

    def on_save_checkpoint(
        self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        checkpoint[CONFIG_KEY] = self.config


def plateau_advice(encoder: Mapping[str, Any] | None = None) -> str:
    """What the chance warning tells a user to try (each lever's probes: docs/RESULTS.md, "every lever
    probed"). ``encoder``: the run's encoder config; the EMA-init lever only where it has
    ``ema_init`` (Mega's, not Megalodon's; both take the EMA's own optimiser group)."""
    if encoder is None or "ema_init" in encoder:
        ema = ("spread the EMA's memory over the sequence (model.ema_init=timescale) and keep it out of "
               "weight decay (optim.ema_weight_decay=0)")
    else:
        ema = "keep the EMA out of weight decay (optim.ema_weight_decay=0)"
    return (
        f"To try: {ema}; a lower peak rate (optim.lr) and a longer optim.warmup_steps; a wider attention "
        "span (model.chunk_size=512, or -1 for full); a curriculum of easier contour lengths "
        "(data.train_difficulties=[6,9,14], Pathfinder); and check the data. What each did on Pathfinder: "
        "docs/RESULTS.md, \"every lever probed\"."
    )


PLATEAU_ADVICE = plateau_advice()


class ChanceLevel(L.Callback):
    """Warns once when validation accuracy is still at chance after a share of training.

    Chance is the better of 1/C and always answering the most frequent validation label; a
    run counts as at chance while its best ``val/acc`` so far is within
    ``max(margin, 2 standard errors of chance)`` of it. From the first validation at or after
    ``after · max_steps`` on, :attr:`at_chance` is True or False (None before); the run's
    ``results.json`` records it. Runs that never leave chance are a known LRA failure (Path-X).
    """

    def __init__(self, after: float = 0.25, margin: float = 0.01, metric: str = "val/acc") -> None:
        if not 0.0 <= after <= 1.0:
            raise ValueError(
                f"callbacks.chance_level.after={after!r} must be a share of the steps in [0, 1]"
            )
        if not 0.0 <= margin < 1.0:
            raise ValueError(f"callbacks.chance_level.margin={margin!r} must lie in [0, 1)")
        self.after, self.margin, self.metric = after, margin, metric
        self.at_chance: bool | None = None
        self.best: float | None = None
        self.warned = False
        self._counts: Tensor | None = None

    def on_validation_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._counts = None

    def on_validation_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any,
        batch: Mapping[str, Tensor], batch_idx: int, dataloader_idx: int = 0,
    ) -> None:
        labels = batch["label"].detach().long().flatten()
        counts = torch.bincount(labels, minlength=int(pl_module.hparams.num_classes))
        self._counts = counts if self._counts is None else self._counts + counts

    def chance(self, counts: Tensor) -> tuple[float, float]:
        """(chance accuracy, accuracy up to which a run counts as at chance) for label counts."""
        n = max(1, int(counts.sum()))
        chance = max(1.0 / len(counts), float(counts.max()) / n)
        return chance, chance + max(self.margin, 2.0 * math.sqrt(chance * (1.0 - chance) / n))

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        value = trainer.callback_metrics.get(self.metric)
        if trainer.sanity_checking or value is None or self._counts is None:
            return
        self.best = max(float(value), self.best if self.best is not None else float("-inf"))
        total = total_steps(trainer)
        if trainer.global_step < self.after * total:
            return
        counts = trainer.strategy.reduce(self._counts.to(pl_module.device), reduce_op="sum")
        chance, threshold = self.chance(counts.cpu())
        was, self.at_chance = self.at_chance, self.best <= threshold
        if not trainer.is_global_zero:
            return
        if self.at_chance and not self.warned:
            self.warned = True
            log.warning(
                "%s is still at chance after %d of %d steps (%.0f%%): best %.4f <= %.4f (chance "
                "%.4f over %d validation examples). The run may be stuck on the plateau, a known LRA "
                "failure (Pathfinder, Path-X). %s results.json records at_chance=true.",
                self.metric, trainer.global_step, total, 100 * trainer.global_step / total, self.best,
                threshold, chance, int(counts.sum()), plateau_advice(getattr(pl_module.hparams, "encoder", None)),
            )
        elif was and not self.at_chance:
            log.info("%s left chance level at step %d (best %.4f > %.4f)", self.metric,
                     trainer.global_step, self.best, threshold)

    def state_dict(self) -> dict[str, Any]:
        return {"at_chance": self.at_chance, "best": self.best, "warned": self.warned}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.at_chance = state_dict.get("at_chance")
        self.best = state_dict.get("best")
        self.warned = bool(state_dict.get("warned", False))
