"""The Mega block: EMA-gated attention sublayer followed by a normalised feed-forward sublayer."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from .attention import ATTENTION_FUNCTIONS, ATTENTION_IMPLS, attend, laplace, relu2
from .checks import check_choice, check_positive, check_probability
from .ema import MultiDimDampedEMA
from .kernels.gating import compute_dtype, feed_forward, gated_output, linear_silu, shared_qk, silu_linear
from .norm import SequenceNorm
from .position import REL_POS, build_relative_bias


def init_linear(layer: nn.Linear) -> nn.Linear:
    """Mega's linear init: weight N(0, 0.02), bias 0."""
    nn.init.normal_(layer.weight, mean=0.0, std=0.02)
    if layer.bias is not None:
        nn.init.zeros_(layer.bias)
    return layer


class MovingAverageGatedAttention(nn.Module):
    """EMA + single-head gated attention with a gated residual: (B, L, dim) → (B, L, dim)."""

    def __init__(
        self,
        dim: int,
        zdim: int = 64,
        hdim: int = 256,
        ndim: int = 16,
        attention: str = "softmax",
        norm: str = "layernorm",
        prenorm: bool = True,
        chunk_size: int = -1,
        truncation: int | None = None,
        max_len: int = 4096,
        rel_pos: str = "simple",
        dropout: float = 0.0,
        attention_dropout: float = 0.0,
        hidden_dropout: float = 0.0,
        causal: bool = False,
        ema_init: str = "official",
        ema_timescales: tuple[float, float] = (2.0, 1024.0),
        attention_impl: str = "auto",
    ) -> None:
        super().__init__()
        for name, value in (("dim", dim), ("zdim", zdim), ("hdim", hdim), ("max_len", max_len)):
            check_positive(name, value)
        check_positive("chunk_size", chunk_size, allow_minus_one=True)
        check_choice("attention", attention, ATTENTION_FUNCTIONS)
        check_choice("rel_pos", rel_pos, REL_POS)
        self.dim, self.zdim, self.hdim = dim, zdim, hdim
        self.attention = attention
        self.prenorm = prenorm
        self.chunk_size = chunk_size
        self.causal = causal
        self.dropout = nn.Dropout(check_probability("dropout", dropout))
        self.hidden_dropout = nn.Dropout(check_probability("hidden_dropout", hidden_dropout))
        self.attention_dropout = check_probability("attention_dropout", attention_dropout)
        self.attention_impl = check_choice("attention_impl", attention_impl, ATTENTION_IMPLS)
        if attention_impl in ("blockwise", "triton") and attention_dropout > 0.0:
            raise ValueError(f"attention_impl={attention_impl} has no attention dropout; use attention_impl=auto "
                             "or reference, or attention_dropout=0")

        self.norm = SequenceNorm(norm, dim)
        self.ema = MultiDimDampedEMA(
            dim, ndim, bidirectional=not causal, truncation=truncation, init=ema_init, timescales=ema_timescales
        )
        self.v_proj = init_linear(nn.Linear(dim, hdim))
        self.mx_proj = init_linear(nn.Linear(dim, zdim + hdim + 2 * dim))
        self.h_proj = init_linear(nn.Linear(hdim, dim))
        self.qk_gamma = nn.Parameter(torch.empty(2, zdim))
        self.qk_beta = nn.Parameter(torch.zeros(2, zdim))
        nn.init.normal_(self.qk_gamma, mean=0.0, std=0.02)
        bias_len = chunk_size if chunk_size > 0 else max_len
        self.rel_pos_bias = build_relative_bias(rel_pos, zdim, bias_len)

    def _gates(self, x: Tensor, mx: Tensor) -> tuple[Tensor, ...]:
        """Projections of the paper's §3.2: v, u (φ), q, k, r, hx."""
        v = self.hidden_dropout(F.silu(self.v_proj(x)))
        base = self.mx_proj(self.dropout(mx))
        u, zr, hx = base.split([self.dim, self.zdim + self.hdim, self.dim], dim=-1)
        u = torch.sigmoid(u)
        z, r = F.silu(zr).split([self.zdim, self.hdim], dim=-1)
        qk = z.unsqueeze(-2) * self.qk_gamma + self.qk_beta
        q, k = qk.unbind(dim=-2)
        return v, u, q, k, r, hx

    def _output(self, residual: Tensor, u: Tensor, attn: Tensor, r: Tensor, hx: Tensor) -> Tensor:
        h = F.silu(hx + self.h_proj(attn * r))
        out = torch.addcmul(residual, u, self.dropout(h) - residual)
        return out if self.prenorm else self.norm(out)

    def forward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        """x (B, L, dim), mask (B, L) bool (True = real) → (B, L, dim).

        The same maths as ``_gates`` / ``_output`` (used by ``step``), through the fused
        functions of ``kernels/gating.py`` that keep fewer activations for the backward.
        """
        residual = x
        if self.prenorm:
            x = self.norm(x).contiguous()
        # one copy of x in the compute dtype (bf16 under autocast) serves the backward of both
        x_compute = x.to(compute_dtype(x))
        ema_out = self.ema(x, mask, activate=False, keep_input=x_compute)
        if self.training and self.hidden_dropout.p > 0.0:
            v = self.hidden_dropout(F.silu(self.v_proj(x_compute)))
        else:
            v = linear_silu(x_compute, self.v_proj.weight, self.v_proj.bias)
        gates, hx = silu_linear(
            ema_out, self.mx_proj.weight, self.mx_proj.bias, split=self.dim + self.zdim + self.hdim,
            p=self.dropout.p, training=self.training,
        )
        q, k = shared_qk(gates, self.qk_gamma, self.qk_beta, start=self.dim)
        attn = attend(
            q,
            k,
            v,
            fn=self.attention,
            bias=self.rel_pos_bias,
            key_mask=mask,
            causal=self.causal,
            chunk_size=self.chunk_size,
            dropout_p=self.attention_dropout if self.training else 0.0,
            impl=self.attention_impl,
        )
        out = gated_output(
            residual, gates, attn, hx, self.h_proj.weight, self.h_proj.bias, self.dim,
            p=self.dropout.p, training=self.training,
            residual_kept=residual if self.prenorm else x_compute,  # post-norm: x is the residual
        )
        return out if self.prenorm else self.norm(out).contiguous()

    def step(self, x: Tensor, state: dict[str, Any] | None = None) -> tuple[Tensor, dict[str, Any]]:
        """Incremental (causal) decoding of one position: x (B, dim) → (y (B, dim), state)."""
        if not self.causal:
            raise ValueError("step() needs causal=True: a bidirectional layer sees the future")
        state = {"ema": None, "keys": None, "values": None, "pos": 0} if state is None else state
        residual = x
        if self.prenorm:
            x = self.norm(x.unsqueeze(1)).squeeze(1)
        mx, ema_state = self.ema.step(x, state["ema"])
        v, u, q, k, r, hx = self._gates(x, mx)
        pos = state["pos"]
        new_chunk = self.chunk_size > 0 and pos % self.chunk_size == 0
        keys = k.unsqueeze(1) if state["keys"] is None or new_chunk else torch.cat(
            [state["keys"], k.unsqueeze(1)], dim=1
        )
        values = v.unsqueeze(1) if state["values"] is None or new_chunk else torch.cat(
            [state["values"], v.unsqueeze(1)], dim=1
        )
        seen = keys.size(1)
        bias = self.rel_pos_bias.vector(seen)[:seen].to(q.dtype)  # offsets −(seen−1) … 0: the last row
        scores = torch.einsum("bz,btz->bt", q, keys)
        if self.attention == "softmax":
            weights = torch.softmax(scores * self.zdim**-0.5 + bias, dim=-1)
        else:
            activation = laplace if self.attention == "laplace" else relu2
            weights = activation(scores / seen + bias)
        attn = torch.einsum("bt,bth->bh", weights, values)
        out = self._output(residual, u, attn, r, hx)
        new_state = {"ema": ema_state, "keys": keys, "values": values, "pos": pos + 1}
        return out, new_state


class NormalizedFeedForward(nn.Module):
    """x + fc2(silu(fc1(norm(x)))) with pre- or post-norm."""

    def __init__(
        self,
        dim: int,
        ffn_dim: int,
        norm: str = "layernorm",
        prenorm: bool = True,
        dropout: float = 0.0,
        hidden_dropout: float = 0.0,
    ) -> None:
        super().__init__()
        check_positive("ffn_dim", ffn_dim)
        self.prenorm = prenorm
        self.norm = SequenceNorm(norm, dim)
        self.fc1 = init_linear(nn.Linear(dim, ffn_dim))
        self.fc2 = init_linear(nn.Linear(ffn_dim, dim))
        self.dropout = nn.Dropout(check_probability("dropout", dropout))
        self.hidden_dropout = nn.Dropout(check_probability("hidden_dropout", hidden_dropout))

    def forward(self, x: Tensor) -> Tensor:
        residual = x
        if self.prenorm:
            x = self.norm(x).contiguous()
        hidden = feed_forward(
            x, self.fc1.weight, self.fc1.bias, self.fc2.weight, self.fc2.bias,
            p=self.hidden_dropout.p, training=self.training, p_out=self.dropout.p,
        )
        out = hidden + residual
        return out if self.prenorm else self.norm(out).contiguous()


class MegaBlock(nn.Module):
    """[norm] → EMA-gated attention → [norm] → NFFN, as one encoder/decoder layer.

    ``attention_kwargs`` are those of :class:`MovingAverageGatedAttention`; the NFFN shares its
    norm, pre/post-norm and dropouts. ``ffn_dim`` defaults to ``hdim``.
    """

    def __init__(self, dim: int, ffn_dim: int | None = None, **attention_kwargs: Any) -> None:
        super().__init__()
        self.attention = MovingAverageGatedAttention(dim, **attention_kwargs)
        self.ffn = NormalizedFeedForward(
            dim,
            ffn_dim or self.attention.hdim,
            norm=self.attention.norm.kind,
            prenorm=self.attention.prenorm,
            dropout=self.attention.dropout.p,
            hidden_dropout=self.attention.hidden_dropout.p,
        )

    def forward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        return self.ffn(self.attention(x, mask))

    def step(self, x: Tensor, state: dict[str, Any] | None = None) -> tuple[Tensor, dict[str, Any]]:
        """One causal decoding step: x (B, dim) → (y (B, dim), state)."""
        y, state = self.attention.step(x, state)
        return self.ffn(y.unsqueeze(1)).squeeze(1), state


@contextmanager
def _frozen_batchnorm_stats(module: nn.Module) -> Iterator[None]:
    """BatchNorm running statistics left untouched (momentum 0, step count restored)."""
    norms = [m for m in module.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    saved = [(m.momentum, None if m.num_batches_tracked is None else m.num_batches_tracked.clone()) for m in norms]
    for m in norms:
        m.momentum = 0.0
    try:
        yield
    finally:
        for m, (momentum, steps) in zip(norms, saved):
            m.momentum = momentum
            if steps is not None:
                m.num_batches_tracked.copy_(steps)


def checkpointed(block: nn.Module, x: Tensor, mask: Tensor | None) -> Tensor:
    """block(x, mask) keeping only x for the backward, which reruns the block's forward.

    The rerun sees the same dropout masks (RNG state restored) and does not update BatchNorm
    running statistics a second time.
    """
    return checkpoint(
        block, x, mask, use_reentrant=False,
        context_fn=lambda: (nullcontext(), _frozen_batchnorm_stats(block)),
    )
