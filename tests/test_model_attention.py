"""Attention against a brute-force loop, the laplace constants, and chunking."""

import math

import pytest
import torch

from lra_mega.model import MovingAverageGatedAttention, attend, laplace
from lra_mega.model.kernels import blockwise as blockwise_module
from lra_mega.model.position import RotaryRelativePositionalBias, SimpleRelativePositionalBias


def brute_force(q, k, v, fn, bias_of_offset, key_mask, causal, chunk):
    """Loop over every (batch, query, key); chunk ≤ 0 means one chunk."""
    bsz, length, _ = q.shape
    zdim = q.size(-1)
    out = torch.zeros(bsz, length, v.size(-1), dtype=torch.float64)
    c = length if chunk <= 0 else chunk
    for b in range(bsz):
        for i in range(length):
            start = (i // c) * c
            keys = [
                j
                for j in range(start, min(start + c, length))
                if (key_mask is None or key_mask[b, j]) and (not causal or j <= i)
            ]
            if not keys:
                continue
            dots = [float(q[b, i] @ k[b, j]) for j in keys]
            offsets = [bias_of_offset(j - i) for j in keys]
            if fn == "softmax":
                s = [d / math.sqrt(zdim) + o for d, o in zip(dots, offsets)]
                m = max(s)
                e = [math.exp(x - m) for x in s]
                w = [x / sum(e) for x in e]
            else:
                n = len(keys)
                a = [d / n + o for d, o in zip(dots, offsets)]
                if fn == "laplace":
                    mu, sigma = 0.707107, 0.282095
                    w = [0.5 * (1 + math.erf((x - mu) / (sigma * math.sqrt(2)))) for x in a]
                else:
                    w = [max(x, 0.0) ** 2 for x in a]
            for wj, j in zip(w, keys):
                out[b, i] += wj * v[b, j].double()
    return out


@pytest.mark.parametrize("fn", ["softmax", "laplace", "relu2"])
@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("chunk", [-1, 4])
@pytest.mark.parametrize("impl", ["auto", "reference", "blockwise"])
def test_attention_equals_brute_force(fn, causal, chunk, impl):
    torch.manual_seed(1)
    bsz, length, zdim, hdim = 2, 10, 6, 5
    q, k = torch.randn(bsz, length, zdim), torch.randn(bsz, length, zdim)
    v = torch.randn(bsz, length, hdim)
    key_mask = torch.ones(bsz, length, dtype=torch.bool)
    key_mask[1, 7:] = False
    max_len = 16
    bias = SimpleRelativePositionalBias(max_len)
    with torch.no_grad():
        bias.weight.copy_(torch.randn(2 * max_len - 1) * 0.5)
    w = bias.weight.detach()
    got = attend(q, k, v, fn=fn, bias=bias, key_mask=key_mask, causal=causal, chunk_size=chunk, impl=impl)
    want = brute_force(q, k, v, fn, lambda off: float(w[max_len - 1 + off]), key_mask, causal, chunk)
    valid = key_mask  # padded query rows carry no meaning
    assert torch.allclose(got.double()[valid], want[valid], atol=1e-5)


def test_laplace_matches_erf_formula_at_paper_constants():
    xs = torch.linspace(-2, 3, 41)
    mu, sigma = math.sqrt(0.5), math.sqrt(1 / (4 * math.pi))
    assert mu == pytest.approx(0.707107, abs=1e-6) and sigma == pytest.approx(0.282095, abs=1e-6)
    want = torch.tensor([0.5 * (1 + math.erf((x - 0.707107) / (0.282095 * math.sqrt(2)))) for x in xs])
    assert torch.allclose(laplace(xs), want.float(), atol=1e-5)
    assert laplace(torch.tensor(0.707107)).item() == pytest.approx(0.5, abs=1e-5)


def test_rotary_bias_is_rotation_of_learned_vectors():
    torch.manual_seed(0)
    zdim, length = 8, 7
    rot = RotaryRelativePositionalBias(zdim, max_len=16)
    a, b = rot.alpha.detach()[0].double(), rot.beta.detach()[0].double()
    half = zdim // 2
    freq = [math.exp(-m * math.log(10000.0) / half) for m in range(half)]

    def rotate(vec, pos):
        out = vec.clone()
        for m in range(half):
            c, s = math.cos(pos * freq[m]), math.sin(pos * freq[m])
            out[m] = vec[m] * c - vec[m + half] * s
            out[m + half] = vec[m + half] * c + vec[m] * s
        return out

    rows = [[float(rotate(a, i) @ rotate(b, j)) for j in range(length)] for i in range(length)]
    want = torch.tensor(rows, dtype=torch.float64)
    assert torch.allclose(rot(length).double(), want, atol=1e-6)


def _layer(attention, chunk, max_len, **kw):
    torch.manual_seed(3)
    return MovingAverageGatedAttention(
        16, zdim=8, hdim=24, ndim=4, attention=attention, chunk_size=chunk, max_len=max_len, **kw
    ).eval()


@pytest.mark.parametrize("attention", ["softmax", "laplace", "relu2"])
def test_chunk_at_least_length_equals_full_attention(attention):
    x = torch.randn(2, 40, 16)
    mask = torch.ones(2, 40, dtype=torch.bool)
    mask[0, 33:] = False
    full = _layer(attention, -1, 64)
    for chunk in (40, 64):
        chunked = _layer(attention, chunk, 64)
        state = full.state_dict()
        # the bias table of a chunked layer spans offsets of one chunk: take the centre of the full one
        w = state["rel_pos_bias.weight"]
        state["rel_pos_bias.weight"] = w[64 - chunk : 64 + chunk - 1]
        chunked.load_state_dict(state)
        assert torch.allclose(chunked(x, mask)[mask], full(x, mask)[mask], atol=1e-6)


def test_chunks_do_not_see_each_other():
    layer = _layer("softmax", 8, 64)
    x = torch.randn(1, 32, 16)
    y = x.clone()
    y[:, 24:] += 5.0  # change only the last chunk
    with torch.no_grad():
        layer.ema.gamma.zero_()  # EMA crosses chunks by design; silence it to isolate attention
        layer.ema.omega.zero_()
    diff = (layer(x) - layer(y)).abs().sum(-1)[0]
    assert diff[:24].max() < 1e-6 and diff[24:].min() > 1e-4


@pytest.mark.parametrize("fn", ["laplace", "relu2"])
@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("chunk", [-1, 6])
def test_blockwise_path_matches_brute_force_and_reference_gradients(fn, causal, chunk, monkeypatch):
    torch.manual_seed(2)
    bsz, length, zdim, hdim = 2, 13, 6, 5
    q, k = torch.randn(bsz, length, zdim), torch.randn(bsz, length, zdim)
    v = torch.randn(bsz, length, hdim)
    key_mask = torch.ones(bsz, length, dtype=torch.bool)
    key_mask[0, 10:] = False
    bias = SimpleRelativePositionalBias(16)
    w = bias.weight.detach()

    def run(impl):
        monkeypatch.setattr(blockwise_module, "BLOCK_ELEMENTS", 1)  # blocks of MIN_BLOCK rows
        monkeypatch.setattr(blockwise_module, "MIN_BLOCK", 2)
        inputs = [t.clone().requires_grad_(True) for t in (q, k, v)]
        bias.zero_grad()
        out = attend(*inputs, fn=fn, bias=bias, key_mask=key_mask, causal=causal, chunk_size=chunk,
                     impl=impl)
        (out[key_mask] * torch.linspace(-1, 1, hdim)).sum().backward()
        return out, [t.grad for t in inputs] + [bias.weight.grad.clone()]

    lean_out, lean_grads = run("blockwise")
    want = brute_force(q, k, v, fn, lambda off: float(w[16 - 1 + off]), key_mask, causal, chunk)
    assert torch.allclose(lean_out.detach().double()[key_mask], want[key_mask], atol=1e-5)
    _, ref_grads = run("reference")
    for lean, ref in zip(lean_grads, ref_grads):
        assert torch.allclose(lean, ref, atol=1e-5)


@pytest.mark.parametrize("causal", [False, True])
def test_softmax_blockwise_gradients_equal_sdpa(causal, monkeypatch):
    monkeypatch.setattr(blockwise_module, "BLOCK_ELEMENTS", 1)
    monkeypatch.setattr(blockwise_module, "MIN_BLOCK", 3)  # several query blocks
    torch.manual_seed(4)
    q, k, v = torch.randn(2, 11, 6), torch.randn(2, 11, 6), torch.randn(2, 11, 9)
    key_mask = torch.ones(2, 11, dtype=torch.bool)
    key_mask[0, 8:] = False
    bias = SimpleRelativePositionalBias(11)

    def run(impl):
        inputs = [t.clone().requires_grad_(True) for t in (q, k, v)]
        bias.zero_grad()
        out = attend(*inputs, fn="softmax", bias=bias, key_mask=key_mask, causal=causal, impl=impl)
        (out[key_mask] * torch.linspace(-1, 1, 9)).sum().backward()
        return [out[key_mask]] + [t.grad for t in inputs] + [bias.weight.grad.clone()]

    for lean, ref in zip(run("blockwise"), run("reference")):
        assert torch.allclose(lean, ref, atol=1e-5)


@pytest.mark.parametrize("fn", ["softmax", "laplace"])
def test_lean_paths_keep_no_score_matrix_per_example(fn, saved_per_example):
    length = 256
    score_matrix = length * length * 4

    def saved(impl):
        bias = SimpleRelativePositionalBias(length)
        return saved_per_example(lambda q, k, v: attend(q, k, v, fn=fn, bias=bias, impl=impl), length)

    assert saved("reference") >= score_matrix  # the plain paths keep (c, c)
    assert saved("auto") <= length * (16 + 16 + 40 + 1) * 4  # q, k, v and n only


def test_sdpa_gets_equal_widths():
    """The SDPA path pads q, k (or v) to one width: SDPA's fused CPU kernel runs (no grad on the bias)."""
    torch.manual_seed(0)
    q, k, v = (torch.randn(1, 64, d, requires_grad=True) for d in (16, 16, 40))
    bias = SimpleRelativePositionalBias(64).requires_grad_(False)
    out = attend(q, k, v, fn="softmax", bias=bias, impl="reference")
    names = []
    node = out.grad_fn
    while node is not None and len(names) < 20:
        names.append(type(node).__name__)
        node = node.next_functions[0][0] if node.next_functions else None
    assert any("FlashAttention" in n for n in names), names


def test_impl_errors_name_the_fix():
    bias = SimpleRelativePositionalBias(8)
    q = torch.randn(1, 8, 4)
    with pytest.raises(ValueError, match="attention dropout"):
        attend(q, q, q, fn="laplace", bias=bias, impl="blockwise", dropout_p=0.1)
    with pytest.raises(ValueError, match="impl='nope'"):
        attend(q, q, q, fn="laplace", bias=bias, impl="nope")
