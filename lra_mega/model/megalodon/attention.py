"""Megalodon's normalised attention (§3.3), chunked, with RoPE inside each chunk or a simple bias.

q and k come from one L2-normalised z (per head): q, k = (γ + 1)·z/‖z‖ + β, so their dot products
are bounded and the softmax takes them without the 1/√d scale (fairseq-apollo branch ``residual``
``moving_average_gated_attention.py`` ``softmax_attention``; XuezheMax/megalodon passes scale 1.0 to
its fused attention). Laplace / relu² (the official ``element_attention``) take q·kᵀ/√n + bias,
n = the number of keys a query may see. Attention stays within chunks of ``chunk_size``; each chunk
numbers its positions from 0 for the rotary embedding (official ``RotaryEmbedding(q, k, qidx=0)`` on
(batch·chunks, chunk, ·) tensors).
"""

from __future__ import annotations


import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..attention import _ELEMENT_PATHS, ATTENTION_IMPLS, _pick_impl, checked_path, pad_to_chunks, visible_keys
from ..checks import check_choice, check_positive
from ..kernels.naive import toeplitz

MASKED_SCORE = -1.0e4  # a padded or future key: exp() of it is 0, a row without keys stays finite


class RotaryEmbedding(nn.Module):
    """Rotary position embedding of q and k (official class; buffer ``freqs`` (dim/2)).

    Adjacent pairs (x_2m, x_2m+1) are read as one complex number and turned by p·base^(−2m/dim)
    at position p (official ``apply_rotary_emb`` / ``RotaryEmbedding.rotary``).
    """

    def __init__(self, dim: int, max_positions: int, base: float | None = None) -> None:
        super().__init__()
        if dim % 2:
            raise ValueError(f"rotary embedding needs an even q/k (head) dim, got {dim}; use an even zdim per head")
        self.dim, self.max_positions = dim, max_positions
        self.base = 10000.0 if base is None else float(base)
        freqs = [1.0 / self.base ** (j / dim) for j in range(0, dim, 2)]
        self.register_buffer("freqs", torch.tensor(freqs, dtype=torch.float32))

    def forward(self, x: Tensor, start: int = 0) -> Tensor:
        """Rotate x (..., c, dim) by positions start … start + c − 1."""
        work = torch.promote_types(x.dtype, torch.float32)
        pos = torch.arange(start, start + x.size(-2), device=x.device, dtype=work)
        angle = pos.unsqueeze(-1) * self.freqs.to(work)  # (c, dim/2)
        cos, sin = torch.cos(angle), torch.sin(angle)
        pairs = x.to(work).unflatten(-1, (-1, 2))
        even, odd = pairs[..., 0], pairs[..., 1]
        turned = torch.stack([even * cos - odd * sin, even * sin + odd * cos], dim=-1)
        return turned.flatten(-2).to(x.dtype)

    def extra_repr(self) -> str:
        return f"dim={self.dim}, max_positions={self.max_positions}, base={self.base}"


class SimpleRelativePositionalBias(nn.Module):
    """One learned scalar per offset j − i (official parameter ``rel_pos_bias`` (2·max − 1), N(0, 0.02))."""

    def __init__(self, max_positions: int) -> None:
        super().__init__()
        check_positive("max_len", max_positions)
        self.max_positions = max_positions
        self.rel_pos_bias = nn.Parameter(torch.empty(2 * max_positions - 1))
        nn.init.normal_(self.rel_pos_bias, mean=0.0, std=0.02)

    def vector(self, length: int) -> Tensor:
        """Bias over offsets −(length − 1) … length − 1, shape (2·length − 1)."""
        if length > self.max_positions:
            raise ValueError(f"sequence length {length} exceeds max_len={self.max_positions} of the simple "
                             f"relative position bias; raise max_len, use chunk_size, or rel_pos=rotary")
        return self.rel_pos_bias[self.max_positions - length : self.max_positions + length - 1]


def _to_chunks(x: Tensor, chunk: int, heads: int) -> Tensor:
    """(B, L, H·e) with L a multiple of chunk → (B·K·H, chunk, e)."""
    batch, length, width = x.shape
    x = x.view(batch, length // chunk, chunk, heads, width // heads)
    return x.permute(0, 1, 3, 2, 4).reshape(-1, chunk, width // heads)


def _sdpa(q: Tensor, k: Tensor, v: Tensor, bias: Tensor, key_mask: Tensor | None, causal: bool,
          dropout_p: float) -> Tensor:
    """softmax(q·kᵀ + bias) · v over (N, c, ·) chunks, scale 1, padded / future keys masked."""
    length = q.size(1)
    mask = toeplitz(bias, length).to(q.dtype)
    if causal:
        mask = mask.masked_fill(torch.ones_like(mask, dtype=torch.bool).triu(1), MASKED_SCORE)
    if key_mask is not None:
        mask = mask + (~key_mask).to(q.dtype).unsqueeze(1) * MASKED_SCORE
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout_p, scale=1.0)


def normalized_attention(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    *,
    fn: str = "softmax",
    heads: int = 1,
    key_mask: Tensor | None = None,
    causal: bool = False,
    chunk_size: int = -1,
    rope: RotaryEmbedding | None = None,
    bias: SimpleRelativePositionalBias | None = None,
    dropout_p: float = 0.0,
    impl: str = "auto",
    laplace_approx: bool = True,
) -> Tensor:
    """Attention output (B, L, hdim) for q, k (B, L, zdim) and v (B, L, hdim), ``heads`` heads.

    ``key_mask`` (B, L) bool, True = real key. ``chunk_size`` < 1 or ≥ L: one chunk (full
    attention); otherwise the length is padded to whole chunks (padded keys masked). ``rope``
    rotates q and k inside each chunk; ``bias`` adds a relative bias (one of them, or neither).
    ``impl`` as :func:`lra_mega.model.attend` (softmax: SDPA, or the blockwise path for CPU training).
    ``fn="laplace"`` with ``laplace_approx`` (the official default): the logistic approximation
    through the shared PyTorch kernels (blockwise, or the reference with attention dropout; Triton
    has only Mega's erf curve); without it the erf curve through the blockwise / Triton kernels.
    """
    check_choice("impl", impl, ATTENTION_IMPLS)
    batch, length, _ = q.shape
    q, k, v, key_mask, chunk = pad_to_chunks(q, k, v, key_mask, chunk_size)
    padded = q.size(1)
    q, k, v = (_to_chunks(t, chunk, heads) for t in (q, k, v))
    flat = q.size(0)
    mask = None
    if key_mask is not None:
        mask = key_mask.view(batch, padded // chunk, 1, chunk).expand(-1, -1, heads, -1).reshape(flat, chunk)
    if rope is not None:
        q, k = rope(q), rope(k)
    vector = bias.vector(chunk) if bias is not None else q.new_zeros(2 * chunk - 1)
    if fn == "laplace" and laplace_approx:
        fn = "laplace_approx"  # the PyTorch kernels' logistic curve (Triton fuses only the erf one)
    # a fused path runs only after its one-time self-check (Mega's, shared)
    path = checked_path(_pick_impl(impl, fn, q, dropout_p), impl, fn, q, v, causal=causal,
                        masked=mask is not None, dropout_p=dropout_p)
    if path == "sdpa":
        out = _sdpa(q, k, v, vector, mask, causal, dropout_p)
    else:
        if fn == "softmax":  # no 1/√d: n = 1
            visible = torch.ones(1, 1, device=q.device, dtype=torch.float32).expand(flat, chunk)
        else:  # official element_attention: q·kᵀ · rsqrt(n)
            visible = visible_keys(mask, causal, flat, chunk, q.device).sqrt()
        out = _ELEMENT_PATHS[path](q, k, v, vector.to(q.dtype), mask, visible, causal=causal, fn=fn,
                                   dropout_p=dropout_p)
    out = out.view(batch, padded // chunk, heads, chunk, -1).permute(0, 1, 3, 2, 4)
    return out.reshape(batch, padded, -1)[:, :length]


def normalize_qk(z: Tensor, gamma: Tensor, beta: Tensor, heads: int = 1, eps: float = 1e-5
                 ) -> tuple[Tensor, Tensor]:
    """q, k = (γ + 1) ⊙ z/‖z‖ + β, z L2-normalised per head (fairseq-apollo ``F.normalize(z, eps=1e-5)``)."""
    shape = z.shape
    z = F.normalize(z.view(*shape[:-1], heads, shape[-1] // heads), p=2, dim=-1, eps=eps).view(shape)
    q, k = (z.unsqueeze(-2) * (gamma + 1.0) + beta).unbind(dim=-2)
    return q, k
