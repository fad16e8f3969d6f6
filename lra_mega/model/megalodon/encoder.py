"""Megalodon encoder for the LRA: embedding → N Megalodon blocks → final norm → SiLU projection.

Built as fairseq-apollo branch ``residual`` ``fairseq/models/lra/mega_lra_encoder.py``
(``MegaLRAEncoder``): token embeddings scaled by √dim, a final ``SequenceNorm``, then
``x = silu(final_proj(x) + x)`` and padded positions zeroed. Submodule names are the official ones
(``embed_tokens``, ``layers.i.mega_layer`` / ``layers.i.nffn``, ``final_norm``, ``final_proj``), so
the official encoder's state dict (the keys under ``encoder.encoder.`` of an LRA checkpoint) loads
by name. The constructor takes the arguments the harness passes to :class:`~lra_mega.model.MegaEncoder`
and its forward has the same contract, so the Mega heads work unchanged.

Mega settings that the task configs set (rule, documented in docs/MEGALODON.md):
``attention``, ``chunk_size``, ``truncation``, ``dropout``… mean what they mean for Megalodon;
``norm`` is the feed-forward norm (layernorm | rmsnorm): Mega's scalenorm / batchnorm /
syncbatchnorm have no Megalodon counterpart and are read as layernorm, with one warning;
``prenorm=false`` is ignored (Megalodon is pre-norm by construction), with one warning.
"""

from __future__ import annotations

import math
import warnings

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..checks import check_choice, check_positive, check_probability
from ..encoder import INPUT_KINDS, RealNumberEmbedding, TokenEmbedding
from ..layer import checkpointed
from ..norm import NORMS as MEGA_NORMS
from .layer import REL_POS, MegalodonBlock, linear
from .norm import FFN_NORMS, SequenceGroupNorm, TimestepNorm


def ffn_norm_for(norm: str) -> str:
    """The feed-forward norm ``model.norm`` selects: layernorm | rmsnorm; a Mega-only norm reads as
    layernorm (fairseq-apollo ``--norm-type`` default), with a warning naming the fix."""
    if norm in FFN_NORMS:
        return norm
    if norm in MEGA_NORMS:
        warnings.warn(f"model.norm={norm} is a Mega norm; Megalodon normalises with its own sequence norm and "
                      f"reads model.norm as its feed-forward norm: using layernorm (set model.norm=layernorm "
                      f"or rmsnorm to silence this)", UserWarning, stacklevel=3)
        return "layernorm"
    return check_choice("norm", norm, tuple(FFN_NORMS))


class MegalodonEncoder(nn.Module):
    """(B, L) tokens or pixels (+ mask, True = real) → (B, L, dim) features (padded positions 0)."""

    def __init__(
        self,
        vocab_size: int | None = None,
        input_kind: str = "tokens",
        dim: int = 128,
        depth: int = 4,
        zdim: int = 64,
        hdim: int = 256,
        ndim: int = 16,
        attention: str = "softmax",
        norm: str = "layernorm",
        prenorm: bool = True,
        chunk_size: int = -1,
        truncation: int | None = None,
        max_len: int = 4096,
        rel_pos: str = "rotary",
        dropout: float = 0.0,
        attention_dropout: float = 0.0,
        hidden_dropout: float = 0.0,
        bidirectional: bool = True,
        ffn_dim: int | None = None,
        checkpoint_blocks: bool = False,
        num_heads: int = 1,
        norm_num_groups: int | None = None,
        norm_eps: float = 1e-5,
        norm_affine: bool = True,
        moving_act: str = "rmsnorm",
        ffn_residual: str = "block",
        omega_init: str = "normal",
        init_mode: str = "bert",
        scale_embedding: bool = True,
        layer_scale: bool = False,
        cema_shift: bool = True,
        laplace_approx: bool = True,
    ) -> None:
        super().__init__()
        check_choice("input_kind", input_kind, INPUT_KINDS)
        for name, value in (("dim", dim), ("depth", depth), ("max_len", max_len)):
            check_positive(name, value)
        check_choice("rel_pos", rel_pos, REL_POS)
        if not prenorm:
            warnings.warn("model.prenorm=false is a Mega setting; Megalodon is pre-norm by construction and "
                          "ignores it (set model.prenorm=true to silence this)", UserWarning, stacklevel=2)
        if not bidirectional and norm_num_groups is None:
            raise ValueError("a causal Megalodon (model.bidirectional=false) normalises with TimestepNorm, which "
                             "needs groups: set model.norm_num_groups to a divisor of model.dim (e.g. "
                             f"{math.gcd(dim, 32)})")
        if input_kind == "tokens":
            if vocab_size is None or vocab_size < 2:
                raise ValueError(f"vocab_size={vocab_size!r}: token input needs vocab_size >= 2")
            self.embed_tokens: nn.Module = TokenEmbedding(vocab_size, dim)
        else:
            self.embed_tokens = RealNumberEmbedding(dim)
        self.input_kind, self.dim = input_kind, dim
        self.embed_scale = math.sqrt(dim) if scale_embedding and input_kind == "tokens" else None
        self.checkpoint_blocks = bool(checkpoint_blocks)
        self.embedding_dropout = nn.Dropout(check_probability("dropout", dropout))
        self.layers = nn.ModuleList(
            MegalodonBlock(
                dim, hdim if ffn_dim is None else ffn_dim, ffn_norm=ffn_norm_for(norm), ffn_residual=ffn_residual,
                # official layer_scale: 0.1 · 0.5^i for layer i
                layer_scale=0.1 * 0.5**i if layer_scale else None,
                zdim=zdim, hdim=hdim, ndim=ndim, num_heads=num_heads, attention=attention,
                chunk_size=chunk_size, truncation=truncation, max_len=max_len, rel_pos=rel_pos,
                dropout=dropout, attention_dropout=attention_dropout, hidden_dropout=hidden_dropout,
                causal=not bidirectional, norm_num_groups=norm_num_groups, norm_eps=norm_eps,
                norm_affine=norm_affine, moving_act=moving_act, omega_init=omega_init, init_mode=init_mode,
                shift=cema_shift, laplace_approx=laplace_approx,
            )
            for i in range(depth)
        )
        self.final_norm = SequenceGroupNorm(dim, norm_num_groups, eps=norm_eps) if bidirectional else \
            TimestepNorm(dim, norm_num_groups, eps=norm_eps)
        self.final_proj = linear(dim, dim, True, init_mode)

    @property
    def embed(self) -> nn.Module:
        """The input embedding under the name the harness reads (``encoder.embed``)."""
        return self.embed_tokens

    def forward(self, x: Tensor, mask: Tensor | None = None, masked: Tensor | None = None,
                mask_embedding: Tensor | None = None) -> Tensor:
        """x (B, L) int64 tokens or float pixels; mask (B, L) bool, True = real → features (B, L, dim).

        ``masked`` (B, L) bool with ``mask_embedding`` (dim,): those positions' input embedding is
        replaced by ``mask_embedding`` (masked self-pretraining), as :class:`MegaEncoder` does.
        """
        if mask is not None and mask.all():
            mask = None
        h = self.embed_tokens(x)
        if self.embed_scale is not None:
            h = h * self.embed_scale
        if masked is not None:
            if mask_embedding is None or mask_embedding.shape != (self.dim,):
                raise ValueError(f"masked positions need a mask_embedding of shape ({self.dim},)")
            h = torch.where(masked.unsqueeze(-1), mask_embedding.to(h.dtype), h)
        h = self.embedding_dropout(h)
        if mask is not None:
            h = h * mask.unsqueeze(-1).to(h.dtype)
        for layer in self.layers:
            if self.checkpoint_blocks and self.training and torch.is_grad_enabled():
                h = checkpointed(layer, h, mask)
            else:
                h = layer(h, mask)
        h = self.final_norm(h, mask)
        if isinstance(h, tuple):  # TimestepNorm also returns its state
            h = h[0]
        h = F.silu(self.final_proj(h) + h)
        return h if mask is None else h * mask.unsqueeze(-1).to(h.dtype)
