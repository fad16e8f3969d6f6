"""OmegaConf resolvers used by the packaged configs (registered on import)."""

from __future__ import annotations

import os

import torch
from omegaconf import OmegaConf

_warned: set[str] = set()


def _warn_once(message: str) -> None:
    """Print ``message`` once per command: in the first process only (rank 0 of a DDP run)."""
    rank = os.environ.get("RANK", os.environ.get("LOCAL_RANK", "0"))
    if message in _warned or rank != "0":
        return
    _warned.add(message)
    from lightning.pytorch.utilities import rank_zero_warn

    rank_zero_warn(message)


def auto_precision() -> str:
    """``bf16-mixed`` where a CUDA device supports bf16, else full ``32-true``."""
    if torch.cuda.is_available() and torch.cuda.is_bf16_supported():
        return "bf16-mixed"
    return "32-true"


def is_data_parallel(strategy: object) -> bool:
    """True for the DDP family of Lightning strategies (``ddp``, ``ddp_spawn``, ``ddp_find_…``),
    where BatchNorm must become SyncBatchNorm to normalise over the global batch."""
    return str(strategy).startswith("ddp")


def runs_on_cpu(accelerator: object) -> bool:
    """True when the Trainer's accelerator is (or ``auto`` resolves to) the CPU."""
    accelerator = str(accelerator)
    return accelerator == "cpu" or (accelerator == "auto" and not torch.cuda.is_available())


def sync_batchnorm(strategy: object, accelerator: object = "auto") -> bool:
    """BatchNorm → SyncBatchNorm under any DDP strategy on GPUs (Path-X's ``syncbatchnorm``).

    SyncBatchNorm only runs on GPUs; on CPU (gloo) it would end the run, so each process keeps
    a plain BatchNorm over its own batch, with one warning.
    """
    if not is_data_parallel(strategy):
        return False
    if runs_on_cpu(accelerator):
        _warn_once(
            f"trainer.strategy={strategy} on CPU: keeping plain BatchNorm (SyncBatchNorm needs "
            "GPUs), so each process normalises over its own batch only"
        )
        return False
    return True


def batches(updates: int, accumulate: int) -> int:
    """Training batches Lightning counts for ``updates`` optimizer updates
    (``val_check_interval`` counts batches; an update takes ``accumulate`` of them)."""
    return int(updates) * int(accumulate)


def paper_mask_prob(task: str) -> float:
    """The share of positions self-pretraining hides on ``task`` in Amos et al. (2024)."""
    from lra_mega.training.masking import PAPER_MASK_PROB

    if task not in PAPER_MASK_PROB:
        raise ValueError(f"no paper value of pretrain.mask_prob for task {task!r}; set pretrain.mask_prob")
    return PAPER_MASK_PROB[task]


def register() -> None:
    """Register the ``lra.*`` resolvers (idempotent)."""
    OmegaConf.register_new_resolver("lra.precision", auto_precision, replace=True)
    OmegaConf.register_new_resolver("lra.sync_batchnorm", sync_batchnorm, replace=True)
    OmegaConf.register_new_resolver("lra.batches", batches, replace=True)
    OmegaConf.register_new_resolver("lra.paper_mask_prob", paper_mask_prob, replace=True)


register()
