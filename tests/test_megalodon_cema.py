"""Megalodon's complex EMA: the FFT path against an explicit step-by-step complex recurrence (float64).

The oracle rebuilds the recurrence from the raw parameters with the official formulas
(XuezheMax/megalodon ``_calc_coeffs``): p = σ(α), q = (1 − σ(α)σ(δ))·e^{iφ}, φ_n = n·σ(θ)·2π/N,
γ = (γ_re + iγ_im)/√N; h_t = p·x_t + q·h_{t−1}, y_t = Re(Σ_n γ_n h_{t,n}) + ω·x_t; the bidirectional
form adds the same recurrence run backwards with the second half of the parameters, read one step
later (official ``bidirectional_fftconv(shift=True)``).
"""

from __future__ import annotations

import cmath
import math

import pytest
import torch

from lra_mega.model.megalodon import MultiHeadComplexEMA

D, N, L, B = 3, 4, 11, 2


def _cema(**kwargs) -> MultiHeadComplexEMA:
    torch.manual_seed(0)
    ema = MultiHeadComplexEMA(D, N, **kwargs).double()
    with torch.no_grad():  # away from the init: imaginary γ, decays of all sizes, ω of both signs
        for p in ema.parameters():
            p.add_(torch.randn_like(p) * 0.5)
    return ema


def _coeffs(ema: MultiHeadComplexEMA, row: int, n: int) -> tuple[float, complex, complex]:
    """(p, q, γ) of kernel row ``row``, component ``n``, straight from the parameters."""
    s = lambda v: 1.0 / (1.0 + math.exp(-float(v.detach())))  # noqa: E731
    alpha, delta = s(ema.alpha[row, n, 0]), s(ema.delta[row, n, 0])
    phi = (n + 1) * s(ema.theta[row, 0, 0]) * 2 * math.pi / N
    q = cmath.rect(1.0 - alpha * delta, phi)
    gamma = complex(*ema.gamma[row, n].detach().tolist()) / math.sqrt(N)
    return alpha, q, gamma


def _recurrence(ema, x, mask=None, state=None, reverse_rows=False, shift=True):
    """Explicit recurrence, one position at a time; returns (y without ω, final state)."""
    batch, length, dim = x.shape
    y = torch.zeros(batch, length, dim, dtype=torch.float64)
    last = torch.zeros(batch, dim, N, dtype=torch.complex128)
    for b in range(batch):
        for d in range(dim):
            row = d + (dim if reverse_rows else 0)
            for n in range(N):
                p, q, gamma = _coeffs(ema, row, n)
                h = complex(state[b, d, n]) if state is not None else 0j
                order = range(length - 1, -1, -1) if reverse_rows else range(length)
                for t in order:
                    xt = float(x[b, t, d]) if mask is None or bool(mask[b, t]) else 0.0
                    before = h
                    h = p * xt + q * h
                    read = before if (reverse_rows and shift) else h  # shifted future: lags −1 …
                    y[b, t, d] += (gamma * read).real
                last[b, d, n] = h
    return y, last


def _omega(ema, x):
    return x * ema.omega.detach().squeeze(-1)


def test_causal_fft_equals_the_recurrence_with_padding():
    ema = _cema(bidirectional=False)
    x = torch.randn(B, L, D, dtype=torch.float64)
    mask = torch.ones(B, L, dtype=torch.bool)
    mask[0, 3] = False  # a gap: the real positions after it must not see its value
    mask[1, 7:] = False
    got = ema(x, mask).detach()
    want = _recurrence(ema, x, mask)[0] + _omega(ema, x)
    real = mask.unsqueeze(-1).expand_as(got)
    torch.testing.assert_close(got[real], want[real], rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("shift", [True, False])
def test_bidirectional_fft_equals_forward_plus_backward_recurrence(shift):
    ema = _cema(bidirectional=True, shift=shift)
    x = torch.randn(B, L, D, dtype=torch.float64)
    mask = torch.ones(B, L, dtype=torch.bool)
    mask[0, 8:] = False
    got = ema(x, mask).detach()
    past = _recurrence(ema, x, mask)[0]
    future = _recurrence(ema, x, mask, reverse_rows=True, shift=shift)[0]
    want = past + future + _omega(ema, x)
    real = mask.unsqueeze(-1).expand_as(got)
    torch.testing.assert_close(got[real], want[real], rtol=1e-10, atol=1e-10)


def test_truncated_kernel_equals_the_direct_sum():
    ema = _cema(bidirectional=True, truncation=4)
    x = torch.randn(1, L, D, dtype=torch.float64)
    impulse = torch.zeros(1, L, D, dtype=torch.float64)
    impulse[0, 0] = 1.0
    past = _recurrence(ema, impulse)[0][0]  # K_past[s] at row s
    impulse_end = torch.zeros(1, L, D, dtype=torch.float64)
    impulse_end[0, -1] = 1.0
    future = _recurrence(ema, impulse_end, reverse_rows=True)[0][0].flip(0)  # K_future[s − 1] at row s
    want = _omega(ema, x)[0].clone()
    for t in range(L):
        for s in range(4):  # lags 0 … 3 back, −1 … −4 ahead
            if t - s >= 0:
                want[t] += past[s] * x[0, t - s]
            if t + s + 1 < L:
                want[t] += future[s + 1] * x[0, t + s + 1]
    torch.testing.assert_close(ema(x).detach()[0], want, rtol=1e-10, atol=1e-10)


def test_carried_state_continues_the_recurrence():
    ema = _cema(bidirectional=False)
    x = torch.randn(B, L, D, dtype=torch.float64)
    h0 = torch.randn(B, D, N, dtype=torch.complex128)
    got, last = ema(x, state=h0, return_state=True)
    want, want_last = _recurrence(ema, x, state=h0)
    torch.testing.assert_close(got.detach(), want + _omega(ema, x), rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(last.detach(), want_last, rtol=1e-10, atol=1e-10)
    # two halves with the state handed over = the whole
    first, mid = ema(x[:, :5], return_state=True)
    second = ema(x[:, 5:], state=mid)
    torch.testing.assert_close(torch.cat([first, second], 1), ema(x), rtol=1e-10, atol=1e-10)


def test_step_equals_the_recurrence():
    ema = _cema(bidirectional=False)
    x = torch.randn(B, L, D, dtype=torch.float64)
    state, outs = None, []
    for t in range(L):
        y, state = ema.step(x[:, t], state)
        outs.append(y)
    want, want_last = _recurrence(ema, x)
    torch.testing.assert_close(torch.stack(outs, 1).detach(), want + _omega(ema, x), rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(state.detach(), want_last, rtol=1e-10, atol=1e-10)


def test_kernel_gradients_match_finite_differences():
    ema = _cema(bidirectional=True, truncation=5)
    x = torch.randn(1, 7, D, dtype=torch.float64)
    names = ["alpha", "delta", "theta", "gamma", "omega"]

    def f(*params):
        out = torch.func.functional_call(ema, dict(zip(names, params)), (x,))
        return (out * torch.linspace(-1, 1, out.numel(), dtype=torch.float64).view_as(out)).sum()

    assert torch.autograd.gradcheck(f, tuple(getattr(ema, n).detach().requires_grad_() for n in names))


def test_official_init_and_shapes():
    ema = MultiHeadComplexEMA(8, 4, bidirectional=True)
    shapes = {n: tuple(p.shape) for n, p in ema.named_parameters()}
    assert shapes == {"alpha": (16, 4, 1), "delta": (16, 4, 1), "theta": (16, 1, 1), "gamma": (16, 4, 2),
                      "omega": (8, 1)}
    assert torch.all(ema.gamma[..., 1] == 0)
    # θ = logit(8^(−k/8)), k = 1 … 8, permuted; both directions alike
    freqs = torch.sigmoid(ema.theta.double().flatten())
    torch.testing.assert_close(freqs[:8].sort().values, (8.0 ** (-torch.arange(8, 0, -1) / 8.0)).double().sort().values,
                               rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(freqs[:8], freqs[8:])
    truncated = MultiHeadComplexEMA(64, 4, omega_init="truncated")
    assert truncated.omega.abs().max() <= 1.0
