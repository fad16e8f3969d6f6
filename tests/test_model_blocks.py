"""Whole-model properties: padding invariance, causality, step path, bf16, every variant trains."""

import pytest
import torch
import torch.nn.functional as F

from lra_mega.model import (
    ClassificationHead,
    Mega,
    MegaEncoder,
    MegaLayer,
    RetrievalHead,
    build,
    output_size,
    pool,
)

VARIANTS = [
    dict(attention="softmax", norm="layernorm", prenorm=False),
    dict(attention="laplace", norm="batchnorm", prenorm=True),
    dict(attention="relu2", norm="scalenorm", prenorm=True),
    dict(attention="softmax", norm="rmsnorm", prenorm=True, chunk_size=8),
    dict(attention="laplace", norm="layernorm", prenorm=True, chunk_size=8, rel_pos="rotary"),
]


def _encoder(**kw):
    torch.manual_seed(0)
    base = dict(vocab_size=20, dim=16, depth=2, zdim=8, hdim=24, ndim=4, max_len=64)
    return MegaEncoder(**{**base, **kw}).eval()


@pytest.mark.parametrize("variant", VARIANTS)
def test_appending_padding_changes_nothing(variant):
    enc = _encoder(**variant)
    head = ClassificationHead(16, 3).eval()
    tokens = torch.randint(1, 20, (2, 21))
    mask = torch.ones(2, 21, dtype=torch.bool)
    mask[1, 15:] = False
    tokens[1, 15:] = 0
    padded = F.pad(tokens, (0, 11))
    padded_mask = F.pad(mask, (0, 11), value=False)
    with torch.no_grad():
        a, b = enc(tokens, mask), enc(padded, padded_mask)
        assert torch.allclose(a[mask], b[:, :21][mask], atol=1e-5)
        assert torch.allclose(head(a, mask), head(b, padded_mask), atol=1e-5)


@pytest.mark.parametrize("attention", ["softmax", "laplace", "relu2"])
@pytest.mark.parametrize("chunk", [-1, 4])
def test_causal_outputs_ignore_the_future(attention, chunk):
    torch.manual_seed(0)
    lm = Mega(num_tokens=30, dim=16, depth=2, attn_dim_qk=8, attn_dim_value=24, ema_heads=4,
              causal=True, attention=attention, chunk_size=chunk, max_len=64).eval()
    x = torch.randint(1, 30, (2, 13))
    y = x.clone()
    y[:, 7:] = torch.randint(1, 30, (2, 6))
    with torch.no_grad():
        a, b = lm(x), lm(y)
    assert torch.allclose(a[:, :7], b[:, :7], atol=1e-5)
    assert not torch.allclose(a[:, 7:], b[:, 7:], atol=1e-3)


@pytest.mark.parametrize("attention", ["softmax", "laplace", "relu2"])
@pytest.mark.parametrize("chunk", [-1, 5])
def test_recurrent_step_equals_parallel(attention, chunk):
    torch.manual_seed(0)
    lm = Mega(num_tokens=30, dim=16, depth=2, attn_dim_qk=8, attn_dim_value=24, ema_heads=4,
              causal=True, attention=attention, chunk_size=chunk, max_len=64).eval()
    x = torch.randint(1, 30, (2, 12))
    with torch.no_grad():
        parallel = lm(x)
        states, steps = None, []
        for t in range(12):
            logits, states = lm.step(x[:, t], states)
            steps.append(logits)
    assert torch.allclose(torch.stack(steps, 1), parallel, atol=1e-4)


def test_bf16_autocast_forward_backward_on_cpu():
    enc = _encoder(attention="laplace", norm="layernorm").train()
    head = ClassificationHead(16, 3)
    tokens = torch.randint(1, 20, (2, 33))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = F.cross_entropy(head(enc(tokens), None), torch.tensor([0, 2]))
    loss.backward()
    grads = [p.grad for p in enc.parameters() if p.requires_grad]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert any(g.abs().sum() > 0 for g in grads)


@pytest.mark.parametrize("norm", ["layernorm", "scalenorm", "rmsnorm", "batchnorm"])
@pytest.mark.parametrize("attention", ["softmax", "laplace", "relu2"])
def test_every_variant_trains_a_step(norm, attention):
    torch.manual_seed(0)
    enc = MegaEncoder(vocab_size=None, input_kind="pixels", dim=16, depth=2, zdim=8, hdim=24,
                      ndim=4, norm=norm, attention=attention, max_len=64, dropout=0.1,
                      attention_dropout=0.1, hidden_dropout=0.1, chunk_size=16)
    head = ClassificationHead(16, 2)
    params = list(enc.parameters()) + list(head.parameters())
    opt = torch.optim.AdamW(params, lr=1e-2)
    x, y = torch.randn(4, 40), torch.tensor([0, 1, 0, 1])
    before = [p.detach().clone() for p in params]
    loss = F.cross_entropy(head(enc(x), None), y)
    loss.backward()
    assert all(torch.isfinite(p.grad).all() for p in params if p.grad is not None)
    opt.step()
    assert sum(not torch.equal(a, p) for a, p in zip(before, params)) > len(params) // 2


def test_pooling_by_hand():
    feats = torch.arange(12.0).view(1, 4, 3)
    mask = torch.tensor([[True, True, True, False]])
    assert torch.equal(pool(feats, mask, "mean"), torch.tensor([[3.0, 4.0, 5.0]]))
    assert torch.equal(pool(feats, mask, "first"), torch.tensor([[0.0, 1.0, 2.0]]))
    assert torch.equal(pool(feats, mask, "last"), torch.tensor([[6.0, 7.0, 8.0]]))


def test_retrieval_head_combines_u_v():
    head = RetrievalHead(2, num_classes=2, combine="matching")
    u = torch.tensor([[[1.0, 2.0]]])
    v = torch.tensor([[[3.0, 5.0]]])
    captured = {}
    head.mlp[0].register_forward_hook(lambda m, i, o: captured.update(x=i[0]))
    head(u, None, v, None)
    assert torch.equal(captured["x"], torch.tensor([[1.0, 2.0, 3.0, 5.0, 3.0, 10.0, -2.0, -3.0]]))


def test_seed_api_shapes():
    lm = Mega(num_tokens=256, dim=128, depth=2)
    assert lm(torch.randint(0, 256, (2, 1024))).shape == (2, 1024, 256)
    model = build(embed_dim=32)
    out = model(torch.randn(2, 60, 32))
    assert out.shape == (2, 256) and output_size({}) == 256 == out.size(-1)
    small = build(embed_dim=8, hidden_size=64)
    assert output_size({"hidden_size": 64}) == small(torch.randn(1, 5, 8)).size(-1) == 64
    layer = MegaLayer(dim=32, ema_heads=4, attn_dim_qk=16, attn_dim_value=64, laplacian_attn_fn=True)
    assert layer.attention == "laplace"
    assert layer(torch.randn(1, 50, 32)).shape == (1, 50, 32)


@pytest.mark.parametrize(
    "kwargs, needle",
    [
        (dict(attention="bogus"), "attention='bogus'"),
        (dict(norm="groupnorm"), "norm='groupnorm'"),
        (dict(chunk_size=0), "chunk_size=0"),
        (dict(rel_pos="alibi"), "rel_pos='alibi'"),
        (dict(rel_pos="rotary", zdim=7), "zdim=7"),
        (dict(input_kind="audio"), "input_kind='audio'"),
        (dict(dropout=1.5), "dropout=1.5"),
    ],
)
def test_bad_arguments_name_the_argument(kwargs, needle):
    with pytest.raises(ValueError) as err:
        _encoder(**kwargs)
    assert needle in str(err.value)
    if "choose one of" in str(err.value):
        assert "," in str(err.value).split("choose one of")[1]


def test_out_of_range_token_is_a_clear_error():
    enc = _encoder()
    with pytest.raises(ValueError, match=r"token ids must lie in \[0, 20\)"):
        enc(torch.tensor([[1, 2, 25]]))


def test_batchnorm_converts_to_syncbatchnorm_for_ddp():
    enc = _encoder(norm="batchnorm")
    synced = torch.nn.SyncBatchNorm.convert_sync_batchnorm(enc)
    kinds = {type(m).__name__ for m in synced.modules()}
    assert "SyncBatchNorm" in kinds and "BatchNorm1d" not in kinds


def _plain_mega_forward(layer, x, mask):
    """The block's maths by plain autograd (the _gates/_output chain of the step path)."""
    residual = x
    if layer.prenorm:
        x = layer.norm(x)
    mx = layer.ema(x, mask)
    v, u, q, k, r, hx = layer._gates(x, mx)
    from lra_mega.model.attention import attend

    attn = attend(q, k, v, fn=layer.attention, bias=layer.rel_pos_bias, key_mask=mask, causal=layer.causal,
                  chunk_size=layer.chunk_size, impl="reference")
    return layer._output(residual, u, attn, r, hx)


def _plain_ffn_forward(ffn, x):
    residual = x
    if ffn.prenorm:
        x = ffn.norm(x)
    out = ffn.fc2(F.silu(ffn.fc1(x))) + residual
    return out if ffn.prenorm else ffn.norm(out)


@pytest.mark.parametrize("variant", VARIANTS)
def test_fused_gating_matches_plain_autograd_values_and_gradients(variant):
    from lra_mega.model import MegaBlock

    torch.manual_seed(5)
    block = MegaBlock(16, zdim=8, hdim=24, ndim=4, max_len=64, **variant).double().train()
    x = torch.randn(2, 16, 16, dtype=torch.float64)
    mask = torch.ones(2, 16, dtype=torch.bool)
    mask[1, 12:] = False
    upstream = torch.randn(2, 16, 16, dtype=torch.float64)

    def grads(forward):
        block.zero_grad()
        xs = x.clone().requires_grad_(True)
        out = forward(xs)
        (out * upstream).sum().backward()
        return [out.detach(), xs.grad] + [p.grad if p.grad is not None else torch.zeros_like(p) for p in block.parameters()]

    state = {k: v.clone() for k, v in block.state_dict().items()}
    fused = grads(lambda xs: block(xs, mask))
    block.load_state_dict(state)  # BatchNorm running stats as before
    plain = grads(lambda xs: _plain_ffn_forward(block.ffn, _plain_mega_forward(block.attention, xs, mask)))
    for got, want in zip(fused, plain):
        assert torch.allclose(got, want, atol=1e-9, rtol=1e-7)


def test_fused_gating_keeps_fewer_activations():
    from lra_mega.model import MegaBlock

    block = MegaBlock(32, zdim=16, hdim=64, ndim=4, max_len=128, attention="laplace").train()
    x = torch.randn(2, 128, 32, requires_grad=True)

    def saved_bytes(forward):
        seen = {}
        params = {p.untyped_storage().data_ptr() for p in block.parameters()}

        def pack(t):
            s = t.untyped_storage()
            if s.data_ptr() not in params:
                seen[s.data_ptr()] = s.nbytes()
            return t

        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            forward()
        return sum(seen.values())

    fused = saved_bytes(lambda: block(x))
    plain = saved_bytes(lambda: _plain_ffn_forward(block.ffn, _plain_mega_forward(block.attention, x, None)))
    assert fused < 0.5 * plain, (fused, plain)


def test_fused_dropout_uses_one_mask_per_call():
    """Training-mode dropout in the fused functions: zeroes about p of the units, scales the rest."""
    from lra_mega.model.kernels.gating import silu_linear

    torch.manual_seed(0)
    a = torch.randn(4, 256, 8)
    eye = torch.eye(8)
    out, _ = silu_linear(a, eye, torch.zeros(8), split=8, p=0.5, training=True)
    kept = out != 0
    assert 0.4 < kept.float().mean() < 0.6
    assert torch.allclose(out[kept], 2.0 * F.silu(a)[kept])


@pytest.mark.parametrize("norm", ["batchnorm", "layernorm"])
def test_checkpoint_blocks_same_gradients_and_batchnorm_stats(norm):
    def run(checkpoint_blocks):
        torch.manual_seed(0)
        enc = MegaEncoder(vocab_size=20, dim=16, depth=2, zdim=8, hdim=24, ndim=4, max_len=64, norm=norm,
                          attention="laplace", dropout=0.1, checkpoint_blocks=checkpoint_blocks).train()
        tokens = torch.randint(1, 20, (3, 24), generator=torch.Generator().manual_seed(1))
        torch.manual_seed(2)
        enc(tokens).square().mean().backward()
        return enc

    plain, ckpt = run(False), run(True)
    for (name, a), b in zip(plain.named_parameters(), ckpt.parameters()):
        assert torch.allclose(a.grad, b.grad, atol=1e-6), name
    for (name, a), b in zip(plain.named_buffers(), ckpt.buffers()):
        assert torch.equal(a, b), name  # running stats updated once, not twice


def test_fused_feed_forward_output_dropout():
    """feed_forward's output dropout: about p of the outputs zeroed, the rest scaled by 1/(1 − p),
    and the gradient flows only through the kept ones."""
    from lra_mega.model.kernels.gating import feed_forward

    torch.manual_seed(0)
    x = torch.randn(4, 256, 8, requires_grad=True)
    eye, zero = torch.eye(8), torch.zeros(8)
    out = feed_forward(x, eye, zero, eye, zero, p=0.0, training=True, p_out=0.25)
    kept = out != 0
    assert 0.7 < kept.float().mean() < 0.8
    assert torch.allclose(out[kept], F.silu(x)[kept] / 0.75)
    out.sum().backward()
    assert torch.equal(x.grad != 0, kept)
