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


# added to the score of a padded key (before the z^−½ scaling): exp() of it is 0 at any precision
PADDED_KEY_SCORE = -1.0e4


def _softmax_attention(
    q: Tensor, k: Tensor, v: Tensor, bias: Tensor, key_mask: Tensor | None, causal: bool,
    dropout_p: float,
) -> Tensor:
    """SDPA over (B, K, c, ·) chunks with a (c, c) additive mask shared by the whole batch.

    Key padding is folded into the dot products instead of a per-example (B, K, c, c) mask:
    q gains a column of ones and k a column holding PADDED_KEY_SCORE·√z at padded keys (0 at
    real ones), zero-padded to a multiple of 8 columns for the fused kernels. Masked scores are
    large and finite, so a query without any real key gets a finite output, not NaN.
    """
    zdim = q.size(-1)
    attn_mask = bias
    if causal:
        future = torch.ones_like(bias, dtype=torch.bool).triu(1)
        attn_mask = bias.masked_fill(future, PADDED_KEY_SCORE)
    if key_mask is not None:
        width = 1 + (-(zdim + 1)) % 8
        penalty = (~key_mask).to(q.dtype).view(*k.shape[:-1], 1) * (PADDED_KEY_SCORE * zdim**0.5)
        q = torch.cat([q, q.new_ones(*q.shape[:-1], 1), q.new_zeros(*q.shape[:-1], width - 1)], -1)
        k = torch.cat([k, penalty, k.new_zeros(*k.shape[:-1], width - 1)], -1)
    return F.scaled_dot_product_attention(
        q, k, v, attn_mask=attn_mask, dropout_p=dropout_p, scale=zdim**-0.5
    )


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

    if fn == "softmax":
        out = _softmax_attention(q, k, v, position_bias, key_mask, causal, dropout_p)
    else:
        visible = visible_keys(key_mask, causal, batch, chunks, chunk, q.device)
        if impl == "blockwise":
            out = _blockwise(q, k, v, position_bias, key_mask, visible.float(), causal, fn)
        else:
            activation = laplace if fn == "laplace" else relu2
            weights = activation(q @ k.transpose(-1, -2) / visible.to(q.dtype) + position_bias)
            allowed = allowed_keys(key_mask, causal, batch, chunks, chunk, q.device)
            if allowed is not None:
                weights = weights * allowed.to(weights.dtype)
            if dropout_p > 0.0:
                weights = F.dropout(weights, p=dropout_p)
            out = weights @ v
    return out.reshape(batch, padded, -1)[:, :length]
