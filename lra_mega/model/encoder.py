"""Mega encoder: embedding → N Mega blocks → final norm (prenorm), giving per-token features."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from .checks import check_choice, check_positive, check_probability
from .layer import MegaBlock, checkpointed
from .norm import SequenceNorm

INPUT_KINDS = ("tokens", "pixels")


class TokenEmbedding(nn.Embedding):
    """Token embedding, N(0, dim^−½), id 0 is padding (zero vector). Rejects out-of-range ids."""

    def __init__(self, vocab_size: int, dim: int) -> None:
        super().__init__(vocab_size, dim, padding_idx=0)
        nn.init.normal_(self.weight, mean=0.0, std=dim**-0.5)
        with torch.no_grad():
            self.weight[0].zero_()

    def forward(self, tokens: Tensor) -> Tensor:
        if tokens.dtype.is_floating_point:
            raise ValueError(
                "the encoder was built for input_kind='tokens' but got float input; "
                "use input_kind='pixels' for real-valued sequences"
            )
        if tokens.numel():
            low, high = torch.stack(torch.aminmax(tokens)).tolist()  # one device sync
            if low < 0 or high >= self.num_embeddings:
                raise ValueError(
                    f"token ids must lie in [0, {self.num_embeddings}) but the batch holds "
                    f"[{low}, {high}]; set vocab_size to cover the data"
                )
        return super().forward(tokens)


class RealNumberEmbedding(nn.Module):
    """Embedding of a real value per position: x·w + b (pixel tasks).

    Official init (fairseq ``modules/real_number_embedding.py``): w ~ N(0, 1), b ~ N(0, 0.1).
    """

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(dim))
        self.bias = nn.Parameter(torch.empty(dim))
        nn.init.normal_(self.weight, mean=0.0, std=1.0)
        nn.init.normal_(self.bias, mean=0.0, std=0.1)

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() == 3 and x.size(-1) == 1:
            x = x.squeeze(-1)
        return x.to(self.weight.dtype).unsqueeze(-1) * self.weight + self.bias


class MegaEncoder(nn.Module):
    """(B, L) tokens or pixels (+ mask, True = real) → (B, L, dim) features."""

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
        rel_pos: str = "simple",
        dropout: float = 0.0,
        attention_dropout: float = 0.0,
        hidden_dropout: float = 0.0,
        bidirectional: bool = True,
        ffn_dim: int | None = None,
        checkpoint_blocks: bool = False,
        ema_init: str = "official",
        ema_timescales: tuple[float, float] = (2.0, 1024.0),
        attention_impl: str = "auto",
    ) -> None:
        super().__init__()
        check_choice("input_kind", input_kind, INPUT_KINDS)
        for name, value in (("dim", dim), ("depth", depth), ("max_len", max_len)):
            check_positive(name, value)
        if input_kind == "tokens":
            if vocab_size is None or vocab_size < 2:
                raise ValueError(f"vocab_size={vocab_size!r}: token input needs vocab_size >= 2")
            self.embed: nn.Module = TokenEmbedding(vocab_size, dim)
        else:
            self.embed = RealNumberEmbedding(dim)
        self.input_kind = input_kind
        self.checkpoint_blocks = bool(checkpoint_blocks)  # activation checkpointing per block (training)
        self.dim = dim
        self.embed_dropout = nn.Dropout(check_probability("dropout", dropout))
        self.layers = nn.ModuleList(
            MegaBlock(
                dim,
                ffn_dim,
                zdim=zdim,
                hdim=hdim,
                ndim=ndim,
                attention=attention,
                norm=norm,
                prenorm=prenorm,
                chunk_size=chunk_size,
                truncation=truncation,
                max_len=max_len,
                rel_pos=rel_pos,
                dropout=dropout,
                attention_dropout=attention_dropout,
                hidden_dropout=hidden_dropout,
                causal=not bidirectional,
                ema_init=ema_init,
                ema_timescales=tuple(ema_timescales),
                attention_impl=attention_impl,
            )
            for _ in range(depth)
        )
        self.final_norm = SequenceNorm(norm, dim) if prenorm else None

    def forward(self, x: Tensor, mask: Tensor | None = None, masked: Tensor | None = None,
                mask_embedding: Tensor | None = None) -> Tensor:
        """x (B, L) int64 tokens or float pixels; mask (B, L) bool, True = real → features (B, L, dim).

        ``masked`` (B, L) bool with ``mask_embedding`` (dim,): the input embedding of the masked
        positions is replaced by ``mask_embedding`` (the [MASK] input of masked pretraining), so
        nothing of their value reaches the blocks.
        """
        if mask is not None and mask.all():
            mask = None  # nothing padded: take the cheaper unmasked paths
        h = self.embed(x)
        if masked is not None:
            if mask_embedding is None or mask_embedding.shape != (self.dim,):
                raise ValueError(f"masked positions need a mask_embedding of shape ({self.dim},)")
            h = torch.where(masked.unsqueeze(-1), mask_embedding.to(h.dtype), h)
        h = self.embed_dropout(h)
        if mask is not None:
            h = h * mask.unsqueeze(-1).to(h.dtype)
        for layer in self.layers:
            if self.checkpoint_blocks and self.training and torch.is_grad_enabled():
                h = checkpointed(layer, h, mask)  # keeps only each block's input for the backward
            else:
                h = layer(h, mask)
        if self.final_norm is not None:
            h = self.final_norm(h)
        return h
