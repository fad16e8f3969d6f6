"""Normalisations over the feature axis of (B, L, D) sequences, selected by name."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from .checks import check_choice

NORMS = ("layernorm", "scalenorm", "rmsnorm", "batchnorm", "syncbatchnorm")


class ScaleNorm(nn.Module):
    """x / rms(x) · g with a single learned scalar g (Nguyen & Salazar 2019, as in Mega's code)."""

    def __init__(self, eps: float = 1e-5) -> None:
        super().__init__()
        self.eps = eps
        self.scalar = nn.Parameter(torch.ones(1))

    def forward(self, x: Tensor) -> Tensor:
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.scalar


class RMSNorm(nn.Module):
    """x / rms(x) ⊙ w with a learned per-feature weight."""

    def __init__(self, dim: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: Tensor) -> Tensor:
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight


class SequenceBatchNorm(nn.Module):
    """BatchNorm over batch·length per channel. Holds a plain ``nn.BatchNorm1d`` so that
    ``nn.SyncBatchNorm.convert_sync_batchnorm`` (Lightning's ``sync_batchnorm=True``) swaps it."""

    def __init__(self, dim: int, sync: bool = False) -> None:
        super().__init__()
        self.norm = nn.SyncBatchNorm(dim) if sync else nn.BatchNorm1d(dim)

    def forward(self, x: Tensor) -> Tensor:
        # (B·L, D) rows: the same statistics as (B, D, L), without a strided layout (10× faster on CPU)
        return self.norm(x.reshape(-1, x.shape[-1])).view(x.shape)


class SequenceNorm(nn.Module):
    """One of layernorm, scalenorm, rmsnorm, batchnorm, syncbatchnorm over (B, L, D)."""

    def __init__(self, kind: str, dim: int) -> None:
        super().__init__()
        check_choice("norm", kind, NORMS)
        self.kind = kind
        if kind == "layernorm":
            self.norm: nn.Module = nn.LayerNorm(dim)
        elif kind == "scalenorm":
            self.norm = ScaleNorm()
        elif kind == "rmsnorm":
            self.norm = RMSNorm(dim)
        else:
            self.norm = SequenceBatchNorm(dim, sync=kind == "syncbatchnorm")
        for p in self.norm.parameters():
            p._no_weight_decay = True

    def forward(self, x: Tensor) -> Tensor:
        return self.norm(x)
