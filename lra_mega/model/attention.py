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

from .checks import check_choice
from .kernels.blockwise import blockwise_element_attention

ATTENTION_FUNCTIONS = ("softmax", "laplace", "relu2")

ATTENTION_IMPLS = ("auto", "reference", "blockwise")
# query rows per block of the memory-lean path; "auto" takes that path on CUDA for longer chunks
BLOCKWISE_BLOCK = 256

LAPLACE_MU = math.sqrt(0.5)
LAPLACE_SIGMA = math.sqrt(1.0 / (4.0 * math.pi))


def laplace(x: Tensor, mu: float = LAPLACE_MU, sigma: float = LAPLACE_SIGMA) -> Tensor:
    """Laplace attention function 0.5·(1 + erf((x − μ)/(σ√2))) (Ma et al. 2022, §3.3)."""
    return 0.5 * (1.0 + torch.erf((x - mu) / (sigma * math.sqrt(2.0))))


def relu2(x: Tensor) -> Tensor:
    """Squared ReLU attention function."""
    return F.relu(x).square()


def _blockwise(q, k, v, bias, key_mask, visible, causal, fn) -> Tensor:
    """Run the memory-lean path on (B, K, c, ·) chunks, flattening B·K."""
    batch, chunks, chunk, _ = q.shape
    flat = batch * chunks
    out = blockwise_element_attention(
        q.reshape(flat, chunk, -1),
        k.reshape(flat, chunk, -1),
        v.reshape(flat, chunk, -1),
        bias,
        None if key_mask is None else key_mask.reshape(flat, chunk),
        visible.expand(batch, chunks, chunk, 1).reshape(flat, chunk, 1),
        causal=causal,
        fn=fn,
        mu=LAPLACE_MU,
        sigma=LAPLACE_SIGMA,
        block=BLOCKWISE_BLOCK,
    )
    return out.view(batch, chunks, chunk, -1)


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


def visible_keys(
    key_mask: Tensor | None, causal: bool, batch: int, chunks: int, chunk: int, device: torch.device
) -> Tensor:
    """Number n of keys each query may see, (B, K, c, 1) or broadcastable, at least 1."""
    if key_mask is None:
        if causal:
            return torch.arange(1, chunk + 1, device=device).view(1, 1, chunk, 1)
        return torch.full((1, 1, 1, 1), chunk, device=device)
    real = key_mask.view(batch, chunks, chunk).long()
    counts = real.cumsum(-1) if causal else real.sum(-1, keepdim=True).expand(-1, -1, chunk)
    return counts.clamp(min=1).unsqueeze(-1)


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
    impl: str = "auto",
) -> Tensor:
    """Attention output (B, L, hdim) for q, k (B, L, zdim), v (B, L, hdim).

    ``bias(c)`` returns the (c, c) relative position bias; ``key_mask`` (B, L) bool, True = real key.
    ``impl`` picks the laplace/relu² path: "reference" (plain PyTorch), "blockwise" (recomputes
    query blocks in the backward, never holds a (c, c) score matrix per batch; no attention
    dropout) or "auto" (blockwise on CUDA when a chunk exceeds one block and dropout is off).
    """
    check_choice("impl", impl, ATTENTION_IMPLS)
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
    position_bias = bias(chunk).to(q.dtype)
    if impl == "blockwise" and dropout_p > 0.0:
        raise ValueError("impl='blockwise' has no attention dropout; use impl='reference' or 'auto'")
    if impl == "auto":
        long_chunk = q.is_cuda and chunk > BLOCKWISE_BLOCK
        impl = "blockwise" if long_chunk and dropout_p == 0.0 and fn != "softmax" else "reference"
    allowed = None
    if impl == "reference":
        allowed = allowed_keys(key_mask, causal, batch, chunks, chunk, q.device)

    if fn == "softmax":
        scores_bias = position_bias.expand(batch, chunks, chunk, chunk)
        if allowed is not None:
            # a large finite negative (not −inf) keeps rows with no visible key finite
            scores_bias = scores_bias.masked_fill(~allowed, torch.finfo(q.dtype).min)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=scores_bias, dropout_p=dropout_p)
    else:
        visible = visible_keys(key_mask, causal, batch, chunks, chunk, q.device)
        if impl == "blockwise":
            out = _blockwise(q, k, v, position_bias, key_mask, visible.float(), causal, fn)
        else:
            activation = laplace if fn == "laplace" else relu2
            weights = activation(q @ k.transpose(-1, -2) / visible.to(q.dtype) + position_bias)
            if allowed is not None:
                weights = weights * allowed.to(weights.dtype)
            if dropout_p > 0.0:
                weights = F.dropout(weights, p=dropout_p)
            out = weights @ v
    return out.reshape(batch, padded, -1)[:, :length]
