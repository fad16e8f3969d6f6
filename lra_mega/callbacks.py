"""Small callbacks and helper functions referenced from ``configs/callbacks``."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import lightning as L
from torch import Tensor

CONFIG_KEY = "lra_mega_config"


def batch_size(batch: Mapping[str, Tensor]) -> int:
    """Examples in a batch (for ``ThroughputMonitor(batch_size_fn=...)``)."""
    return len(batch["label"])


def num_tokens(batch: Mapping[str, Tensor]) -> int:
    """Real (non-pad) positions in a batch, both documents for retrieval."""
    return int(batch["mask"].sum())


class SaveRunConfig(L.Callback):
    """Stores the resolved run config in every checkpoint, so a checkpoint alone can
    rebuild its datamodule (``scripts/evaluate.py``)."""

    def __init__(self, config: Mapping[str, Any]) -> None:
        self.config = dict(config)

    def on_save_checkpoint(
        self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        checkpoint[CONFIG_KEY] = self.config
