"""torch.compile traces each Mega block whole but for the EMA kernel (kept eager on purpose, so
variable lengths compile once): the fused autograd Functions (EMA convolution, gates, attention,
feed-forward) are compiled with their backward instead of running eagerly between graph pieces."""

import pytest
import torch
import torch._dynamo as dynamo

from lra_mega.model import MegaEncoder

VARIANTS = [
    dict(attention="softmax", norm="layernorm", prenorm=False),  # post-norm: x is the residual
    dict(attention="laplace", norm="batchnorm", prenorm=True, chunk_size=8),
    dict(attention="softmax", norm="layernorm", prenorm=True, dropout=0.1, attention_dropout=0.1,
         hidden_dropout=0.1),
]


@pytest.mark.parametrize("padded", [False, True], ids=["unpadded", "padded"])
@pytest.mark.parametrize("variant", VARIANTS, ids=["postnorm", "chunked", "dropout"])
def test_block_compiles_with_no_other_graph_break(variant, padded):
    torch.manual_seed(0)
    encoder = MegaEncoder(vocab_size=20, dim=16, depth=1, zdim=8, hdim=24, ndim=4, max_len=32, **variant)
    block = encoder.layers[0].train()
    h = torch.randn(2, 16, 16, requires_grad=True)
    mask = torch.ones(2, 16, dtype=torch.bool)
    if padded:
        mask[1, 11:] = False
    dynamo.reset()
    report = dynamo.explain(block)(h, mask if padded else None)
    reasons = {b.reason.splitlines()[0] for b in report.break_reasons}
    assert reasons <= {"Skip inlining `torch.compiler.disable()`d function"}, reasons
    assert all("MultiDimDampedEMA.kernel" in b.reason for b in report.break_reasons)


def test_variable_lengths_trace_once_more_then_reuse_the_graphs():
    """ListOps-like batches of ever new lengths: Dynamo retraces once with a symbolic length (its
    automatic dynamic shapes), then serves every further length from those graphs, and the traced
    block computes what the eager one does, gradients included."""
    torch.manual_seed(0)
    encoder = MegaEncoder(vocab_size=20, dim=16, depth=1, zdim=8, hdim=24, ndim=4, max_len=128, chunk_size=16)
    block = encoder.layers[0].train()
    traced = torch.compile(block, backend="eager")
    dynamo.reset()
    counters = dynamo.utils.counters
    graphs = []
    for length in (40, 56, 77, 100, 23):
        h = torch.randn(3, length, 16)
        mask = torch.ones(3, length, dtype=torch.bool)
        mask[2, length // 2:] = False
        expected, got = block(h, mask), traced(h, mask)
        torch.testing.assert_close(got, expected, rtol=0, atol=0)
        (grad,) = torch.autograd.grad(got.square().sum(), block.attention.ema.alpha)
        (grad_eager,) = torch.autograd.grad(expected.square().sum(), block.attention.ema.alpha)
        torch.testing.assert_close(grad, grad_eager, rtol=0, atol=0)
        graphs.append(counters["stats"]["unique_graphs"])
    assert graphs[1] > graphs[0] and graphs[-1] == graphs[1], graphs


def test_truncated_kernel_lengths_across_the_truncation_stop_retracing():
    """With a truncated EMA kernel the FFT length depends on whether L exceeds the truncation
    (ListOps-lite: truncation 1,024, lengths up to 2,000): each side is traced once, then new
    lengths on either side reuse the graphs, and the traced block equals the eager one."""
    torch.manual_seed(0)
    encoder = MegaEncoder(vocab_size=20, dim=16, depth=1, zdim=8, hdim=24, ndim=4, max_len=256,
                          chunk_size=16, truncation=48)
    block = encoder.layers[0].train()
    traced = torch.compile(block, backend="eager")
    dynamo.reset()
    counters = dynamo.utils.counters
    graphs = []
    for length in (40, 56, 77, 100, 23, 45, 90, 60, 31):
        h = torch.randn(2, length, 16)
        mask = torch.ones(2, length, dtype=torch.bool)
        mask[1, length // 2:] = False
        torch.testing.assert_close(traced(h, mask), block(h, mask), rtol=0, atol=0)
        graphs.append(counters["stats"]["unique_graphs"])
    assert graphs[-1] == graphs[4], graphs


def test_megalodon_block_under_inductor_computes_what_eager_does():
    """The lite presets compile Megalodon with inductor (the CPU runs): its complex FFT convolution
    falls back to eager kernels inside the graph; outputs and gradients must match the eager block,
    padded, at two lengths (ListOps' batches change length)."""
    from lra_mega.model.megalodon import MegalodonEncoder

    torch.manual_seed(0)
    encoder = MegalodonEncoder(vocab_size=20, dim=16, depth=1, zdim=8, hdim=24, ndim=4, max_len=48, chunk_size=16)
    block = encoder.layers[0].train()
    dynamo.reset()
    compiled = torch.compile(block)
    for length in (32, 40):
        h = torch.randn(2, length, 16)
        mask = torch.ones(2, length, dtype=torch.bool)
        mask[1, length - 7:] = False
        outs, grads = [], []
        for fn in (block, compiled):
            x = h.clone().requires_grad_()
            out = fn(x, mask)
            (out * torch.linspace(-1, 1, out.numel()).view_as(out)).sum().backward()
            outs.append(out.detach())
            grads.append([x.grad, *(p.grad.clone() for p in block.parameters())])
            block.zero_grad(set_to_none=True)
        torch.testing.assert_close(outs[1], outs[0], rtol=1e-4, atol=1e-5)
        for got, want in zip(grads[1], grads[0]):
            torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)
