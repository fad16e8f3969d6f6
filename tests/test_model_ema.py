"""The EMA against a naive per-step recurrence and hand-worked coefficients."""

import math

import pytest
import torch
import torch.nn.functional as F

from lra_mega.model import MultiDimDampedEMA


def naive_ema(ema: MultiDimDampedEMA, x: torch.Tensor, mask=None) -> torch.Tensor:
    """silu(EMA(x) + ω x) by the recurrence h_t = p β x_t + q h_{t−1} (and its mirror), in fp64."""
    x = x.double()
    if mask is not None:
        x = x * mask.unsqueeze(-1).double()
    d, n = ema.dim, ema.ndim
    p = torch.sigmoid(ema.delta.double()).squeeze(-1)
    q = 1 - p * torch.sigmoid(ema.alpha.double()).squeeze(-1)
    beta = ema.beta.double().squeeze(-1)
    gamma = ema.gamma.double() * math.sqrt(1.0 / n)
    bsz, length, _ = x.shape
    k = length if ema.truncation is None else min(ema.truncation, length)

    def run(xs, p, q, beta, gamma):
        if k == length:  # plain recurrence
            h = torch.zeros(bsz, d, n, dtype=torch.float64)
            outs = []
            for t in range(length):
                h = p * beta * xs[:, t].unsqueeze(-1) + q * h
                outs.append((h * gamma).sum(-1))
            return torch.stack(outs, 1)
        # truncated: direct sum over the first k lags
        out = torch.zeros(bsz, length, d, dtype=torch.float64)
        for t in range(length):
            for s in range(min(k, t + 1)):
                coeff = (gamma * p * beta * q**s).sum(-1)
                out[:, t] += coeff * xs[:, t - s]
        return out

    y = run(x, p[:d], q[:d], beta[:d], gamma[:d])
    if ema.bidirectional:
        back = run(x.flip(1), p[d:], q[d:], beta[d:], gamma[d:])
        y = y + back.flip(1)
    return F.silu(y + x * ema.omega.double())


@pytest.mark.parametrize("bidirectional", [False, True])
@pytest.mark.parametrize("truncation", [None, 5])
@pytest.mark.parametrize("padded", [False, True])
def test_fft_equals_recurrence(bidirectional, truncation, padded):
    torch.manual_seed(0)
    ema = MultiDimDampedEMA(dim=6, ndim=4, bidirectional=bidirectional, truncation=truncation)
    x = torch.randn(3, 17, 6)
    mask = None
    if padded:
        mask = torch.ones(3, 17, dtype=torch.bool)
        mask[1, 12:] = False
        mask[2, 3:] = False
    got = ema(x, mask).double()
    want = naive_ema(ema, x, mask)
    valid = torch.ones(3, 17, dtype=torch.bool) if mask is None else mask
    assert torch.allclose(got[valid], want[valid], atol=1e-5, rtol=1e-5)


def test_decay_is_one_minus_sigmoid_delta_times_sigmoid_alpha():
    ema = MultiDimDampedEMA(dim=1, ndim=1, bidirectional=False)
    with torch.no_grad():
        ema.delta.fill_(0.0)  # p = 0.5
        ema.alpha.fill_(math.log(3.0))  # σ(α) = 0.75  →  q = 1 − 0.375 = 0.625
        ema.beta.fill_(2.0)
        ema.gamma.fill_(1.0)
    _, q = ema.coefficients()
    assert q.item() == pytest.approx(0.625, abs=1e-7)
    kernel = ema.kernel(6)[0]
    # K[t] = γ·√(1/h)·p·β·q^t = 1·1·0.5·2·0.625^t
    expected = torch.tensor([0.625**t for t in range(6)])
    assert torch.allclose(kernel, expected, atol=1e-6)


def test_init_matches_paper_code():
    torch.manual_seed(0)
    ema = MultiDimDampedEMA(dim=64, ndim=16)
    # β = N(0, 0.02) + (+1, −1, +1, …) over the h components
    sign = torch.tensor([1.0 if i % 2 == 0 else -1.0 for i in range(16)])
    assert torch.allclose(ema.beta.squeeze(-1).mean(0), sign, atol=0.02)
    assert 0.15 < ema.delta.std().item() < 0.25
    assert ema.delta.shape == (128, 16, 1) and ema.gamma.shape == (128, 16)


def test_fft_runs_in_fp32_under_bf16_autocast():
    torch.manual_seed(0)
    ema = MultiDimDampedEMA(dim=8, ndim=4)
    x = torch.randn(2, 64, 8)
    ref = naive_ema(ema, x)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = ema(x)
    # x and the residual are fp32 here; only a bf16 FFT would lose this accuracy
    assert torch.allclose(got.double(), ref, atol=1e-4)


def test_step_equals_fft_path():
    torch.manual_seed(0)
    ema = MultiDimDampedEMA(dim=5, ndim=3, bidirectional=False)
    x = torch.randn(2, 11, 5)
    full = ema(x)
    state, outs = None, []
    for t in range(11):
        y, state = ema.step(x[:, t], state)
        outs.append(y)
    assert torch.allclose(torch.stack(outs, 1), full, atol=1e-5)


def former_ema(ema: MultiDimDampedEMA, x: torch.Tensor, mask=None) -> torch.Tensor:
    """The EMA as computed before the lean autograd (plain autograd through the (c, n, t) decay
    tensor and the FFT spectra), in fp64: the reference for values and gradients."""
    length = x.size(1)
    k = length if ema.truncation is None else min(ema.truncation, length)
    p = torch.sigmoid(ema.delta)
    q = 1.0 - p * torch.sigmoid(ema.alpha)
    t = torch.arange(k, dtype=x.dtype).view(1, 1, k)
    weights = (p * ema.beta) * torch.exp(t * torch.log(q))
    kernel = torch.einsum("cnk,cn->ck", weights, ema.gamma * ema.scale)
    signal = x if mask is None else x * mask.unsqueeze(-1).to(x.dtype)
    n_fft = 2 * length
    if ema.bidirectional:
        past, future = kernel.split(ema.dim, dim=0)
        taps = torch.cat([past, past.new_zeros(ema.dim, n_fft - k)], -1)
        mirror = torch.cat([future[:, :1], future.new_zeros(ema.dim, n_fft - k), future[:, 1:].flip(-1)], -1)
        taps = taps + mirror
    else:
        taps = kernel
    spectrum = torch.fft.rfft(signal.transpose(1, 2), n=n_fft) * torch.fft.rfft(taps, n=n_fft)
    conv = torch.fft.irfft(spectrum, n=n_fft)[..., :length].transpose(1, 2)
    return F.silu(conv + x * ema.omega)


def _lean(ema: MultiDimDampedEMA, x: torch.Tensor, mask=None) -> torch.Tensor:
    return ema(x, mask)


def values_and_grads(fn, ema: MultiDimDampedEMA, x: torch.Tensor, mask,
                     upstream: torch.Tensor) -> list:
    """fn(ema, x, mask) and the gradients of ⟨it, upstream⟩ for x and every EMA parameter."""
    ema.zero_grad()
    x.grad = None
    out = fn(ema, x, mask)
    (out * upstream).sum().backward()
    return [out.detach(), x.grad.clone()] + [p.grad.clone() for p in ema.parameters()]


@pytest.mark.parametrize("bidirectional", [False, True])
@pytest.mark.parametrize("truncation", [None, 6])
@pytest.mark.parametrize("padded", [False, True])
def test_lean_autograd_matches_former_values_and_gradients_fp64(bidirectional, truncation, padded):
    torch.manual_seed(4)
    ema = MultiDimDampedEMA(dim=5, ndim=3, bidirectional=bidirectional, truncation=truncation).double()
    x = torch.randn(3, 13, 5, dtype=torch.float64, requires_grad=True)
    mask = torch.rand(3, 13) > 0.3 if padded else None
    upstream = torch.randn(3, 13, 5, dtype=torch.float64)
    for got, want in zip(values_and_grads(_lean, ema, x, mask, upstream),
                         values_and_grads(former_ema, ema, x, mask, upstream)):
        assert torch.allclose(got, want, atol=1e-10, rtol=1e-9)


def test_lean_autograd_saves_no_decay_tensor_or_spectrum():
    ema = MultiDimDampedEMA(dim=8, ndim=16)
    x = torch.randn(1, 256, 8)
    shapes = []

    def pack(t):
        shapes.append(tuple(t.shape))
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        ema(x)
    assert not [s for s in shapes if len(s) == 3 and s[1:] == (16, 256)], shapes  # (2d, ndim, L)
    assert not [s for s in shapes if 257 in s], shapes  # rfft spectra of length n/2 + 1


@pytest.mark.parametrize("bidirectional", [False, True])
def test_truncated_kernel_shorter_fft_matches_former_values_and_gradients_fp64(bidirectional):
    """A kernel truncated to k ≪ L convolves with FFTs of L + k rounded up to 512 (here 1,024, not
    2L = 1,400): values and gradients still equal the plain-autograd 2L reference."""
    torch.manual_seed(5)
    ema = MultiDimDampedEMA(dim=3, ndim=2, bidirectional=bidirectional, truncation=100).double()
    with torch.no_grad():
        ema.alpha.fill_(-3.0)  # slow decay: the taps near lag 100 still matter
    x = torch.randn(2, 700, 3, dtype=torch.float64, requires_grad=True)
    mask = torch.ones(2, 700, dtype=torch.bool)
    mask[1, 650:] = False
    upstream = torch.randn(2, 700, 3, dtype=torch.float64)
    for got, want in zip(values_and_grads(_lean, ema, x, mask, upstream),
                         values_and_grads(former_ema, ema, x, mask, upstream)):
        assert torch.allclose(got, want, atol=1e-10, rtol=1e-9)
