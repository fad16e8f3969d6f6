"""Self-pretraining (SPT, ``stage=pretrain``): the task's encoder trained on the task's own training
inputs, without their labels (Amos, Berant and Gupta, "Never Train from Scratch", ICLR 2024).

* ``objective="masked"`` (a bidirectional encoder): in every sequence ``mask_prob`` of the real
  positions are hidden (their input embedding replaced by a learned ``mask_embedding``, the
  [MASK] input) and predicted from the others.
* ``objective="causal"`` (a causal encoder, ``model.bidirectional=false``): every position
  predicts the next one.

Token tasks predict the token (cross-entropy over the vocabulary); pixel tasks predict the pixel,
``loss="l1"`` its normalised value (absolute error) or ``loss="ce"`` its grey level (cross-entropy
over 256). Only the predicted positions count, in the loss and in ``masked_acc`` (the share of
them predicted exactly: the arg-max token or level, or for ``l1`` the nearest level). Retrieval's
two documents are two sequences. A fine-tuning run takes the encoder (``init_from``), never the
prediction layer or the mask embedding.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from typing import Any

import lightning as L
import torch
from torch import Tensor, nn
from torchmetrics import MeanMetric, MinMetric

from lra_mega.training.masking import (LOSSES, OBJECTIVES, PIXEL_LEVELS, choose_masked, masked_accuracy, masked_loss,
                              next_position_targets, pixel_levels)
from lra_mega.training.classifier import _build, check_compile, compile_encoder, fill_metric_states, keep_across_resume
from lra_mega.training.optim import adamw_with_schedule, check_schedule

STAGE = "pretrain"


def _choice(key: str, value: Any, allowed: tuple[str, ...], what: str) -> str:
    if value in allowed:
        return value
    near = difflib.get_close_matches(str(value), allowed, n=1)
    raise ValueError(f"pretrain.{key}={value!r} is not valid; choose one of: {', '.join(allowed)} ({what})"
                     f"{f'; did you mean {near[0]}?' if near else ''}")


class SelfPretrainer(L.LightningModule):
    """Encoder + a linear prediction layer trained to predict hidden or next input positions.

    ``encoder`` is a module or a ``_target_`` config (saved as a hyperparameter, so a checkpoint
    rebuilds it). ``loss=None`` picks ``ce`` for token input and ``l1`` for pixels. ``pixel_mean``
    and ``pixel_std`` are the datamodule's pixel normalisation (levels for ``ce``, accuracy for
    ``l1``). Validation and test hide the same positions every time (a generator seeded by the
    batch index), so their losses compare across steps; training draws from the global RNG, which
    an exact resume restores. The optimizer arguments are those of :class:`LRAClassifier`.
    """

    def __init__(
        self,
        encoder: nn.Module | Mapping,
        objective: str = "masked",
        mask_prob: float = 0.15,
        loss: str | None = None,
        dual: bool = False,
        pixel_mean: float = 0.0,
        pixel_std: float = 1.0,
        lr: float = 1e-3,
        weight_decay: float = 0.01,
        betas: tuple[float, float] = (0.9, 0.98),
        eps: float = 1e-8,
        warmup_steps: int = 0,
        total_steps: int = 1,
        warmup_init_lr: float = 0.0,
        warmup_power: float = 1.0,
        weight_decay_exempt: bool = False,
        ema_lr_scale: float = 1.0,
        ema_weight_decay: float | None = None,
        compile: bool = False,
    ) -> None:
        super().__init__()
        check_compile(compile)
        check_schedule(lr, warmup_init_lr, warmup_power)
        _choice("objective", objective, OBJECTIVES,
                "masked: hide a share of the positions, bidirectional encoder; causal: predict the next one")
        self.save_hyperparameters(ignore=["encoder"] if isinstance(encoder, nn.Module) else [])
        self.encoder = _build(encoder)
        tokens = self.encoder.input_kind == "tokens"
        self.loss_kind = _choice("loss", ("ce" if tokens else "l1") if loss is None else loss, LOSSES,
                                 "ce: cross-entropy over the tokens or 256 grey levels; l1: the pixel value")
        if tokens and self.loss_kind == "l1":
            raise ValueError("pretrain.loss='l1' predicts a real value, but this task's input is tokens; "
                             "token tasks predict their token with pretrain.loss=ce (or null)")
        causal = bool(self.encoder.layers[0].attention.causal)
        if objective == "causal" and not causal:
            raise ValueError("pretrain.objective=causal needs a causal encoder: add model.bidirectional=false "
                             "(and keep it in the fine-tuning run, whose encoder must match)")
        if objective == "masked" and causal:
            raise ValueError("pretrain.objective=masked needs a bidirectional encoder (model.bidirectional=true); "
                             "a causal encoder pretrains with pretrain.objective=causal")
        if objective == "masked" and not (isinstance(mask_prob, (int, float)) and 0.0 < mask_prob < 1.0):
            raise ValueError(f"pretrain.mask_prob={mask_prob!r} is not valid; it must lie in (0, 1): the share "
                             f"of positions hidden (the paper: ListOps 0.1, Text and Retrieval 0.15, pixels 0.5)")
        dim = self.encoder.dim
        outputs = self.encoder.embed.num_embeddings if tokens else (PIXEL_LEVELS if self.loss_kind == "ce" else 1)
        self.predictor = nn.Linear(dim, outputs)
        self.mask_embedding = nn.Parameter(torch.randn(dim) * dim**-0.5) if objective == "masked" else None
        self.train_acc, self.val_acc, self.test_acc = MeanMetric(), MeanMetric(), MeanMetric()
        self.val_loss, self.test_loss = MeanMetric(), MeanMetric()
        self.val_loss_best = MinMetric()
        keep_across_resume(self.train_acc, self.val_loss_best)
        self.flops_per_batch: int | None = None  # not counted for pretraining

    def configure_model(self) -> None:
        compile_encoder(self.encoder, self.hparams.get("compile", False))

    # ----- the objective -------------------------------------------------------------------

    def targets(self, x: Tensor) -> Tensor:
        """What each position's prediction is compared with: its token, grey level or value."""
        if self.encoder.input_kind == "tokens" or self.loss_kind == "l1":
            return x
        return pixel_levels(x, self.hparams.pixel_mean, self.hparams.pixel_std)

    def predict(self, x: Tensor, mask: Tensor, generator: torch.Generator | None = None
                ) -> tuple[Tensor, Tensor, Tensor]:
        """(predictions, targets, where): predictions (N, L, C) logits or (N, L) values for the
        sequences ``x`` (N, L) with padding ``mask``; ``where`` marks the positions that count."""
        if self.hparams.objective == "masked":
            where = choose_masked(mask, self.hparams.mask_prob, generator)
            features = self.encoder(x, mask, masked=where, mask_embedding=self.mask_embedding)
            target = self.targets(x)
        else:
            features = self.encoder(x, mask)
            target, where = next_position_targets(self.targets(x), mask)
        prediction = self.predictor(features)
        return (prediction.squeeze(-1) if self.loss_kind == "l1" else prediction), target, where

    def _eval_generator(self, batch_idx: int, device: torch.device) -> torch.Generator:
        return torch.Generator(device=device).manual_seed(1_000_003 + batch_idx)

    def _step(self, batch: Mapping[str, Tensor], stage: str, batch_idx: int) -> Tensor:
        x, mask = batch["input"], batch["mask"]
        if self.hparams.dual:  # retrieval: both documents are sequences of their own
            x, mask = x.flatten(0, 1), mask.flatten(0, 1)
        generator = None if stage == "train" else self._eval_generator(batch_idx, x.device)
        prediction, target, where = self.predict(x, mask, generator)
        loss = masked_loss(prediction, target, where, self.loss_kind)
        hits, count = masked_accuracy(prediction.detach(), target, where, self.loss_kind,
                                      self.hparams.pixel_mean, self.hparams.pixel_std)
        weight = count.clamp(min=1).float()
        acc = getattr(self, f"{stage}_acc")
        acc(hits.float() / weight, weight)
        kw: dict[str, Any] = {"on_step": stage == "train", "on_epoch": True, "batch_size": len(batch["label"])}
        if stage == "train":
            self.log("train/loss", loss, prog_bar=True, **kw)
        else:
            mean = getattr(self, f"{stage}_loss")
            mean(loss.detach(), weight)  # mean over the split's predicted positions
            self.log(f"{stage}/loss", mean, prog_bar=True, **kw)
        self.log(f"{stage}/masked_acc", acc, prog_bar=True, **kw)
        return loss

    # ----- Lightning hooks -----------------------------------------------------------------

    def training_step(self, batch: Mapping[str, Tensor], batch_idx: int) -> Tensor:
        return self._step(batch, "train", batch_idx)

    def validation_step(self, batch: Mapping[str, Tensor], batch_idx: int) -> None:
        self._step(batch, "val", batch_idx)

    def on_validation_epoch_end(self) -> None:
        if self.trainer.sanity_checking:
            return
        self.val_loss_best(self.val_loss.compute())
        self.log("val/loss_best", self.val_loss_best.compute(), prog_bar=True, sync_dist=True)

    def test_step(self, batch: Mapping[str, Tensor], batch_idx: int) -> None:
        self._step(batch, "test", batch_idx)

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        fill_metric_states(self, checkpoint)

    def configure_optimizers(self) -> dict[str, Any]:
        return adamw_with_schedule(self, self.hparams)
