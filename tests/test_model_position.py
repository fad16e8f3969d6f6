"""Relative position biases: rotary in float64 throughout in a float64 model (float32 unchanged);
dynamic by offset only, any length, causal prefixes unchanged, every attention path."""

from __future__ import annotations

import math

import pytest
import torch

from lra_mega.model import Mega, MegaEncoder, MegaLayer, attend
from lra_mega.model.position import DynamicRelativePositionalBias, RotaryRelativePositionalBias, sinusoids

ZDIM, LENGTH = 16, 100


def _hand_rotate(vec: list[float], pos: int) -> list[float]:
    """``vec`` rotated by position ``pos``, in Python floats (float64) with math.sin/cos."""
    half = len(vec) // 2
    out = list(vec)
    for m in range(half):
        angle = pos * math.exp(-m * math.log(10000.0) / half)
        c, s = math.cos(angle), math.sin(angle)
        out[m] = vec[m] * c - vec[m + half] * s
        out[m + half] = vec[m + half] * c + vec[m] * s
    return out


def _float64_rotary() -> RotaryRelativePositionalBias:
    torch.manual_seed(0)
    rot = RotaryRelativePositionalBias(ZDIM, max_len=128).double()
    with torch.no_grad():  # unit-scale vectors, so a float32 rounding shows far above 1e-12
        rot.alpha.copy_(torch.randn(1, ZDIM, dtype=torch.float64))
        rot.beta.copy_(torch.randn(1, ZDIM, dtype=torch.float64))
    return rot


def test_float64_rotary_bias_matches_a_float64_hand_computation():
    rot = _float64_rotary()
    a, b = rot.alpha[0].tolist(), rot.beta[0].tolist()
    rows = [[sum(x * y for x, y in zip(_hand_rotate(a, i), _hand_rotate(b, j))) for j in range(LENGTH)]
            for i in range(LENGTH)]
    want = torch.tensor(rows, dtype=torch.float64)
    got = rot(LENGTH)
    assert got.dtype == torch.float64
    assert (got.detach() - want).abs().max().item() < 1e-12


def test_float64_rotation_matches_a_float64_hand_computation():
    rot = _float64_rotary()
    x = torch.randn(LENGTH, ZDIM, dtype=torch.float64)
    want = torch.tensor([_hand_rotate(x[p].tolist(), p) for p in range(LENGTH)], dtype=torch.float64)
    got = rot._rotate(x)
    assert got.dtype == torch.float64
    assert (got - want).abs().max().item() < 1e-12


def test_float32_sinusoids_are_the_official_float32_ones():
    """A float32 model keeps the reference implementation's float32 table bit for bit."""
    half = ZDIM // 2
    freq = torch.exp(torch.arange(half, dtype=torch.float32) * -(math.log(10000.0) / half))
    angle = torch.arange(LENGTH, dtype=torch.float32).unsqueeze(1) * freq.unsqueeze(0)
    sin, cos = sinusoids(LENGTH, ZDIM)
    assert sin.dtype == torch.float32
    assert torch.equal(sin, torch.sin(angle)) and torch.equal(cos, torch.cos(angle))
    rot = RotaryRelativePositionalBias(ZDIM, max_len=128)
    assert rot(LENGTH).dtype == torch.float32


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_narrow_dtypes_round_the_float32_table(dtype):
    sin, cos = sinusoids(LENGTH, ZDIM, dtype)
    sin32, cos32 = sinusoids(LENGTH, ZDIM)
    assert sin.dtype == dtype
    assert torch.equal(sin, sin32.to(dtype)) and torch.equal(cos, cos32.to(dtype))


# --- dynamic bias: an MLP over the offset, no max_len ---------------------------------------


def _trained_looking_dynamic(seed: int = 0, **kw) -> DynamicRelativePositionalBias:
    """A dynamic bias with an output layer of unit scale, so offsets give clearly different biases."""
    torch.manual_seed(seed)
    dyn = DynamicRelativePositionalBias(**kw).double()
    with torch.no_grad():
        dyn.net[-1].weight.normal_()
    return dyn


@pytest.mark.parametrize("log_distance", [True, False])
def test_dynamic_bias_depends_only_on_the_offset(log_distance):
    dyn = _trained_looking_dynamic(log_distance=log_distance)
    length = 40
    matrix = dyn(length)
    by_offset = {}
    for i in range(length):
        for j in range(length):
            by_offset.setdefault(j - i, set()).add(matrix[i, j].item())
    assert all(len(values) == 1 for values in by_offset.values())
    # and it is the MLP applied to that one offset, whatever the length asked for
    for d in (-39, -7, 0, 5, 39):
        x = torch.tensor([[float(d)]], dtype=torch.float64)
        if log_distance:
            x = torch.sign(x) * torch.log1p(x.abs())
        assert matrix[0 if d >= 0 else -d, d if d >= 0 else 0].item() == pytest.approx(dyn.net(x).item(), abs=1e-12)
    long = dyn.vector(256)
    assert torch.allclose(long[256 - length : 256 + length - 1], dyn.vector(length), atol=1e-12, rtol=0)
    assert len(set(dyn.vector(length).tolist())) == 2 * length - 1  # offsets are told apart


def test_dynamic_bias_has_no_length_limit_and_no_length_parameter():
    dyn = DynamicRelativePositionalBias()
    assert dyn.vector(8192).shape == (2 * 8192 - 1,)
    layer = MegaLayer(16, ema_heads=4, attn_dim_qk=8, attn_dim_value=24, max_len=64, rel_pos="dynamic")
    other = MegaLayer(16, ema_heads=4, attn_dim_qk=8, attn_dim_value=24, max_len=512, rel_pos="dynamic")
    shapes = {k: v.shape for k, v in layer.state_dict().items() if "rel_pos" in k}
    assert shapes == {k: v.shape for k, v in other.state_dict().items() if "rel_pos" in k}
    assert all(p._no_weight_decay for p in dyn.parameters())


def _causal_mega(rel_pos: str, **kw) -> Mega:
    torch.manual_seed(0)
    return Mega(num_tokens=20, dim=16, depth=2, ema_heads=4, attn_dim_qk=8, attn_dim_value=24,
                causal=True, max_len=64, rel_pos=rel_pos, **kw).eval()


def test_a_model_built_for_64_runs_on_256_with_the_dynamic_bias_only():
    tokens = torch.randint(1, 20, (2, 256))
    assert _causal_mega("dynamic")(tokens).shape == (2, 256, 20)
    with pytest.raises(ValueError, match="exceeds max_len=64"):
        _causal_mega("simple")(tokens)
    encoder = MegaEncoder(vocab_size=20, dim=16, depth=1, zdim=8, hdim=24, ndim=4, max_len=64, rel_pos="dynamic")
    assert encoder(tokens).shape == (2, 256, 16)


@pytest.mark.parametrize("attention, chunk", [("softmax", -1), ("laplace", -1), ("relu2", -1),
                                              ("softmax", 48), ("laplace", 32)])
def test_causal_dynamic_model_prefix_outputs_do_not_see_the_rest(attention, chunk):
    """Outputs on the first 64 positions of a 256-token input = outputs on those 64 tokens alone."""
    model = _causal_mega("dynamic", attention=attention, chunk_size=chunk)
    with torch.no_grad():  # unit-scale bias outputs, so a leak from the future would show
        for layer in model.encoder.layers:
            layer.attention.rel_pos_bias.net[-1].weight.normal_()
    tokens = torch.randint(1, 20, (2, 256))
    with torch.no_grad():
        full, prefix = model(tokens)[:, :64], model(tokens[:, :64])
    assert torch.allclose(full, prefix, atol=1e-5, rtol=1e-5)


def test_causal_dynamic_step_matches_forward():
    model = _causal_mega("dynamic")
    tokens = torch.randint(1, 20, (1, 24))
    with torch.no_grad():
        full = model(tokens)
        states, steps = None, []
        for t in range(tokens.size(1)):
            logits, states = model.step(tokens[:, t], states)
            steps.append(logits)
    assert torch.allclose(torch.stack(steps, 1), full, atol=1e-5)


@pytest.mark.parametrize("fn", ["laplace", "softmax"])
@pytest.mark.parametrize("causal", [False, True])
def test_dynamic_bias_gradients_reach_the_mlp_through_every_path(fn, causal):
    """The (2c − 1) vector feeds every attention path; its MLP gets the same gradient from each
    (softmax: SDPA and blockwise; laplace: reference and blockwise; Triton: test_kernels_triton)."""
    dyn = _trained_looking_dynamic().float()
    gen = torch.Generator().manual_seed(1)
    q, k, v = (torch.randn(2, 40, d, generator=gen) for d in (8, 8, 12))
    grads = {}
    for path in ("reference", "blockwise"):
        dyn.zero_grad()
        attend(q, k, v, fn=fn, bias=dyn, causal=causal, chunk_size=16, impl=path).square().sum().backward()
        grads[path] = [p.grad.clone() for p in dyn.parameters()]
    assert all(g.abs().max() > 0 for g in grads["reference"])
    for a, b in zip(grads["reference"], grads["blockwise"]):
        assert torch.allclose(a, b, atol=1e-4, rtol=1e-4)


def test_config_rel_pos_dynamic_builds_the_dynamic_bias():
    from harness import compose_config
    from hydra.utils import instantiate

    cfg = compose_config(["task=listops", "model.rel_pos=dynamic", "model.depth=1"])
    encoder = instantiate(cfg.model, vocab_size=20, input_kind="tokens", max_len=64)  # as train.py does
    assert isinstance(encoder.layers[0].attention.rel_pos_bias, DynamicRelativePositionalBias)
    assert encoder(torch.randint(1, 20, (1, 300))).shape[:2] == (1, 300)
