"""Every attention path, the lean EMA and the block's bf16 autocast path on the CUDA device against
fp64 CPU references (the reference attention path, the EMA's recurrence, plain-autograd block maths).

Marked ``gpu``: deselected by the default test command, run by scripts/gpu/gpu_check.sh with
``-m gpu`` (the Triton kernels themselves are tested in tests/test_kernels_triton.py). On a
machine without CUDA the same cases run on the CPU, so the dry run keeps this file working.

    python -m pytest -m gpu tests/test_gpu_paths.py
"""

from __future__ import annotations

import pytest
import torch

from test_model_ema import naive_ema

from lra_mega.model import MovingAverageGatedAttention, MultiDimDampedEMA, attend
from lra_mega.model.position import SimpleRelativePositionalBias

pytestmark = pytest.mark.gpu
DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}
TOLERANCE = {"fp32": 1e-4, "bf16": 5e-2}  # of max |error| / (1 + max |reference|)
# The shapes of tests/test_kernels_triton.py (chunks of 19, z = 12, v = 20): Triton specialises
# its kernels on sizes and strides, so these reuse the kernels that file compiled (minutes saved).
LENGTH, CHUNK, ZDIM, HDIM = 57, 19, 12, 20


@pytest.fixture(autouse=True)
def _no_tf32():
    """fp32 compared at fp32 precision: no TF32 matmuls on Ampere and later."""
    before = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = False
    yield
    torch.backends.cuda.matmul.allow_tf32 = before


def assert_close(got: list[torch.Tensor], want: list[torch.Tensor], precision: str, what: list[str]) -> None:
    """Each tensor of ``got`` within the precision's tolerance of ``want`` (output and gradients)."""
    for name, a, b in zip(what, got, want, strict=True):
        err = (a.double().cpu() - b).abs().max().item()
        assert err <= TOLERANCE[precision] * (1.0 + b.abs().max().item()), f"{name}: max error {err:.3g}"


def attention_run(fn: str, impl: str, causal: bool, padded: bool, chunk: int, device: str,
                  dtype: torch.dtype) -> list[torch.Tensor]:
    """Output and the gradients of q, k, v and the bias weight for one fixed upstream gradient."""
    gen = torch.Generator().manual_seed(0)
    batch = 2
    q, k = (torch.randn(batch, LENGTH, ZDIM, generator=gen) * 0.7 for _ in range(2))
    v = torch.randn(batch, LENGTH, HDIM, generator=gen)
    key_mask = None
    if padded:
        key_mask = torch.ones(batch, LENGTH, dtype=torch.bool)
        key_mask[1, 2 * LENGTH // 3:] = False
        key_mask = key_mask.to(device)
    bias = SimpleRelativePositionalBias(chunk if chunk > 0 else LENGTH)
    with torch.no_grad():
        bias.weight.normal_(0.3 if fn == "laplace" else 0.0, 0.2, generator=gen)
    bias = bias.to(device=device, dtype=torch.float64 if dtype == torch.float64 else torch.float32)
    q, k, v = (t.to(device, dtype).requires_grad_(True) for t in (q, k, v))
    out = attend(q, k, v, fn=fn, bias=bias, key_mask=key_mask, causal=causal, chunk_size=chunk, impl=impl)
    # padded queries' outputs are never used, and the paths differ there (a chunk of padding only)
    real = (torch.ones(batch, LENGTH, 1) if key_mask is None else key_mask.cpu().unsqueeze(-1)).double()
    upstream = torch.cos(torch.arange(out.numel(), dtype=torch.float64)).view(out.shape) * real
    out.backward(upstream.to(device, out.dtype))
    out = out.detach().double().cpu() * real
    return [out] + [t.detach().double().cpu() for t in (q.grad, k.grad, v.grad, bias.weight.grad)]


@pytest.mark.parametrize("precision", list(DTYPES))
@pytest.mark.parametrize("chunk", [-1, CHUNK], ids=["full", "chunked"])
@pytest.mark.parametrize("padded", [False, True], ids=["dense", "padded"])
@pytest.mark.parametrize("causal", [False, True], ids=["bidir", "causal"])
@pytest.mark.parametrize("impl", ["auto", "reference", "blockwise"])
@pytest.mark.parametrize("fn", ["softmax", "laplace", "relu2"])
def test_attention_path_matches_fp64_reference(fn, impl, causal, padded, chunk, precision):
    # on CUDA "auto" is SDPA for softmax and the Triton kernels for laplace / relu²
    got = attention_run(fn, impl, causal, padded, chunk, DEVICE, DTYPES[precision])
    want = attention_run(fn, "reference", causal, padded, chunk, "cpu", torch.float64)
    assert_close(got, want, precision, ["out", "dq", "dk", "dv", "dbias"])


def ema_run(ema: MultiDimDampedEMA, device: str, precision: str | None, padded: bool) -> list[torch.Tensor]:
    """Output and the gradients of x and every EMA parameter, at real positions (``precision``
    None: the EMA's reference path, the fp64 recurrence of tests/test_model_ema.py, on the CPU)."""
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(2, LENGTH, ema.dim, generator=gen)
    real = torch.ones(2, LENGTH, dtype=torch.bool)
    if padded:
        real[0, LENGTH // 2:] = False
    mask = real.to(device) if padded else None
    x = x.to(device, torch.float64 if precision is None else torch.float32).requires_grad_(True)
    if precision is None:
        out = naive_ema(ema, x, mask)
    else:
        with torch.autocast(device, dtype=torch.bfloat16, enabled=precision == "bf16"):
            out = ema(x, mask)
    keep = real.unsqueeze(-1).double()  # padded positions' outputs are never used
    upstream = torch.cos(torch.arange(out.numel(), dtype=torch.float64)).view(out.shape) * keep
    out.backward(upstream.to(device, out.dtype))
    grads = [p.grad.detach().double().cpu() for p in ema.parameters()]
    return [out.detach().double().cpu() * keep, x.grad.detach().double().cpu(), *grads]


@pytest.mark.parametrize("precision", list(DTYPES))
@pytest.mark.parametrize("padded", [False, True], ids=["dense", "padded"])
@pytest.mark.parametrize("truncation", [None, 24], ids=["untruncated", "trunc24"])
@pytest.mark.parametrize("bidirectional", [False, True], ids=["causal", "bidir"])
def test_lean_ema_matches_fp64_reference(bidirectional, truncation, padded, precision):
    torch.manual_seed(0)
    ema = MultiDimDampedEMA(dim=16, ndim=4, bidirectional=bidirectional, truncation=truncation)
    reference = MultiDimDampedEMA(dim=16, ndim=4, bidirectional=bidirectional, truncation=truncation)
    reference.load_state_dict(ema.state_dict())
    got = ema_run(ema.to(DEVICE), DEVICE, precision, padded)
    want = ema_run(reference, "cpu", None, padded)
    names = ["out", "dx", *(f"d{n}" for n, _ in ema.named_parameters())]
    assert_close(got, want, precision, names)


def plain_block(layer: MovingAverageGatedAttention, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The attention sublayer by plain autograd in the paper's order: the EMA's fp64 recurrence,
    ``_gates`` / ``_output`` (the maths the fused gating functions replace) and the reference
    attention; the reference for the block's fused bf16 autocast path."""
    mx = naive_ema(layer.ema, layer.norm(x), mask)
    v, u, q, k, r, hx = layer._gates(layer.norm(x), mx)
    attn = attend(q, k, v, fn=layer.attention, bias=layer.rel_pos_bias, key_mask=mask, impl="reference")
    return layer._output(x, u, attn, r, hx)


@pytest.mark.parametrize("precision", list(DTYPES))
@pytest.mark.parametrize("fn", ["softmax", "laplace"])
def test_block_under_autocast_matches_plain_fp64_maths(fn, precision):
    """The attention sublayer (fused gating functions, lean EMA, ``auto`` attention) on the device,
    fp32 or under bf16 autocast, against its plain-autograd fp64 maths on the CPU."""
    torch.manual_seed(0)
    layer = MovingAverageGatedAttention(16, zdim=8, hdim=24, ndim=4, attention=fn, max_len=LENGTH)
    with torch.no_grad():  # a bias of order one, as after training
        layer.rel_pos_bias.weight.normal_(0.3 if fn == "laplace" else 0.0, 0.2)
    reference = MovingAverageGatedAttention(16, zdim=8, hdim=24, ndim=4, attention=fn, max_len=LENGTH)
    reference.load_state_dict(layer.state_dict())
    gen = torch.Generator().manual_seed(2)
    x = torch.randn(2, LENGTH, 16, generator=gen)
    mask = torch.ones(2, LENGTH, dtype=torch.bool)
    mask[1, 40:] = False
    keep = mask.unsqueeze(-1).double()
    upstream = torch.cos(torch.arange(x.numel(), dtype=torch.float64)).view(x.shape) * keep
    results = []
    for module, device, dtype in ((layer.to(DEVICE), DEVICE, torch.float32), (reference.double(), "cpu", torch.float64)):
        xi = x.to(device, dtype).clone().requires_grad_(True)
        if dtype == torch.float64:
            out = plain_block(module, xi, mask)
        else:
            with torch.autocast(DEVICE, dtype=torch.bfloat16, enabled=precision == "bf16"):
                out = module(xi, mask.to(device))
        out.backward(upstream.to(device, out.dtype))
        results.append([out.detach().double().cpu() * keep, xi.grad.double().cpu()]
                       + [p.grad.double().cpu() for p in module.parameters()])
    names = ["out", "dx", *(f"d{n}" for n, _ in layer.named_parameters())]
    assert_close(results[0], results[1], precision, names)
