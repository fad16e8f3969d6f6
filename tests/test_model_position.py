"""Rotary relative position bias: float64 throughout in a float64 model, float32 unchanged."""

from __future__ import annotations

import math

import pytest
import torch

from lra_mega.model.position import RotaryRelativePositionalBias, sinusoids

ZDIM, LENGTH = 16, 100


def _hand_rotate(vec: list[float], pos: int) -> list[float]:
    """``vec`` rotated by position ``pos``, in Python floats (float64) with math.sin/cos."""
    half = len(vec) // 2
    out = list(vec)
    for m in range(half):
        angle = pos * math.exp(-m * math.log(10000.0) / half)
        c, s = math.cos(angle), math.sin(angle)
        out[m] = vec[m] * c - vec[m + half] * s
        out[m + half] = vec[m + half] * c + vec[m] * s
    return out


def _float64_rotary() -> RotaryRelativePositionalBias:
    torch.manual_seed(0)
    rot = RotaryRelativePositionalBias(ZDIM, max_len=128).double()
    with torch.no_grad():  # unit-scale vectors, so a float32 rounding shows far above 1e-12
        rot.alpha.copy_(torch.randn(1, ZDIM, dtype=torch.float64))
        rot.beta.copy_(torch.randn(1, ZDIM, dtype=torch.float64))
    return rot


def test_float64_rotary_bias_matches_a_float64_hand_computation():
    rot = _float64_rotary()
    a, b = rot.alpha[0].tolist(), rot.beta[0].tolist()
    rows = [[sum(x * y for x, y in zip(_hand_rotate(a, i), _hand_rotate(b, j))) for j in range(LENGTH)]
            for i in range(LENGTH)]
    want = torch.tensor(rows, dtype=torch.float64)
    got = rot(LENGTH)
    assert got.dtype == torch.float64
    assert (got.detach() - want).abs().max().item() < 1e-12


def test_float64_rotation_matches_a_float64_hand_computation():
    rot = _float64_rotary()
    x = torch.randn(LENGTH, ZDIM, dtype=torch.float64)
    want = torch.tensor([_hand_rotate(x[p].tolist(), p) for p in range(LENGTH)], dtype=torch.float64)
    got = rot._rotate(x)
    assert got.dtype == torch.float64
    assert (got - want).abs().max().item() < 1e-12


def test_float32_sinusoids_are_the_official_float32_ones():
    """A float32 model keeps the reference implementation's float32 table bit for bit."""
    half = ZDIM // 2
    freq = torch.exp(torch.arange(half, dtype=torch.float32) * -(math.log(10000.0) / half))
    angle = torch.arange(LENGTH, dtype=torch.float32).unsqueeze(1) * freq.unsqueeze(0)
    sin, cos = sinusoids(LENGTH, ZDIM)
    assert sin.dtype == torch.float32
    assert torch.equal(sin, torch.sin(angle)) and torch.equal(cos, torch.cos(angle))
    rot = RotaryRelativePositionalBias(ZDIM, max_len=128)
    assert rot(LENGTH).dtype == torch.float32


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_narrow_dtypes_round_the_float32_table(dtype):
    sin, cos = sinusoids(LENGTH, ZDIM, dtype)
    sin32, cos32 = sinusoids(LENGTH, ZDIM)
    assert sin.dtype == dtype
    assert torch.equal(sin, sin32.to(dtype)) and torch.equal(cos, cos32.to(dtype))
