"""LightningModule joining a Mega encoder and a classification head: loss, metrics, optimizer."""

from __future__ import annotations

from collections.abc import Mapping
from functools import partial
from typing import Any

import lightning as L
import torch
from hydra.utils import instantiate
from torch import Tensor, nn
from torch.nn import functional as F
from torchmetrics import MaxMetric
from torchmetrics.classification import MulticlassAccuracy

from lra_mega.optim import check_schedule, param_groups, warmup_linear_decay


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
    1-d and EMA parameters are spared).
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
    ) -> None:
        super().__init__()
        check_schedule(lr, warmup_init_lr, warmup_power)
        modules = [k for k, v in (("encoder", encoder), ("head", head)) if isinstance(v, nn.Module)]
        self.save_hyperparameters(ignore=modules)
        self.encoder = _build(encoder)
        self.head = _build(head)
        acc = partial(MulticlassAccuracy, num_classes=num_classes, average="micro")
        self.train_acc, self.val_acc, self.test_acc = acc(), acc(), acc()
        self.val_acc_best = MaxMetric()

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        """Logits ``(B, C)`` for inputs ``(B, L)`` or, when dual, ``(B, 2, L)``."""
        if not self.hparams.dual:
            return self.head(self.encoder(x, mask), mask)
        feats = self.encoder(x.flatten(0, 1), mask.flatten(0, 1)).unflatten(0, (x.shape[0], 2))
        return self.head(feats[:, 0], mask[:, 0], feats[:, 1], mask[:, 1])

    def _step(self, batch: Mapping[str, Tensor], stage: str, acc: MulticlassAccuracy) -> Tensor:
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

    def configure_optimizers(self) -> dict[str, Any]:
        """AdamW (decoupled decay, as fairseq's adam), LR stepped every update (LambdaLR)."""
        hp = self.hparams
        groups = param_groups(self, hp.weight_decay, exempt=hp.weight_decay_exempt)
        optimizer = torch.optim.AdamW(groups, lr=hp.lr, betas=tuple(hp.betas), eps=hp.eps)
        schedule = partial(
            warmup_linear_decay,
            warmup_steps=hp.warmup_steps,
            total_steps=hp.total_steps,
            init_ratio=hp.warmup_init_lr / hp.lr,
            power=hp.warmup_power,
        )
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": scheduler, "interval": "step", "name": "lr"},
        }
