"""Causal Megalodon language model, built and named as XuezheMax/megalodon ``megalodon/model/mega.py``.

Per layer (``modules/moving_average_gated_attention.py``, ``normalized_feedforward_network.py``):

    x' = TimestepNorm(x);  mx = RMSNorm(CEMA(x'))
    v = silu(wv x');  z = wz mx;  r = silu(wr mx)
    q, k = (γ + 1)/√d_h · RMSNorm_h(z) + β   (per head: = (γ + 1)·z/‖z‖ + β up to ε)
    y = x + wh1 mx + wh2(attention(q, k, v) ⊙ r)     causal, within chunks, RoPE per chunk
    out = x + fc2 silu(fc1 LN(y))                    two-hop residual (``MegaBlock``: nffn(y, x))

then ``output.final_norm`` (TimestepNorm) and ``output.output`` (bias-free Linear). Names: ``embed``,
``layers.i.mega.{timenorm, cema, rmsnorm, wv, wz, wr, wh1, wh2, gamma, beta}``,
``layers.i.nffn.{norm, fc1, fc2, fc3, alpha}``, ``output.{final_norm, output}``, ``rope.freqs``.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..checks import check_positive, check_probability
from .attention import RotaryEmbedding, normalized_attention
from .cema import MultiHeadComplexEMA
from .layer import linear
from .norm import LayerNorm, RMSNorm, TimestepNorm


def _gaussian(weight: Tensor, dim: int) -> Tensor:
    """Official 'gaussian' init: N(0, 1/dim) truncated to ±3 std (embedding and output layer)."""
    std = 1.0 / math.sqrt(dim)
    return nn.init.trunc_normal_(weight, mean=0.0, std=std, a=-3 * std, b=3 * std)


class MegalodonLMAttention(nn.Module):
    """The LM's attention sublayer (official ``MovingAverageGatedAttention`` of the megalodon repo)."""

    def __init__(self, dim: int, zdim: int, hdim: int, ndim: int = 16, num_heads: int = 1, chunk_size: int = 2048,
                 dropout: float = 0.0, attention_dropout: float = 0.0, hidden_dropout: float = 0.0,
                 norm_num_groups: int | None = 32, norm_affine: bool = True, norm_eps: float = 1e-5,
                 init_mode: str = "he", omega_init: str = "truncated") -> None:
        super().__init__()
        if zdim % num_heads or hdim % num_heads:
            raise ValueError(f"num_heads={num_heads} must divide zdim={zdim} and hdim={hdim}; pick a common divisor")
        self.dim, self.zdim, self.hdim, self.heads = dim, zdim, hdim, num_heads
        self.z_head_dim, self.chunk_size = zdim // num_heads, chunk_size
        self.dropout_p = check_probability("dropout", dropout)
        self.hidden_dropout_p = check_probability("hidden_dropout", hidden_dropout)
        self.attention_dropout = check_probability("attention_dropout", attention_dropout)
        self.timenorm = TimestepNorm(dim, norm_num_groups, eps=norm_eps)
        self.cema = MultiHeadComplexEMA(dim, ndim, bidirectional=False, omega_init=omega_init)
        self.rmsnorm = RMSNorm(dim, eps=norm_eps, elementwise_affine=norm_affine)
        self.znorm = RMSNorm(self.z_head_dim, eps=norm_eps, elementwise_affine=False)
        self.wv = linear(dim, hdim, True, init_mode)
        self.wz = linear(dim, zdim, True, init_mode)
        self.wr = linear(dim, hdim, True, init_mode)
        self.wh1 = linear(dim, dim, True, init_mode)
        self.wh2 = linear(hdim, dim, False, init_mode)
        self.gamma = nn.Parameter(torch.zeros(2, zdim))
        self.beta = nn.Parameter(torch.zeros(2, zdim))

    def _drop(self, x: Tensor, p: float) -> Tensor:
        return F.dropout(x, p, self.training)

    def _qk(self, mx: Tensor) -> tuple[Tensor, Tensor]:
        shape = mx.shape[:-1]
        z = self.znorm(self.wz(mx).view(*shape, self.heads, self.z_head_dim)).view(*shape, self.zdim)
        q, k = (z.unsqueeze(-2) * ((self.gamma + 1.0) / math.sqrt(self.z_head_dim)) + self.beta).unbind(-2)
        return q, k

    def forward(self, x: Tensor, rope: RotaryEmbedding, mask: Tensor | None = None) -> Tensor:
        """x (B, L, dim), mask (B, L) bool (True = real) → (B, L, dim); causal attention within chunks."""
        residual = x
        x, _ = self.timenorm(x, mask)
        mx = self._drop(self.rmsnorm(self.cema(x, mask)), self.hidden_dropout_p)
        q, k = self._qk(mx)
        v, r = F.silu(self.wv(x)), F.silu(self.wr(mx))
        attn = normalized_attention(q, k, v, heads=self.heads, key_mask=mask, causal=True, chunk_size=self.chunk_size,
                                    rope=rope, dropout_p=self.attention_dropout if self.training else 0.0)
        h = self.wh1(mx) + self.wh2(self._drop(attn * r, self.hidden_dropout_p))
        return self._drop(h, self.dropout_p) + residual

    def step(self, x: Tensor, rope: RotaryEmbedding, state: dict[str, Any] | None) -> tuple[Tensor, dict[str, Any]]:
        """One position: x (B, dim) → (y (B, dim), state). The keys of the current chunk are cached
        rotated (official ``_InnerAttention`` cache); a full chunk starts an empty cache."""
        state = state or {"norm": None, "cema": None, "keys": None, "values": None, "count": 0}
        residual = x
        xn, norm_state = self.timenorm(x.unsqueeze(1), None, state["norm"])
        xn = xn.squeeze(1)
        mx_raw, cema_state = self.cema.step(xn, state["cema"])
        mx = self.rmsnorm(mx_raw)
        q, k = self._qk(mx)
        v, r = F.silu(self.wv(xn)), F.silu(self.wr(mx))
        count = state["count"]
        heads = lambda t: t.view(t.size(0), self.heads, 1, -1)  # noqa: E731  (B, H, 1, e)
        q, k = rope(heads(q), start=count), rope(heads(k), start=count)
        keys = k if state["keys"] is None else torch.cat([state["keys"], k], dim=2)
        values = heads(v) if state["values"] is None else torch.cat([state["values"], heads(v)], dim=2)
        weights = torch.softmax(q @ keys.transpose(-1, -2), dim=-1)
        attn = (weights @ values).reshape(x.size(0), self.hdim)
        out = self.wh1(mx) + self.wh2(attn * r) + residual
        full = (count + 1) % self.chunk_size == 0
        new_state = {"norm": norm_state, "cema": cema_state, "keys": None if full else keys,
                     "values": None if full else values, "count": 0 if full else count + 1}
        return out, new_state


class MegalodonLMFeedForward(nn.Module):
    """x → residual + α ⊙ fc2(silu(fc1 LN(x)) [⊙ fc3 LN(x)]) (official ``NormalizedFeedForwardNetwork``;
    bias-free fc1/fc2/fc3, fc3 only with ``swiglu``, α only with ``rescale``)."""

    def __init__(self, dim: int, ffn_dim: int, dropout: float = 0.0, hidden_dropout: float = 0.0,
                 swiglu: bool = False, norm_affine: bool = True, norm_eps: float = 1e-5,
                 rescale: float | None = None, init_mode: str = "he") -> None:
        super().__init__()
        check_positive("ffn_dim", ffn_dim)
        self.dropout_p, self.hidden_dropout_p = dropout, hidden_dropout
        self.norm = LayerNorm(dim, eps=norm_eps, elementwise_affine=norm_affine)
        self.fc1 = linear(dim, ffn_dim, False, init_mode)
        self.fc2 = linear(ffn_dim, dim, False, init_mode)
        self.fc3 = linear(dim, ffn_dim, False, init_mode) if swiglu else None
        self.alpha = None if rescale is None else nn.Parameter(torch.full((dim,), float(rescale)))

    def forward(self, x: Tensor, residual: Tensor) -> Tensor:
        x = self.norm(x)
        hidden = F.silu(self.fc1(x)) * (self.fc3(x) if self.fc3 is not None else 1.0)
        out = F.dropout(self.fc2(F.dropout(hidden, self.hidden_dropout_p, self.training)), self.dropout_p, self.training)
        return (out if self.alpha is None else self.alpha * out) + residual


class MegalodonLMBlock(nn.Module):
    """``mega`` then ``nffn`` with the two-hop residual: out = x + FFN(LN(x + attention))."""

    def __init__(self, mega: MegalodonLMAttention, nffn: MegalodonLMFeedForward) -> None:
        super().__init__()
        self.mega, self.nffn = mega, nffn

    def forward(self, x: Tensor, rope: RotaryEmbedding, mask: Tensor | None = None) -> Tensor:
        return self.nffn(self.mega(x, rope, mask), x)

    def step(self, x: Tensor, rope: RotaryEmbedding, state: dict[str, Any] | None) -> tuple[Tensor, dict[str, Any]]:
        y, state = self.mega.step(x, rope, state)
        return self.nffn(y, x), state


class MegalodonOutput(nn.Module):
    """``final_norm`` (TimestepNorm) → ``output`` (bias-free Linear to the vocabulary)."""

    def __init__(self, dim: int, num_tokens: int, norm_num_groups: int | None, norm_eps: float) -> None:
        super().__init__()
        self.final_norm = TimestepNorm(dim, norm_num_groups, eps=norm_eps)
        self.output = nn.Linear(dim, num_tokens, bias=False)
        _gaussian(self.output.weight, dim)


class MegalodonLM(nn.Module):
    """(B, L) token ids → (B, L, num_tokens) logits, causal (official ``Mega`` of XuezheMax/megalodon).

    Defaults as the official ``ModelConf``: one head, CEMA dim 16, chunk 2048, 32 norm groups,
    'he' init, ω ~ N(0, 0.25) truncated. ``chunk_size`` ≥ L: one chunk (full causal attention).
    """

    def __init__(self, num_tokens: int, dim: int, depth: int, zdim: int = 64, hdim: int = 256, ndim: int = 16,
                 num_heads: int = 1, ffn_dim: int | None = None, chunk_size: int = 2048,
                 norm_num_groups: int | None = 32, norm_affine: bool = True, norm_eps: float = 1e-5,
                 dropout: float = 0.0, attention_dropout: float = 0.0, hidden_dropout: float = 0.0,
                 swiglu: bool = False, rescale_nffn: bool = False, scale_emb: bool = False, share_emb: bool = False,
                 init_mode: str = "he", rope_base: float | None = None, omega_init: str = "truncated") -> None:
        super().__init__()
        for name, value in (("num_tokens", num_tokens), ("dim", dim), ("depth", depth), ("chunk_size", chunk_size)):
            check_positive(name, value)
        self.dim, self.chunk_size, self.dropout_p = dim, chunk_size, check_probability("dropout", dropout)
        self.emb_scale = math.sqrt(dim) if scale_emb else None
        self.embed = nn.Embedding(num_tokens, dim)
        _gaussian(self.embed.weight, dim)
        self.rope = RotaryEmbedding(zdim // num_heads, chunk_size, base=rope_base)
        self.layers = nn.ModuleList(
            MegalodonLMBlock(
                MegalodonLMAttention(dim, zdim, hdim, ndim, num_heads, chunk_size, dropout, attention_dropout,
                                     hidden_dropout, norm_num_groups, norm_affine, norm_eps, init_mode, omega_init),
                MegalodonLMFeedForward(dim, ffn_dim or 2 * dim, dropout, hidden_dropout, swiglu, norm_affine,
                                       norm_eps, 0.1 * 0.5**i if rescale_nffn else None, init_mode),
            )
            for i in range(depth)
        )
        self.output = MegalodonOutput(dim, num_tokens, norm_num_groups, norm_eps)
        if share_emb:
            self.output.output.weight = self.embed.weight

    def _embed(self, tokens: Tensor) -> Tensor:
        h = self.embed(tokens)
        h = h if self.emb_scale is None else h * self.emb_scale
        return F.dropout(h, self.dropout_p, self.training)

    def forward(self, tokens: Tensor, mask: Tensor | None = None) -> Tensor:
        """tokens (B, L) → logits (B, L, num_tokens); ``mask`` (B, L) bool, True = real (padding
        never enters the norms' statistics, the CEMA or the attention)."""
        h = self._embed(tokens)
        for layer in self.layers:
            h = layer(h, self.rope, mask)
        h, _ = self.output.final_norm(h, mask)
        return self.output.output(h)

    @torch.no_grad()
    def step(self, token: Tensor, states: list[dict[str, Any]] | None = None) -> tuple[Tensor, list[dict[str, Any]]]:
        """Incremental decoding: token (B,) → (logits (B, num_tokens), states)."""
        states = states or [None] * (len(self.layers) + 1)
        h = self._embed(token)
        new_states = []
        for layer, state in zip(self.layers, states):
            h, state = layer.step(h, self.rope, state)
            new_states.append(state)
        h, norm_state = self.output.final_norm(h.unsqueeze(1), None, states[-1])
        new_states.append(norm_state)
        return self.output.output(h.squeeze(1)), new_states

