"""stage=pretrain: the self-pretraining module (what it sees, what its loss counts), fine-tuning
with init_from (exactly the pretrained encoder, a fresh head), the one-line refusals, and exact
resume of a pretraining run."""

from __future__ import annotations

import json

import lightning as L
import pytest
import torch
from harness import SMOKE, Crash, compose_config, csv_column, error_lines
from hydra.utils import instantiate
from torch.nn import functional as F

from lra_mega.training.pretrain import SelfPretrainer
from lra_mega.run.resume import config_differences
from lra_mega.run.train import build_model, start_from, train

ENCODER = {"_target_": "lra_mega.model.MegaEncoder", "vocab_size": 12, "input_kind": "tokens", "dim": 16,
           "depth": 2, "zdim": 8, "hdim": 32, "max_len": 64, "dropout": 0.0, "chunk_size": -1}


def _tokens() -> tuple[torch.Tensor, torch.Tensor]:
    torch.manual_seed(0)
    x = torch.randint(1, 12, (3, 20))
    mask = torch.ones(3, 20, dtype=torch.bool)
    mask[1, 14:] = False
    mask[2, 5:] = False
    return x.masked_fill(~mask, 0), mask


def test_masked_loss_is_the_mean_over_hidden_positions_by_loops():
    module = SelfPretrainer(encoder=ENCODER, objective="masked", mask_prob=0.25).eval()
    x, mask = _tokens()
    with torch.no_grad():
        loss = module._step({"input": x, "mask": mask, "label": torch.zeros(3, dtype=torch.long)}, "test", 0)
        # the same positions again (the test stage seeds its generator by batch index), summed by hand
        logits, target, where = module.predict(x, mask, module._eval_generator(0, x.device))
    total, count = 0.0, 0
    for b in range(3):
        for t in range(20):
            if where[b, t]:
                assert mask[b, t] and target[b, t] == x[b, t]
                total -= torch.log_softmax(logits[b, t].double(), -1)[x[b, t]].item()
                count += 1
    assert count == 5 + 4 + 1  # round(0.25 * n) of n = 20, 14, 5 real positions
    assert loss.item() == pytest.approx(total / count, rel=1e-5)


def test_hidden_positions_do_not_see_their_own_input():
    """The mask embedding replaces the hidden tokens: changing them changes no prediction; changing
    one visible token does change the predictions at the hidden positions (the model reads its input)."""
    module = SelfPretrainer(encoder=ENCODER, objective="masked", mask_prob=0.3).eval()
    x, mask = _tokens()
    with torch.no_grad():
        first, _, where = module.predict(x, mask, torch.Generator().manual_seed(5))
        changed = torch.where(where, (x % 11) + 1, x)  # every hidden token replaced by another one
        assert not torch.equal(changed, x)
        second, _, where2 = module.predict(changed, mask, torch.Generator().manual_seed(5))
        seen = tuple((mask & ~where).nonzero()[0])  # one real position that is not hidden
        other = x.clone()
        other[seen] = x[seen] % 11 + 1
        third, _, where3 = module.predict(other, mask, torch.Generator().manual_seed(5))
    assert torch.equal(where, where2) and torch.equal(where, where3)
    torch.testing.assert_close(first, second, rtol=0, atol=0)
    assert (third[where] - first[where]).abs().max() > 1e-4


def test_causal_objective_predicts_the_next_token_from_the_past_only():
    module = SelfPretrainer(encoder={**ENCODER, "bidirectional": False}, objective="causal").eval()
    assert module.mask_embedding is None
    x, mask = _tokens()
    with torch.no_grad():
        logits, target, where = module.predict(x, mask)
        later = x.clone()
        later[:, 10:] = torch.where(mask[:, 10:], (later[:, 10:] % 11) + 1, 0)
        logits2, _, _ = module.predict(later, mask)
    torch.testing.assert_close(logits[:, :10], logits2[:, :10], rtol=0, atol=1e-6)
    assert torch.equal(target[0, :19], x[0, 1:]) and where.sum() == 19 + 13 + 4
    expected = F.cross_entropy(logits[where], x[:, 1:][where[:, :-1]])
    got = module._step({"input": x, "mask": mask, "label": torch.zeros(3, dtype=torch.long)}, "test", 0)
    assert got.item() == pytest.approx(expected.item(), rel=1e-5)


def test_pixel_ce_predicts_the_grey_level():
    module = SelfPretrainer(encoder={**ENCODER, "input_kind": "pixels", "vocab_size": None}, loss="ce",
                            pixel_mean=0.5, pixel_std=0.5)
    assert module.predictor.out_features == 256
    levels = torch.tensor([[0, 17, 255]])
    assert torch.equal(module.targets((levels / 255 - 0.5) / 0.5), levels)
    l1 = SelfPretrainer(encoder={**ENCODER, "input_kind": "pixels", "vocab_size": None})
    assert l1.loss_kind == "l1" and l1.predictor.out_features == 1


# ----- init_from ------------------------------------------------------------------------------

PRE = ["task=pathfinder", "trainer=smoke", "stage=pretrain", "logger=csv", "callbacks.progress_bar=null",
       "data.limit_examples={train: 16, val: 8, test: 8}", "trainer.max_steps=4", "trainer.val_check_interval=2"]


@pytest.fixture(scope="module")
def pretrained_run(tmp_path_factory, lra_cache):
    """One finished pathfinder pretraining run (BatchNorm: running statistics to carry over)."""
    with pytest.MonkeyPatch.context() as env:
        env.setenv("LRA_MEGA_CACHE", str(lra_cache))
        env.setenv("WANDB_MODE", "offline")
        out = tmp_path_factory.mktemp("pretrained")
        results = train(compose_config(PRE, output_dir=out))
    assert results["stage"] == "pretrain" and results["steps"] == 4
    return out, results


def _finetune_model(overrides, out):
    cfg = compose_config(["task=pathfinder", "trainer=smoke", "logger=csv", *overrides], output_dir=out)
    L.seed_everything(cfg.seed, workers=True)
    model = build_model(cfg, instantiate(cfg.data))
    return cfg, model


def stored_encoder(results) -> dict[str, torch.Tensor]:
    """The encoder weights and buffers of a pretraining run's best checkpoint."""
    ckpt = torch.load(results["best_checkpoint"], map_location="cpu", weights_only=False)
    return {k[len("encoder."):]: v for k, v in ckpt["state_dict"].items() if k.startswith("encoder.")}


def assert_loaded(encoder: torch.nn.Module, stored: dict[str, torch.Tensor]) -> None:
    loaded = encoder.state_dict()
    assert sorted(loaded) == sorted(stored)
    for key, value in stored.items():
        assert torch.equal(loaded[key], value), key


def test_init_from_loads_exactly_the_pretrained_encoder_and_a_fresh_head(pretrained_run, tmp_path, offline_env):
    run_dir, results = pretrained_run
    stored = stored_encoder(results)
    assert any(k.endswith("running_mean") for k in stored)  # BatchNorm statistics travel too

    cfg, model = _finetune_model([f"init_from={run_dir}"], tmp_path / "ft")
    _, scratch = _finetune_model([], tmp_path / "scratch")  # the same seed, no init_from
    pretrained = start_from(cfg, model, resumed=False)
    assert pretrained.path.name == ckpt_name(results)

    assert_loaded(model.encoder, stored)
    assert any(not torch.equal(scratch.encoder.state_dict()[k], v) for k, v in stored.items())
    # the head is the one a from-scratch run of this seed builds: nothing of the pretraining in it
    for (name, a), (_, b) in zip(model.head.state_dict().items(), scratch.head.state_dict().items()):
        assert torch.equal(a, b), name


def ckpt_name(results) -> str:
    return results["best_checkpoint"].rsplit("/", 1)[-1]


def test_finetuning_run_records_init_from(pretrained_run, tmp_path, offline_env):
    run_dir, results = pretrained_run
    out = tmp_path / "ft"
    ft = train(compose_config(["task=pathfinder", "trainer=smoke", "logger=csv", "callbacks.progress_bar=null",
                               "data.limit_examples=8", "trainer.max_steps=2", "trainer.val_check_interval=2",
                               "optim.warmup_steps=0", f"init_from={run_dir}"], output_dir=out))
    assert ft["stage"] == "classify" and ft["init_from"] == str(results["best_checkpoint"])
    assert json.loads((out / "results.json").read_text())["init_from"] == ft["init_from"]


@pytest.mark.parametrize("override, needles", [
    (["model.depth=3"], ["model.depth: 2 -> 3"]),
    (["model.dim=16", "model.zdim=8"], ["model.dim: 32 -> 16", "model.zdim: 16 -> 8"]),
    (["model.dropout=0.3"], None),  # weightless settings may differ
])
def test_mismatched_encoder_config_names_the_keys(pretrained_run, tmp_path, offline_env, override, needles):
    run_dir, results = pretrained_run
    cfg, model = _finetune_model([*override, f"init_from={run_dir}"], tmp_path / "ft")
    if needles is None:  # loaded as they are, the fine-tuning dropout kept
        start_from(cfg, model, resumed=False)
        assert_loaded(model.encoder, stored_encoder(results))
        assert model.encoder.layers[0].attention.dropout.p == pytest.approx(0.3)
        return
    with pytest.raises(ValueError) as err:
        start_from(cfg, model, resumed=False)
    message = str(err.value)
    assert "\n" not in message and message.startswith(f"init_from={run_dir}: its encoder was pretrained")
    assert all(n in message for n in needles), message


def test_wrong_files_are_refused_with_one_line_each(pretrained_run, tmp_path, offline_env):
    run_dir, results = pretrained_run
    classify_dir = tmp_path / "classify"
    train(compose_config([*SMOKE, "task=pathfinder", "trainer.max_steps=2", "trainer.val_check_interval=2",
                          "optim.warmup_steps=0", "data.limit_examples=8", "test=false"], output_dir=classify_dir))
    unfinished = tmp_path / "unfinished"
    (unfinished / "checkpoints").mkdir(parents=True)
    (unfinished / "checkpoints" / "last.ckpt").write_bytes(b"")
    cases = {
        str(tmp_path / "nowhere"): "does not exist",
        str(run_dir / "results.json"): "cannot be read as a checkpoint",
        str(classify_dir): "is a checkpoint of a stage=classify run, not of a pretraining run",
        str(unfinished): "has not finished",
        str(tmp_path): "holds no finished run",
    }
    for spec, needle in cases.items():
        cfg, model = _finetune_model([f"init_from={spec}"], tmp_path / "ft")
        with pytest.raises(ValueError) as err:
            start_from(cfg, model, resumed=False)
        assert needle in str(err.value) and "\n" not in str(err.value), (spec, str(err.value))
    # a pretraining run of another task
    cfg = compose_config(["task=listops", "trainer=smoke", f"init_from={run_dir}"], output_dir=tmp_path / "x")
    L.seed_everything(0)
    model = build_model(cfg, instantiate(cfg.data))
    with pytest.raises(ValueError, match="pretrained on task 'pathfinder', not 'listops'"):
        start_from(cfg, model, resumed=False)


def test_cli_prints_one_line_for_a_bad_init_from(run_cli, pretrained_run, tmp_path):
    run_dir, _ = pretrained_run
    proc = run_cli("task=pathfinder", "trainer=smoke", "logger=none", "model.depth=3", f"init_from={run_dir}",
                   f"hydra.run.dir={tmp_path / 'run'}")
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    (line,) = error_lines(proc.stderr)
    assert "model.depth: 2 -> 3" in line
    assert not (tmp_path / "run" / "results.json").exists()


@pytest.mark.parametrize("overrides, needle", [
    (["stage=pretrain", "pretrain.objective=maskd"], "did you mean masked?"),
    (["stage=pretrain", "pretrain.objective=causal"], "add model.bidirectional=false"),
    (["stage=pretrain", "pretrain.loss=l1"], "token tasks predict their token"),
    (["stage=pretrain", "pretrain.mask_prob=0"], "pretrain.mask_prob=0 is not valid"),
    (["stage=pretrain", "init_from=/x"], "drop init_from"),
    (["init_from=''"], "init_from='' is not valid"),
])
def test_bad_pretraining_settings_are_one_line(overrides, needle, tmp_path, offline_env):
    with pytest.raises(ValueError) as err:
        train(compose_config(["task=listops", "trainer=smoke", "logger=none", *overrides], output_dir=tmp_path))
    assert needle in str(err.value) and "\n" not in str(err.value), str(err.value)
    assert not (tmp_path / ".hydra").exists()  # refused before the run is recorded or data is read


def test_pretraining_run_resumes_exactly(tmp_path, offline_env):
    """Training masks come from the global RNG, which the checkpoint restores."""
    run = [*SMOKE, "stage=pretrain", "trainer.max_steps=6", "trainer.val_check_interval=2", "test=false",
           "data.limit_examples.train=12", "data.limit_examples.val=4"]
    whole = tmp_path / "whole"
    train(compose_config(run, output_dir=whole))
    expected = csv_column(whole, "train/loss_step")
    cut = tmp_path / "cut"
    with pytest.raises(Crash):
        train(compose_config([*run, "+callbacks.crash._target_=harness.CrashAt", "+callbacks.crash.step=5"],
                             output_dir=cut))
    train(compose_config(run, output_dir=cut))
    resumed = csv_column(cut, "train/loss_step", version=1)
    assert sorted(resumed) == [4, 5]
    assert all(resumed[s] == expected[s] for s in resumed), (resumed, expected)
    state = torch.load(cut / "checkpoints" / "last.ckpt", weights_only=False)["state_dict"]
    assert state["val_loss_best.min_value"].item() == pytest.approx(min(csv_column(whole, "val/loss").values()))


def test_runs_stored_before_stages_existed_still_resume():
    """A checkpoint's config from before `stage` and `init_from`: their defaults, no difference."""
    new = {"task_name": "listops", "stage": "classify", "init_from": None, "model": {"dim": 8}}
    old = {"task_name": "listops", "model": {"dim": 8}}
    assert config_differences(old, new) == []
    assert config_differences(old, {**new, "stage": "pretrain"}) == [("stage", "classify", "pretrain")]


def test_evaluate_refuses_a_pretraining_checkpoint(pretrained_run):
    from lra_mega.run.evaluation import evaluate_checkpoint

    _, results = pretrained_run
    with pytest.raises(ValueError, match="is a pretraining checkpoint") as err:
        evaluate_checkpoint(results["best_checkpoint"])
    assert "\n" not in str(err.value)
