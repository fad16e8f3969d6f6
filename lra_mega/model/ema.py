"""Multi-dimensional damped exponential moving average (Mega, Ma et al. 2022, §3.1).

Each of the ``dim`` channels is expanded into ``ndim`` EMA components:

    h_t = p ⊙ β · x_t + q ⊙ h_{t−1},     q = 1 − p ⊙ σ(α),  p = σ(δ)
    y_t = Σ_n γ_n · √(1/ndim) · h_{t,n}

which is a convolution of ``x`` with the kernel K[t] = Σ_n γ_n √(1/ndim) p_n β_n q_n^t.
The bidirectional form adds a second kernel mirrored onto the future (both include lag 0).
The layer output is ``silu(K ∗ x + ω ⊙ x)``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .checks import check_choice, check_positive

_KERNEL_CHUNK = 1 << 22  # values of a (channels, ndim, k) decay slab built at once
_LOG_TINY = -60.0
_FFT_GRAIN = 512  # FFT lengths of a truncated kernel are multiples of this: small prime factors
EMA_INITS = ("official", "timescale")


def _fft_length(length: int, taps: int) -> int:
    """FFT size for convolving ``length`` inputs with ``taps`` lags each way without wrap-around.

    Anything ≥ length + taps − 1 is exact. The untruncated kernel (taps = length) keeps the
    official 2·length; a truncated one (Path-X: 16,384 positions, 4,096 taps) needs less, rounded
    up to a multiple of ``_FFT_GRAIN`` (20,480 there: the EMA's FFTs cost 0.7× those of 32,768).
    """
    if taps >= length:
        return 2 * length
    return min(2 * length, -(-(length + taps) // _FFT_GRAIN) * _FFT_GRAIN)


def _decay_chunks(log_q: Tensor, length: int):
    """Yield (channel slice, q^t of shape (channels, ndim, length)) a few channels at a time."""
    t = torch.arange(length, device=log_q.device, dtype=log_q.dtype)
    step = max(1, _KERNEL_CHUNK // max(1, log_q.size(1) * length))
    for start in range(0, log_q.size(0), step):
        rows = slice(start, start + step)
        # q^t below e^−60 is 0 for the sum; clamping keeps exp() out of slow subnormal floats
        yield rows, torch.exp((log_q[rows].unsqueeze(-1) * t).clamp(min=_LOG_TINY)), t


class _EMAKernel(torch.autograd.Function):
    """K[c, t] = Σ_n a[c, n] · q[c, n]^t, recomputing q^t in the backward (nothing (c, n, t) is saved)."""

    @staticmethod
    def forward(ctx, a: Tensor, log_q: Tensor, length: int) -> Tensor:  # noqa: D102
        kernel = a.new_empty(a.size(0), length)
        for rows, decay, _ in _decay_chunks(log_q, length):
            kernel[rows] = torch.einsum("cn,cnt->ct", a[rows], decay)
        ctx.save_for_backward(a, log_q)
        return kernel

    @staticmethod
    def backward(ctx, grad: Tensor):  # noqa: D102
        a, log_q = ctx.saved_tensors
        da, dlog_q = torch.empty_like(a), torch.empty_like(log_q)
        for rows, decay, t in _decay_chunks(log_q, grad.size(1)):
            g = grad[rows].unsqueeze(1)  # (c, 1, t)
            da[rows] = (decay * g).sum(-1)
            dlog_q[rows] = a[rows] * (decay * (g * t)).sum(-1)
        return da, dlog_q, None


class _FFTConvolution(torch.autograd.Function):
    """y = K ∗ x + ω ⊙ x: y[b, t, d] = Σ_s taps[d, s] · x[b, (t − s) mod n, d] for t < L (real FFTs of
    length n, padded positions of x zeroed for the convolution only) plus the ω residual.

    Saves only ``kept`` (x itself when None, or a lower-precision copy shared with other consumers), the
    mask, the taps and ω; the backward redoes the spectra:
    dx = irfft(G · conj(T)) + ω ⊙ g, dtaps = irfft(Σ_b G · conj(X)), G the spectrum of dy.
    """

    @staticmethod
    def forward(ctx, x, mask, taps, omega, n_fft, kept):  # noqa: D102
        signal = _masked(x, mask)
        spectrum = torch.fft.rfft(signal, n=n_fft, dim=1) * torch.fft.rfft(taps, n=n_fft).t()
        conv = torch.fft.irfft(spectrum, n=n_fft, dim=1)[:, : x.size(1)]
        ctx.save_for_backward(x if kept is None else kept, mask, taps, omega)
        ctx.config = (n_fft, x.dtype)
        return (conv + _wide(x) * _wide(omega)).to(x.dtype)

    @staticmethod
    def backward(ctx, grad):  # noqa: D102
        kept, mask, taps, omega = ctx.saved_tensors
        n_fft, x_dtype = ctx.config
        length = kept.size(1)
        g_wide = _wide(grad)
        g = torch.fft.rfft(g_wide, n=n_fft, dim=1)
        dx = dtaps = domega = None
        if ctx.needs_input_grad[0]:
            dx = torch.fft.irfft(g * torch.fft.rfft(taps, n=n_fft).t().conj(), n=n_fft, dim=1)[:, :length]
            dx = (_masked(dx, mask) + g_wide * _wide(omega)).to(x_dtype)
        if ctx.needs_input_grad[2]:
            cross = (g * torch.fft.rfft(_masked(kept, mask), n=n_fft, dim=1).conj()).sum(0)
            dtaps = torch.fft.irfft(cross.t(), n=n_fft)[:, : taps.size(1)]
        if ctx.needs_input_grad[3]:
            domega = (g_wide * _wide(kept)).sum((0, 1)).to(omega.dtype)
        return dx, None, dtaps, domega, None, None


def _wide(x: Tensor) -> Tensor:
    """x in fp32, or fp64 when it already is."""
    return x if x.dtype in (torch.float32, torch.float64) else x.float()


def _masked(x: Tensor, mask: Tensor | None) -> Tensor:
    """x in fp32 (fp64 stays) with padded positions zeroed."""
    x = _wide(x)
    return x if mask is None else x * mask.unsqueeze(-1).to(x.dtype)


class MultiDimDampedEMA(nn.Module):
    """Damped EMA over the length axis of (B, L, dim) inputs, computed by FFT convolution."""

    def __init__(
        self,
        dim: int,
        ndim: int = 16,
        bidirectional: bool = True,
        truncation: int | None = None,
        init: str = "official",
        timescales: tuple[float, float] = (2.0, 1024.0),
    ) -> None:
        super().__init__()
        check_positive("dim", dim)
        check_positive("ndim", ndim)
        check_choice("ema_init", init, EMA_INITS)
        low, high = (float(t) for t in timescales)
        if not 1.5 <= low <= high:
            raise ValueError(
                f"ema_timescales={list(timescales)!r} must be [low, high] with 1.5 <= low <= high "
                "(e-folding lengths in positions; with σ(α) ≈ ½ a shorter one needs p = σ(δ) > 1)"
            )
        self.init, self.timescales = init, (low, high)
        if truncation is not None and truncation != -1:
            check_positive("truncation", truncation)
        self.dim = dim
        self.ndim = ndim
        self.bidirectional = bidirectional
        self.truncation = None if truncation in (None, -1) else truncation
        self.scale = math.sqrt(1.0 / ndim)
        kernel_dim = 2 * dim if bidirectional else dim
        self.delta = nn.Parameter(torch.empty(kernel_dim, ndim, 1))
        self.alpha = nn.Parameter(torch.empty(kernel_dim, ndim, 1))
        self.beta = nn.Parameter(torch.empty(kernel_dim, ndim, 1))
        self.gamma = nn.Parameter(torch.empty(kernel_dim, ndim))
        self.omega = nn.Parameter(torch.empty(dim))
        for p in (self.delta, self.alpha, self.beta, self.gamma, self.omega):
            p._no_weight_decay = True  # EMA parameters are excluded from weight decay
        for p in (self.delta, self.alpha, self.beta):
            p._ema_recurrence = True  # decay and input of the recurrence: S4's (Δ, A, B) for its optimiser group
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Initialise as the paper's code: δ, α ~ N(0, 0.2); β ~ N(0, 0.02) + (+1, −1, …); γ, ω ~ N(0, 1)."""
        with torch.no_grad():
            nn.init.normal_(self.delta, mean=0.0, std=0.2)
            nn.init.normal_(self.alpha, mean=0.0, std=0.2)
            sign = torch.ones(self.ndim, 1)
            sign[1::2] = -1.0
            nn.init.normal_(self.beta, mean=0.0, std=0.02)
            self.beta.add_(sign)
            nn.init.normal_(self.gamma, mean=0.0, std=1.0)
            nn.init.normal_(self.omega, mean=0.0, std=1.0)
            if self.init == "timescale":
                self.spread_timescales(*self.timescales)

    def spread_timescales(self, low: float, high: float) -> None:
        """Set δ so that each component's decay q = exp(−1/τ) has an e-folding length τ drawn
        log-uniformly from [low, high] positions (α keeps its official draw).

        The official init gives every component q ≈ 0.75 (τ ≈ 3.5 positions); S4's Δ and LRU's
        ring init spread their state's timescales over the sequence length instead.
        """
        with torch.no_grad():
            tau = torch.exp(torch.empty_like(self.delta).uniform_(math.log(low), math.log(high)))
            p = (-torch.expm1(-1.0 / tau)) / torch.sigmoid(self.alpha)  # 1 − q = p·σ(α)
            self.delta.copy_(torch.logit(p.clamp(max=0.999)))

    def coefficients(self) -> tuple[Tensor, Tensor]:
        """Return (p, q) of shape (kernel_dim, ndim, 1) in fp32 (fp64 parameters stay): p = σ(δ), q = 1 − p·σ(α)."""
        p = torch.sigmoid(_wide(self.delta))
        q = 1.0 - p * torch.sigmoid(_wide(self.alpha))
        return p, q

    # eager under torch.compile: its per-length chunking cannot be traced with a symbolic length
    # (variable-length batches), and it is small (kernel_dim x ndim x k)
    @torch.compiler.disable
    def kernel(self, length: int) -> Tensor:
        """EMA kernel K[c, t] for t < min(truncation, length): shape (kernel_dim, k), fp32.

        K[c, t] = Σ_n γ_n √(1/ndim) p_n β_n q_n^t, with q^t = exp(t·log q), stable for q in (0, 1).
        """
        k = length if self.truncation is None else min(self.truncation, length)
        p, q = self.coefficients()
        a = (p * _wide(self.beta)).squeeze(-1) * (_wide(self.gamma) * self.scale)
        return _EMAKernel.apply(a, torch.log(q).squeeze(-1), k)

    def forward(
        self, x: Tensor, mask: Tensor | None = None, activate: bool = True, keep_input: Tensor | None = None
    ) -> Tensor:
        """(B, L, dim) → (B, L, dim); ``mask`` (B, L) bool, True = real position.

        ``activate=False`` returns K ∗ x + ω ⊙ x before the silu (for a fused consumer).
        ``keep_input``: the copy of x to keep for the backward (e.g. the bf16 one a caller keeps
        anyway under autocast); default x itself.
        """
        length = x.size(1)
        with torch.autocast(device_type=x.device.type, enabled=False):
            kernel = self.kernel(length)
            n_fft = _fft_length(length, kernel.size(1))
            if self.bidirectional:
                past, future = kernel.split(self.dim, dim=0)
                taps = past.new_zeros(self.dim, n_fft)
                taps[:, : past.size(1)] = past
                # lag −s of the future kernel sits at index n_fft − s (circular layout)
                taps[:, 0] += future[:, 0]
                if future.size(1) > 1:
                    taps[:, n_fft - future.size(1) + 1 :] += future[:, 1:].flip(-1)
            else:
                taps = kernel
            # None stands for x itself: torch.compile cannot trace a Function given one tensor twice
            kept = None if keep_input is x else keep_input
            out = _FFTConvolution.apply(x, mask, taps, self.omega, n_fft, kept)
        return F.silu(out) if activate else out

    def step(self, x: Tensor, state: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """One causal recurrent step: x (B, dim) → (y (B, dim), new state (B, dim, ndim)).

        Only for the unidirectional EMA (truncation is ignored: the recurrence is the untruncated EMA).
        """
        if self.bidirectional:
            raise ValueError("bidirectional=True: the recurrent step form exists only for causal EMA")
        p, q = self.coefficients()
        p, q = p.squeeze(-1), q.squeeze(-1)  # (dim, ndim)
        drive = (p * self.beta.float().squeeze(-1)) * x.float().unsqueeze(-1)
        new_state = drive if state is None else drive + q * state
        y = torch.einsum("bdn,dn->bd", new_state, self.gamma.float() * self.scale)
        return F.silu(y.to(x.dtype) + x * self.omega), new_state
