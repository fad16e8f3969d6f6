"""Relative position biases added to the attention scores, by offset j − i.

``simple``: one learned scalar per offset (a table of 2·max_len − 1, so no longer inputs);
``rotary``: ⟨a, rot_{j−i}(b)⟩ for learned a, b; ``dynamic``: a small MLP over the offset
(CrossFormer's dynamic position bias), with no parameter tied to a length.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from .checks import check_positive
from .kernels.naive import toeplitz


def _check_length(length: int, max_len: int, what: str) -> None:
    if length > max_len:
        raise ValueError(
            f"sequence length {length} exceeds max_len={max_len} of the {what}; "
            "raise the model's max_len (or use chunk_size)"
        )


class SimpleRelativePositionalBias(nn.Module):
    """A learned scalar per offset j − i, for offsets in (−max_len, max_len)."""

    def __init__(self, max_len: int) -> None:
        super().__init__()
        check_positive("max_len", max_len)
        self.max_len = max_len
        self.weight = nn.Parameter(torch.empty(2 * max_len - 1))
        nn.init.normal_(self.weight, mean=0.0, std=0.02)

    def vector(self, length: int) -> Tensor:
        """Bias over offsets −(length−1) … length−1, shape (2·length − 1): a view of the weight."""
        _check_length(length, self.max_len, "relative position bias")
        return self.weight[self.max_len - length : self.max_len + length - 1]

    def forward(self, length: int) -> Tensor:
        """Bias matrix (length, length) with entry [i, j] = weight[max_len − 1 + j − i]."""
        return toeplitz(self.vector(length), length)


def sinusoids(length: int, dim: int, dtype: torch.dtype = torch.float32,
              device: torch.device | str | None = None) -> tuple[Tensor, Tensor]:
    """``sin`` and ``cos`` of ``p · 10000^(−m/half)`` for positions p < length and m < dim // 2,
    each (length, dim // 2), computed in ``dtype`` (float32 for narrower types, then cast), so a
    float64 model's rotations are float64 throughout and a float32 one's match the official code."""
    half = dim // 2
    work = torch.promote_types(dtype, torch.float32)
    freq = torch.exp(torch.arange(half, dtype=work, device=device) * -(math.log(10000.0) / half))
    angle = torch.arange(length, dtype=work, device=device).unsqueeze(1) * freq.unsqueeze(0)
    return torch.sin(angle).to(dtype), torch.cos(angle).to(dtype)


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

    def sinusoids(self, length: int) -> tuple[Tensor, Tensor]:
        """(sin, cos) of positions 0 … length−1, in the dtype and on the device of the parameters
        (built per call: a (length, zdim/2) table is cheap next to the attention it feeds)."""
        return sinusoids(length, self.alpha.size(-1), self.alpha.dtype, self.alpha.device)

    def _rotate(self, x: Tensor) -> Tensor:
        """Rotate row p of ``x`` (length, zdim) by position p."""
        x1, x2 = x.chunk(2, dim=-1)
        sin, cos = self.sinusoids(x.size(0))
        return torch.cat([x1 * cos - x2 * sin, x2 * cos + x1 * sin], dim=-1)

    def vector(self, length: int) -> Tensor:
        """Bias over offsets d = j − i in −(length−1) … length−1: ⟨a, rot_d(b)⟩, shape (2·length − 1).

        Rotations compose, so ⟨rot_i(a), rot_j(b)⟩ = ⟨a, rot_{j−i}(b)⟩; negative offsets use
        sin(−x) = −sin(x), cos(−x) = cos(x).
        """
        _check_length(length, self.max_len, "rotary bias")
        sin, cos = self.sinusoids(length)
        sin = torch.cat([-sin[1:].flip(0), sin])
        cos = torch.cat([cos[1:].flip(0), cos])
        b1, b2 = self.beta.chunk(2, dim=-1)
        rotated = torch.cat([b1 * cos - b2 * sin, b2 * cos + b1 * sin], dim=-1)  # (2·length − 1, zdim)
        return rotated @ self.alpha.squeeze(0)

    def forward(self, length: int) -> Tensor:
        """Bias matrix (length, length) with entry [i, j] = ⟨rot_i(a), rot_j(b)⟩."""
        return toeplitz(self.vector(length), length)


class DynamicRelativePositionalBias(nn.Module):
    """Bias for offset d = j − i from an MLP over d: Linear(1, dim) → norm → SiLU, ``depth`` times
    (Linear(dim, dim) after the first), → Linear(dim, 1).

    The dynamic position bias of CrossFormer (Wang et al. 2021): nothing depends on a maximum
    length, so a model trained at one length runs at any other. With ``log_distance`` the MLP
    reads sign(d)·log(1 + |d|), which keeps long offsets close to the trained range; the
    normalisation after the first layer bounds its output as |d| grows.
    """

    def __init__(self, dim: int = 32, depth: int = 2, log_distance: bool = True) -> None:
        super().__init__()
        check_positive("dim", dim)
        check_positive("depth", depth)
        self.log_distance = log_distance
        layers: list[nn.Module] = []
        for width in [1] + [dim] * (depth - 1):
            layers += [nn.Linear(width, dim), nn.LayerNorm(dim), nn.SiLU()]
        layers.append(nn.Linear(dim, 1))
        self.net = nn.Sequential(*layers)
        for p in self.net.parameters():
            p._no_weight_decay = True  # a position bias, like the simple table: no weight decay
        # hidden layers keep PyTorch's uniform init (a nonzero first bias is what lets the norm
        # tell offsets apart); the output starts near 0, like the simple table's N(0, 0.02)
        nn.init.normal_(self.net[-1].weight, mean=0.0, std=0.02)
        nn.init.zeros_(self.net[-1].bias)

    def offsets(self, length: int) -> Tensor:
        """The MLP's input for offsets −(length−1) … length−1, shape (2·length − 1, 1)."""
        check_positive("length", length)
        weight = self.net[0].weight
        d = torch.arange(1 - length, length, dtype=weight.dtype, device=weight.device)
        if self.log_distance:
            d = torch.sign(d) * torch.log1p(d.abs())
        return d.unsqueeze(-1)

    def vector(self, length: int) -> Tensor:
        """Bias over offsets −(length−1) … length−1, shape (2·length − 1): one MLP pass."""
        return self.net(self.offsets(length)).squeeze(-1)

    def forward(self, length: int) -> Tensor:
        """Bias matrix (length, length) with entry [i, j] = MLP(j − i)."""
        return toeplitz(self.vector(length), length)


REL_POS = ("simple", "rotary", "dynamic")


def build_relative_bias(kind: str, zdim: int, max_len: int) -> nn.Module:
    """Relative position bias module by name (one of ``REL_POS``); ``dynamic`` ignores max_len."""
    if kind == "simple":
        return SimpleRelativePositionalBias(max_len)
    if kind == "rotary":
        return RotaryRelativePositionalBias(zdim, max_len)
    if kind == "dynamic":
        return DynamicRelativePositionalBias()
    raise ValueError(f"rel_pos={kind!r} is not valid; choose one of: {', '.join(REL_POS)}")
