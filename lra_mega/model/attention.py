"""Single-head attention of Mega: softmax (through PyTorch SDPA), laplace or relu², optionally chunked.

Scores for the element-wise functions are a = q·kᵀ / n + bias, n = number of keys a query may see
(valid, and not in its future when causal); softmax uses z^−½·q·kᵀ + bias. Mega-chunk splits the
length into chunks of ``chunk_size`` and attends only within a chunk.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

ATTENTION_FUNCTIONS = ("softmax", "laplace", "relu2")

LAPLACE_MU = math.sqrt(0.5)
LAPLACE_SIGMA = math.sqrt(1.0 / (4.0 * math.pi))


def laplace(x: Tensor, mu: float = LAPLACE_MU, sigma: float = LAPLACE_SIGMA) -> Tensor:
    """Laplace attention function 0.5·(1 + erf((x − μ)/(σ√2))) (Ma et al. 2022, §3.3)."""
    return 0.5 * (1.0 + torch.erf((x - mu) / (sigma * math.sqrt(2.0))))


def relu2(x: Tensor) -> Tensor:
    """Squared ReLU attention function."""
    return F.relu(x).square()


def _split_chunks(x: Tensor, chunk: int) -> Tensor:
    """(B, L, E) with L a multiple of chunk → (B, L/chunk, chunk, E)."""
    return x.view(x.size(0), x.size(1) // chunk, chunk, x.size(2))


def allowed_keys(
    key_mask: Tensor | None, causal: bool, batch: int, chunks: int, chunk: int, device: torch.device
) -> Tensor | None:
    """Boolean (B, K, c, c) (or broadcastable) matrix: True where query i may attend key j."""
    allowed = None
    if key_mask is not None:
        allowed = key_mask.view(batch, chunks, 1, chunk)
    if causal:
        tri = torch.ones(chunk, chunk, dtype=torch.bool, device=device).tril()
        allowed = tri if allowed is None else allowed & tri
    return allowed


def attend(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    *,
    fn: str,
    bias: Callable[[int], Tensor],
    key_mask: Tensor | None = None,
    causal: bool = False,
    chunk_size: int = -1,
    dropout_p: float = 0.0,
) -> Tensor:
    """Attention output (B, L, hdim) for q, k (B, L, zdim), v (B, L, hdim).

    ``bias(c)`` returns the (c, c) relative position bias; ``key_mask`` (B, L) bool, True = real key.
    """
    batch, length, _ = q.shape
    chunk = length if chunk_size is None or chunk_size < 1 or chunk_size >= length else chunk_size
    padded = math.ceil(length / chunk) * chunk
    if padded != length:
        extra = padded - length
        q, k, v = (F.pad(t, (0, 0, 0, extra)) for t in (q, k, v))
        if key_mask is None:
            key_mask = torch.ones(batch, length, dtype=torch.bool, device=q.device)
        key_mask = F.pad(key_mask, (0, extra), value=False)
    chunks = padded // chunk
    q, k, v = (_split_chunks(t, chunk) for t in (q, k, v))
    allowed = allowed_keys(key_mask, causal, batch, chunks, chunk, q.device)
    position_bias = bias(chunk).to(q.dtype)

    if fn == "softmax":
        scores_bias = position_bias.expand(batch, chunks, chunk, chunk)
        if allowed is not None:
            # a large finite negative (not −inf) keeps rows with no visible key finite
            scores_bias = scores_bias.masked_fill(~allowed, torch.finfo(q.dtype).min)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=scores_bias, dropout_p=dropout_p)
    else:
        activation = laplace if fn == "laplace" else relu2
        if allowed is None:
            visible = torch.full((1, 1, 1, 1), float(chunk), device=q.device, dtype=q.dtype)
        else:
            visible = allowed.expand(batch, chunks, chunk, chunk).sum(-1, keepdim=True)
            visible = visible.clamp(min=1).to(q.dtype)
        scores = q @ k.transpose(-1, -2) / visible + position_bias
        weights = activation(scores)
        if allowed is not None:
            weights = weights * allowed.to(weights.dtype)
        if dropout_p > 0.0:
            weights = F.dropout(weights, p=dropout_p)
        out = weights @ v
    return out.reshape(batch, padded, -1)[:, :length]
