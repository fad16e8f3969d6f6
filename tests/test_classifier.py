"""LRAClassifier: weight-decay groups, LR schedule, dual-encoder forward, metrics."""

from __future__ import annotations

import pytest
import torch

from lra_mega.training.classifier import LRAClassifier


def _module(**kw) -> LRAClassifier:
    enc = {"_target_": "lra_mega.model.MegaEncoder", "vocab_size": 16, "input_kind": "tokens", "dim": 16,
           "depth": 2, "zdim": 8, "hdim": 32, "norm": kw.pop("norm", "layernorm"), "max_len": 64}
    head = {"_target_": "lra_mega.model.ClassificationHead", "dim": 16, "num_classes": 10}
    return LRAClassifier(encoder=enc, head=head, num_classes=10, **kw)


def _groups(module: LRAClassifier) -> dict[str, set[str]]:
    opt = module.configure_optimizers()["optimizer"]
    by_id = {id(p): n for n, p in module.named_parameters()}
    return {g["name"]: {by_id[id(p)] for p in g["params"]} | {f"wd={g['weight_decay']}"} for g in opt.param_groups}


def test_weight_decay_covers_every_parameter_by_default():
    """The official runs decay all parameters in one group (fairseq adam --weight-decay)."""
    module = _module(norm="batchnorm", weight_decay=0.05)
    opt = module.configure_optimizers()["optimizer"]
    assert len(opt.param_groups) == 1 and opt.param_groups[0]["weight_decay"] == 0.05
    assert {id(p) for p in opt.param_groups[0]["params"]} == {id(p) for p in module.parameters()}


@pytest.mark.parametrize("norm", ["layernorm", "scalenorm", "batchnorm"])
def test_no_weight_decay_on_norms_biases_and_ema_when_exempt(norm):
    module = _module(norm=norm, weight_decay=0.05, weight_decay_exempt=True)
    groups = _groups(module)
    assert "wd=0.05" in groups["decay"] and "wd=0.0" in groups["no_decay"]
    names = [n for n, _ in module.named_parameters()]
    assert sorted(groups["decay"] | groups["no_decay"]) == sorted(names + ["wd=0.05", "wd=0.0"])
    for name in names:
        if "norm" in name or name.endswith("bias") or ".ema." in name or "rel_pos" in name:
            assert name in groups["no_decay"], name
        if name.endswith(("embed.weight", "_proj.weight", "fc1.weight", "fc2.weight", "mlp.0.weight")):
            assert name in groups["decay"], name
    # the EMA's 3-d delta/alpha/beta would decay by shape alone: they must not
    assert {n for n in names if n.endswith("ema.delta")} <= groups["no_decay"]


def _lrs(module: LRAClassifier, updates: int) -> list[float]:
    """LR used by each of the first ``updates`` optimizer updates."""
    conf = module.configure_optimizers()
    opt, sched = conf["optimizer"], conf["lr_scheduler"]["scheduler"]
    assert conf["lr_scheduler"]["interval"] == "step"
    seen = []
    for _ in range(updates):
        seen.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return seen


@pytest.mark.parametrize("power", [1, 2])
def test_lr_schedule_is_fairseq_linear_decay_from_init_lr(power):
    # fairseq linear_decay, worked by hand for lr 1e-2, init 1e-7, warmup 4, total 12: update k
    # (k updates done before it) uses init + (lr - init)·(k/4)^p for k <= 4, then lr·(12-k)/8, 0 at 12
    lr, init = 1e-2, 1e-7
    warm = {1: [0.0, 0.25, 0.5, 0.75, 1.0], 2: [0.0, 0.0625, 0.25, 0.5625, 1.0]}[power]
    expected = [init + (lr - init) * w for w in warm]
    expected += [lr * (12 - k) / 8 for k in range(5, 12)] + [0.0, 0.0, 0.0]
    module = _module(lr=lr, warmup_steps=4, total_steps=12, warmup_init_lr=init, warmup_power=power)
    assert _lrs(module, 15) == pytest.approx(expected, abs=1e-15, rel=1e-12)
    assert expected[0] == init and expected[4] == lr and expected[6] == pytest.approx(7.5e-3)


def test_lr_schedule_without_warmup_starts_at_peak():
    module = _module(lr=1e-2, warmup_steps=0, total_steps=4, warmup_init_lr=1e-7)
    assert _lrs(module, 5) == pytest.approx([1e-2, 7.5e-3, 5e-3, 2.5e-3, 0.0], abs=1e-15)


@pytest.mark.parametrize("kw, key", [({"warmup_init_lr": 1e-2}, "optim.warmup_init_lr"),
                                     ({"warmup_init_lr": -1.0}, "optim.warmup_init_lr"),
                                     ({"warmup_power": 0}, "optim.warmup_power")])
def test_bad_schedule_settings_name_the_key(kw, key):
    with pytest.raises(ValueError, match=key):
        _module(lr=1e-2, **kw)


def test_dual_forward_encodes_both_documents_in_one_call():
    torch.manual_seed(0)
    enc = {"_target_": "lra_mega.model.MegaEncoder", "vocab_size": 20, "input_kind": "tokens", "dim": 16,
           "depth": 1, "zdim": 8, "hdim": 32, "max_len": 32, "dropout": 0.0}
    head = {"_target_": "lra_mega.model.RetrievalHead", "dim": 16, "num_classes": 2}
    module = LRAClassifier(encoder=enc, head=head, num_classes=2, dual=True).eval()
    calls = []
    module.encoder.register_forward_hook(lambda m, args, out: calls.append(args[0].shape))
    x = torch.randint(1, 20, (3, 2, 12))
    mask = torch.ones(3, 2, 12, dtype=torch.bool)
    mask[:, 1, 9:] = False
    x[~mask] = 0
    logits = module(x, mask)
    assert logits.shape == (3, 2) and calls == [torch.Size([6, 12])]
    # independently: encode each document on its own and apply the head
    with torch.no_grad():
        f1 = module.encoder(x[:, 0], mask[:, 0])
        f2 = module.encoder(x[:, 1], mask[:, 1])
        ref = module.head(f1, mask[:, 0], f2, mask[:, 1])
    torch.testing.assert_close(logits.detach(), ref, atol=1e-5, rtol=1e-5)


def test_hyperparameters_rebuild_the_model(tmp_path):
    module = _module(lr=3e-3)
    assert module.hparams.lr == 3e-3 and module.hparams.encoder["_target_"].endswith("MegaEncoder")
    path = tmp_path / "m.pt"
    torch.save({"hp": dict(module.hparams), "sd": module.state_dict()}, path)
    saved = torch.load(path, weights_only=False)
    clone = LRAClassifier(**saved["hp"])
    clone.load_state_dict(saved["sd"])
    x = torch.randint(1, 16, (2, 10))
    m = torch.ones(2, 10, dtype=torch.bool)
    torch.testing.assert_close(module.eval()(x, m), clone.eval()(x, m))


def test_accuracy_is_micro_averaged():
    module = _module()
    logits = torch.zeros(4, 10)
    logits[[0, 1, 2, 3], [1, 1, 2, 9]] = 1.0
    module.val_acc(logits, torch.tensor([1, 1, 2, 3]))
    assert module.val_acc.compute().item() == pytest.approx(0.75)


def test_best_accuracy_and_running_epoch_accuracy_survive_a_checkpoint():
    """A resumed run goes on with its best validation accuracy and its epoch's running training
    accuracy; a checkpoint written before these were saved still loads strictly, with them fresh."""
    module = _module()
    module.val_acc_best(torch.tensor(0.7))
    module.val_acc_best(torch.tensor(0.4))
    logits = torch.zeros(4, 10)
    logits[[0, 1, 2, 3], [1, 1, 2, 9]] = 1.0
    module.train_acc(logits, torch.tensor([1, 1, 2, 3]))
    checkpoint = {"state_dict": module.state_dict()}
    clone = _module()
    clone.on_load_checkpoint(checkpoint)
    clone.load_state_dict(checkpoint["state_dict"])
    assert clone.val_acc_best.compute().item() == pytest.approx(0.7)
    assert clone.train_acc.compute().item() == pytest.approx(0.75)

    metrics = ("val_acc_best.", "train_acc.")
    old = {"state_dict": {k: v for k, v in checkpoint["state_dict"].items() if not k.startswith(metrics)}}
    assert len(old["state_dict"]) < len(checkpoint["state_dict"])
    fresh = _module()
    fresh.on_load_checkpoint(old)
    fresh.load_state_dict(old["state_dict"])  # strict: the missing states were filled in
    assert fresh.val_acc_best.max_value.item() == float("-inf")
