"""The Megalodon encoder layer: CEMA-gated normalised attention, then a normalised feed-forward network.

Maths and parameter names of fairseq-apollo branch ``residual`` (the official Megalodon classification
code): ``fairseq/modules/moving_average_gated_attention.py`` (``MovingAverageGatedAttention`` with
``moving_layer='cema'``), ``normalized_feedforward_network.py`` and ``mega_sentence_encoder_layer.py``.

    x' = norm(x)                       SequenceNorm (bidirectional) / TimestepNorm (causal)
    v = silu(W_v x' + b_v)
    mx = act(CEMA(x'))                 act: RMSNorm (official default) or SiLU
    z, r, hx = split(W_mx mx + b_mx)   z: zdim, r: hdim, hx: dim
    q, k = (γ + 1)·z/‖z‖ + β;  r = silu(r)
    o = attention(q, k, v)             softmax without 1/√d (or laplace / relu² over q·kᵀ/√n)
    y = x + hx + W_h(o ⊙ r)            no update gate; W_h has no bias (= W_h1·mx + W_h2(o ⊙ r))
    out = y + W_2 silu(W_1 LN(y) + b_1)     residual y (apollo tip) or x (two-hop, paper / LM code)
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..attention import ATTENTION_FUNCTIONS
from ..checks import check_choice, check_positive, check_probability
from .attention import RotaryEmbedding, SimpleRelativePositionalBias, normalize_qk, normalized_attention
from .cema import MultiHeadComplexEMA
from .norm import FFN_NORMS, RMSNorm, SequenceGroupNorm, TimestepNorm

INIT_MODES = ("bert", "he", "xavier")
MOVING_ACTS = ("rmsnorm", "silu")
REL_POS = ("rotary", "simple")
FFN_RESIDUALS = ("block", "ffn")


def init_weight(weight: Tensor, mode: str) -> Tensor:
    """Official ``init_mode``: bert N(0, 0.02), he kaiming-normal (a = √5), xavier uniform."""
    check_choice("init_mode", mode, INIT_MODES)
    if mode == "bert":
        return nn.init.normal_(weight, mean=0.0, std=0.02)
    if mode == "he":
        return nn.init.kaiming_normal_(weight, a=math.sqrt(5.0))
    return nn.init.xavier_uniform_(weight)


def linear(in_dim: int, out_dim: int, bias: bool, mode: str) -> nn.Linear:
    """nn.Linear with the official weight init and a zero bias."""
    layer = nn.Linear(in_dim, out_dim, bias=bias)
    init_weight(layer.weight, mode)
    if bias:
        nn.init.zeros_(layer.bias)
    return layer


class MegalodonAttention(nn.Module):
    """Norm → CEMA → RMSNorm → gated normalised attention, with the plain residual: (B, L, dim) → (B, L, dim).

    Submodule and parameter names as fairseq-apollo: ``norm``, ``move`` (CEMA), ``move_act``,
    ``v_proj``, ``mx_proj``, ``h_proj``, ``gamma``, ``beta``, ``rel_pos_bias``.
    """

    def __init__(
        self,
        dim: int,
        zdim: int = 64,
        hdim: int = 256,
        ndim: int = 16,
        num_heads: int = 1,
        attention: str = "softmax",
        chunk_size: int = -1,
        truncation: int | None = None,
        max_len: int = 4096,
        rel_pos: str = "rotary",
        dropout: float = 0.0,
        attention_dropout: float = 0.0,
        hidden_dropout: float = 0.0,
        causal: bool = False,
        norm_num_groups: int | None = None,
        norm_eps: float = 1e-5,
        norm_affine: bool = True,
        moving_act: str = "rmsnorm",
        omega_init: str = "normal",
        init_mode: str = "bert",
        shift: bool = True,
        laplace_approx: bool = True,
    ) -> None:
        super().__init__()
        for name, value in (("dim", dim), ("zdim", zdim), ("hdim", hdim), ("num_heads", num_heads)):
            check_positive(name, value)
        check_positive("chunk_size", chunk_size, allow_minus_one=True)
        if zdim % num_heads or hdim % num_heads:
            raise ValueError(f"num_heads={num_heads} must divide zdim={zdim} and hdim={hdim}; pick a common divisor")
        self.dim, self.zdim, self.hdim, self.heads = dim, zdim, hdim, num_heads
        self.attention = check_choice("attention", attention, ATTENTION_FUNCTIONS)
        self.chunk_size, self.causal, self.laplace_approx = chunk_size, causal, bool(laplace_approx)
        check_choice("moving_act", moving_act, MOVING_ACTS)
        check_choice("rel_pos", rel_pos, REL_POS)
        self.dropout = nn.Dropout(check_probability("dropout", dropout))
        self.hidden_dropout = nn.Dropout(check_probability("hidden_dropout", hidden_dropout))
        self.attention_dropout = check_probability("attention_dropout", attention_dropout)

        self.norm = TimestepNorm(dim, norm_num_groups, eps=norm_eps) if causal else \
            SequenceGroupNorm(dim, norm_num_groups, eps=norm_eps)
        self.move = MultiHeadComplexEMA(dim, ndim, bidirectional=not causal, truncation=truncation, shift=shift,
                                        omega_init=omega_init)
        self.move_act = RMSNorm(dim, eps=norm_eps, elementwise_affine=norm_affine) if moving_act == "rmsnorm" \
            else nn.SiLU()
        self.v_proj = linear(dim, hdim, True, init_mode)
        self.mx_proj = linear(dim, zdim + hdim + dim, True, init_mode)
        self.h_proj = linear(hdim, dim, False, init_mode)
        self.gamma = nn.Parameter(torch.zeros(2, zdim))
        self.beta = nn.Parameter(torch.zeros(2, zdim))
        if rel_pos == "rotary":
            self.rel_pos_bias: nn.Module = RotaryEmbedding(zdim // num_heads, chunk_size if chunk_size > 0 else max_len)
        else:
            self.rel_pos_bias = SimpleRelativePositionalBias(chunk_size if chunk_size > 0 else max_len)

    def forward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        """x (B, L, dim), mask (B, L) bool (True = real) → (B, L, dim)."""
        residual = x
        x = self.norm(x, mask)[0] if self.causal else self.norm(x, mask)
        v = F.silu(self.v_proj(x))
        mx = self.hidden_dropout(self.move_act(self.move(x, mask)))
        z, r, hx = self.mx_proj(mx).split([self.zdim, self.hdim, self.dim], dim=-1)
        q, k = normalize_qk(z, self.gamma, self.beta, self.heads)
        rotary = isinstance(self.rel_pos_bias, RotaryEmbedding)
        attn = normalized_attention(
            q, k, v, fn=self.attention, heads=self.heads, key_mask=mask, causal=self.causal,
            chunk_size=self.chunk_size, rope=self.rel_pos_bias if rotary else None,
            bias=None if rotary else self.rel_pos_bias,
            dropout_p=self.attention_dropout if self.training else 0.0, laplace_approx=self.laplace_approx,
        )
        attn = self.hidden_dropout(attn * F.silu(r))
        return self.dropout(hx + self.h_proj(attn)) + residual


class MegalodonFeedForward(nn.Module):
    """out = residual + W_2 silu(W_1 norm(x) + b_1) (fairseq-apollo ``NormalizedFeedForwardNetwork``:
    ``norm``, ``fc1`` (bias), ``fc2`` (no bias), optional ``layerscale_weight``)."""

    def __init__(
        self,
        dim: int,
        ffn_dim: int,
        norm: str = "layernorm",
        dropout: float = 0.0,
        hidden_dropout: float = 0.0,
        norm_eps: float = 1e-5,
        norm_affine: bool = True,
        layer_scale: float | None = None,
        init_mode: str = "bert",
    ) -> None:
        super().__init__()
        check_positive("ffn_dim", ffn_dim)
        self.norm = FFN_NORMS[check_choice("norm", norm, FFN_NORMS)](dim, eps=norm_eps, elementwise_affine=norm_affine)
        self.fc1 = linear(dim, ffn_dim, True, init_mode)
        self.fc2 = linear(ffn_dim, dim, False, init_mode)
        self.dropout = nn.Dropout(check_probability("dropout", dropout))
        self.hidden_dropout = nn.Dropout(check_probability("hidden_dropout", hidden_dropout))
        if layer_scale is None:
            self.register_parameter("layerscale_weight", None)
        else:
            if not layer_scale > 0:
                raise ValueError(f"layer_scale={layer_scale!r} must be > 0 (the initial scale of the FFN branch)")
            self.layerscale_weight = nn.Parameter(torch.full((dim,), float(layer_scale)))

    def forward(self, x: Tensor, residual: Tensor) -> Tensor:
        out = self.dropout(self.fc2(self.hidden_dropout(F.silu(self.fc1(self.norm(x))))))
        if self.layerscale_weight is not None:
            out = out * self.layerscale_weight
        return out + residual


class MegalodonBlock(nn.Module):
    """One encoder layer: ``mega_layer`` then ``nffn`` (fairseq-apollo ``MegaSentenceEncoderLayer``).

    ``ffn_residual="block"``: the FFN adds its output to the block input x (the paper's two-hop
    residual, §3.4; XuezheMax/megalodon ``MegaBlock``: ``nffn(y, x)``; fairseq-apollo before commit
    f52fda2). ``"ffn"``: to its own input y (fairseq-apollo tip, commit f52fda2 "residual type II").
    ``ffn_dim`` ≤ 0 or None: no FFN (official).
    """

    def __init__(
        self,
        dim: int,
        ffn_dim: int | None,
        ffn_norm: str = "layernorm",
        ffn_residual: str = "block",
        layer_scale: float | None = None,
        **attention_kwargs,
    ) -> None:
        super().__init__()
        self.ffn_residual = check_choice("ffn_residual", ffn_residual, FFN_RESIDUALS)
        self.mega_layer = MegalodonAttention(dim, **attention_kwargs)
        layer = self.mega_layer
        self.nffn = None
        if ffn_dim is not None and ffn_dim > 0:
            self.nffn = MegalodonFeedForward(
                dim, ffn_dim, norm=ffn_norm, dropout=layer.dropout.p, hidden_dropout=layer.hidden_dropout.p,
                norm_eps=attention_kwargs.get("norm_eps", 1e-5), norm_affine=attention_kwargs.get("norm_affine", True),
                layer_scale=layer_scale, init_mode=attention_kwargs.get("init_mode", "bert"),
            )

    @property
    def attention(self) -> MegalodonAttention:
        """The attention sublayer under the name the harness reads (``layers[i].attention.causal``)."""
        return self.mega_layer

    def forward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        y = self.mega_layer(x, mask)
        if self.nffn is None:
            return y
        return self.nffn(y, residual=x if self.ffn_residual == "block" else y)
