"""Classification heads over encoder features: pooling + MLP, and the dual-encoder retrieval head."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from .checks import check_choice
from .layer import init_linear

POOLINGS = ("mean", "first", "last")


def pool(features: Tensor, mask: Tensor | None, how: str = "mean") -> Tensor:
    """(B, L, D) features → (B, D): masked mean, first position, or last real position."""
    if how == "first":
        return features[:, 0]
    if mask is None:
        return features.mean(1) if how == "mean" else features[:, -1]
    if how == "mean":
        weights = mask.to(features.dtype).unsqueeze(-1)
        return (features * weights).sum(1) / weights.sum(1).clamp(min=1.0)
    last = (mask.long().sum(1) - 1).clamp(min=0)
    return features[torch.arange(features.size(0), device=features.device), last]


def mlp(in_dim: int, hidden: int, num_classes: int) -> nn.Sequential:
    """Linear → GELU → Linear, with Mega's linear init."""
    return nn.Sequential(
        init_linear(nn.Linear(in_dim, hidden)), nn.GELU(), init_linear(nn.Linear(hidden, num_classes))
    )


class ClassificationHead(nn.Module):
    """Pool the sequence, then MLP Linear(d, 2d) + GELU → Linear(2d, C)."""

    def __init__(self, dim: int, num_classes: int, pooling: str = "mean") -> None:
        super().__init__()
        self.pooling = check_choice("pooling", pooling, POOLINGS)
        self.mlp = mlp(dim, 2 * dim, num_classes)

    def forward(self, features: Tensor, mask: Tensor | None = None) -> Tensor:
        return self.mlp(pool(features, mask, self.pooling))


class RetrievalHead(nn.Module):
    """Dual-encoder head: pooled u, v → [u, v, u⊙v, u−v] → MLP → classes."""

    def __init__(self, dim: int, num_classes: int = 2, pooling: str = "mean") -> None:
        super().__init__()
        self.pooling = check_choice("pooling", pooling, POOLINGS)
        self.mlp = mlp(4 * dim, 2 * dim, num_classes)

    def forward(
        self, features1: Tensor, mask1: Tensor | None, features2: Tensor, mask2: Tensor | None
    ) -> Tensor:
        u = pool(features1, mask1, self.pooling)
        v = pool(features2, mask2, self.pooling)
        return self.mlp(torch.cat([u, v, u * v, u - v], dim=-1))
