"""Single-head attention of Mega: softmax (through PyTorch SDPA), laplace or relu², optionally chunked.

Scores for the element-wise functions are a = q·kᵀ / n + bias, n = number of keys a query may see
(real, and not in its future when causal); softmax uses z^−½·q·kᵀ + bias. Mega-chunk splits the
length into chunks of ``chunk_size`` and attends only within a chunk (chunks become the batch
dimension of the kernels). The laplace/relu² paths live in ``kernels/`` with one signature:
``naive`` (plain PyTorch, the reference), ``blockwise`` (PyTorch, recomputed in the backward) and
``triton`` (fused tiles, CUDA).

The paths that only run on a GPU (the Triton kernels; SDPA's CUDA kernels fed our padded q/k)
pass a one-time self-check against the blockwise path before their first use (kernels/selfcheck.py):
under ``auto`` a path that fails it is replaced by the blockwise path for the rest of the process,
with one warning; an explicit ``impl`` that selects it raises the finding instead.
"""

from __future__ import annotations

import math
from typing import Protocol

import torch
import torch.nn.functional as F
from torch import Tensor

from .checks import check_choice
from .kernels import HAS_TRITON, selfcheck, triton_element_attention
from .kernels.blockwise import blockwise_element_attention
from .kernels.naive import LAPLACE_MU, LAPLACE_SIGMA, laplace, naive_element_attention, relu2, toeplitz

__all__ = ["ATTENTION_FUNCTIONS", "ATTENTION_IMPLS", "LAPLACE_MU", "LAPLACE_SIGMA", "attend", "checked_path",
           "laplace", "relu2", "self_check"]

ATTENTION_FUNCTIONS = ("softmax", "laplace", "relu2")
ATTENTION_IMPLS = ("auto", "reference", "blockwise", "triton")
TRITON_FUNCTIONS = ("laplace", "relu2")  # what the Triton kernel fuses (kernels/triton_laplace.py FUNCTIONS)
_ELEMENT_PATHS = {
    "reference": naive_element_attention,
    "blockwise": blockwise_element_attention,
    "triton": triton_element_attention,
}

# added to the score of a padded key (before the z^−½ scaling): exp() of it is 0 at any precision
PADDED_KEY_SCORE = -1.0e4
# fused path -> the PyTorch path that replaces it when its self-check fails
FALLBACK = {"triton": "blockwise", "sdpa": "blockwise"}
# the self-check's inputs: 2 sequences of CHECK_LENGTH positions (5 tiles of the Triton kernels;
# a multiple of 16, as the lengths of the benchmark, so Triton compiles the kernels a run uses),
# the second with its keys padded from CHECK_REAL on (inside a tile)
CHECK_LENGTH, CHECK_REAL = 320, 237


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


def _on_gpu(q: Tensor) -> bool:
    """Whether ``auto`` may take the fused paths for q (tests rehearse a GPU by patching this)."""
    return q.is_cuda


def _pick_impl(impl: str, fn: str, q: Tensor, dropout_p: float) -> str:
    """The path asked for: for softmax "sdpa" or "blockwise", else one of _ELEMENT_PATHS
    (before the self-check of a fused path: see :func:`checked_path`)."""
    if impl in ("blockwise", "triton") and dropout_p > 0.0:
        raise ValueError(f"impl={impl!r} has no attention dropout; use impl='reference' or 'auto'")
    if fn == "softmax":
        # SDPA's CPU kernels take the (c, c) math path when the bias needs a gradient
        lean_cpu = impl == "auto" and not _on_gpu(q) and torch.is_grad_enabled() and dropout_p == 0.0
        return "blockwise" if impl == "blockwise" or lean_cpu else "sdpa"
    if impl == "triton" and fn not in TRITON_FUNCTIONS:  # laplace_approx: Megalodon's logistic curve
        raise ValueError(f"impl='triton' has no {fn} kernel; use impl='auto' (blockwise), or for Megalodon "
                         "laplace_approx=false (the erf laplace, which the Triton kernel fuses)")
    if impl != "auto":
        return impl
    if dropout_p > 0.0:
        return "reference"
    return "triton" if _on_gpu(q) and HAS_TRITON and fn in TRITON_FUNCTIONS else "blockwise"


def _gpu_only(path: str, on_gpu: bool) -> bool:
    """The paths no CPU test reaches: the Triton kernels anywhere, SDPA on a GPU."""
    return path == "triton" or (path == "sdpa" and on_gpu)


def _check_inputs(fn: str, zdim: int, hdim: int, masked: bool, device: torch.device) -> tuple:
    """q, k, v (2, CHECK_LENGTH, ·), the bias vector (fp32) and the key mask (or None), from a
    generator of their own: scores of order one, so the activation's whole curve matters."""
    gen = torch.Generator().manual_seed(0)
    length = CHECK_LENGTH
    scale = 1.0 if fn == "softmax" else (0.5 * length / zdim**0.5) ** 0.5  # q·kᵀ / n of order 0.5
    q, k = (torch.randn(2, length, zdim, generator=gen) * scale for _ in range(2))
    v = torch.randn(2, length, hdim, generator=gen)
    bias = torch.randn(2 * length - 1, generator=gen) * 0.3 + {"laplace": 0.6, "relu2": 0.1}.get(fn, 0.0)
    key_mask = None
    if masked:
        key_mask = torch.ones(2, length, dtype=torch.bool)
        key_mask[1, CHECK_REAL:] = False
        key_mask = key_mask.to(device)
    return (*(t.to(device) for t in (q, k, v, bias)), key_mask)


def _check_run(path: str, fn: str, causal: bool, dtype: torch.dtype, inputs: tuple) -> list[Tensor]:
    """Output and the gradients of q, k, v and the bias of ``path`` on the self-check's inputs:
    q, k, v in ``dtype`` for the fused path, fp32 without TF32 for the PyTorch path."""
    *tensors, key_mask = inputs
    wide = path not in FALLBACK
    q, k, v = (t.to(torch.float32 if wide else dtype).requires_grad_(True) for t in tensors[:3])
    bias = tensors[3].clone().requires_grad_(True)
    tf32 = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = tf32 and not wide
    try:
        out = _attend_chunks(path, fn, q, k, v, bias, key_mask, causal, q.size(1), 0.0)
        real = (torch.ones(q.shape[:2], device=q.device) if key_mask is None else key_mask.float()).unsqueeze(-1)
        upstream = torch.cos(torch.arange(out.numel(), device=q.device, dtype=torch.float32)).view(out.shape)
        out.backward((upstream * real).to(out.dtype))  # padded queries' outputs are never used
    finally:
        torch.backends.cuda.matmul.allow_tf32 = tf32
    return [out.detach().float() * real] + [t.grad.float() for t in (q, k, v, bias)]


def _combination(fn: str, device: torch.device, dtype: torch.dtype, causal: bool, masked: bool, zdim: int,
                 hdim: int) -> dict:
    tf32 = dtype == torch.float32 and device.type == "cuda" and torch.backends.cuda.matmul.allow_tf32
    return {"fn": fn, "device": str(device), "dtype": str(dtype).removeprefix("torch.") + ("+tf32" if tf32 else ""),
            "causal": causal, "masked": masked, "zdim": zdim, "hdim": hdim}


def _finding(path: str, fn: str, device: torch.device, dtype: torch.dtype, causal: bool, masked: bool,
             zdim: int, hdim: int) -> selfcheck.Finding:
    """The self-check's verdict on ``path`` for this combination (run on first use)."""
    combination = _combination(fn, device, dtype, causal, masked, zdim, hdim)
    tol = selfcheck.tolerance(dtype, tf32=combination["dtype"].endswith("+tf32"))

    def run(name: str) -> list[Tensor]:
        return _check_run(name, fn, causal, dtype, _check_inputs(fn, zdim, hdim, masked, device))

    return selfcheck.check(path, FALLBACK[path], combination, run, tol)


def self_check(fn: str, device: torch.device | str, dtype: torch.dtype, *, causal: bool = False,
               masked: bool = False, zdim: int = 64, hdim: int = 256) -> selfcheck.Finding:
    """The self-check's verdict on the fused path ``attend`` takes for ``fn`` on a GPU (Triton for
    laplace / relu², SDPA for softmax), run now unless this process has it already."""
    check_choice("fn", fn, ATTENTION_FUNCTIONS)
    path = "sdpa" if fn == "softmax" else "triton"
    return _finding(path, fn, torch.device(device), dtype, causal, masked, zdim, hdim)


# the impl that selects each fused path: laplace / relu² "triton", softmax "reference" (SDPA)
_FORCE = {"triton": "triton", "sdpa": "reference"}
_WARNED: set[selfcheck.Finding] = set()


@torch.compiler.assume_constant_result  # under torch.compile: decided (and checked) once, when traced
def _checked(path: str, impl: str, fn: str, on_gpu: bool, device: torch.device, dtype: torch.dtype,
             causal: bool, masked: bool, zdim: int, hdim: int, dropout: bool) -> str:
    """``path``, or under ``auto`` its fallback when it failed its self-check; "" when it failed
    and nothing may replace it (an explicit impl, or attention dropout). Records the path that runs."""
    if _gpu_only(path, on_gpu):
        finding = _finding(path, fn, device, dtype, causal, masked, zdim, hdim)
        if not finding.ok:
            if impl != "auto" or dropout:
                return ""
            if finding not in _WARNED:
                _WARNED.add(finding)
                selfcheck.log.warning(
                    "the %s attention path failed its one-time self-check (%s): %s. This run uses the "
                    "PyTorch %s path instead (the same maths, slower); to force a path set "
                    "model.attention_impl=%s (the PyTorch path) or model.attention_impl=%s (this one: "
                    "raises this finding)", path, finding.label(), finding.reason, finding.fallback,
                    finding.fallback, _FORCE[path])
            selfcheck.note_fallback(finding)
            path = finding.fallback
    selfcheck.note_ran(f"{fn} attention", path)
    return path


def _refuse(path: str, impl: str, fn: str, device: torch.device, dtype: torch.dtype, causal: bool,
            masked: bool, zdim: int, hdim: int) -> None:
    finding = _finding(path, fn, device, dtype, causal, masked, zdim, hdim)
    if impl == "auto":  # attention dropout: the PyTorch path has none
        fix = "set model.attention_dropout=0 to let the PyTorch blockwise path replace it"
    else:
        fix = "use model.attention_impl=auto (falls back to the PyTorch path) or model.attention_impl=blockwise"
    raise selfcheck.SelfCheckError(
        f"attention_impl={impl!r}: the {path} attention path failed its self-check ({finding.label()}): "
        f"{finding.reason}; {fix}")


def checked_path(path: str, impl: str, fn: str, q: Tensor, v: Tensor, *, causal: bool, masked: bool,
                 dropout_p: float) -> str:
    """The path that runs in place of ``path`` (from :func:`_pick_impl`): itself, or the PyTorch
    path when a fused one failed its self-check under ``auto``. Raises the finding instead when
    ``impl`` asked for the path explicitly (or attention dropout leaves no replacement)."""
    zdim, hdim = q.size(-1), v.size(-1)
    ran = _checked(path, impl, fn, _on_gpu(q), q.device, v.dtype, causal, masked, zdim, hdim, dropout_p > 0.0)
    if not ran:
        _refuse(path, impl, fn, q.device, v.dtype, causal, masked, zdim, hdim)
    return ran


def _attend_chunks(path: str, fn: str, q: Tensor, k: Tensor, v: Tensor, vector: Tensor, key_mask: Tensor | None,
                   causal: bool, chunk: int, dropout_p: float) -> Tensor:
    """``path`` over q, k, v (B, L, ·), L a multiple of ``chunk``, each chunk on its own: (B, L, hdim)."""
    batch, padded, _ = q.shape
    chunks = padded // chunk
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
    return out.reshape(batch, padded, -1)


def pad_to_chunks(q: Tensor, k: Tensor, v: Tensor, key_mask: Tensor | None, chunk_size: int | None
                  ) -> tuple[Tensor, Tensor, Tensor, Tensor | None, int]:
    """(q, k, v, key_mask, chunk): the (B, L, ·) inputs right-padded to whole chunks, the padded keys
    masked out. ``chunk_size`` < 1, None or ≥ L: one chunk of L (full attention)."""
    batch, length, _ = q.shape
    chunk = length if chunk_size is None or chunk_size < 1 or chunk_size >= length else chunk_size
    extra = math.ceil(length / chunk) * chunk - length
    if extra:
        q, k, v = (F.pad(t, (0, 0, 0, extra)) for t in (q, k, v))
        if key_mask is None:
            key_mask = torch.ones(batch, length, dtype=torch.bool, device=q.device)
        key_mask = F.pad(key_mask, (0, extra), value=False)
    return q, k, v, key_mask, chunk


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
    Softmax runs through SDPA ("blockwise": the PyTorch path; "auto" takes it on the CPU in
    training). A fused path passes its self-check first (see the module docstring).
    """
    check_choice("impl", impl, ATTENTION_IMPLS)
    length = q.size(1)
    q, k, v, key_mask, chunk = pad_to_chunks(q, k, v, key_mask, chunk_size)
    path = _pick_impl(impl, fn, q, dropout_p)
    path = checked_path(path, impl, fn, q, v, causal=causal, masked=key_mask is not None, dropout_p=dropout_p)
    out = _attend_chunks(path, fn, q, k, v, bias.vector(chunk), key_mask, causal, chunk, dropout_p)
    return out[:, :length]
