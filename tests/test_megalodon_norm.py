"""Megalodon's norms against statistics computed naively from the values they must cover (float64).

TimestepNorm at step t: mean and variance of every value of the group at the real steps 0 … t (plus
the prior's pseudo-steps), as the official CPU kernel's Welford combination pools them; padded steps
neither enter the statistics nor give an output. SequenceGroupNorm: the same over the whole real
sequence. Scales are stored as weight + 1.
"""

from __future__ import annotations

import pytest
import torch

from lra_mega.model.megalodon import LayerNorm, RMSNorm, SequenceGroupNorm, TimestepNorm

B, L, D, G = 2, 9, 6, 3
EPS = 1e-5


def _randomise(module: torch.nn.Module) -> None:
    torch.manual_seed(1)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(torch.randn_like(p) * 0.5)


def _mask() -> torch.Tensor:
    mask = torch.ones(B, L, dtype=torch.bool)
    mask[0, 3] = False  # a gap inside
    mask[1, 6:] = False  # right padding
    return mask


def _naive_timestep(x, mask, norm, prior=(0, 0.0, 1.0)):
    c0, m0, v0 = prior
    width = D // G
    y = torch.zeros_like(x)
    for b in range(B):
        for t in range(L):
            if not mask[b, t]:
                continue
            for g in range(G):
                cols = slice(g * width, (g + 1) * width)
                seen = x[b, : t + 1][mask[b, : t + 1]][:, cols].flatten()  # every real value so far
                n0 = c0 * width  # the prior: c0 pseudo-steps of mean m0[g], variance v0[g]
                mean0 = m0[g] if c0 else 0.0
                var0 = v0[g] if c0 else 0.0
                total = n0 + seen.numel()
                mean = (n0 * mean0 + seen.sum()) / total
                var = (n0 * (var0 + mean0**2) + seen.square().sum()) / total - mean**2
                y[b, t, cols] = (x[b, t, cols] - mean) / torch.sqrt(var + EPS)
    return y * (norm.weight.detach() + 1.0) + norm.bias.detach() * mask.unsqueeze(-1)


def test_timestep_norm_uses_the_statistics_of_steps_up_to_t():
    norm = TimestepNorm(D, G).double()
    _randomise(norm)
    x = torch.randn(B, L, D, dtype=torch.float64) * 3 + 2
    mask = _mask()
    y, (count, mean, var) = norm(x, mask)
    torch.testing.assert_close(y.detach(), _naive_timestep(x, mask, norm), rtol=1e-9, atol=1e-9)
    assert torch.all(y[~mask] == 0)
    assert count.tolist() == mask.sum(1).tolist()
    # the returned state is the statistics of every real value of the group
    last = x[1][mask[1]].view(-1, G, D // G).transpose(0, 1).reshape(G, -1)
    torch.testing.assert_close(mean[1], last.mean(1))
    torch.testing.assert_close(var[1], last.var(1, unbiased=False))


def test_timestep_norm_prior_and_carried_state():
    norm = TimestepNorm(D, G, prior_count=2).double()
    _randomise(norm)
    x = torch.randn(B, L, D, dtype=torch.float64)
    mask = _mask()
    y, _ = norm(x, mask)
    prior = (2, norm.prior_mean.detach().tolist(), norm.prior_logv.detach().exp().tolist())
    torch.testing.assert_close(y.detach(), _naive_timestep(x, mask, norm, prior), rtol=1e-9, atol=1e-9)
    first, state = norm(x[:, :4], mask[:, :4])
    second, _ = norm(x[:, 4:], mask[:, 4:], state)
    torch.testing.assert_close(torch.cat([first, second], 1), y, rtol=1e-12, atol=1e-12)


def test_timestep_norm_per_feature_needs_a_prior():
    with pytest.raises(ValueError, match="prior_count > 1"):
        TimestepNorm(D)
    with pytest.raises(ValueError, match="must divide"):
        TimestepNorm(D, 4)


@pytest.mark.parametrize("groups", [None, 2])
def test_sequence_group_norm_uses_the_real_positions_only(groups):
    norm = SequenceGroupNorm(D, groups).double()
    _randomise(norm)
    x = torch.randn(B, L, D, dtype=torch.float64) * 2 - 1
    mask = _mask()
    x_garbage = x.clone()
    x_garbage[~mask] = 1e3  # padded values must not matter
    y = norm(x_garbage, mask).detach()
    g = D if groups is None else groups
    width = D // g
    want = torch.zeros_like(x)
    for b in range(B):
        for k in range(g):
            cols = slice(k * width, (k + 1) * width)
            vals = x[b][mask[b]][:, cols]
            want[b, :, cols] = (x[b, :, cols] - vals.mean()) / torch.sqrt(vals.var(unbiased=False) + EPS)
    want = (want * (norm.weight.detach() + 1.0) + norm.bias.detach()) * mask.unsqueeze(-1)
    torch.testing.assert_close(y, want, rtol=1e-9, atol=1e-9)


def test_rms_and_layer_norm_scale_by_weight_plus_one():
    x = torch.randn(4, D, dtype=torch.float64)
    rms, ln = RMSNorm(D).double(), LayerNorm(D).double()
    _randomise(rms)
    _randomise(ln)
    want = x / torch.sqrt(x.square().mean(-1, keepdim=True) + EPS) * (1.0 + rms.weight.detach())
    torch.testing.assert_close(rms(x).detach(), want)
    centred = x - x.mean(-1, keepdim=True)
    want = centred / torch.sqrt(centred.square().mean(-1, keepdim=True) + EPS) * (1.0 + ln.weight.detach())
    torch.testing.assert_close(ln(x).detach(), want + ln.bias.detach())
    assert RMSNorm(D, elementwise_affine=False).weight is None
