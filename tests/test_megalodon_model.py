"""The Megalodon encoder, block and LM: padding, causality, official parameter names, the block's
equations written out, incremental decoding, and the rule for Mega's config keys."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from lra_mega.model.megalodon import MegalodonBlock, MegalodonEncoder, MegalodonLM

V, D, Z, H, N, FFN = 13, 8, 4, 12, 3, 10
SMALL = dict(dim=D, depth=2, zdim=Z, hdim=H, ndim=N, ffn_dim=FFN, max_len=32)


def _encoder(**kwargs) -> MegalodonEncoder:
    torch.manual_seed(0)
    enc = MegalodonEncoder(**{"vocab_size": V, **SMALL, **kwargs}).double().eval()
    with torch.no_grad():  # away from the zero-initialised scales, so every parameter matters
        for p in enc.parameters():
            p.add_(torch.randn_like(p) * 0.2)
    return enc


CASES = {
    "softmax-rotary-chunk": dict(chunk_size=8),
    "laplace-simple-groups": dict(attention="laplace", rel_pos="simple", norm_num_groups=2),
    "relu2-silu-ffn-residual": dict(attention="relu2", moving_act="silu", ffn_residual="ffn", chunk_size=5),
    "causal-heads": dict(bidirectional=False, norm_num_groups=4, num_heads=2, chunk_size=8),
    "pixels-erf-laplace": dict(input_kind="pixels", attention="laplace", laplace_approx=False, truncation=6),
}


@pytest.mark.parametrize("case", CASES)
def test_padded_positions_change_no_real_output(case):
    kwargs = CASES[case]
    enc = _encoder(**kwargs)
    pixels = kwargs.get("input_kind") == "pixels"
    torch.manual_seed(1)
    n, total = 14, 23
    x = torch.rand(2, total, dtype=torch.float64) if pixels else torch.randint(1, V, (2, total))
    mask = torch.ones(2, total, dtype=torch.bool)
    mask[0, n:] = False  # example 0: 14 real positions, then padding holding arbitrary values
    alone = enc(x[:1, :n])  # the same example, unpadded, no mask
    padded = enc(x, mask)
    torch.testing.assert_close(padded[0, :n], alone[0], rtol=1e-9, atol=1e-9)
    assert torch.all(padded[0, n:] == 0)
    other = x.clone()
    other[0, n:] = torch.rand(total - n, dtype=torch.float64) if pixels else torch.randint(1, V, (total - n,))
    torch.testing.assert_close(enc(other, mask), padded, rtol=0, atol=0)


def test_causal_encoder_does_not_see_the_future():
    enc = _encoder(bidirectional=False, norm_num_groups=2, chunk_size=4)
    x = torch.randint(1, V, (1, 12))
    later = x.clone()
    later[0, 7:] = torch.randint(1, V, (5,))
    # FFT round-off only (a leak from the future would be of order 1)
    torch.testing.assert_close(enc(later)[0, :7], enc(x)[0, :7], rtol=0, atol=1e-12)


def test_block_follows_the_official_equations():
    """fairseq-apollo ``MovingAverageGatedAttention.forward`` + ``NormalizedFeedForwardNetwork``, written out."""
    torch.manual_seed(2)
    block = MegalodonBlock(D, FFN, zdim=Z, hdim=H, ndim=N, max_len=16).double().eval()
    with torch.no_grad():
        for p in block.parameters():
            p.add_(torch.randn_like(p) * 0.3)
    x = torch.randn(2, 7, D, dtype=torch.float64)
    a, f = block.mega_layer, block.nffn
    xn = a.norm(x)
    v = F.silu(xn @ a.v_proj.weight.T + a.v_proj.bias)
    ema = a.move(xn)
    mx = ema / torch.sqrt(ema.square().mean(-1, keepdim=True) + 1e-5) * (1 + a.move_act.weight)
    base = mx @ a.mx_proj.weight.T + a.mx_proj.bias
    z, r, hx = base[..., :Z], base[..., Z : Z + H], base[..., Z + H :]
    z = z / z.norm(dim=-1, keepdim=True)
    q, k = z * (1 + a.gamma[0]) + a.beta[0], z * (1 + a.gamma[1]) + a.beta[1]
    angle = torch.arange(7, dtype=torch.float64)[:, None] * (10000.0 ** (-torch.arange(0, Z, 2) / Z))[None]

    def rope(t):  # pairs (0, 1), (2, 3) turned by position · frequency
        even, odd = t[..., 0::2], t[..., 1::2]
        return torch.stack([even * angle.cos() - odd * angle.sin(), even * angle.sin() + odd * angle.cos()], -1).flatten(-2)

    weights = torch.softmax(rope(q) @ rope(k).transpose(-1, -2), dim=-1)  # no 1/√z
    y = x + hx + (weights @ v * F.silu(r)) @ a.h_proj.weight.T
    ln = F.layer_norm(y, (D,), 1 + f.norm.weight, f.norm.bias)
    out = x + F.silu(ln @ f.fc1.weight.T + f.fc1.bias) @ f.fc2.weight.T  # two-hop: residual x
    torch.testing.assert_close(block(x), out, rtol=1e-10, atol=1e-10)


def _official_encoder_names(depth: int = 1) -> dict[str, tuple[int, ...]]:
    """Names and shapes of fairseq-apollo ``MegaLRAEncoder`` (residual branch) with moving_layer='cema',
    moving_act='rmsnorm', rel_pos_bias='rotary', norm_type='layernorm', read off its module definitions."""
    names = {"embed_tokens.weight": (V, D), "final_norm.weight": (D,), "final_norm.bias": (D,),
             "final_proj.weight": (D, D), "final_proj.bias": (D,)}
    for i in range(depth):
        m, f = f"layers.{i}.mega_layer.", f"layers.{i}.nffn."
        names.update({
            m + "norm.weight": (D,), m + "norm.bias": (D,),
            m + "move.alpha": (2 * D, N, 1), m + "move.delta": (2 * D, N, 1), m + "move.theta": (2 * D, 1, 1),
            m + "move.gamma": (2 * D, N, 2), m + "move.omega": (D, 1), m + "move_act.weight": (D,),
            m + "v_proj.weight": (H, D), m + "v_proj.bias": (H,),
            m + "mx_proj.weight": (Z + H + D, D), m + "mx_proj.bias": (Z + H + D,), m + "h_proj.weight": (D, H),
            m + "gamma": (2, Z), m + "beta": (2, Z), m + "rel_pos_bias.freqs": (Z // 2,),
            f + "norm.weight": (D,), f + "norm.bias": (D,), f + "fc1.weight": (FFN, D), f + "fc1.bias": (FFN,),
            f + "fc2.weight": (D, FFN),
        })
    return names


def test_an_official_encoder_state_dict_loads_by_name():
    shapes = _official_encoder_names(depth=2)
    torch.manual_seed(3)
    # an LRA checkpoint holds them under encoder.encoder. (LRAModel → LRAEncoder → MegaLRAEncoder)
    checkpoint = {f"encoder.encoder.{k}": torch.randn(s) for k, s in shapes.items()}
    checkpoint["sentence_projection_layer.weight"] = torch.randn(2, D)
    state = {k[len("encoder.encoder."):]: v for k, v in checkpoint.items() if k.startswith("encoder.encoder.")}
    enc = MegalodonEncoder(vocab_size=V, **SMALL)
    assert {k: tuple(v.shape) for k, v in enc.state_dict().items()} == shapes
    enc.load_state_dict(state, strict=True)
    assert torch.equal(enc.layers[1].mega_layer.move.theta, state["layers.1.mega_layer.move.theta"])


def test_an_official_lm_state_dict_loads_by_name():
    """Names of XuezheMax/megalodon ``Mega`` (one model-parallel rank, num_heads=1, no swiglu)."""
    groups = 2
    shapes = {"embed.weight": (V, D), "rope.freqs": (Z // 2,), "output.output.weight": (V, D)}
    for prefix in ("output.final_norm.", "layers.0.mega.timenorm."):
        shapes.update({prefix + "prior_count": (), prefix + "prior_mean": (groups,), prefix + "prior_logv": (groups,),
                       prefix + "weight": (D,), prefix + "bias": (D,)})
    m, f = "layers.0.mega.", "layers.0.nffn."
    shapes.update({
        m + "cema.alpha": (D, N, 1), m + "cema.delta": (D, N, 1), m + "cema.theta": (D, 1, 1),
        m + "cema.gamma": (D, N, 2), m + "cema.omega": (D, 1), m + "rmsnorm.weight": (D,),
        m + "wv.weight": (H, D), m + "wv.bias": (H,), m + "wz.weight": (Z, D), m + "wz.bias": (Z,),
        m + "wr.weight": (H, D), m + "wr.bias": (H,), m + "wh1.weight": (D, D), m + "wh1.bias": (D,),
        m + "wh2.weight": (D, H), m + "gamma": (2, Z), m + "beta": (2, Z),
        f + "norm.weight": (D,), f + "norm.bias": (D,), f + "fc1.weight": (FFN, D), f + "fc2.weight": (D, FFN),
    })
    lm = MegalodonLM(V, D, 1, zdim=Z, hdim=H, ndim=N, ffn_dim=FFN, chunk_size=4, norm_num_groups=groups)
    assert {k: tuple(v.shape) for k, v in lm.state_dict().items()} == shapes
    torch.manual_seed(4)
    lm.load_state_dict({k: torch.randn(s) if s else torch.tensor(0) for k, s in shapes.items()}, strict=True)


def test_lm_decodes_step_by_step_as_it_reads_whole_sequences():
    torch.manual_seed(5)
    lm = MegalodonLM(V, D, 2, zdim=Z, hdim=H, ndim=N, num_heads=2, ffn_dim=FFN, chunk_size=4,
                     norm_num_groups=2).double().eval()
    with torch.no_grad():
        for p in lm.parameters():
            p.add_(torch.randn_like(p) * 0.2)
    tokens = torch.randint(0, V, (2, 11))  # three chunks, the last one partial
    states, logits = None, []
    for t in range(tokens.size(1)):
        out, states = lm.step(tokens[:, t], states)
        logits.append(out)
    whole = lm(tokens)
    torch.testing.assert_close(torch.stack(logits, 1), whole, rtol=1e-9, atol=1e-9)
    # right padding changes no real logit
    mask = torch.ones(2, 11, dtype=torch.bool)
    mask[1, 6:] = False
    torch.testing.assert_close(lm(tokens, mask)[1, :6], lm(tokens[1:, :6])[0], rtol=1e-9, atol=1e-9)


def test_mega_config_keys_follow_the_documented_rule():
    with pytest.warns(UserWarning, match="model.norm=batchnorm is a Mega norm.*layernorm"):
        enc = MegalodonEncoder(vocab_size=V, norm="batchnorm", **SMALL)
    assert type(enc.layers[0].nffn.norm).__name__ == "LayerNorm"
    assert type(MegalodonEncoder(vocab_size=V, norm="rmsnorm", **SMALL).layers[0].nffn.norm).__name__ == "RMSNorm"
    with pytest.warns(UserWarning, match="prenorm=false .* ignores it"):
        MegalodonEncoder(vocab_size=V, prenorm=False, **SMALL)
    with pytest.raises(ValueError, match="rel_pos='dynamic' is not valid; choose one of: rotary, simple"):
        MegalodonEncoder(vocab_size=V, rel_pos="dynamic", **SMALL)
    with pytest.raises(ValueError, match="norm='groupnorm' is not valid"):
        MegalodonEncoder(vocab_size=V, norm="groupnorm", **SMALL)
    with pytest.raises(ValueError, match="model.norm_num_groups"):
        MegalodonEncoder(vocab_size=V, bidirectional=False, **SMALL)


@pytest.mark.parametrize("objective", ["masked", "causal"])
def test_self_pretraining_takes_the_megalodon_encoder(objective):
    from lra_mega.training.pretrain import SelfPretrainer

    causal = objective == "causal"
    enc = MegalodonEncoder(vocab_size=V, bidirectional=not causal, norm_num_groups=2 if causal else None, **SMALL)
    model = SelfPretrainer(encoder=enc, objective=objective, mask_prob=0.25)
    x = torch.randint(1, V, (2, 9))
    prediction, target, where = model.predict(x, torch.ones(2, 9, dtype=torch.bool))
    assert prediction.shape == (2, 9, V) and where.any()
    assert math.isfinite(F.cross_entropy(prediction[where], target[where]).item())
