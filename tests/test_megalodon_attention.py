"""Megalodon's normalised attention on cases worked by hand, and RoPE inside chunks.

q, k = (γ + 1)·z/‖z‖ + β; softmax(q·kᵀ) without 1/√d (fairseq-apollo ``softmax_attention``);
laplace / relu² over q·kᵀ/√n (``element_attention``), laplace as the official logistic approximation.
"""

from __future__ import annotations

import math

import pytest
import torch

from lra_mega.model.megalodon import RotaryEmbedding, normalize_qk, normalized_attention

# z at two positions: (3, 4) and (0, 2), so z/‖z‖ = (0.6, 0.8) and (0, 1)
Z = torch.tensor([[[3.0, 4.0], [0.0, 2.0]]], dtype=torch.float64)
V = torch.tensor([[[1.0, 0.0], [0.0, 1.0]]], dtype=torch.float64)


def test_q_and_k_come_from_the_normalised_z():
    gamma = torch.tensor([[1.0, 0.0], [0.0, -0.5]], dtype=torch.float64)  # stored minus one
    beta = torch.tensor([[0.0, 0.0], [0.1, 0.0]], dtype=torch.float64)
    q, k = normalize_qk(Z, gamma, beta)
    torch.testing.assert_close(q[0], torch.tensor([[1.2, 0.8], [0.0, 1.0]], dtype=torch.float64))
    torch.testing.assert_close(k[0], torch.tensor([[0.7, 0.4], [0.1, 0.5]], dtype=torch.float64))


@pytest.mark.parametrize("impl, grad", [("auto", False), ("auto", True), ("blockwise", False)],
                         ids=["sdpa", "auto-cpu-training", "blockwise"])
def test_softmax_without_scaling(impl, grad):
    """auto takes SDPA, except on CPU with gradients on (the blockwise path); both without 1/√d."""
    with torch.set_grad_enabled(grad):
        _softmax_case(impl)


def _softmax_case(impl):
    q, k = normalize_qk(Z, torch.zeros(2, 2, dtype=torch.float64), torch.zeros(2, 2, dtype=torch.float64))
    # scores [[1, 0.8], [0.8, 1]]: weights 1/(1 + e^−0.2) = 0.549834 on the own position
    own = 1.0 / (1.0 + math.exp(-0.2))
    want = torch.tensor([[[own, 1 - own], [1 - own, own]]], dtype=torch.float64)
    torch.testing.assert_close(normalized_attention(q, k, V, impl=impl), want)
    # causal: the first position sees itself only
    causal = normalized_attention(q, k, V, causal=True, impl=impl)
    torch.testing.assert_close(causal, torch.tensor([[[1.0, 0.0], [1 - own, own]]], dtype=torch.float64))
    # a padded key gets no weight
    padded = normalized_attention(q, k, V, key_mask=torch.tensor([[True, False]]), impl=impl)
    torch.testing.assert_close(padded[0, 0], torch.tensor([1.0, 0.0], dtype=torch.float64))


def test_laplace_and_relu2_scale_by_one_over_root_n():
    q, k = normalize_qk(Z, torch.zeros(2, 2, dtype=torch.float64), torch.zeros(2, 2, dtype=torch.float64))
    scores = torch.tensor([[1.0, 0.8], [0.8, 1.0]], dtype=torch.float64) / math.sqrt(2)  # n = 2 keys
    logistic = 1.0 / (1.0 + torch.exp(-(scores - 0.707107) * (1.702 / 0.282095)))
    torch.testing.assert_close(normalized_attention(q, k, V, fn="laplace")[0], logistic)
    erf = 0.5 * (1 + torch.erf((scores - math.sqrt(0.5)) / (math.sqrt(1 / (4 * math.pi)) * math.sqrt(2))))
    torch.testing.assert_close(normalized_attention(q, k, V, fn="laplace", laplace_approx=False)[0], erf)
    torch.testing.assert_close(normalized_attention(q, k, V, fn="relu2")[0], scores.square())
    # one real key: n = 1
    one = normalized_attention(q, k, V, fn="relu2", key_mask=torch.tensor([[True, False]]))
    torch.testing.assert_close(one[0, :, 0], torch.tensor([1.0, 0.8**2], dtype=torch.float64))


def test_rope_turns_adjacent_pairs_by_position():
    rope = RotaryEmbedding(4, 16).double()
    x = torch.tensor([[1.0, 0.0, 1.0, 0.0]] * 3, dtype=torch.float64)
    out = rope(x)
    # frequencies 1 and 10000^(−1/2): position p turns the pairs by p and p/100
    want = torch.tensor([[math.cos(p), math.sin(p), math.cos(p / 100), math.sin(p / 100)] for p in range(3)],
                        dtype=torch.float64)
    torch.testing.assert_close(out, want)
    assert rope.freqs.tolist() == pytest.approx([1.0, 0.01])


def test_attention_stays_within_chunks():
    """Each chunk attends to itself alone, its positions numbered from 0 for RoPE (official per-chunk rotary)."""
    torch.manual_seed(0)
    q, k, v = (torch.randn(2, 12, 4, dtype=torch.float64) for _ in range(3))
    mask = torch.ones(2, 12, dtype=torch.bool)
    mask[1, 9:] = False
    rope = RotaryEmbedding(2, 4).double()  # two heads of 2
    out = normalized_attention(q, k, v, heads=2, key_mask=mask, chunk_size=4, rope=rope)
    for c in range(3):
        part = slice(4 * c, 4 * c + 4)
        alone = normalized_attention(q[:, part], k[:, part], v[:, part], heads=2, key_mask=mask[:, part], rope=rope)
        torch.testing.assert_close(out[:, part], alone)
    # per head: head 0 uses columns 0-1 of q, k, v only
    single = normalized_attention(q[:, :4, :2], k[:, :4, :2], v[:, :4, :2], rope=rope)
    torch.testing.assert_close(out[:, :4, :2], single)


def _plain_logistic_laplace(q, k, v, key_mask, causal, chunk):
    """Per chunk: σ(1.702·(q·kᵀ/√n − 0.707107)/0.282095) over the allowed keys, times v."""
    out = torch.zeros(*q.shape[:2], v.size(-1), dtype=q.dtype)
    for start in range(0, q.size(1), chunk):
        rows = slice(start, start + chunk)
        allowed = key_mask[:, None, rows].expand(-1, q[:, rows].size(1), -1)
        if causal:
            allowed = allowed & torch.ones(allowed.shape[1:], dtype=torch.bool).tril()
        n = allowed.sum(-1, keepdim=True).clamp(min=1).to(q.dtype)
        scores = q[:, rows] @ k[:, rows].transpose(1, 2) / n.sqrt()
        weights = torch.sigmoid((scores - 0.707107) * (1.702 / 0.282095)) * allowed
        out[:, rows] = weights @ v[:, rows]
    return out


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("chunk", [12, 4])
def test_logistic_laplace_runs_memory_lean_with_the_plain_formula_and_gradients(causal, chunk, monkeypatch):
    """The official logistic laplace goes through the blockwise kernel (query blocks recomputed in
    the backward): outputs and gradients equal the plain formula, padded keys masked."""
    from lra_mega.model.kernels import blockwise

    monkeypatch.setattr(blockwise, "BLOCK_ELEMENTS", 1)  # several query blocks per chunk
    monkeypatch.setattr(blockwise, "MIN_BLOCK", 3)
    torch.manual_seed(3)
    q, k = torch.randn(2, 12, 6, dtype=torch.float64), torch.randn(2, 12, 6, dtype=torch.float64)
    v = torch.randn(2, 12, 5, dtype=torch.float64)
    key_mask = torch.ones(2, 12, dtype=torch.bool)
    key_mask[1, 9:] = False
    weight = torch.linspace(-1, 1, 5, dtype=torch.float64)

    def grads(fn):
        inputs = [t.clone().requires_grad_(True) for t in (q, k, v)]
        out = fn(*inputs)
        (out[key_mask] * weight).sum().backward()
        return [out[key_mask]] + [t.grad for t in inputs]

    lean = grads(lambda *t: normalized_attention(*t, fn="laplace", key_mask=key_mask, causal=causal, chunk_size=chunk))
    plain = grads(lambda *t: _plain_logistic_laplace(*t, key_mask, causal, chunk))
    for got, want in zip(lean, plain):
        torch.testing.assert_close(got, want)


def test_logistic_laplace_keeps_no_score_matrix_per_example(saved_per_example):
    length = 256

    def saved(impl):
        return saved_per_example(lambda q, k, v: normalized_attention(q, k, v, fn="laplace", impl=impl), length)

    assert saved("reference") >= length * length * 4  # the plain formula keeps (c, c)
    assert saved("auto") <= length * (16 + 16 + 40 + 1) * 4  # q, k, v and n only


def test_logistic_laplace_refuses_the_erf_only_triton_kernel():
    q = torch.randn(1, 8, 4)
    with pytest.raises(ValueError, match="laplace_approx=false"):
        normalized_attention(q, q, q, fn="laplace", impl="triton")


def test_on_a_gpu_auto_takes_blockwise_for_the_logistic_laplace_and_triton_for_erf(monkeypatch):
    from lra_mega.model import attention

    monkeypatch.setattr(attention, "_on_gpu", lambda q: True)  # rehearse a GPU with Triton
    monkeypatch.setattr(attention, "HAS_TRITON", True)
    q = torch.randn(1, 8, 4)
    assert attention._pick_impl("auto", "laplace_approx", q, 0.0) == "blockwise"
    assert attention._pick_impl("auto", "laplace", q, 0.0) == "triton"
