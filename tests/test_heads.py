"""Heads and the pixel embedding against hand computations and the official init scales."""

from __future__ import annotations

import math

import pytest
import torch
from torch.nn import functional as F

from lra_mega.model import ClassificationHead, MegaEncoder, RealNumberEmbedding, RetrievalHead


def _set(linear: torch.nn.Linear, weight: list, bias: list | None = None) -> None:
    with torch.no_grad():
        linear.weight.copy_(torch.tensor(weight))
        if bias is not None:
            linear.bias.copy_(torch.tensor(bias))


def _gelu(x: float) -> float:
    return 0.5 * x * (1.0 + math.erf(x / math.sqrt(2.0)))


def test_retrieval_logits_are_concat_linear_act_linear_by_hand():
    # d = 1: pooled u1 = mean(1, 3) = 2, u2 = mean(-1, 0, 4 (masked)) = -0.5
    head = RetrievalHead(1, num_classes=2, dropout=0.3).eval()
    hidden, out = head.mlp[0], head.mlp[-1]
    assert out.bias is None and hidden.weight.shape == (2, 2) and out.weight.shape == (2, 2)
    _set(hidden, [[1.0, 2.0], [-1.0, 0.5]], [0.5, -0.25])
    _set(out, [[1.0, -1.0], [2.0, 3.0]])
    f1 = torch.tensor([[[1.0], [3.0]]])
    f2 = torch.tensor([[[-1.0], [0.0], [4.0]]])
    mask2 = torch.tensor([[True, True, False]])
    h = [_gelu(1 * 2 + 2 * -0.5 + 0.5), _gelu(-1 * 2 + 0.5 * -0.5 - 0.25)]  # [u1, u2] → linear → act
    expected = torch.tensor([[h[0] - h[1], 2 * h[0] + 3 * h[1]]])
    torch.testing.assert_close(head(f1, None, f2, mask2), expected)


def test_retrieval_matching_head_stays_an_option():
    head = RetrievalHead(2, num_classes=2, combine="matching")
    seen = {}
    head.mlp[0].register_forward_hook(lambda m, i, o: seen.update(x=i[0]))
    head(torch.tensor([[[1.0, 2.0]]]), None, torch.tensor([[[3.0, 5.0]]]), None)
    assert torch.equal(seen["x"], torch.tensor([[1.0, 2.0, 3.0, 5.0, 3.0, 10.0, -2.0, -3.0]]))
    with pytest.raises(ValueError, match="combine='sum'"):
        RetrievalHead(2, combine="sum")


def test_classification_head_dropout_sits_between_hidden_and_activation():
    head = ClassificationHead(2, num_classes=1, dropout=0.5).train()
    _set(head.mlp[0], [[1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [-1.0, 0.0]], [0.0, 0.0, 0.0, 0.0])
    _set(head.mlp[-1], [[1.0, 1.0, 1.0, 1.0]])
    torch.manual_seed(0)
    x = torch.tensor([[[1.0, -2.0]]])
    got = head(x, None)
    # replay the same dropout mask by hand: hidden → dropout (×2 where kept) → GELU → sum
    torch.manual_seed(0)
    keep = F.dropout(torch.ones(1, 4), 0.5, training=True)
    hidden = torch.tensor([[1.0, -2.0, -1.0, -1.0]]) * keep
    expected = F.gelu(hidden).sum(-1, keepdim=True)
    torch.testing.assert_close(got, expected)
    assert not torch.allclose(expected, F.gelu(torch.tensor([[1.0, -2.0, -1.0, -1.0]])).mul(keep).sum(-1))


def _xavier_std(fan_in: int, fan_out: int) -> float:
    return math.sqrt(2.0 / (fan_in + fan_out))  # uniform on ±√(6/(in+out)) has this std


@pytest.mark.parametrize("dim, classes", [(160, 10), (128, 2)])
def test_classifier_init_is_xavier_uniform_without_output_bias(dim, classes):
    torch.manual_seed(0)
    head = ClassificationHead(dim, classes)
    hidden, out = head.mlp[0], head.mlp[-1]
    assert out.bias is None and torch.count_nonzero(hidden.bias) == 0
    for layer, fan_in, fan_out in ((hidden, dim, 2 * dim), (out, 2 * dim, classes)):
        bound = math.sqrt(6.0 / (fan_in + fan_out))
        w = layer.weight
        assert w.abs().max() <= bound and w.abs().max() > 0.9 * bound
        assert w.std().item() == pytest.approx(_xavier_std(fan_in, fan_out), rel=0.1)


def test_retrieval_init_official_shapes():
    head = RetrievalHead(128, num_classes=2)
    assert head.mlp[0].weight.shape == (256, 256) and head.mlp[-1].weight.shape == (2, 256)
    assert head.mlp[-1].bias is None
    bound = math.sqrt(6.0 / 512)
    assert head.mlp[0].weight.abs().max() <= bound


def test_pixel_embedding_is_x_w_plus_b_with_official_init_scale():
    torch.manual_seed(0)
    emb = RealNumberEmbedding(4096)
    # official RealNumberEmbedding: weight N(0, 1), bias N(0, 0.1) — not N(0, d^-1/2) and zero
    assert emb.weight.std().item() == pytest.approx(1.0, rel=0.05)
    assert emb.bias.std().item() == pytest.approx(0.1, rel=0.05)
    assert abs(emb.weight.mean().item()) < 0.05 and abs(emb.bias.mean().item()) < 0.005
    small = RealNumberEmbedding(2)
    with torch.no_grad():
        small.weight.copy_(torch.tensor([2.0, -1.0]))
        small.bias.copy_(torch.tensor([0.5, 0.25]))
    x = torch.tensor([[0.0, 1.0, -3.0]])
    expected = torch.tensor([[[0.5, 0.25], [2.5, -0.75], [-5.5, 3.25]]])
    torch.testing.assert_close(small(x), expected)


def test_pixel_encoder_uses_official_embedding():
    torch.manual_seed(0)
    enc = MegaEncoder(input_kind="pixels", dim=512, depth=1, zdim=8, hdim=16, max_len=16)
    assert enc.embed.weight.std().item() == pytest.approx(1.0, rel=0.1)
    assert enc.embed.bias.std().item() == pytest.approx(0.1, rel=0.1)
