"""Classification heads over encoder features: pooling + MLP, and the dual-encoder retrieval head.

Both follow the official Mega LRA classifier (fairseq ``models/lra/model.py``): a hidden
Linear (xavier-uniform weight, zero bias) → the model's dropout → activation → a bias-free
output Linear (xavier-uniform). The hidden width is 2·d (``classifier_out_dim`` of every
official LRA architecture).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from .checks import check_choice, check_probability

POOLINGS = ("mean", "first", "last")
COMBINES = ("concat", "matching")


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


def xavier_linear(in_dim: int, out_dim: int, bias: bool = True) -> nn.Linear:
    """The official classifier's Linear: xavier-uniform weight, zero bias (or none)."""
    layer = nn.Linear(in_dim, out_dim, bias=bias)
    nn.init.xavier_uniform_(layer.weight)
    if bias:
        nn.init.zeros_(layer.bias)
    return layer


def mlp(in_dim: int, hidden: int, num_classes: int, dropout: float = 0.0) -> nn.Sequential:
    """Linear(in, hidden) → Dropout → GELU → Linear(hidden, C, bias=False), official order."""
    return nn.Sequential(
        xavier_linear(in_dim, hidden),
        nn.Dropout(check_probability("dropout", dropout)),
        nn.GELU(),
        xavier_linear(hidden, num_classes, bias=False),
    )


class ClassificationHead(nn.Module):
    """Pool the sequence (d), then Linear(d, 2d) → dropout → GELU → Linear(2d, C, no bias)."""

    def __init__(
        self, dim: int, num_classes: int, pooling: str = "mean", dropout: float = 0.0
    ) -> None:
        super().__init__()
        self.pooling = check_choice("pooling", pooling, POOLINGS)
        self.mlp = mlp(dim, 2 * dim, num_classes, dropout)

    def forward(self, features: Tensor, mask: Tensor | None = None) -> Tensor:
        return self.mlp(pool(features, mask, self.pooling))


class RetrievalHead(nn.Module):
    """Dual-encoder head over the pooled documents u1, u2.

    ``combine="concat"`` (official Mega): [u1, u2] (2d) → Linear(2d, 2d) → dropout → GELU →
    Linear(2d, C, no bias). ``combine="matching"`` (the original LRA head):
    [u1, u2, u1⊙u2, u1−u2] (4d) → the same MLP from 4d.
    """

    def __init__(
        self,
        dim: int,
        num_classes: int = 2,
        pooling: str = "mean",
        dropout: float = 0.0,
        combine: str = "concat",
    ) -> None:
        super().__init__()
        self.pooling = check_choice("pooling", pooling, POOLINGS)
        self.combine = check_choice("combine", combine, COMBINES)
        in_dim = 2 * dim if combine == "concat" else 4 * dim
        self.mlp = mlp(in_dim, 2 * dim, num_classes, dropout)

    def forward(
        self, features1: Tensor, mask1: Tensor | None, features2: Tensor, mask2: Tensor | None
    ) -> Tensor:
        u = pool(features1, mask1, self.pooling)
        v = pool(features2, mask2, self.pooling)
        if self.combine == "concat":
            return self.mlp(torch.cat([u, v], dim=-1))
        return self.mlp(torch.cat([u, v, u * v, u - v], dim=-1))
