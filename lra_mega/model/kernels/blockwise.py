"""Memory-lean attention in PyTorch: query blocks in the forward, recomputed in the backward.

Same signature and maths as ``naive.naive_element_attention`` (no dropout), plus ``fn="softmax"``
(pass n = √z: a = q·kᵀ/√z + bias, softmax over the allowed keys). Autograd keeps only q, k, v,
the (2c − 1) bias vector, the key mask and n; the largest temporary is (N, block, c), with
``block`` chosen so that it stays near ``BLOCK_ELEMENTS`` values. Every block holds whole rows,
so the softmax needs no running statistics.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from .naive import APPROX_MU, APPROX_SIGMA, APPROX_SLOPE, LAPLACE_MU, LAPLACE_SIGMA

BLOCK_ELEMENTS = 1 << 24  # ~64 MiB of fp32 per temporary
MIN_BLOCK = 16
# score of a disallowed key under softmax: exp() of it is 0, and a row without keys stays finite
MASKED_SCORE = -1.0e4
_SQRT2 = math.sqrt(2.0)
_SQRT2PI = math.sqrt(2.0 * math.pi)


def activation_and_slope(a: Tensor, fn: str, with_slope: bool) -> tuple[Tensor, Tensor | None]:
    """f(a) and, when asked, f'(a) for laplace, laplace_approx or relu²; overwrites ``a`` (a fresh
    temporary)."""
    if fn == "laplace_approx":  # f = σ(s·(a − μ)), f' = s·f·(1 − f)
        weights = torch.sigmoid_(a.sub_(APPROX_MU).mul_(APPROX_SLOPE / APPROX_SIGMA))
        slope = (1.0 - weights).mul_(weights).mul_(APPROX_SLOPE / APPROX_SIGMA) if with_slope else None
        return weights, slope
    if fn == "laplace":
        z = a.sub_(LAPLACE_MU).div_(LAPLACE_SIGMA)
        slope = torch.exp(z.square().mul_(-0.5)).mul_(1.0 / (LAPLACE_SIGMA * _SQRT2PI)) if with_slope else None
        return torch.erf(z.div_(_SQRT2)).add_(1.0).mul_(0.5), slope
    positive = a.relu_()
    return positive.square(), (positive.mul_(2.0) if with_slope else None)


def _weights(a: Tensor, allowed: Tensor | None, fn: str, with_slope: bool) -> tuple[Tensor, Tensor | None]:
    """Attention weights of one block (and f'(a) for laplace / relu² in the backward)."""
    if fn == "softmax":
        if allowed is not None:
            a = a.masked_fill(~allowed, MASKED_SCORE)
        return torch.softmax(a, dim=-1), None
    weights, slope = activation_and_slope(a, fn, with_slope)
    if allowed is not None:
        weights = weights.masked_fill(~allowed, 0.0)
        slope = None if slope is None else slope.masked_fill(~allowed, 0.0)
    return weights, slope


def _scores(q_rows: Tensor, kt: Tensor, visible: Tensor | None, bias: Tensor, rows: slice, length: int) -> Tensor:
    """a = q·kᵀ / n + bias for a block of query rows in one pass over (N, block, c); 1/n scales q."""
    if visible is not None:
        q_rows = q_rows / visible.unsqueeze(-1).to(q_rows.dtype)
    bias_rows = _bias_rows(bias, rows, length).to(q_rows.dtype)
    return torch.baddbmm(bias_rows.expand(q_rows.size(0), -1, -1), q_rows, kt)


def _bias_rows(bias: Tensor, rows: slice, length: int) -> Tensor:
    """Rows ``rows`` of the (c, c) Toeplitz bias: [i, j] = bias[c − 1 + j − i]."""
    windows = bias.unfold(0, length, 1)  # [s, j] = bias[s + j], a view
    return windows[length - rows.stop : length - rows.start].flip(0)


def _allowed(key_mask: Tensor | None, causal: bool, rows: slice, length: int, device) -> Tensor | None:
    allowed = None if key_mask is None else key_mask.unsqueeze(1)  # (N, 1, c)
    if causal:
        q_pos = torch.arange(rows.start, rows.stop, device=device).unsqueeze(1)
        tri = torch.arange(length, device=device).unsqueeze(0) <= q_pos
        allowed = tri if allowed is None else allowed & tri
    return allowed


def _block_rows(batch: int, length: int) -> int:
    return max(MIN_BLOCK, min(length, BLOCK_ELEMENTS // max(1, batch * length)))


class BlockwiseElementAttention(torch.autograd.Function):
    """out = weights(q·kᵀ / n + bias) · v, in blocks of query rows; the backward recomputes them."""

    @staticmethod
    def forward(ctx, q, k, v, bias, key_mask, visible, causal, fn):  # noqa: D102
        length = q.size(1)
        block = _block_rows(q.size(0), length)
        out = v.new_empty(q.size(0), length, v.size(2))
        kt = k.transpose(1, 2)
        for start in range(0, length, block):
            rows = slice(start, min(start + block, length))
            a = _scores(q[:, rows], kt, visible[:, rows], bias, rows, length)
            allowed = _allowed(key_mask, causal, rows, length, q.device)
            weights, _ = _weights(a, allowed, fn, with_slope=False)
            out[:, rows] = weights.to(v.dtype) @ v
        ctx.save_for_backward(q, k, v, bias, key_mask, visible)
        ctx.config = (causal, fn)
        return out

    @staticmethod
    def backward(ctx, grad_out):  # noqa: D102
        q, k, v, bias, key_mask, visible = ctx.saved_tensors
        causal, fn = ctx.config
        length = q.size(1)
        block = _block_rows(q.size(0), length)
        # fp32 accumulators: sums over query blocks must not round at bf16 each time
        wide = torch.float32 if q.dtype in (torch.float16, torch.bfloat16) else q.dtype
        qf, kf, vf, g_all = q.to(wide), k.to(wide), v.to(wide), grad_out.to(wide)
        dq = torch.empty_like(qf)
        dk, dv = torch.zeros_like(kf), torch.zeros_like(vf)
        dmatrix = torch.zeros(length, length, dtype=wide, device=q.device) if ctx.needs_input_grad[3] else None
        kt = kf.transpose(1, 2)
        for start in range(0, length, block):
            rows = slice(start, min(start + block, length))
            n = visible[:, rows].unsqueeze(-1).to(wide)
            q_rows = qf[:, rows] / n
            a = _scores(q_rows, kt, None, bias, rows, length)
            allowed = _allowed(key_mask, causal, rows, length, q.device)
            weights, slope = _weights(a, allowed, fn, with_slope=True)
            g = g_all[:, rows]
            dv += weights.transpose(1, 2) @ g
            d_weights = g @ vf.transpose(1, 2)
            if fn == "softmax":  # d_a = w ⊙ (d_w − Σ_j w ⊙ d_w), fused
                d_a = torch._softmax_backward_data(d_weights, weights, -1, weights.dtype)
            else:
                d_a = d_weights.mul_(slope)
            if dmatrix is not None:
                torch.sum(d_a, 0, out=dmatrix[rows])
            dq[:, rows] = (d_a @ kf) / n  # a = (q / n)·kᵀ: the 1/n lands on the thin side
            dk += d_a.transpose(1, 2) @ q_rows
        dbias = None
        if dmatrix is not None:  # sum each diagonal: dbias[c − 1 + j − i] += dmatrix[i, j]
            # row s of the row-flipped matrix holds offsets s + j: shift it right by s and sum rows
            skewed = torch.nn.functional.pad(dmatrix.flip(0), (0, length)).flatten()[: length * (2 * length - 1)]
            dbias = skewed.view(length, 2 * length - 1).sum(0).to(bias.dtype)
        return dq.to(q.dtype), dk.to(k.dtype), dv.to(v.dtype), dbias, None, None, None, None


def blockwise_element_attention(
    q: Tensor, k: Tensor, v: Tensor, bias: Tensor, key_mask: Tensor | None, visible: Tensor,
    *, causal: bool, fn: str, dropout_p: float = 0.0,
) -> Tensor:
    """See ``naive.naive_element_attention``; also ``fn="softmax"`` (with n = √z); no dropout."""
    if dropout_p > 0.0:
        raise ValueError("the blockwise attention path has no attention dropout; use impl='reference'")
    return BlockwiseElementAttention.apply(q, k, v, bias, key_mask, visible, causal, fn)
