"""Functional builders in the style of the Axon/Edifice Mega doc: options in, module out."""

from __future__ import annotations

from typing import Any

from torch import Tensor, nn

from .checks import check_positive
from .layer import MegaBlock, init_linear
from .norm import SequenceNorm

_DEFAULTS: dict[str, Any] = {
    "hidden_size": 256,
    "ema_dim": 16,
    "num_layers": 4,
    "dropout": 0.1,
    "window_size": 60,
    "laplace_attention": False,
}


def recommended_defaults() -> dict[str, Any]:
    """The default options of :func:`build` (a fresh dict)."""
    return dict(_DEFAULTS)


def output_size(opts: dict[str, Any] | None = None) -> int:
    """Feature size of the module :func:`build` returns for these options (= hidden_size)."""
    return int({**_DEFAULTS, **(opts or {})}["hidden_size"])


def build_mega_block(
    hidden_size: int = 256,
    ema_dim: int = 16,
    dropout: float = 0.1,
    window_size: int = 60,
    laplace_attention: bool = False,
    causal: bool = True,
) -> MegaBlock:
    """One Mega block of width ``hidden_size`` (z = hidden/2, v = 2·hidden, as in the paper's ratios)."""
    check_positive("hidden_size", hidden_size)
    return MegaBlock(
        hidden_size,
        zdim=max(hidden_size // 2, 2) // 2 * 2,
        hdim=2 * hidden_size,
        ndim=ema_dim,
        attention="laplace" if laplace_attention else "softmax",
        max_len=window_size,
        dropout=dropout,
        causal=causal,
    )


class MegaSequenceModel(nn.Module):
    """(B, L, embed_dim) → input projection → Mega blocks → norm → last timestep (B, hidden_size)."""

    def __init__(self, embed_dim: int, blocks: list[MegaBlock], hidden_size: int) -> None:
        super().__init__()
        self.input_projection = init_linear(nn.Linear(embed_dim, hidden_size))
        self.blocks = nn.ModuleList(blocks)
        self.norm = SequenceNorm("layernorm", hidden_size)

    def forward(self, x: Tensor) -> Tensor:
        h = self.input_projection(x)
        for block in self.blocks:
            h = block(h)
        return self.norm(h)[:, -1]


def build(
    embed_dim: int,
    hidden_size: int = 256,
    ema_dim: int = 16,
    num_layers: int = 4,
    dropout: float = 0.1,
    window_size: int = 60,
    laplace_attention: bool = False,
    causal: bool = True,
) -> MegaSequenceModel:
    """Module mapping (B, L, embed_dim) → (B, hidden_size), the last timestep's features.

    ``window_size`` is the longest sequence the relative position bias covers.
    """
    check_positive("embed_dim", embed_dim)
    check_positive("num_layers", num_layers)
    blocks = [
        build_mega_block(hidden_size, ema_dim, dropout, window_size, laplace_attention, causal)
        for _ in range(num_layers)
    ]
    return MegaSequenceModel(embed_dim, blocks, hidden_size)
