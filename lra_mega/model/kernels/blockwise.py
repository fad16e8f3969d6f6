"""Memory-lean laplace / relu² attention: query blocks in the forward, recomputation in the backward.

The reference path keeps several (B, K, c, c) score tensors alive for autograd. This one keeps only
q, k, v and recomputes one block of ``block`` query rows at a time, so the largest temporary is
(B·K, block, c). The maths is the same as ``attention.attend`` for fn in {laplace, relu2}
without attention dropout.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

_SQRT2 = math.sqrt(2.0)
_SQRT2PI = math.sqrt(2.0 * math.pi)


def _activation(
    scores: Tensor, fn: str, mu: float, sigma: float, with_slope: bool = False
) -> tuple[Tensor, Tensor | None]:
    """f(scores), plus f'(scores) when asked (the backward), for laplace or relu²; in fp32."""
    scores = scores.float()
    if fn == "laplace":
        z = (scores - mu) / sigma
        slope = torch.exp(-0.5 * z * z) / (sigma * _SQRT2PI) if with_slope else None
        return 0.5 * (1.0 + torch.erf(z / _SQRT2)), slope
    positive = torch.relu(scores)
    return positive * positive, 2.0 * positive if with_slope else None


def _allowed_block(key_mask: Tensor | None, causal: bool, rows: slice, cols: int, device) -> Tensor | None:
    allowed = None if key_mask is None else key_mask.unsqueeze(1)  # (N, 1, c)
    if causal:
        q_pos = torch.arange(rows.start, rows.stop, device=device).unsqueeze(1)
        tri = torch.arange(cols, device=device).unsqueeze(0) <= q_pos  # (b, c)
        allowed = tri if allowed is None else allowed & tri
    return allowed


class BlockwiseElementAttention(torch.autograd.Function):
    """out = (f(q·kᵀ / n + bias) ⊙ allowed) · v over (N, c, ·) chunks, in blocks of query rows."""

    @staticmethod
    def forward(ctx, q, k, v, bias, key_mask, visible, causal, fn, mu, sigma, block):  # noqa: D102
        out = v.new_empty(q.size(0), q.size(1), v.size(2))
        length = q.size(1)
        for start in range(0, length, block):
            rows = slice(start, min(start + block, length))
            scores = q[:, rows] @ k.transpose(1, 2) / visible[:, rows] + bias[rows]
            weights, _ = _activation(scores, fn, mu, sigma)
            allowed = _allowed_block(key_mask, causal, rows, length, q.device)
            if allowed is not None:
                weights = weights * allowed
            out[:, rows] = weights.to(v.dtype) @ v
        ctx.save_for_backward(q, k, v, bias, key_mask, visible)
        ctx.config = (causal, fn, mu, sigma, block)
        return out

    @staticmethod
    def backward(ctx, grad_out):  # noqa: D102
        q, k, v, bias, key_mask, visible = ctx.saved_tensors
        causal, fn, mu, sigma, block = ctx.config
        grad_out = grad_out.contiguous()
        # fp32 accumulators: the sums over query blocks must not round at bf16 each time
        dq, dk, dv = (torch.zeros(t.shape, dtype=torch.float32, device=t.device) for t in (q, k, v))
        dbias = torch.zeros(bias.shape, dtype=torch.float32, device=bias.device)
        length = q.size(1)
        qf, kf, vf = q.float(), k.float(), v.float()
        for start in range(0, length, block):
            rows = slice(start, min(start + block, length))
            n = visible[:, rows].float()
            scores = qf[:, rows] @ kf.transpose(1, 2) / n + bias[rows].float()
            weights, slope = _activation(scores, fn, mu, sigma, with_slope=True)
            allowed = _allowed_block(key_mask, causal, rows, length, q.device)
            if allowed is not None:
                weights = weights * allowed
                slope = slope * allowed
            g = grad_out[:, rows].float()
            dv += weights.transpose(1, 2) @ g
            d_scores = (g @ vf.transpose(1, 2)) * slope
            dbias[rows] += d_scores.sum(0)
            d_scores = d_scores / n
            dq[:, rows] = d_scores @ kf
            dk += d_scores.transpose(1, 2) @ qf[:, rows]
        dq, dk, dv, dbias = dq.to(q.dtype), dk.to(k.dtype), dv.to(v.dtype), dbias.to(bias.dtype)
        return dq, dk, dv, dbias, None, None, None, None, None, None, None


def blockwise_element_attention(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    bias: Tensor,
    key_mask: Tensor | None,
    visible: Tensor,
    *,
    causal: bool,
    fn: str,
    mu: float,
    sigma: float,
    block: int = 256,
) -> Tensor:
    """q, k (N, c, z); v (N, c, h); bias (c, c); key_mask (N, c) bool or None; visible (N, c, 1)."""
    return BlockwiseElementAttention.apply(
        q, k, v, bias, key_mask, visible, causal, fn, mu, sigma, block
    )
