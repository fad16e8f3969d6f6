"""optim.ema_lr_scale / optim.ema_weight_decay: the EMA's δ, α, β in an optimiser group of their own."""

from __future__ import annotations

import pytest
import torch

from lra_mega.model import MegaEncoder
from lra_mega.training.optim import param_groups


def _encoder() -> MegaEncoder:
    return MegaEncoder(vocab_size=16, dim=16, depth=2, zdim=8, hdim=32, max_len=64)


def _module(**kw):
    from lra_mega.training.classifier import LRAClassifier

    enc = {"_target_": "lra_mega.model.MegaEncoder", "vocab_size": 16, "input_kind": "tokens", "dim": 16,
           "depth": 2, "zdim": 8, "hdim": 32, "max_len": 64}
    head = {"_target_": "lra_mega.model.ClassificationHead", "dim": 16, "num_classes": 10}
    return LRAClassifier(encoder=enc, head=head, num_classes=10, **kw)


def test_default_is_the_official_single_group():
    enc = _encoder()
    (group,) = param_groups(enc, 0.01)
    assert group["name"] == "all" and len(group["params"]) == len(list(enc.parameters()))


@pytest.mark.parametrize("exempt", [False, True])
def test_ema_group_holds_exactly_each_layers_delta_alpha_beta(exempt):
    enc = _encoder()
    groups = {g["name"]: g for g in param_groups(enc, 0.01, exempt=exempt, ema_lr_scale=0.1, ema_weight_decay=0.0)}
    by_id = {id(p): n for n, p in enc.named_parameters()}
    ema = sorted(by_id[id(p)] for p in groups["ema"]["params"])
    expected = sorted(f"layers.{i}.attention.ema.{w}" for i in range(2) for w in ("alpha", "beta", "delta"))
    assert ema == expected
    assert groups["ema"]["weight_decay"] == 0.0 and groups["ema"]["lr_scale"] == 0.1
    rest = [by_id[id(p)] for g in groups.values() if g["name"] != "ema" for p in g["params"]]
    assert sorted(rest + ema) == sorted(by_id.values()) and not set(rest) & set(ema)
    assert "layers.0.attention.ema.gamma" in rest and "layers.0.attention.ema.omega" in rest


def test_ema_weight_decay_alone_keeps_the_rate_and_defaults_to_the_others():
    groups = {g["name"]: g for g in param_groups(_encoder(), 0.05, ema_weight_decay=0.0)}
    assert groups["ema"]["lr_scale"] == 1.0 and groups["ema"]["weight_decay"] == 0.0
    groups = {g["name"]: g for g in param_groups(_encoder(), 0.05, ema_lr_scale=0.5)}
    assert groups["ema"]["weight_decay"] == 0.05 and groups["all"]["weight_decay"] == 0.05


def test_ema_rate_follows_the_schedule_at_its_scale():
    """Warmup 4 then linear decay to 0 at 12, by hand: the EMA group's LR is 0.25 × the others' at every update."""
    module = _module(lr=1e-2, warmup_steps=4, total_steps=12, warmup_init_lr=0.0, ema_lr_scale=0.25,
                     ema_weight_decay=0.0)
    conf = module.configure_optimizers()
    opt, sched = conf["optimizer"], conf["lr_scheduler"]["scheduler"]
    lrs = {g["name"]: [] for g in opt.param_groups}
    for _ in range(13):
        for g in opt.param_groups:
            lrs[g["name"]].append(g["lr"])
        opt.step()
        sched.step()
    by_hand = [1e-2 * k / 4 for k in range(5)] + [1e-2 * (12 - k) / 8 for k in range(5, 13)]
    assert lrs["all"] == pytest.approx(by_hand, abs=1e-15)
    assert lrs["ema"] == pytest.approx([0.25 * v for v in by_hand], abs=1e-15)
    assert {g["name"]: g["weight_decay"] for g in opt.param_groups} == {"all": 0.01, "ema": 0.0}


def test_bad_scale_names_the_key():
    with pytest.raises(ValueError, match="optim.ema_lr_scale"):
        param_groups(_encoder(), 0.01, ema_lr_scale=0.0)


def test_an_ema_group_trains_its_parameters_slower():
    """One AdamW step: with Adam's normalised update, a parameter moves by about lr × scale."""
    torch.manual_seed(0)
    module = _module(lr=1e-2, warmup_steps=0, total_steps=10, ema_lr_scale=0.1)
    opt = module.configure_optimizers()["optimizer"]
    before = {n: p.detach().clone() for n, p in module.named_parameters()}
    x = torch.randint(1, 16, (4, 12))
    module(x, torch.ones_like(x, dtype=torch.bool)).logsumexp(-1).sum().backward()
    opt.step()
    moved = {n: (p.detach() - before[n]).abs().max().item() for n, p in module.named_parameters()}
    assert moved["encoder.layers.0.attention.ema.delta"] == pytest.approx(1e-3, rel=0.05)
    assert moved["encoder.layers.0.attention.ema.gamma"] == pytest.approx(1e-2, rel=0.05)
