"""torch.compile sees each Mega block as one graph: no graph break, so the fused autograd
Functions (EMA convolution, gates, attention, feed-forward) are compiled with their backward
instead of running eagerly between compiled pieces."""

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
def test_block_compiles_without_graph_breaks(variant, padded):
    torch.manual_seed(0)
    encoder = MegaEncoder(vocab_size=20, dim=16, depth=1, zdim=8, hdim=24, ndim=4, max_len=32, **variant)
    block = encoder.layers[0].train()
    h = torch.randn(2, 16, 16, requires_grad=True)
    mask = torch.ones(2, 16, dtype=torch.bool)
    if padded:
        mask[1, 11:] = False
    dynamo.reset()
    report = dynamo.explain(block)(h, mask if padded else None)
    assert report.graph_break_count == 0, [b.reason.splitlines()[0] for b in report.break_reasons]
