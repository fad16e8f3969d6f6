"""Megalodon's normalisations (scales stored as weight + 1, as the official code; all init 0).

- :class:`TimestepNorm` (Megalodon §3.2): group normalisation whose statistics at step t are those
  of steps 0 … t (cumulative), padded steps excluded, padded outputs 0 (official
  ``modules/timestep_norm.py`` and its CPU kernel ``csrc/ops/timestep_norm.cc``).
- :class:`SequenceGroupNorm`: the bidirectional counterpart for classification, statistics over the
  whole (real part of the) sequence per group (fairseq-apollo ``norm_layer/sequence_norm.py``,
  ``csrc/ops/sequence_norm.cc``; official class name ``SequenceNorm``).
- :class:`RMSNorm`, :class:`LayerNorm`: per-position norms with the (weight + 1) scale.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..checks import check_positive

NormState = tuple[Tensor, Tensor, Tensor]  # (count (B,), mean (B, G), var (B, G))


def _groups(num_features: int, num_groups: int | None) -> int:
    """Number of groups (None: one per feature), refusing one that does not divide the features."""
    check_positive("dim", num_features)
    if num_groups is None:
        return num_features
    check_positive("norm_num_groups", num_groups)
    if num_features % num_groups:
        raise ValueError(f"norm_num_groups={num_groups} must divide the model dim {num_features}; "
                         f"pick a divisor of {num_features} (or null: one group per feature)")
    return num_groups


def _real(mask: Tensor | None, x: Tensor) -> Tensor:
    """(B, L, 1) float: 1 at real positions (all when ``mask`` is None)."""
    if mask is None:
        return x.new_ones(x.size(0), x.size(1), 1)
    return mask.unsqueeze(-1).to(x.dtype)


class TimestepNorm(nn.Module):
    """Causal group norm over (B, L, D): at step t the mean and variance of each group are those of
    its values at the real steps 0 … t (plus an optional prior of ``prior_count`` steps).

    Each step enters as one sample of its group (official ``WelfordCombine(m0, u, v, 1, …)``), so the
    statistics pool every value of the group seen so far. Parameters and buffers as the official
    module: ``weight``, ``bias`` (D); ``prior_count``, ``prior_mean``, ``prior_logv`` (G).
    """

    def __init__(self, num_features: int, num_groups: int | None = None, prior_count: int = 0,
                 eps: float = 1e-5) -> None:
        super().__init__()
        groups = _groups(num_features, num_groups)
        if groups == num_features and prior_count <= 1:
            raise ValueError(f"TimestepNorm with one group per feature needs prior_count > 1 (official assert), "
                             f"got {prior_count}; set norm_num_groups to a divisor of {num_features}")
        self.num_features, self.num_groups, self.eps = num_features, groups, eps
        self.register_buffer("prior_count", torch.tensor(prior_count, dtype=torch.int64))
        if prior_count > 0:
            self.prior_mean = nn.Parameter(torch.zeros(groups))
            self.prior_logv = nn.Parameter(torch.zeros(groups))
        else:
            self.register_buffer("prior_mean", torch.zeros(groups))
            self.register_buffer("prior_logv", torch.zeros(groups))
        self.weight = nn.Parameter(torch.zeros(num_features))
        self.bias = nn.Parameter(torch.zeros(num_features))

    def forward(self, x: Tensor, mask: Tensor | None = None, state: NormState | None = None
                ) -> tuple[Tensor, NormState]:
        """x (B, L, D), mask (B, L) bool (True = real) → (y (B, L, D), state after the last step).

        ``state`` = (count, mean, var) before step 0 (default: the prior). Cumulative sums run in
        float64, so long sequences do not lose the variance to cancellation.
        """
        batch, length, dim = x.shape
        if state is None:
            count = self.prior_count.expand(batch)
            mean = self.prior_mean.expand(batch, -1)
            var = self.prior_logv.exp().expand(batch, -1)
        else:
            count, mean, var = state
        wide = torch.float64 if x.device.type != "mps" else torch.float32
        xg = x.view(batch, length, self.num_groups, dim // self.num_groups)
        step_var, step_mean = torch.var_mean(xg.float() if x.dtype != torch.float64 else xg, dim=-1,
                                             unbiased=False)  # (B, L, G)
        real = _real(mask, x).to(wide)
        c0 = count.to(wide).view(batch, 1, 1)
        m0, v0 = mean.to(wide).unsqueeze(1), var.to(wide).unsqueeze(1)
        steps = c0 + real.cumsum(1)  # (B, L, 1)
        s1 = c0 * m0 + (real * step_mean.to(wide)).cumsum(1)
        s2 = c0 * (v0 + m0.square()) + (real * (step_var.to(wide) + step_mean.to(wide).square())).cumsum(1)
        cum_mean = s1 / steps.clamp(min=1.0)
        cum_var = (s2 / steps.clamp(min=1.0) - cum_mean.square()).clamp(min=0.0)
        work = torch.promote_types(x.dtype, torch.float32)
        rstd = torch.rsqrt(cum_var.to(work) + self.eps).unsqueeze(-1)
        y = (xg.to(work) - cum_mean.to(work).unsqueeze(-1)) * rstd
        y = y.reshape(batch, length, dim) * (self.weight + 1.0) + self.bias
        y = (y * _real(mask, y)).to(x.dtype)
        new_state = (steps[:, -1, 0].to(torch.int64), cum_mean[:, -1].to(mean.dtype), cum_var[:, -1].to(var.dtype))
        return y, new_state

    def extra_repr(self) -> str:
        return f"num_features={self.num_features}, num_groups={self.num_groups}, eps={self.eps}"


class SequenceGroupNorm(nn.Module):
    """Group norm over the whole sequence (B, L, D): one mean and variance per (example, group) from
    its real positions; padded outputs 0. ``num_groups=None``: one group per feature (statistics over
    the length only). Parameters ``weight``, ``bias`` (D) as the official ``SequenceNorm``."""

    def __init__(self, num_features: int, num_groups: int | None = None, eps: float = 1e-5) -> None:
        super().__init__()
        self.num_groups = _groups(num_features, num_groups)
        self.num_features, self.eps = num_features, eps
        self.weight = nn.Parameter(torch.zeros(num_features))
        self.bias = nn.Parameter(torch.zeros(num_features))

    def forward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        """x (B, L, D), mask (B, L) bool (True = real) → (B, L, D)."""
        batch, length, dim = x.shape
        work = torch.promote_types(x.dtype, torch.float32)
        xg = x.to(work).view(batch, length, self.num_groups, dim // self.num_groups)
        real = _real(mask, xg).unsqueeze(-1)  # (B, L, 1, 1)
        count = real.sum(1, keepdim=True).clamp(min=1.0) * xg.size(-1)
        mean = (xg * real).sum((1, 3), keepdim=True) / count
        var = ((xg - mean).square() * real).sum((1, 3), keepdim=True) / count  # two passes: no cancellation
        y = ((xg - mean) * torch.rsqrt(var + self.eps)).reshape(batch, length, dim)
        y = (y * (self.weight + 1.0) + self.bias) * real.view(batch, length, 1)
        return y.to(x.dtype)

    def extra_repr(self) -> str:
        return f"num_features={self.num_features}, num_groups={self.num_groups}, eps={self.eps}"


class RMSNorm(nn.Module):
    """x / rms(x) · (weight + 1) over the last axis (apex ``manual_rms_norm`` as the official code
    calls it; its mean square is taken in fp32). ``elementwise_affine=False``: no weight."""

    def __init__(self, dim: int, eps: float = 1e-5, elementwise_affine: bool = True) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.zeros(dim)) if elementwise_affine else None

    def forward(self, x: Tensor) -> Tensor:
        work = torch.promote_types(x.dtype, torch.float32)
        y = x * torch.rsqrt(x.to(work).square().mean(-1, keepdim=True) + self.eps).to(x.dtype)
        return y if self.weight is None else y * (self.weight + 1.0)


class LayerNorm(nn.Module):
    """Layer norm with the (weight + 1) scale (official ``FusedLayerNorm`` / ``FairseqLayerNorm``)."""

    def __init__(self, dim: int, eps: float = 1e-5, elementwise_affine: bool = True) -> None:
        super().__init__()
        self.dim, self.eps = dim, eps
        self.weight = nn.Parameter(torch.zeros(dim)) if elementwise_affine else None
        self.bias = nn.Parameter(torch.zeros(dim)) if elementwise_affine else None

    def forward(self, x: Tensor) -> Tensor:
        weight = None if self.weight is None else self.weight + 1.0
        return F.layer_norm(x, (self.dim,), weight, self.bias, self.eps)


FFN_NORMS = {"layernorm": LayerNorm, "rmsnorm": RMSNorm}
