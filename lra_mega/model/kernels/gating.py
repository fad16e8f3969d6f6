"""Gating chains of the Mega block as single autograd functions that save few activations.

Plain autograd keeps every intermediate of silu / sigmoid / product chains (each a (B, L, ·)
tensor). These functions save only their inputs (mostly tensors kept anyway) and recompute
the cheap element-wise parts in the backward; no matrix product is recomputed except in
``linear_silu`` (its pre-activation, one (dim → width) product).

Under autocast the products run in the autocast dtype, as ``F.linear`` would, and saved
activations are kept in that dtype.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def compute_dtype(x: Tensor) -> torch.dtype:
    """The dtype a linear layer would compute in here: autocast's if enabled, else x's."""
    kind = x.device.type
    if torch.is_autocast_enabled(kind):
        return torch.get_autocast_dtype(kind)
    return x.dtype


def _silu_slope(a: Tensor) -> Tensor:
    """d silu(a) / da = σ(a)·(1 + a·(1 − σ(a)))."""
    sig = torch.sigmoid(a)
    return sig * (1.0 + a * (1.0 - sig))


def _dropped(h: Tensor, keep: Tensor | None, scale: float) -> Tensor:
    return h if keep is None else h * keep * scale


def _linear_grads(grad: Tensor, inputs: Tensor, weight: Tensor, need_bias: bool) -> tuple[Tensor, Tensor | None]:
    """dW = Σ gradᵀ·inputs and db = Σ grad over all leading dims."""
    g2, x2 = grad.reshape(-1, grad.size(-1)), inputs.reshape(-1, inputs.size(-1))
    dweight = (g2.t() @ x2.to(g2.dtype)).to(weight.dtype)
    return dweight, (g2.sum(0).to(weight.dtype) if need_bias else None)


class _SiluLinear(torch.autograd.Function):
    """linear(dropout(silu(a))) as two outputs (columns < split, ≥ split), each its own tensor.

    Saves a (in the compute dtype) and the dropout mask, not silu(a).
    """

    @staticmethod
    def forward(ctx, a, weight, bias, keep, scale, split):  # noqa: D102
        dtype = compute_dtype(a)
        a = a.to(dtype)
        hidden = _dropped(F.silu(a), keep, scale)
        w, b = weight.to(dtype), bias.to(dtype)
        ctx.save_for_backward(a, weight, keep)
        ctx.config = (scale, split)
        return F.linear(hidden, w[:split], b[:split]), F.linear(hidden, w[split:], b[split:])

    @staticmethod
    def backward(ctx, grad_first, grad_second):  # noqa: D102
        a, weight, keep = ctx.saved_tensors
        scale, split = ctx.config
        dtype = torch.promote_types(grad_first.dtype, grad_second.dtype)
        grad = torch.cat([grad_first.to(dtype), grad_second.to(dtype)], dim=-1)
        hidden = _dropped(F.silu(a), keep, scale)
        dweight, dbias = _linear_grads(grad, hidden, weight, True)
        dhidden = _dropped(grad @ weight.to(grad.dtype), keep, scale)
        da = dhidden * _silu_slope(a.to(dhidden.dtype))
        return da, dweight, dbias, None, None, None


class _LinearSilu(torch.autograd.Function):
    """y = silu(linear(x)): saves x and y; the backward recomputes linear(x) (one product)."""

    @staticmethod
    def forward(ctx, x, weight, bias):  # noqa: D102
        dtype = compute_dtype(x)
        pre = F.linear(x.to(dtype), weight.to(dtype), None if bias is None else bias.to(dtype))
        ctx.save_for_backward(x, weight, bias)
        ctx.dtype = dtype
        return F.silu(pre)

    @staticmethod
    def backward(ctx, grad):  # noqa: D102
        x, weight, bias = ctx.saved_tensors
        dtype = ctx.dtype
        xc = x.to(dtype)
        pre = F.linear(xc, weight.to(dtype), None if bias is None else bias.to(dtype))
        dpre = grad * _silu_slope(pre.to(grad.dtype))
        dweight, dbias = _linear_grads(dpre, xc, weight, bias is not None and ctx.needs_input_grad[2])
        dx = (dpre @ weight.to(dpre.dtype)).to(x.dtype)
        return dx, dweight, dbias


class _FeedForward(torch.autograd.Function):
    """y = linear₂(dropout(silu(linear₁(x)))): saves x (compute dtype) and the mask; the backward
    recomputes linear₁(x) instead of keeping the (B, L, ffn) hidden layer."""

    @staticmethod
    def forward(ctx, x, w1, b1, w2, b2, keep, scale, keep_out, scale_out):  # noqa: D102
        dtype = compute_dtype(x)
        x = x.to(dtype)
        hidden = _dropped(F.silu(F.linear(x, w1.to(dtype), b1.to(dtype))), keep, scale)
        ctx.save_for_backward(x, w1, b1, w2, keep, keep_out)
        ctx.scale = (scale, scale_out)
        return _dropped(F.linear(hidden, w2.to(dtype), b2.to(dtype)), keep_out, scale_out)

    @staticmethod
    def backward(ctx, grad):  # noqa: D102
        x, w1, b1, w2, keep, keep_out = ctx.saved_tensors
        scale, scale_out = ctx.scale
        grad = _dropped(grad, keep_out, scale_out)
        dtype = grad.dtype
        xc = x.to(dtype)
        pre = F.linear(xc, w1.to(dtype), b1.to(dtype))
        hidden = _dropped(F.silu(pre), keep, scale)
        dw2, db2 = _linear_grads(grad, hidden, w2, True)
        dpre = _dropped(grad @ w2.to(dtype), keep, scale) * _silu_slope(pre)
        dw1, db1 = _linear_grads(dpre, xc, w1, True)
        return (dpre @ w1.to(dtype)), dw1, db1, dw2, db2, None, None, None, None


class _SharedQK(torch.autograd.Function):
    """q, k = silu(z)·γ₀ + β₀, silu(z)·γ₁ + β₁ from z = gates[..., start:start + zdim]; saves gates."""

    @staticmethod
    def forward(ctx, gates, gamma, beta, start):  # noqa: D102
        zdim = gamma.size(-1)
        z = F.silu(gates[..., start : start + zdim])
        ctx.save_for_backward(gates, gamma)
        ctx.start = start
        q = torch.addcmul(beta[0].to(z.dtype), z, gamma[0].to(z.dtype))
        k = torch.addcmul(beta[1].to(z.dtype), z, gamma[1].to(z.dtype))
        return q, k

    @staticmethod
    def backward(ctx, dq, dk):  # noqa: D102
        gates, gamma = ctx.saved_tensors
        zdim, start = gamma.size(-1), ctx.start
        pre = gates[..., start : start + zdim].to(dq.dtype)
        z = F.silu(pre)
        dz = dq * gamma[0].to(dq.dtype) + dk * gamma[1].to(dq.dtype)
        dgates = torch.zeros_like(gates)
        dgates[..., start : start + zdim] = (dz * _silu_slope(pre)).to(gates.dtype)
        dims = tuple(range(dq.dim() - 1))
        dgamma = torch.stack([(dq * z).sum(dims), (dk * z).sum(dims)]).to(gamma.dtype)
        dbeta = torch.stack([dq.sum(dims), dk.sum(dims)]).to(gamma.dtype)
        return dgates, dgamma, dbeta, None


class _GatedOutput(torch.autograd.Function):
    """out = residual + u ⊙ (dropout(silu(hx + W·(attn ⊙ r) + b)) − residual), u = σ(gates_u), r = silu(gates_r).

    ``gates`` holds [u | z | r] pre-activations (z is skipped); hx comes separately and is not
    saved. Saves ``residual_kept`` (the residual when None, or a compute-dtype copy of it another consumer
    keeps anyway), gates, attn, the pre-activation s of the last silu and the mask.
    """

    @staticmethod
    def forward(ctx, residual, gates, attn, hx, weight, bias, keep, scale, dim, residual_kept):  # noqa: D102
        dtype = compute_dtype(attn)
        hdim = attn.size(-1)
        u = torch.sigmoid(gates[..., :dim])
        r = F.silu(gates[..., -hdim:])
        mixed = (attn * r).to(dtype)
        s = torch.addmm(bias.to(dtype), mixed.reshape(-1, hdim), weight.to(dtype).t()).view_as(hx) + hx
        s = s.to(dtype)
        h = _dropped(F.silu(s), keep, scale)
        out = torch.addcmul(residual, u.to(residual.dtype), h.to(residual.dtype) - residual)
        ctx.save_for_backward(residual if residual_kept is None else residual_kept, gates, attn, s, weight, keep)
        ctx.config = (scale, dim, hx.dtype, residual.dtype)
        return out

    @staticmethod
    def backward(ctx, grad):  # noqa: D102
        residual, gates, attn, s, weight, keep = ctx.saved_tensors
        scale, dim, hx_dtype, residual_dtype = ctx.config
        hdim = attn.size(-1)
        wide = torch.promote_types(grad.dtype, torch.float32)
        u = torch.sigmoid(gates[..., :dim].to(wide))
        r_pre = gates[..., -hdim:].to(wide)
        r = F.silu(r_pre)
        h = _dropped(F.silu(s.to(wide)), keep, scale)
        g = grad.to(wide)
        dresidual = g * (1.0 - u)
        du = g * (h - residual.to(wide)) * u * (1.0 - u)
        ds = _dropped(g * u, keep, scale) * _silu_slope(s.to(wide))
        mixed = attn.to(wide) * r
        dweight, dbias = _linear_grads(ds, mixed, weight, True)
        dmixed = ds @ weight.to(wide)
        dgates = torch.zeros_like(gates)
        dgates[..., :dim] = du.to(gates.dtype)
        dgates[..., -hdim:] = (dmixed * attn.to(wide) * _silu_slope(r_pre)).to(gates.dtype)
        return (dresidual.to(residual_dtype), dgates, (dmixed * r).to(attn.dtype), ds.to(hx_dtype),
                dweight, dbias, None, None, None, None)


def _keep_mask(like: Tensor, p: float, training: bool) -> tuple[Tensor | None, float]:
    if not training or p == 0.0:
        return None, 1.0
    return torch.rand_like(like, dtype=torch.float32) >= p, 1.0 / (1.0 - p)


def silu_linear(
    a: Tensor, weight: Tensor, bias: Tensor, split: int, p: float = 0.0, training: bool = False
) -> tuple[Tensor, Tensor]:
    """linear(dropout_p(silu(a)), weight, bias) cut at output column ``split`` into two tensors,
    saving a instead of silu(a). ``split`` = weight rows gives an empty second output."""
    keep, scale = _keep_mask(a, p, training)
    return _SiluLinear.apply(a, weight, bias, keep, scale, split)


def linear_silu(x: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
    """silu(linear(x, weight, bias)), saving x and the output instead of the pre-activation."""
    return _LinearSilu.apply(x, weight, bias)


def feed_forward(
    x: Tensor, w1: Tensor, b1: Tensor, w2: Tensor, b2: Tensor, p: float = 0.0, training: bool = False,
    p_out: float = 0.0,
) -> Tensor:
    """dropout_p_out(linear(dropout_p(silu(linear(x, w1, b1))), w2, b2)), keeping only x and the
    dropout masks (bool) for the backward."""
    keep, scale = _keep_mask(x.new_empty(*x.shape[:-1], w1.size(0)), p, training)
    keep_out, scale_out = _keep_mask(x.new_empty(*x.shape[:-1], w2.size(0)), p_out, training)
    return _FeedForward.apply(x, w1, b1, w2, b2, keep, scale, keep_out, scale_out)


def shared_qk(gates: Tensor, gamma: Tensor, beta: Tensor, start: int) -> tuple[Tensor, Tensor]:
    """Mega's q and k from the shared representation z = silu(gates[..., start:start + zdim])."""
    return _SharedQK.apply(gates, gamma, beta, start)


def gated_output(
    residual: Tensor, gates: Tensor, attn: Tensor, hx: Tensor, weight: Tensor, bias: Tensor,
    dim: int, p: float = 0.0, training: bool = False, residual_kept: Tensor | None = None,
) -> Tensor:
    """Mega's gated residual output; see ``_GatedOutput``. ``p``: dropout on silu(·);
    ``residual_kept``: the copy of the residual to keep for the backward (default: itself)."""
    keep, scale = _keep_mask(hx, p, training)
    # None stands for the residual itself: torch.compile cannot trace a Function given one tensor twice
    kept = None if residual_kept is residual else residual_kept
    return _GatedOutput.apply(residual, gates, attn, hx, weight, bias, keep, scale, dim, kept)
