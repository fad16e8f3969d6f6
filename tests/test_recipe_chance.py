"""ChanceLevel: one warning, and ``at_chance`` for results.json, when val accuracy stays at chance."""

from __future__ import annotations

import logging
from types import SimpleNamespace

import pytest
import torch
from harness import compose_config
from hydra.utils import instantiate

from lra_mega.run.callbacks import PLATEAU_ADVICE, ChanceLevel, plateau_advice


def _validate(cb: ChanceLevel, step: int, acc: float, labels: list[int], classes: int = 2,
              encoder: dict | None = None) -> None:
    """One validation pass through the callback's hooks, as Lightning calls them (``encoder``: the
    encoder config the classifier keeps in its hparams)."""
    trainer = SimpleNamespace(
        sanity_checking=False, callback_metrics={"val/acc": torch.tensor(acc)}, max_steps=100,
        estimated_stepping_batches=100, global_step=step, is_global_zero=True,
        strategy=SimpleNamespace(reduce=lambda t, reduce_op: t),
    )
    hparams = SimpleNamespace(num_classes=classes, **({} if encoder is None else {"encoder": encoder}))
    module = SimpleNamespace(hparams=hparams, device=torch.device("cpu"))
    cb.on_validation_epoch_start(trainer, module)
    for i in range(0, len(labels), 32):
        cb.on_validation_batch_end(trainer, module, None, {"label": torch.tensor(labels[i:i + 32])}, i)
    cb.on_validation_end(trainer, module)


def _warnings(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]


def test_majority_class_run_is_at_chance_and_warned_once(caplog):
    # 60 × label 0, 40 × label 1: chance = majority share 0.6; 2 standard errors
    # = 2·√(0.6·0.4/100) = 0.09798 > margin 0.01, so at chance up to 0.69798
    labels = [0] * 60 + [1] * 40
    cb = ChanceLevel(after=0.25, margin=0.01)
    caplog.set_level(logging.INFO, logger="lra_mega.run.callbacks")
    _validate(cb, 10, 0.60, labels)
    assert cb.at_chance is None  # before 25 % of the 100 steps nothing is said
    _validate(cb, 25, 0.65, labels)
    assert cb.at_chance is True
    _validate(cb, 50, 0.69, labels)
    assert cb.at_chance is True
    warnings = _warnings(caplog)
    assert len(warnings) == 1 and "still at chance after 25 of 100 steps" in warnings[0]
    assert "0.6980" in warnings[0] and "100 validation examples" in warnings[0]
    assert PLATEAU_ADVICE in warnings[0]  # it names what to try, not only that the run is stuck
    _validate(cb, 75, 0.70, labels)  # best 0.70 > 0.69798: it left chance
    assert cb.at_chance is False and len(_warnings(caplog)) == 1


def test_ten_classes_uniform_labels_threshold_by_hand():
    # 1000 labels, 100 per class: chance 0.1, 2·√(0.1·0.9/1000) = 0.018974 → at chance ≤ 0.118974
    labels = [i % 10 for i in range(1000)]
    at = ChanceLevel(after=0.0)
    _validate(at, 1, 0.1189, labels, classes=10)
    above = ChanceLevel(after=0.0)
    _validate(above, 1, 0.1190, labels, classes=10)
    assert at.at_chance is True and above.at_chance is False
    assert at.chance(torch.bincount(torch.tensor(labels))) == pytest.approx((0.1, 0.118974), abs=1e-6)


def test_best_accuracy_counts_and_state_survives_resume():
    labels = [0, 1] * 500  # chance 0.5, 2 s.e. = 0.0316
    cb = ChanceLevel(after=0.5)
    _validate(cb, 10, 0.90, labels)  # learned early, then collapsed: not stuck
    _validate(cb, 60, 0.50, labels)
    assert cb.at_chance is False
    clone = ChanceLevel(after=0.5)
    clone.load_state_dict(cb.state_dict())
    assert (clone.at_chance, clone.best, clone.warned) == (False, pytest.approx(0.9), False)


def test_registered_by_default_and_bad_settings_name_the_key():
    cfg = compose_config(["task=pathx"])
    cb = instantiate(cfg.callbacks.chance_level)
    assert isinstance(cb, ChanceLevel) and cb.at_chance is None and cb.after == 0.25
    with pytest.raises(ValueError, match="callbacks.chance_level.after=1.5"):
        ChanceLevel(after=1.5)


def test_results_record_the_runs_own_verdict_when_the_best_checkpoint_is_early(tmp_path, offline_env):
    """A run stuck at chance whose best checkpoint (step 2) predates the check (from step 4):
    testing that checkpoint restores the callbacks' early state (at_chance None, the wall time
    so far), yet results.json must keep the verdict and the wall time of the run's end."""
    import json

    from harness import SMOKE

    from lra_mega.run.train import train

    import time

    run_dir = tmp_path / "stuck"
    started = time.time()
    cfg = compose_config([*SMOKE, "trainer.max_steps=8", "trainer.val_check_interval=2", "optim.lr=1e-7",
                          "optim.warmup_init_lr=0", "callbacks.chance_level.after=0.5"], output_dir=run_dir)
    results = train(cfg)
    elapsed = time.time() - started
    best = torch.load(results["best_checkpoint"], map_location="cpu", weights_only=False)
    assert best["global_step"] == 2  # learning nothing, no later validation beats the first
    assert results["at_chance"] is True
    assert json.loads((run_dir / "results.json").read_text())["at_chance"] is True
    # nor does the wall time count the early checkpoint's time twice
    assert 0 < results["wall_time_s"] <= elapsed


def test_every_option_the_warning_names_is_a_valid_pathfinder_override():
    """The advice must stay actionable: each ``key=value`` it names composes and passes the checks."""
    import re

    from lra_mega.run.validate import check_config

    named = re.findall(r"\b([a-z_]+\.[a-z_]+=[^\s,);]+(?:,[^\s,);\]]+)*\]?)", PLATEAU_ADVICE)
    assert {o.split("=")[0] for o in named} >= {"model.ema_init", "optim.ema_weight_decay", "model.chunk_size",
                                                "data.train_difficulties"}, named
    for override in named:
        if override.endswith("=-1"):
            continue  # "or -1": the value is named in prose
        overrides = ["experiment=pathfinder_lite", override]
        check_config(compose_config(overrides), overrides)


def test_a_megalodon_run_is_told_only_what_its_model_takes(caplog):
    """Megalodon has no ``model.ema_init``: its warning leaves that lever out, keeps the rest, and every
    option it names composes with the Megalodon preset (its CEMA takes the EMA optimiser group)."""
    import re

    from lra_mega.run.validate import check_config

    cfg = compose_config(["experiment=pathfinder_megalodon_lite"])
    advice = plateau_advice(cfg.model)
    assert "ema_init" not in advice and "optim.ema_weight_decay=0" in advice and "model.chunk_size=512" in advice
    assert "model.ema_init=timescale" in plateau_advice(compose_config(["experiment=pathfinder_lite"]).model)
    for override in re.findall(r"\b([a-z_]+\.[a-z_]+=[^\s,);]+(?:,[^\s,);\]]+)*\]?)", advice):
        if not override.endswith("=-1"):
            overrides = ["experiment=pathfinder_megalodon_lite", override]
            check_config(compose_config(overrides), overrides)
    # the callback reads the encoder config the classifier stores in its hparams
    caplog.set_level(logging.INFO, logger="lra_mega.run.callbacks")
    _validate(ChanceLevel(after=0.0), 50, 0.5, [0, 1] * 50, encoder=dict(cfg.model))
    (warning,) = _warnings(caplog)
    assert advice in warning and "ema_init" not in warning
