"""Fused laplace / relu² attention in Triton, forward and backward (FlashAttention-style tiles).

Same signature and maths as ``naive.naive_element_attention`` (no dropout). Each program takes
a tile of BLOCK queries and walks over key tiles: a = q·kᵀ / n + bias, f(a), masked, times v,
accumulated in fp32. The relative position bias is read from its (2c − 1) vector inside the
kernel. Nothing of size c × c is stored; the backward recomputes a per tile:

- ``_dv_kernel``: dv_j = Σ_i f(a_ij) g_i (programs over key tiles × value-column tiles),
- ``_dk_kernel``: dk_j = Σ_i ds_ij q_i / n_i, ds = (g·vᵀ) ⊙ f'(a) (programs over key tiles),
- ``_dq_kernel``: dq_i = Σ_j ds_ij k_j / n_i, and dbias[c − 1 + j − i] += ds_ij (fp32 atomics).

Triton is optional: without it ``HAS_TRITON`` is False and ``attention.attend`` never selects
this path. ``TRITON_INTERPRET=1`` (set before triton is imported) runs the kernels on CPU tensors.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from .naive import LAPLACE_MU, LAPLACE_SIGMA

try:  # triton has no wheels for some platforms; the package works without it
    import triton
    import triton.language as tl
except ImportError:  # pragma: no cover - depends on the platform
    triton = None
    tl = None

HAS_TRITON = triton is not None
FUNCTIONS = {"laplace": 0, "relu2": 1}
BLOCK = 64  # query and key rows per tile
_INV_SIGMA_SQRT2 = 1.0 / (LAPLACE_SIGMA * math.sqrt(2.0))
_SLOPE_SCALE = 1.0 / (LAPLACE_SIGMA * math.sqrt(2.0 * math.pi))


if HAS_TRITON:
    _MU = tl.constexpr(LAPLACE_MU)
    _SIGMA = tl.constexpr(LAPLACE_SIGMA)
    _INV_SIGMA_SQRT2_C = tl.constexpr(_INV_SIGMA_SQRT2)
    _SLOPE_SCALE_C = tl.constexpr(_SLOPE_SCALE)

    @triton.jit
    def _query_tile(q_ptr, s_qc, nvis_ptr, s_nc, offs_m, offs_z, length, zdim):
        """(q rows ``offs_m``, 1 / n per row), zero / 1 outside the chunk."""
        row_ok = offs_m < length
        q = tl.load(q_ptr + offs_m[:, None] * s_qc + offs_z[None, :],
                    mask=row_ok[:, None] & (offs_z[None, :] < zdim), other=0.0)
        inv_n = 1.0 / tl.load(nvis_ptr + offs_m * s_nc, mask=row_ok, other=1.0).to(tl.float32)
        return q, inv_n

    @triton.jit
    def _scores(q, k_ptrs, key_ok, offs_m, offs_n, inv_n, bias_ptr, length, PRECISION: tl.constexpr):
        """a = q·kᵀ / n + bias[c − 1 + j − i] for one (query tile, key tile), fp32."""
        k = tl.load(k_ptrs, mask=key_ok, other=0.0)
        a = tl.dot(q, tl.trans(k), input_precision=PRECISION) * inv_n[:, None]
        inside = (offs_m[:, None] < length) & (offs_n[None, :] < length)
        bias = tl.load(bias_ptr + (length - 1) + offs_n[None, :] - offs_m[:, None], mask=inside, other=0.0)
        return a + bias.to(tl.float32)

    @triton.jit
    def _allowed(offs_m, offs_n, mask_ptr, length, HAS_MASK: tl.constexpr, CAUSAL: tl.constexpr):
        """(BLOCK, BLOCK) bool: key j is real, inside the chunk and (causal) not in i's future."""
        allowed = (offs_m[:, None] < length) & (offs_n[None, :] < length)
        if HAS_MASK:
            real = tl.load(mask_ptr + offs_n, mask=offs_n < length, other=0)
            allowed = allowed & (real != 0)[None, :]
        if CAUSAL:
            allowed = allowed & (offs_n[None, :] <= offs_m[:, None])
        return allowed

    @triton.jit
    def _activation(a, FN: tl.constexpr):
        if FN == 0:
            return 0.5 * (1.0 + tl.math.erf((a - _MU) * _INV_SIGMA_SQRT2_C))
        positive = tl.maximum(a, 0.0)
        return positive * positive

    @triton.jit
    def _slope(a, FN: tl.constexpr):
        if FN == 0:
            z = (a - _MU) / _SIGMA
            return tl.exp(-0.5 * z * z) * _SLOPE_SCALE_C
        return 2.0 * tl.maximum(a, 0.0)

    @triton.jit
    def _forward_kernel(
        Q, K, V, BIAS, MASK, NVIS, OUT, length, zdim, hdim,
        s_qn, s_qc, s_kn, s_kc, s_vn, s_vc, s_on, s_oc, s_mn, s_nn, s_nc,
        HAS_MASK: tl.constexpr, CAUSAL: tl.constexpr, FN: tl.constexpr, PRECISION: tl.constexpr,
        BM: tl.constexpr, BN: tl.constexpr, BZ: tl.constexpr, BH: tl.constexpr,
    ):
        pid_m, pid_h, n = tl.program_id(0), tl.program_id(1), tl.program_id(2)
        offs_m = pid_m * BM + tl.arange(0, BM)
        offs_z = tl.arange(0, BZ)
        offs_h = pid_h * BH + tl.arange(0, BH)
        row_ok = offs_m < length
        q, inv_n = _query_tile(Q + n * s_qn, s_qc, NVIS + n * s_nn, s_nc, offs_m, offs_z, length, zdim)
        acc = tl.zeros((BM, BH), dtype=tl.float32)
        end = tl.minimum(length, (pid_m + 1) * BM) if CAUSAL else length
        for start in range(0, end, BN):
            offs_n = start + tl.arange(0, BN)
            key_ok = (offs_n[:, None] < length) & (offs_z[None, :] < zdim)
            k_ptrs = K + n * s_kn + offs_n[:, None] * s_kc + offs_z[None, :]
            a = _scores(q, k_ptrs, key_ok, offs_m, offs_n, inv_n, BIAS, length, PRECISION)
            allowed = _allowed(offs_m, offs_n, MASK + n * s_mn, length, HAS_MASK, CAUSAL)
            weights = tl.where(allowed, _activation(a, FN), 0.0)
            v = tl.load(V + n * s_vn + offs_n[:, None] * s_vc + offs_h[None, :],
                        mask=(offs_n[:, None] < length) & (offs_h[None, :] < hdim), other=0.0)
            acc += tl.dot(weights.to(v.dtype), v, input_precision=PRECISION)
        tl.store(OUT + n * s_on + offs_m[:, None] * s_oc + offs_h[None, :], acc.to(OUT.dtype.element_ty),
                 mask=row_ok[:, None] & (offs_h[None, :] < hdim))

    @triton.jit
    def _dv_kernel(
        Q, K, G, BIAS, MASK, NVIS, DV, length, zdim, hdim,
        s_qn, s_qc, s_kn, s_kc, s_gn, s_gc, s_dn, s_dc, s_mn, s_nn, s_nc,
        HAS_MASK: tl.constexpr, CAUSAL: tl.constexpr, FN: tl.constexpr, PRECISION: tl.constexpr,
        BM: tl.constexpr, BN: tl.constexpr, BZ: tl.constexpr, BH: tl.constexpr,
    ):
        pid_n, pid_h, n = tl.program_id(0), tl.program_id(1), tl.program_id(2)
        offs_n = pid_n * BN + tl.arange(0, BN)
        offs_z = tl.arange(0, BZ)
        offs_h = pid_h * BH + tl.arange(0, BH)
        key_ok = (offs_n[:, None] < length) & (offs_z[None, :] < zdim)
        k_ptrs = K + n * s_kn + offs_n[:, None] * s_kc + offs_z[None, :]
        acc = tl.zeros((BN, BH), dtype=tl.float32)
        begin = (pid_n * BN) // BM * BM if CAUSAL else 0
        for start in range(begin, length, BM):
            offs_m = start + tl.arange(0, BM)
            row_ok = offs_m < length
            q, inv_n = _query_tile(Q + n * s_qn, s_qc, NVIS + n * s_nn, s_nc, offs_m, offs_z, length, zdim)
            a = _scores(q, k_ptrs, key_ok, offs_m, offs_n, inv_n, BIAS, length, PRECISION)
            allowed = _allowed(offs_m, offs_n, MASK + n * s_mn, length, HAS_MASK, CAUSAL)
            weights = tl.where(allowed, _activation(a, FN), 0.0)
            g = tl.load(G + n * s_gn + offs_m[:, None] * s_gc + offs_h[None, :],
                        mask=row_ok[:, None] & (offs_h[None, :] < hdim), other=0.0)
            acc += tl.dot(tl.trans(weights.to(g.dtype)), g, input_precision=PRECISION)
        tl.store(DV + n * s_dn + offs_n[:, None] * s_dc + offs_h[None, :], acc.to(DV.dtype.element_ty),
                 mask=(offs_n[:, None] < length) & (offs_h[None, :] < hdim))

    @triton.jit
    def _score_grad(g_ptr, s_gc, v_ptr, s_vc, offs_m, offs_n, a, allowed, length, hdim,
                    FN: tl.constexpr, PRECISION: tl.constexpr, BM: tl.constexpr, BN: tl.constexpr,
                    BH: tl.constexpr):
        """ds = (g·vᵀ) ⊙ f'(a) on allowed pairs, summing g·vᵀ over value-column tiles."""
        dp = tl.zeros((BM, BN), dtype=tl.float32)
        for h0 in range(0, hdim, BH):
            offs_h = h0 + tl.arange(0, BH)
            g = tl.load(g_ptr + offs_m[:, None] * s_gc + offs_h[None, :],
                        mask=(offs_m[:, None] < length) & (offs_h[None, :] < hdim), other=0.0)
            v = tl.load(v_ptr + offs_n[:, None] * s_vc + offs_h[None, :],
                        mask=(offs_n[:, None] < length) & (offs_h[None, :] < hdim), other=0.0)
            dp += tl.dot(g, tl.trans(v), input_precision=PRECISION)
        return tl.where(allowed, dp * _slope(a, FN), 0.0)

    @triton.jit
    def _dk_kernel(
        Q, K, V, G, BIAS, MASK, NVIS, DK, length, zdim, hdim,
        s_qn, s_qc, s_kn, s_kc, s_vn, s_vc, s_gn, s_gc, s_dn, s_dc, s_mn, s_nn, s_nc,
        HAS_MASK: tl.constexpr, CAUSAL: tl.constexpr, FN: tl.constexpr, PRECISION: tl.constexpr,
        BM: tl.constexpr, BN: tl.constexpr, BZ: tl.constexpr, BH: tl.constexpr,
    ):
        pid_n, n = tl.program_id(0), tl.program_id(1)
        offs_n = pid_n * BN + tl.arange(0, BN)
        offs_z = tl.arange(0, BZ)
        key_ok = (offs_n[:, None] < length) & (offs_z[None, :] < zdim)
        k_ptrs = K + n * s_kn + offs_n[:, None] * s_kc + offs_z[None, :]
        acc = tl.zeros((BN, BZ), dtype=tl.float32)
        begin = (pid_n * BN) // BM * BM if CAUSAL else 0
        for start in range(begin, length, BM):
            offs_m = start + tl.arange(0, BM)
            q, inv_n = _query_tile(Q + n * s_qn, s_qc, NVIS + n * s_nn, s_nc, offs_m, offs_z, length, zdim)
            a = _scores(q, k_ptrs, key_ok, offs_m, offs_n, inv_n, BIAS, length, PRECISION)
            allowed = _allowed(offs_m, offs_n, MASK + n * s_mn, length, HAS_MASK, CAUSAL)
            ds = _score_grad(G + n * s_gn, s_gc, V + n * s_vn, s_vc, offs_m, offs_n, a, allowed,
                             length, hdim, FN, PRECISION, BM, BN, BH)
            ds = ds * inv_n[:, None]
            acc += tl.dot(tl.trans(ds.to(q.dtype)), q, input_precision=PRECISION)
        tl.store(DK + n * s_dn + offs_n[:, None] * s_dc + offs_z[None, :], acc.to(DK.dtype.element_ty),
                 mask=key_ok)

    @triton.jit
    def _dq_kernel(
        Q, K, V, G, BIAS, MASK, NVIS, DQ, DBIAS, length, zdim, hdim,
        s_qn, s_qc, s_kn, s_kc, s_vn, s_vc, s_gn, s_gc, s_dn, s_dc, s_mn, s_nn, s_nc,
        HAS_MASK: tl.constexpr, CAUSAL: tl.constexpr, FN: tl.constexpr, PRECISION: tl.constexpr,
        BIAS_GRAD: tl.constexpr, BM: tl.constexpr, BN: tl.constexpr, BZ: tl.constexpr, BH: tl.constexpr,
    ):
        pid_m, n = tl.program_id(0), tl.program_id(1)
        offs_m = pid_m * BM + tl.arange(0, BM)
        offs_z = tl.arange(0, BZ)
        row_ok = offs_m < length
        q, inv_n = _query_tile(Q + n * s_qn, s_qc, NVIS + n * s_nn, s_nc, offs_m, offs_z, length, zdim)
        acc = tl.zeros((BM, BZ), dtype=tl.float32)
        end = tl.minimum(length, (pid_m + 1) * BM) if CAUSAL else length
        for start in range(0, end, BN):
            offs_n = start + tl.arange(0, BN)
            key_ok = (offs_n[:, None] < length) & (offs_z[None, :] < zdim)
            k_ptrs = K + n * s_kn + offs_n[:, None] * s_kc + offs_z[None, :]
            a = _scores(q, k_ptrs, key_ok, offs_m, offs_n, inv_n, BIAS, length, PRECISION)
            allowed = _allowed(offs_m, offs_n, MASK + n * s_mn, length, HAS_MASK, CAUSAL)
            ds = _score_grad(G + n * s_gn, s_gc, V + n * s_vn, s_vc, offs_m, offs_n, a, allowed,
                             length, hdim, FN, PRECISION, BM, BN, BH)
            if BIAS_GRAD:
                tl.atomic_add(DBIAS + (length - 1) + offs_n[None, :] - offs_m[:, None], ds, mask=allowed)
            k = tl.load(k_ptrs, mask=key_ok, other=0.0)
            acc += tl.dot((ds * inv_n[:, None]).to(k.dtype), k, input_precision=PRECISION)
        tl.store(DQ + n * s_dn + offs_m[:, None] * s_dc + offs_z[None, :], acc.to(DQ.dtype.element_ty),
                 mask=row_ok[:, None] & (offs_z[None, :] < zdim))


def _tile(width: int, cap: int) -> int:
    return min(cap, max(16, triton.next_power_of_2(width)))


def _precision(dtype: torch.dtype) -> str:
    """tf32 dot products for fp32 inputs only where PyTorch's matmuls may use them too."""
    return "tf32" if dtype == torch.float32 and torch.backends.cuda.matmul.allow_tf32 else "ieee"


class TritonElementAttention(torch.autograd.Function):
    """Fused laplace / relu² attention over (N, c, ·) chunks; see the module docstring."""

    @staticmethod
    def forward(ctx, q, k, v, bias, key_mask, visible, causal, fn, block):  # noqa: D102
        q, k, v, bias = q.contiguous(), k.contiguous(), v.contiguous(), bias.contiguous()
        batch, length, zdim = q.shape
        hdim = v.size(2)
        mask = key_mask.to(torch.uint8).contiguous() if key_mask is not None else q.new_zeros(1, dtype=torch.uint8)
        visible = visible.float()
        out = torch.empty(batch, length, hdim, dtype=v.dtype, device=v.device)
        bz, bh = _tile(zdim, 256), _tile(hdim, 64)
        grid = (triton.cdiv(length, block), triton.cdiv(hdim, bh), batch)
        _forward_kernel[grid](
            q, k, v, bias, mask, visible, out, length, zdim, hdim,
            q.stride(0), q.stride(1), k.stride(0), k.stride(1), v.stride(0), v.stride(1),
            out.stride(0), out.stride(1), mask.stride(0) if key_mask is not None else 0,
            visible.stride(0), visible.stride(1),
            HAS_MASK=key_mask is not None, CAUSAL=causal, FN=FUNCTIONS[fn], PRECISION=_precision(q.dtype),
            BM=block, BN=block, BZ=bz, BH=bh,
        )
        ctx.save_for_backward(q, k, v, bias, mask, visible)
        ctx.config = (causal, fn, block, key_mask is not None)
        return out

    @staticmethod
    def backward(ctx, grad_out):  # noqa: D102
        q, k, v, bias, mask, visible = ctx.saved_tensors
        causal, fn, block, has_mask = ctx.config
        g = grad_out.contiguous()
        batch, length, zdim = q.shape
        hdim = v.size(2)
        bz, bh = _tile(zdim, 256), _tile(hdim, 64)
        dq, dk, dv = torch.empty_like(q), torch.empty_like(k), torch.empty_like(v)
        bias_grad = bool(ctx.needs_input_grad[3])
        dbias = torch.zeros(bias.shape, dtype=torch.float32, device=bias.device)
        flags = dict(HAS_MASK=has_mask, CAUSAL=causal, FN=FUNCTIONS[fn], PRECISION=_precision(q.dtype))
        common = (mask.stride(0) if has_mask else 0, visible.stride(0), visible.stride(1))
        tiles = triton.cdiv(length, block)
        _dv_kernel[(tiles, triton.cdiv(hdim, bh), batch)](
            q, k, g, bias, mask, visible, dv, length, zdim, hdim,
            q.stride(0), q.stride(1), k.stride(0), k.stride(1), g.stride(0), g.stride(1),
            dv.stride(0), dv.stride(1), *common, **flags, BM=block, BN=block, BZ=bz, BH=bh,
        )
        strides = (q.stride(0), q.stride(1), k.stride(0), k.stride(1), v.stride(0), v.stride(1),
                   g.stride(0), g.stride(1))
        _dk_kernel[(tiles, batch)](
            q, k, v, g, bias, mask, visible, dk, length, zdim, hdim, *strides,
            dk.stride(0), dk.stride(1), *common, **flags, BM=block, BN=block, BZ=bz, BH=bh,
        )
        _dq_kernel[(tiles, batch)](
            q, k, v, g, bias, mask, visible, dq, dbias, length, zdim, hdim, *strides,
            dq.stride(0), dq.stride(1), *common, **flags, BIAS_GRAD=bias_grad,
            BM=block, BN=block, BZ=bz, BH=bh,
        )
        return dq, dk, dv, (dbias.to(bias.dtype) if bias_grad else None), None, None, None, None, None


def triton_element_attention(
    q: Tensor, k: Tensor, v: Tensor, bias: Tensor, key_mask: Tensor | None, visible: Tensor,
    *, causal: bool, fn: str, dropout_p: float = 0.0, block: int = BLOCK,
) -> Tensor:
    """See ``naive.naive_element_attention``; no attention dropout. ``block``: tile rows (≥ 16)."""
    if not HAS_TRITON:
        raise ValueError("impl='triton' needs the triton package (pip install triton); use impl='auto'")
    if dropout_p > 0.0:
        raise ValueError("the Triton attention path has no attention dropout; use impl='reference'")
    visible = visible.expand(q.size(0), q.size(1))
    q, k = q.to(v.dtype), k.to(v.dtype)  # one dtype for the tile products (autocast may mix them)
    return TritonElementAttention.apply(q, k, v, bias, key_mask, visible, causal, fn, block)
