"""LightningModule joining a Mega encoder and a classification head: loss, metrics, optimizer."""

from __future__ import annotations

import copy
from collections.abc import Mapping
from functools import partial
from typing import Any

import lightning as L
import torch
from hydra.utils import instantiate
from torch import Tensor, nn
from torch.nn import functional as F
from torch.utils.flop_counter import FlopCounterMode
from torchmetrics import MaxMetric, Metric
from torchmetrics.classification import MulticlassAccuracy

from lra_mega.training.optim import adamw_with_schedule, check_schedule


def _logits(encoder: nn.Module, head: nn.Module, x: Tensor, mask: Tensor, dual: bool) -> Tensor:
    """Logits of ``head(encoder(x))``; dual inputs ``(B, 2, L)`` go through the encoder as one
    ``(2B, L)`` batch and the head compares the two feature sets."""
    if not dual:
        return head(encoder(x, mask), mask)
    feats = encoder(x.flatten(0, 1), mask.flatten(0, 1)).unflatten(0, (x.shape[0], 2))
    return head(feats[:, 0], mask[:, 0], feats[:, 1], mask[:, 1])


def check_compile(compile: bool) -> None:
    """Refuse a ``compile`` setting that is not a bool, in one line."""
    if not isinstance(compile, bool):
        raise ValueError(f"compile={compile!r} must be true (torch.compile the encoder) or false")


def compile_encoder(encoder: nn.Module, wanted: bool) -> None:
    """torch.compile ``encoder`` in place, once (checkpoints keep plain parameter names)."""
    if wanted and encoder._compiled_call_impl is None:
        encoder.compile()


def keep_across_resume(*metrics: Metric) -> None:
    """Save these metrics' states in checkpoints (torchmetrics leaves them out by default), so a
    resumed run goes on with its best-so-far and its epoch's running accuracy."""
    for metric in metrics:
        metric.persistent(True)


def fill_metric_states(module: nn.Module, checkpoint: dict[str, Any]) -> None:
    """Give a checkpoint written before metric states were saved the fresh states it lacks, so it
    still loads (strictly) and those metrics start over, as they did then."""
    state = checkpoint.get("state_dict")
    if state is None:
        return
    for name, metric in module.named_modules():
        if isinstance(metric, Metric):
            for key, value in metric.state_dict(prefix=f"{name}.").items():
                state.setdefault(key, value)


def _build(spec: nn.Module | Mapping) -> nn.Module:
    """Use a module as given, or instantiate one from a ``_target_`` mapping."""
    return spec if isinstance(spec, nn.Module) else instantiate(dict(spec), _convert_="all")


class LRAClassifier(L.LightningModule):
    """Encoder + head trained with cross-entropy, AdamW and fairseq's warmup/linear-decay LR.

    ``encoder`` and ``head`` are modules or ``_target_`` configs; configs are saved as
    hyperparameters so ``LRAClassifier.load_from_checkpoint(path)`` rebuilds the model.
    ``dual`` (retrieval) batches hold ``(B, 2, L)`` inputs: both documents go through the
    encoder as one ``(2B, L)`` batch and the head compares the two feature sets.

    The LR warms up from ``warmup_init_lr`` to ``lr`` over ``warmup_steps`` updates as
    ``(step / warmup_steps) ** warmup_power``, then decays linearly to 0 at ``total_steps``.
    Weight decay covers every parameter unless ``weight_decay_exempt`` (then norms, biases,
    1-d and EMA parameters are spared). ``ema_lr_scale`` / ``ema_weight_decay`` give the EMA's
    δ, α, β a group of their own (:func:`lra_mega.training.optim.param_groups`). ``compile`` runs the encoder through ``torch.compile``
    (in place: checkpoints keep the plain parameter names).
    """

    def __init__(
        self,
        encoder: nn.Module | Mapping,
        head: nn.Module | Mapping,
        num_classes: int,
        dual: bool = False,
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
        modules = [k for k, v in (("encoder", encoder), ("head", head)) if isinstance(v, nn.Module)]
        self.save_hyperparameters(ignore=modules)
        self.encoder = _build(encoder)
        self.head = _build(head)
        acc = partial(MulticlassAccuracy, num_classes=num_classes, average="micro")
        self.train_acc, self.val_acc, self.test_acc = acc(), acc(), acc()
        self.val_acc_best = MaxMetric()
        keep_across_resume(self.train_acc, self.val_acc_best)
        self._flops_per_position: float | None = None
        self.flops_per_batch: int | None = None

    def configure_model(self) -> None:
        compile_encoder(self.encoder, self.hparams.get("compile", False))

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        """Logits ``(B, C)`` for inputs ``(B, L)`` or, when dual, ``(B, 2, L)``."""
        return _logits(self.encoder, self.head, x, mask, self.hparams.dual)

    def _count_flops(self, batch: Mapping[str, Tensor]) -> None:
        """FLOPs of one training step (forward + backward) per input position, counted once
        with ``torch.utils.flop_counter`` on copies of the encoder and head (the model's weights,
        norm statistics and RNG are left as they were)."""
        encoder, head = copy.deepcopy(self.encoder), copy.deepcopy(self.head)
        for module in (encoder, head):
            module._compiled_call_impl = None  # count the eager maths, not a second compilation
        with torch.random.fork_rng(devices=[]), FlopCounterMode(display=False) as counter:
            logits = _logits(encoder, head, batch["input"], batch["mask"], self.hparams.dual)
            F.cross_entropy(logits.float(), batch["label"]).backward()
        self._flops_per_position = counter.get_total_flops() / max(1, batch["mask"].numel())

    def _step(self, batch: Mapping[str, Tensor], stage: str, acc: MulticlassAccuracy) -> Tensor:
        if stage == "train":
            if self._flops_per_position is None:
                self._count_flops(batch)
            # ThroughputMonitor reads this after every batch; batches may differ in length
            self.flops_per_batch = int(self._flops_per_position * batch["mask"].numel())
        logits = self(batch["input"], batch["mask"])
        loss = F.cross_entropy(logits.float(), batch["label"])
        acc(logits, batch["label"])
        on_step = stage == "train"
        kw: dict[str, Any] = {
            "on_step": on_step, "on_epoch": True, "batch_size": len(batch["label"])
        }
        self.log(f"{stage}/loss", loss, prog_bar=True, sync_dist=not on_step, **kw)
        self.log(f"{stage}/acc", acc, prog_bar=True, **kw)
        return loss

    def training_step(self, batch: Mapping[str, Tensor], batch_idx: int) -> Tensor:
        return self._step(batch, "train", self.train_acc)

    def validation_step(self, batch: Mapping[str, Tensor], batch_idx: int) -> None:
        self._step(batch, "val", self.val_acc)

    def on_validation_epoch_end(self) -> None:
        if self.trainer.sanity_checking:
            return
        self.val_acc_best(self.val_acc.compute())
        self.log("val/acc_best", self.val_acc_best.compute(), prog_bar=True, sync_dist=True)

    def test_step(self, batch: Mapping[str, Tensor], batch_idx: int) -> None:
        self._step(batch, "test", self.test_acc)

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        fill_metric_states(self, checkpoint)

    def configure_optimizers(self) -> dict[str, Any]:
        """AdamW (decoupled decay, as fairseq's adam), LR stepped every update (LambdaLR)."""
        return adamw_with_schedule(self, self.hparams)
