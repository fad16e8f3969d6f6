"""Relative position biases added to the attention scores: simple (one scalar per offset) or rotary."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from .checks import check_positive


class SimpleRelativePositionalBias(nn.Module):
    """A learned scalar per offset j − i, for offsets in (−max_len, max_len)."""

    def __init__(self, max_len: int) -> None:
        super().__init__()
        check_positive("max_len", max_len)
        self.max_len = max_len
        self.weight = nn.Parameter(torch.empty(2 * max_len - 1))
        nn.init.normal_(self.weight, mean=0.0, std=0.02)

    def forward(self, length: int) -> Tensor:
        """Bias matrix (length, length) with entry [i, j] = weight[max_len − 1 + j − i]."""
        if length > self.max_len:
            raise ValueError(
                f"sequence length {length} exceeds max_len={self.max_len} of the relative position "
                "bias; raise the model's max_len (or use chunk_size)"
            )
        pos = torch.arange(length, device=self.weight.device)
        return self.weight[self.max_len - 1 + pos.view(1, -1) - pos.view(-1, 1)]


def _sinusoids(length: int, dim: int) -> tuple[Tensor, Tensor]:
    half = dim // 2
    freq = torch.exp(torch.arange(half, dtype=torch.float32) * -(math.log(10000.0) / half))
    angle = torch.arange(length, dtype=torch.float32).unsqueeze(1) * freq.unsqueeze(0)
    return torch.sin(angle), torch.cos(angle)


class RotaryRelativePositionalBias(nn.Module):
    """Bias[i, j] = ⟨rot_i(a), rot_j(b)⟩ for learned vectors a, b ∈ R^zdim (depends on j − i only)."""

    def __init__(self, zdim: int, max_len: int) -> None:
        super().__init__()
        check_positive("max_len", max_len)
        if zdim % 2 != 0:
            raise ValueError(f"zdim={zdim} must be divisible by 2 for rel_pos='rotary'")
        self.max_len = max_len
        self.alpha = nn.Parameter(torch.empty(1, zdim))
        self.beta = nn.Parameter(torch.empty(1, zdim))
        nn.init.normal_(self.alpha, mean=0.0, std=0.02)
        nn.init.normal_(self.beta, mean=0.0, std=0.02)
        sin, cos = _sinusoids(max_len, zdim)
        self.register_buffer("sin", sin, persistent=False)
        self.register_buffer("cos", cos, persistent=False)

    def _rotate(self, x: Tensor) -> Tensor:
        length = x.size(0)
        x1, x2 = x.chunk(2, dim=-1)
        sin, cos = self.sin[:length], self.cos[:length]
        return torch.cat([x1 * cos - x2 * sin, x2 * cos + x1 * sin], dim=-1)

    def forward(self, length: int) -> Tensor:
        """Bias matrix (length, length)."""
        if length > self.max_len:
            raise ValueError(
                f"sequence length {length} exceeds max_len={self.max_len} of the rotary bias; "
                "raise the model's max_len (or use chunk_size)"
            )
        a = self._rotate(self.alpha.expand(length, -1))
        b = self._rotate(self.beta.expand(length, -1))
        return a @ b.transpose(0, 1)


def build_relative_bias(kind: str, zdim: int, max_len: int) -> nn.Module:
    """Relative position bias module by name ('simple' or 'rotary')."""
    if kind == "simple":
        return SimpleRelativePositionalBias(max_len)
    if kind == "rotary":
        return RotaryRelativePositionalBias(zdim, max_len)
    raise ValueError(f"rel_pos={kind!r} is not valid; choose one of: simple, rotary")
