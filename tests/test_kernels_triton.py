"""The Triton laplace / relu² kernels against the brute-force loop and the reference path.

Without a GPU the kernels run under Triton's interpreter (``TRITON_INTERPRET=1``, CPU tensors).
The interpreter must be on before triton defines the kernels, so those cases run in one child
process (this file run as a script; ``dynamic`` as its argument for the rel_pos='dynamic' cases)
and report back as JSON. The ``gpu`` tests run the compiled kernels on CUDA.
"""

from __future__ import annotations

import itertools
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from lra_mega.model.kernels import HAS_TRITON

REPO = Path(__file__).resolve().parents[1]
CASES = [
    {"fn": fn, "causal": causal, "padded": padded, "chunked": chunked}
    for fn, causal, padded, chunked in itertools.product(("laplace", "relu2"), (False, True), (False, True), (False, True))
]
needs_triton = pytest.mark.skipif(not HAS_TRITON, reason="triton is not installed (pip install triton)")


def brute_force(q, k, v, bias, key_mask, causal, fn):
    """out[b, i] = Σ_j f(q_i·k_j / n_i + bias[c − 1 + j − i]) v_j over allowed keys, by loops in fp64."""
    count, length, _ = q.shape
    out = torch.zeros(count, length, v.size(-1), dtype=torch.float64)
    for b in range(count):
        for i in range(length):
            keys = [j for j in range(length) if (key_mask is None or key_mask[b, j]) and (not causal or j <= i)]
            for j in keys:
                a = float(q[b, i].double() @ k[b, j].double()) / max(len(keys), 1) + float(bias[length - 1 + j - i])
                if fn == "laplace":
                    w = 0.5 * (1 + math.erf((a - math.sqrt(0.5)) / (math.sqrt(1 / (4 * math.pi)) * math.sqrt(2))))
                else:
                    w = max(a, 0.0) ** 2
                out[b, i] += w * v[b, j].double()
    return out


def make_inputs(case: dict, device: str = "cpu", dtype=torch.float32, seed: int = 0):
    """Chunks as the batch dimension: 2 sequences × (3 chunks when chunked) of c = 19 (not a tile multiple)."""
    gen = torch.Generator().manual_seed(seed)
    count, length, zdim, hdim = (6 if case["chunked"] else 2), 19, 12, 20
    q = torch.randn(count, length, zdim, generator=gen) * 0.7
    k = torch.randn(count, length, zdim, generator=gen) * 0.7
    v = torch.randn(count, length, hdim, generator=gen)
    bias = torch.randn(2 * length - 1, generator=gen) * 0.3 + (0.6 if case["fn"] == "laplace" else 0.1)
    key_mask = None
    if case["padded"]:
        key_mask = torch.rand(count, length, generator=gen) > 0.3
        key_mask[:, 0] = True
    real = key_mask.long() if key_mask is not None else torch.ones(count, length, dtype=torch.long)
    visible = (real.cumsum(-1) if case["causal"] else real.sum(-1, keepdim=True).expand(count, length)).clamp(min=1)
    tensors = [t.to(device=device, dtype=dtype) for t in (q, k, v, bias)]
    return tensors, (None if key_mask is None else key_mask.to(device)), visible.float().to(device)


def run_case(case: dict, impl, device: str = "cpu", dtype=torch.float32, **kw):
    """Output and gradients (q, k, v, bias) of one path for a fixed upstream gradient."""
    tensors, key_mask, visible = make_inputs(case, device, dtype)
    tensors = [t.clone().requires_grad_(True) for t in tensors]
    out = impl(*tensors, key_mask, visible, causal=case["causal"], fn=case["fn"], **kw)
    upstream = torch.cos(torch.arange(out.numel(), device=device, dtype=torch.float32)).view_as(out).to(dtype)
    out.backward(upstream)
    return [out.detach().float().cpu()] + [t.grad.float().cpu() for t in tensors]


def _interpreter_report() -> list[dict]:
    """(Child process, TRITON_INTERPRET=1) max errors of each case against brute force and reference."""
    from lra_mega.model.kernels.naive import naive_element_attention
    from lra_mega.model.kernels.triton_laplace import triton_element_attention

    report = []
    for case in CASES:
        fused = run_case(case, triton_element_attention, block=16)  # tiles of 16: c = 19 spans two
        reference = run_case(case, naive_element_attention)
        tensors, key_mask, _ = make_inputs(case)
        loop = brute_force(*tensors, key_mask, case["causal"], case["fn"]).float()
        report.append({
            **case,
            "vs_loop": (fused[0] - loop).abs().max().item(),
            "vs_reference": [(a - b).abs().max().item() / (1.0 + b.abs().max().item()) for a, b in zip(fused, reference)],
        })
    return report


DYNAMIC_CASES = [
    {"fn": fn, "causal": causal, "chunked": chunked}
    for fn, causal, chunked in itertools.product(("laplace", "relu2"), (False, True), (False, True))
]


def _dynamic_report() -> list[dict]:
    """(Child process, TRITON_INTERPRET=1) rel_pos='dynamic' through ``attend``: Triton against the
    reference path, outputs and the gradients of q, k, v and of the bias MLP's parameters."""
    from lra_mega.model import attend
    from lra_mega.model.position import DynamicRelativePositionalBias

    report = []
    for case in DYNAMIC_CASES:
        torch.manual_seed(0)
        dyn = DynamicRelativePositionalBias()
        with torch.no_grad():  # a bias of order 1 that varies with the offset, as after training
            dyn.net[-1].weight.normal_(std=0.3)
            dyn.net[-1].bias.fill_(0.6 if case["fn"] == "laplace" else 0.2)
        gen = torch.Generator().manual_seed(1)
        inputs = [torch.randn(2, 45, d, generator=gen) * s for d, s in ((12, 0.7), (12, 0.7), (20, 1.0))]
        chunk = 19 if case["chunked"] else -1  # 45 = 2 chunks + a padded third
        results = {}
        for impl in ("triton", "reference"):
            dyn.zero_grad()
            q, k, v = (t.clone().requires_grad_(True) for t in inputs)
            out = attend(q, k, v, fn=case["fn"], bias=dyn, causal=case["causal"], chunk_size=chunk, impl=impl)
            out.backward(torch.cos(torch.arange(out.numel(), dtype=torch.float32)).view_as(out))
            results[impl] = [out.detach(), q.grad, k.grad, v.grad] + [p.grad.clone() for p in dyn.parameters()]
        report.append({**case, "bias_grad_max": max(g.abs().max().item() for g in results["reference"][4:]),
                       "vs_reference": [(a - b).abs().max().item() / (1.0 + b.abs().max().item())
                                        for a, b in zip(results["triton"], results["reference"])]})
    return report


def _interpreted(*argv: str) -> list[dict]:
    """Run this file under TRITON_INTERPRET=1 in a child process and read its JSON report."""
    env = {**os.environ, "TRITON_INTERPRET": "1", "PYTHONPATH": str(REPO)}
    done = subprocess.run([sys.executable, __file__, *argv], env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def interpreter_report() -> dict:
    return {(r["fn"], r["causal"], r["padded"], r["chunked"]): r for r in _interpreted()}


@pytest.fixture(scope="module")
def dynamic_report() -> dict:
    return {(r["fn"], r["causal"], r["chunked"]): r for r in _interpreted("dynamic")}


@needs_triton
@pytest.mark.parametrize("case", CASES, ids=lambda c: "-".join(f"{k}={v}" for k, v in c.items()))
def test_interpreted_kernels_match_loop_and_reference_gradients(case, interpreter_report):
    row = interpreter_report[(case["fn"], case["causal"], case["padded"], case["chunked"])]
    assert row["vs_loop"] < 1e-4, row
    out_err, *grad_errs = row["vs_reference"]
    assert out_err < 1e-5 and max(grad_errs) < 1e-5, row  # q, k, v and bias gradients


@needs_triton
@pytest.mark.parametrize("case", DYNAMIC_CASES, ids=lambda c: "-".join(f"{k}={v}" for k, v in c.items()))
def test_interpreted_kernels_agree_with_reference_under_the_dynamic_bias(case, dynamic_report):
    """rel_pos='dynamic': the Triton kernels read its (2c − 1) vector like any other bias, and
    their bias gradient reaches the MLP's parameters as the reference path's does."""
    row = dynamic_report[(case["fn"], case["causal"], case["chunked"])]
    assert row["bias_grad_max"] > 1e-3, row  # the MLP really gets a gradient
    assert max(row["vs_reference"]) < 1e-5, row  # output; q, k, v; every MLP parameter


needs_gpu = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


@pytest.mark.gpu
@needs_gpu
@needs_triton
@pytest.mark.parametrize("case", CASES, ids=lambda c: "-".join(f"{k}={v}" for k, v in c.items()))
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_compiled_kernels_on_gpu_match_reference(case, dtype):
    from lra_mega.model.kernels.naive import naive_element_attention
    from lra_mega.model.kernels.triton_laplace import triton_element_attention

    torch.backends.cuda.matmul.allow_tf32 = False
    fused = run_case(case, triton_element_attention, "cuda", dtype)
    reference = run_case(case, naive_element_attention, "cuda", torch.float32)
    tol = 1e-4 if dtype == torch.float32 else 5e-2
    for a, b in zip(fused, reference):
        assert (a - b).abs().max().item() <= tol * (1.0 + b.abs().max().item())


@pytest.mark.gpu
@needs_gpu
@needs_triton
def test_auto_takes_triton_on_gpu_for_long_chunks():
    from lra_mega.model import attend
    from lra_mega.model.position import SimpleRelativePositionalBias

    bias = SimpleRelativePositionalBias(1000).cuda()
    q, k, v = (torch.randn(2, 1000, d, device="cuda") for d in (32, 32, 48))
    auto = attend(q, k, v, fn="laplace", bias=bias, impl="auto")
    forced = attend(q, k, v, fn="laplace", bias=bias, impl="triton")
    reference = attend(q, k, v, fn="laplace", bias=bias, impl="reference")
    assert torch.equal(auto, forced) and torch.allclose(forced, reference, atol=1e-3)


if __name__ == "__main__":
    print(json.dumps(_dynamic_report() if sys.argv[1:] == ["dynamic"] else _interpreter_report()))
