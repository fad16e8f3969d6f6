"""The EMA's timescale init (model.ema_init=timescale) against the decay rates it promises."""

from __future__ import annotations

import math

import pytest
import torch

from lra_mega.model import MegaEncoder, MultiDimDampedEMA


def efolding(ema: MultiDimDampedEMA) -> torch.Tensor:
    """τ = −1 / log q per component, from the raw parameters: q = 1 − σ(δ)·σ(α)."""
    q = 1 - torch.sigmoid(ema.delta.double()) * torch.sigmoid(ema.alpha.double())
    return (-1 / torch.log(q)).flatten()


def test_official_init_gives_every_component_a_few_positions():
    torch.manual_seed(0)
    tau = efolding(MultiDimDampedEMA(64, 16))
    # δ, α ~ N(0, 0.2): q = 1 − σ(δ)σ(α) ≈ 0.75, τ ≈ 3.5; none reaches 10 positions
    assert 3.0 < tau.median() < 4.0 and tau.max() < 10


@pytest.mark.parametrize("low, high", [(2.0, 1024.0), (4.0, 64.0)])
def test_timescale_init_spreads_efolding_lengths_log_uniformly(low, high):
    torch.manual_seed(0)
    ema = MultiDimDampedEMA(128, 16, init="timescale", timescales=(low, high))
    tau = efolding(ema)
    # p = σ(δ) is capped below 1: a τ near `low` with a small σ(α) comes out a little longer
    assert tau.min() >= low * 0.999 and tau.max() <= high * 1.001
    # log-uniform: each quarter of [log low, log high] holds a quarter of the 4,096 components
    share = torch.histc(torch.log(tau.clamp(low, high)), bins=4, min=math.log(low), max=math.log(high)) / tau.numel()
    assert torch.allclose(share, torch.full((4,), 0.25, dtype=share.dtype), atol=0.03), share
    # α keeps the official draw; only δ carries the timescale
    assert abs(ema.alpha.std().item() - 0.2) < 0.01 and abs(ema.alpha.mean().item()) < 0.01


def test_timescale_init_reaches_every_layer_and_both_directions():
    torch.manual_seed(0)
    enc = MegaEncoder(input_kind="pixels", dim=16, depth=3, zdim=8, hdim=32, max_len=64,
                      ema_init="timescale", ema_timescales=(8, 512))
    for block in enc.layers:
        tau = efolding(block.attention.ema)
        assert tau.numel() == 2 * 16 * 16 and tau.min() >= 7.99 and tau.max() > 100


@pytest.mark.parametrize("kwargs, fragment", [
    ({"init": "lru"}, "ema_init"),
    ({"init": "timescale", "timescales": (1.0, 100.0)}, "1.5 <= low <= high"),
    ({"init": "timescale", "timescales": (50.0, 10.0)}, "1.5 <= low <= high"),
])
def test_bad_timescale_settings_name_the_fix(kwargs, fragment):
    with pytest.raises(ValueError, match=fragment.replace("(", r"\(")):
        MultiDimDampedEMA(8, 4, **kwargs)
