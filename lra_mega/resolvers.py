"""OmegaConf resolvers used by the packaged configs (registered on import)."""

from __future__ import annotations

import torch
from omegaconf import OmegaConf


def auto_precision() -> str:
    """``bf16-mixed`` where a CUDA device supports bf16, else full ``32-true``."""
    if torch.cuda.is_available() and torch.cuda.is_bf16_supported():
        return "bf16-mixed"
    return "32-true"


def is_data_parallel(strategy: object) -> bool:
    """True for the DDP family of Lightning strategies (``ddp``, ``ddp_spawn``, ``ddp_find_…``),
    where BatchNorm must become SyncBatchNorm to normalise over the global batch."""
    return str(strategy).startswith("ddp")


def run_name(task: str, overrides: str = "") -> str:
    """wandb run name: the task, plus the command-line overrides that set this run apart."""
    return f"{task}[{overrides}]" if overrides else task


def register() -> None:
    """Register the ``lra.*`` resolvers (idempotent)."""
    OmegaConf.register_new_resolver("lra.precision", auto_precision, replace=True)
    OmegaConf.register_new_resolver("lra.run_name", run_name, replace=True)
    OmegaConf.register_new_resolver("lra.is_ddp", is_data_parallel, replace=True)


register()
