"""Seed-compatible `MegaLayer` and `Mega` (token model / causal language model)."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from .encoder import MegaEncoder
from .layer import MovingAverageGatedAttention, init_linear


class MegaLayer(MovingAverageGatedAttention):
    """The EMA-gated attention layer under mega-pytorch's argument names: (B, L, dim) → (B, L, dim)."""

    def __init__(
        self,
        dim: int,
        ema_heads: int = 16,
        attn_dim_qk: int = 64,
        attn_dim_value: int = 256,
        laplacian_attn_fn: bool = False,
        causal: bool = False,
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("attention", "laplace" if laplacian_attn_fn else "softmax")
        super().__init__(
            dim, zdim=attn_dim_qk, hdim=attn_dim_value, ndim=ema_heads, causal=causal, **kwargs
        )


class Mega(nn.Module):
    """(B, L) token ids → (B, L, num_tokens) logits; a causal language model when ``causal=True``.

    Token id 0 is the padding id (zero embedding).
    """

    def __init__(
        self,
        num_tokens: int,
        dim: int,
        depth: int,
        ema_heads: int = 16,
        attn_dim_qk: int = 64,
        attn_dim_value: int = 256,
        laplacian_attn_fn: bool = False,
        causal: bool = False,
        ff_mult: int = 2,
        **kwargs: Any,
    ) -> None:
        super().__init__()
        kwargs.setdefault("attention", "laplace" if laplacian_attn_fn else "softmax")
        self.encoder = MegaEncoder(
            vocab_size=num_tokens,
            input_kind="tokens",
            dim=dim,
            depth=depth,
            zdim=attn_dim_qk,
            hdim=attn_dim_value,
            ndim=ema_heads,
            bidirectional=not causal,
            ffn_dim=dim * ff_mult,
            **kwargs,
        )
        self.causal = causal
        self.to_logits = init_linear(nn.Linear(dim, num_tokens))

    def forward(self, tokens: Tensor, mask: Tensor | None = None) -> Tensor:
        return self.to_logits(self.encoder(tokens, mask))

    @torch.no_grad()
    def step(
        self, token: Tensor, states: list[dict[str, Any]] | None = None
    ) -> tuple[Tensor, list[dict[str, Any]]]:
        """Incremental decoding (causal only): token (B,) → (logits (B, num_tokens), states)."""
        if not self.causal:
            raise ValueError("step() needs causal=True")
        h = self.encoder.embed(token)
        states = states or [None] * len(self.encoder.layers)
        new_states = []
        for layer, state in zip(self.encoder.layers, states):
            h, state = layer.step(h, state)
            new_states.append(state)
        if self.encoder.final_norm is not None:
            h = self.encoder.final_norm(h.unsqueeze(1)).squeeze(1)
        return self.to_logits(h), new_states
