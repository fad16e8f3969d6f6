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

from .checks import check_positive


class MultiDimDampedEMA(nn.Module):
    """Damped EMA over the length axis of (B, L, dim) inputs, computed by FFT convolution."""

    def __init__(
        self,
        dim: int,
        ndim: int = 16,
        bidirectional: bool = True,
        truncation: int | None = None,
    ) -> None:
        super().__init__()
        check_positive("dim", dim)
        check_positive("ndim", ndim)
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

    def coefficients(self) -> tuple[Tensor, Tensor]:
        """Return (p, q) of shape (kernel_dim, ndim, 1) in fp32: p = σ(δ), q = 1 − p·σ(α)."""
        p = torch.sigmoid(self.delta.float())
        q = 1.0 - p * torch.sigmoid(self.alpha.float())
        return p, q

    def kernel(self, length: int) -> Tensor:
        """EMA kernel K[c, t] for t < min(truncation, length): shape (kernel_dim, k), fp32."""
        k = length if self.truncation is None else min(self.truncation, length)
        p, q = self.coefficients()
        t = torch.arange(k, device=p.device, dtype=torch.float32).view(1, 1, k)
        decay = torch.exp(t * torch.log(q))  # q^t, stable for q in (0, 1)
        weights = (p * self.beta.float()) * decay  # (kernel_dim, ndim, k)
        return torch.einsum("cnk,cn->ck", weights, self.gamma.float() * self.scale)

    def forward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        """(B, L, dim) → (B, L, dim); ``mask`` (B, L) bool, True = real position."""
        length = x.size(1)
        residual = x * self.omega
        with torch.autocast(device_type=x.device.type, enabled=False):
            signal = x.float()
            if mask is not None:
                signal = signal * mask.unsqueeze(-1).to(signal.dtype)
            signal = signal.transpose(1, 2)  # (B, dim, L)
            kernel = self.kernel(length)
            n_fft = 2 * length
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
            spectrum = torch.fft.rfft(signal, n=n_fft) * torch.fft.rfft(taps, n=n_fft)
            conv = torch.fft.irfft(spectrum, n=n_fft)[..., :length]
        out = conv.transpose(1, 2).to(residual.dtype) + residual
        return F.silu(out)

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
