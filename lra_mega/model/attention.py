"""Single-head attention of Mega: softmax (through PyTorch SDPA), laplace or relu², optionally chunked.

Scores for the element-wise functions are a = q·kᵀ / n + bias, n = number of keys a query may see
(real, and not in its future when causal); softmax uses z^−½·q·kᵀ + bias. Mega-chunk splits the
length into chunks of ``chunk_size`` and attends only within a chunk (chunks become the batch
dimension of the kernels). The laplace/relu² paths live in ``kernels/`` with one signature:
``naive`` (plain PyTorch, the reference), ``blockwise`` (PyTorch, recomputed in the backward) and
``triton`` (fused tiles, CUDA).
"""

from __future__ import annotations

import math
from typing import Protocol

import torch
import torch.nn.functional as F
from torch import Tensor

from .checks import check_choice
from .kernels.blockwise import blockwise_element_attention
from .kernels import HAS_TRITON, triton_element_attention
from .kernels.naive import LAPLACE_MU, LAPLACE_SIGMA, laplace, naive_element_attention, relu2, toeplitz

__all__ = ["ATTENTION_FUNCTIONS", "ATTENTION_IMPLS", "LAPLACE_MU", "LAPLACE_SIGMA", "attend", "laplace", "relu2"]

ATTENTION_FUNCTIONS = ("softmax", "laplace", "relu2")
ATTENTION_IMPLS = ("auto", "reference", "blockwise", "triton")
_ELEMENT_PATHS = {
    "reference": naive_element_attention,
    "blockwise": blockwise_element_attention,
    "triton": triton_element_attention,
}

# added to the score of a padded key (before the z^−½ scaling): exp() of it is 0 at any precision
PADDED_KEY_SCORE = -1.0e4


class RelativeBias(Protocol):
    """What attention needs of a relative position bias: its (2c − 1) vector over offsets j − i."""

    def vector(self, length: int) -> Tensor: ...


def _softmax_attention(
    q: Tensor, k: Tensor, v: Tensor, bias: Tensor, key_mask: Tensor | None, causal: bool,
    dropout_p: float,
) -> Tensor:
    """SDPA over (B, K, c, ·) chunks with a (c, c) additive mask shared by the whole batch.

    SDPA's fused kernels need q, k and v of one width; Mega's z ≠ v, so q and k get zero columns
    up to v's width (or v up to theirs; the output is cut back) and the scale is set explicitly.
    Key padding is folded into the dot products instead of a per-example mask: q gains a column
    of ones and k a column holding PADDED_KEY_SCORE·√z at padded keys (0 at real ones). Masked
    scores are large and finite, so a query without any real key gets a finite output, not NaN.
    """
    zdim, hdim = q.size(-1), v.size(-1)
    attn_mask = bias
    if causal:
        future = torch.ones_like(bias, dtype=torch.bool).triu(1)
        attn_mask = bias.masked_fill(future, PADDED_KEY_SCORE)
    extra_q, extra_k = [], []
    if key_mask is not None:
        penalty = (~key_mask).to(q.dtype).view(*k.shape[:-1], 1) * (PADDED_KEY_SCORE * zdim**0.5)
        extra_q, extra_k = [q.new_ones(*q.shape[:-1], 1)], [penalty]
    used = zdim + len(extra_q)
    width = max(used, hdim)
    width += -width % 8
    if width > used:
        extra_q.append(q.new_zeros(*q.shape[:-1], width - used))
        extra_k.append(k.new_zeros(*k.shape[:-1], width - used))
    if extra_q:
        q, k = torch.cat([q, *extra_q], -1), torch.cat([k, *extra_k], -1)
    if width > hdim:
        v = F.pad(v, (0, width - hdim))
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask.to(q.dtype), dropout_p=dropout_p,
                                         scale=zdim**-0.5)
    return out[..., :hdim] if width > hdim else out


def _split_chunks(x: Tensor, chunk: int) -> Tensor:
    """(B, L, E) with L a multiple of chunk → (B·L/chunk, chunk, E)."""
    return x.reshape(-1, chunk, x.size(2))


def visible_keys(key_mask: Tensor | None, causal: bool, flat: int, chunk: int, device: torch.device) -> Tensor:
    """Number n of keys each query may see (real, not in its future), (N, c) float32, at least 1."""
    if key_mask is None:
        if causal:
            return torch.arange(1, chunk + 1, device=device, dtype=torch.float32).expand(flat, chunk)
        return torch.full((1, 1), float(chunk), device=device).expand(flat, chunk)
    real = key_mask.view(flat, chunk).to(torch.int32)
    counts = real.cumsum(-1) if causal else real.sum(-1, keepdim=True).expand(-1, chunk)
    return counts.clamp(min=1).float()


def _pick_impl(impl: str, fn: str, q: Tensor, dropout_p: float) -> str:
    """The path that runs: for softmax "sdpa" or "blockwise", else one of _ELEMENT_PATHS."""
    if impl in ("blockwise", "triton") and dropout_p > 0.0:
        raise ValueError(f"impl={impl!r} has no attention dropout; use impl='reference' or 'auto'")
    if fn == "softmax":
        # SDPA's CPU kernels take the (c, c) math path when the bias needs a gradient
        lean_cpu = impl == "auto" and not q.is_cuda and torch.is_grad_enabled() and dropout_p == 0.0
        return "blockwise" if impl == "blockwise" or lean_cpu else "sdpa"
    if impl != "auto":
        return impl
    if dropout_p > 0.0:
        return "reference"
    return "triton" if q.is_cuda and HAS_TRITON else "blockwise"


def attend(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    *,
    fn: str,
    bias: RelativeBias,
    key_mask: Tensor | None = None,
    causal: bool = False,
    chunk_size: int = -1,
    dropout_p: float = 0.0,
    impl: str = "auto",
) -> Tensor:
    """Attention output (B, L, hdim) for q, k (B, L, zdim), v (B, L, hdim).

    ``bias.vector(c)`` returns the (2c − 1) relative position bias over offsets −(c−1) … c−1;
    ``key_mask`` (B, L) bool, True = real key. ``impl`` picks the laplace/relu² path:
    "reference" (plain PyTorch, keeps (c, c) tensors; the only one with attention dropout),
    "blockwise" (PyTorch, recomputes in the backward), "triton" (fused kernels, CUDA) or "auto"
    (triton on CUDA when installed, else blockwise; reference when attention dropout is on).
    Softmax always runs through SDPA.
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
    vector = bias.vector(chunk)
    path = _pick_impl(impl, fn, q, dropout_p)
    if path == "sdpa":
        shape = (batch, chunks, chunk, -1)
        matrix = toeplitz(vector, chunk)
        mask = None if key_mask is None else key_mask.view(batch, chunks, chunk)
        out = _softmax_attention(q.view(shape), k.view(shape), v.view(shape), matrix, mask, causal, dropout_p)
    else:
        flat = batch * chunks
        mask = None if key_mask is None else key_mask.reshape(flat, chunk)
        if fn == "softmax":  # a = q·kᵀ/√z + bias: the blockwise path's n is √z
            visible = torch.full((1, 1), q.size(-1) ** 0.5, device=q.device).expand(flat, chunk)
        else:
            visible = visible_keys(key_mask, causal, flat, chunk, q.device)
        out = _ELEMENT_PATHS[path](
            _split_chunks(q, chunk), _split_chunks(k, chunk), _split_chunks(v, chunk), vector, mask, visible,
            causal=causal, fn=fn, dropout_p=dropout_p,
        )
    return out.reshape(batch, padded, -1)[:, :length]
