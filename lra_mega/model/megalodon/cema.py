"""Complex exponential moving average (CEMA; Megalodon, Ma et al. 2024, §3.1).

Each of the ``dim`` channels is expanded into ``ndim`` complex components:

    h_t = p ⊙ x_t + q ⊙ h_{t−1},    p = σ(α),  q = (1 − σ(α)·σ(δ)) · e^{iφ},  φ_n = n · σ(θ) · 2π / ndim
    y_t = Re(Σ_n γ_n · √(1/ndim) · h_{t,n}) + ω ⊙ x_t

(official: XuezheMax/megalodon ``modules/complex_exponential_moving_average.py`` ``_calc_coeffs``;
fairseq-apollo branch ``residual`` ``fairseq/modules/complex_exponential_moving_average.py``). There is
no β input expansion and no activation: the caller applies RMSNorm (or SiLU) to the output. The
recurrence is a convolution with K[t] = Re(Σ_n p_n γ_n q_n^t), computed by FFT. The bidirectional
form adds a second kernel over the future; with ``shift`` (the official default) it starts at lag −1,
so the current position is counted once (``fused_ops/fftconv.py`` ``bidirectional_fftconv``).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from ..checks import check_choice, check_positive
from ..ema import _fft_length, _FFTConvolution, _wide

_KERNEL_CHUNK = 1 << 22  # values of a (channels, ndim, k) slab built at once
_LOG_TINY = -60.0
OMEGA_INITS = ("normal", "truncated")


def _powers(log_r: Tensor, phi: Tensor, length: int):
    """Yield (channel slice, r^t, cos tφ, sin tφ, t), each (channels, ndim, length), a few channels at a time."""
    t = torch.arange(length, device=log_r.device, dtype=log_r.dtype)
    step = max(1, _KERNEL_CHUNK // max(1, log_r.size(1) * length))
    for start in range(0, log_r.size(0), step):
        rows = slice(start, start + step)
        angle = phi[rows].unsqueeze(-1) * t
        # r^t below e^−60 is 0 for the sum; clamping keeps exp() out of slow subnormal floats
        decay = torch.exp((log_r[rows].unsqueeze(-1) * t).clamp(min=_LOG_TINY))
        yield rows, decay, torch.cos(angle), torch.sin(angle), t


class _CEMAKernel(torch.autograd.Function):
    """K[c, t] = Σ_n r^t (a_re cos tφ − a_im sin tφ) = Re(Σ_n a q^t), recomputing the powers in the
    backward (nothing of shape (channels, ndim, length) is saved)."""

    @staticmethod
    def forward(ctx, a_re: Tensor, a_im: Tensor, log_r: Tensor, phi: Tensor, length: int) -> Tensor:  # noqa: D102
        kernel = a_re.new_empty(a_re.size(0), length)
        for rows, decay, cos, sin, _ in _powers(log_r, phi, length):
            wave = a_re[rows].unsqueeze(-1) * cos - a_im[rows].unsqueeze(-1) * sin
            kernel[rows] = (decay * wave).sum(1)
        ctx.save_for_backward(a_re, a_im, log_r, phi)
        return kernel

    @staticmethod
    def backward(ctx, grad: Tensor):  # noqa: D102
        a_re, a_im, log_r, phi = ctx.saved_tensors
        grads = [torch.empty_like(a_re) for _ in range(4)]
        for rows, decay, cos, sin, t in _powers(log_r, phi, grad.size(1)):
            g = grad[rows].unsqueeze(1) * decay  # (c, 1, t) · r^t
            ar, ai = a_re[rows].unsqueeze(-1), a_im[rows].unsqueeze(-1)
            grads[0][rows] = (g * cos).sum(-1)
            grads[1][rows] = -(g * sin).sum(-1)
            grads[2][rows] = (g * t * (ar * cos - ai * sin)).sum(-1)
            grads[3][rows] = -(g * t * (ar * sin + ai * cos)).sum(-1)
        return (*grads, None)


class MultiHeadComplexEMA(nn.Module):
    """CEMA over the length axis of (B, L, dim) inputs (official class name and parameters).

    Parameters as the official module: α, δ (kernel_dim, ndim, 1), θ (kernel_dim, 1, 1), γ
    (kernel_dim, ndim, 2) (real, imaginary), ω (dim, 1); kernel_dim = 2·dim when bidirectional.
    """

    def __init__(
        self,
        dim: int,
        ndim: int = 16,
        bidirectional: bool = False,
        truncation: int | None = None,
        shift: bool = True,
        omega_init: str = "normal",
    ) -> None:
        super().__init__()
        check_positive("dim", dim)
        check_positive("ndim", ndim)
        check_choice("omega_init", omega_init, OMEGA_INITS)
        if truncation is not None and truncation not in (0, -1):
            check_positive("truncation", truncation)
        self.dim, self.ndim = dim, ndim
        self.bidirectional, self.shift, self.omega_init = bidirectional, shift, omega_init
        # official: truncation None or < 1 means the whole sequence
        self.truncation = None if truncation is None or truncation < 1 else truncation
        self.scale = math.sqrt(1.0 / ndim)
        kernel_dim = 2 * dim if bidirectional else dim
        self.alpha = nn.Parameter(torch.empty(kernel_dim, ndim, 1))
        self.delta = nn.Parameter(torch.empty(kernel_dim, ndim, 1))
        self.theta = nn.Parameter(torch.empty(kernel_dim, 1, 1))
        self.gamma = nn.Parameter(torch.empty(kernel_dim, ndim, 2))
        self.omega = nn.Parameter(torch.empty(dim, 1))
        for p in (self.alpha, self.delta, self.theta):
            p._no_weight_decay = True  # official: register_parameters_no_weight_decay(alpha, delta, theta)
            p._ema_recurrence = True
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Official init: α, δ ~ N(0, 0.2); θ = logit(dim^(−k/dim)) for k = 1 … dim, permuted over channels
        (both directions alike); γ ~ N(0, 1) with imaginary part 0; ω ~ N(0, 1) (fairseq-apollo) or
        N(0, 0.25) truncated to [−1, 1] (``omega_init="truncated"``, the megalodon repository)."""
        with torch.no_grad():
            nn.init.normal_(self.alpha, mean=0.0, std=0.2)
            nn.init.normal_(self.delta, mean=0.0, std=0.2)
            freqs = torch.exp(torch.arange(1, self.dim + 1, dtype=torch.float64) * -(math.log(self.dim) / self.dim))
            freqs = freqs[torch.randperm(self.dim)].view(self.dim, 1, 1)
            if self.bidirectional:
                freqs = freqs.repeat(2, 1, 1)
            self.theta.copy_(torch.log(freqs / (1.0 - freqs)))
            nn.init.normal_(self.gamma, mean=0.0, std=1.0)
            self.gamma[:, :, 1] = 0.0
            if self.omega_init == "normal":
                nn.init.normal_(self.omega, mean=0.0, std=1.0)
            else:
                nn.init.trunc_normal_(self.omega, mean=0.0, std=0.25, a=-1.0, b=1.0)

    def coefficients(self) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """(p, log|q|, arg q, γ·√(1/ndim) as complex), each (kernel_dim, ndim), in fp32 (fp64 stays)."""
        theta = torch.sigmoid(_wide(self.theta)).squeeze(-1) * (2 * math.pi / self.ndim)  # (C, 1)
        phi = theta * torch.arange(1, self.ndim + 1, dtype=theta.dtype, device=theta.device)
        alpha = torch.sigmoid(_wide(self.alpha)).squeeze(-1)
        delta = torch.sigmoid(_wide(self.delta)).squeeze(-1)
        gamma = torch.view_as_complex(_wide(self.gamma).contiguous()) * self.scale
        return alpha, torch.log1p(-alpha * delta), phi, gamma

    def decay(self) -> Tensor:
        """q = (1 − σ(α)σ(δ))·e^{iφ}, complex (kernel_dim, ndim)."""
        _, log_r, phi, _ = self.coefficients()
        return torch.polar(torch.exp(log_r), phi)

    @torch.compiler.disable  # chunked over channels; small next to the convolution
    def kernel(self, length: int) -> Tensor:
        """K[c, t] = Re(Σ_n p_n γ_n q_n^t) for t < min(truncation, length): (kernel_dim, k)."""
        k = length if self.truncation is None else min(self.truncation, length)
        p, log_r, phi, gamma = self.coefficients()
        return _CEMAKernel.apply(p * gamma.real, p * gamma.imag, log_r, phi, k)

    def _taps(self, kernel: Tensor, n_fft: int) -> Tensor:
        """Circular taps (dim, n_fft): lag s ≥ 0 at index s, lag −s at index n_fft − s."""
        if not self.bidirectional:
            return kernel
        past, future = kernel.split(self.dim, dim=0)
        taps = past.new_zeros(self.dim, n_fft)
        taps[:, : past.size(1)] = past
        k = future.size(1)
        if self.shift:  # future kernel over lags −1 … −k
            taps[:, n_fft - k :] += future.flip(-1)
        else:  # over lags 0 … −(k−1), as Mega's
            taps[:, 0] += future[:, 0]
            if k > 1:
                taps[:, n_fft - k + 1 :] += future[:, 1:].flip(-1)
        return taps

    def forward(
        self, x: Tensor, mask: Tensor | None = None, state: Tensor | None = None, return_state: bool = False
    ) -> Tensor | tuple[Tensor, Tensor]:
        """(B, L, dim) → (B, L, dim); ``mask`` (B, L) bool, True = real (padded inputs are zeroed).

        Causal form only: ``state`` (B, dim, ndim) complex, the hidden state before position 0;
        ``return_state`` also returns the state after the last position (official ``ema_hidden``).
        """
        length = x.size(1)
        carried = state is not None or return_state
        if carried and (self.bidirectional or self.truncation is not None):
            raise ValueError("a carried CEMA state needs the causal, untruncated form: "
                             "use bidirectional=False and truncation=None")
        with torch.autocast(device_type=x.device.type, enabled=False):
            kernel = self.kernel(length)
            # ≥ length + k: the shifted future kernel reaches lag −k, the past one lag k − 1
            n_fft = _fft_length(length, kernel.size(1))
            out = _FFTConvolution.apply(x, mask, self._taps(kernel, n_fft), self.omega.squeeze(-1), n_fft, None)
            if not carried:
                return out
            p, log_r, phi, gamma = self.coefficients()
            t = torch.arange(length + 1, device=x.device, dtype=log_r.dtype)
            powers = torch.polar(torch.exp(log_r.unsqueeze(-1) * t), phi.unsqueeze(-1) * t)  # q^t, (D, N, L+1)
            if state is not None:
                h0 = state.to(powers.dtype)
                out = out + torch.einsum("bdn,dnt->btd", h0 * gamma, powers[..., 1:]).real.to(out.dtype)
            if not return_state:
                return out
            signal = _wide(x) if mask is None else _wide(x) * mask.unsqueeze(-1).to(_wide(x).dtype)
            # h_L = p Σ_j q^(L−1−j) x_j + q^L h_0
            last = p * torch.einsum("bjd,dnj->bdn", signal.to(powers.dtype), powers[..., :length].flip(-1))
            if state is not None:
                last = last + powers[..., length] * state.to(powers.dtype)
            return out, last

    def step(self, x: Tensor, state: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """One causal step of the recurrence: x (B, dim) → (y (B, dim), state (B, dim, ndim) complex)."""
        if self.bidirectional:
            raise ValueError("bidirectional=True: the step form exists only for the causal CEMA")
        p, _, _, gamma = self.coefficients()
        q = self.decay()
        h = p * _wide(x).unsqueeze(-1)
        h = h.to(q.dtype) if state is None else h + q * state
        y = torch.einsum("bdn,dn->bd", h, gamma).real + _wide(x) * _wide(self.omega).squeeze(-1)
        return y.to(x.dtype), h

    def extra_repr(self) -> str:
        return (f"dim={self.dim}, ndim={self.ndim}, bidirectional={self.bidirectional}, "
                f"truncation={self.truncation}, shift={self.shift}")
