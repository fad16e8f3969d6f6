"""User mistakes end in one line that says what is wrong and what is allowed; exit status 1."""

from __future__ import annotations

import pytest
from harness import TASKS, compose_config, error_lines


def _one_line_error(proc) -> str:
    assert proc.returncode == 1, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    lines = error_lines(proc.stderr)
    assert len(lines) == 1, proc.stderr
    return lines[0]


def test_unknown_task_lists_the_tasks(run_cli):
    line = _one_line_error(run_cli("task=nonsense"))
    assert "nonsense" in line
    for task in TASKS:
        assert task in line


def test_missing_task_lists_the_tasks(run_cli):
    line = _one_line_error(run_cli())
    assert "task" in line and all(task in line for task in TASKS)


def test_unknown_trainer_lists_the_trainers(run_cli):
    line = _one_line_error(run_cli("task=listops", "trainer=bogus"))
    for name in ("bogus", "default", "smoke", "cpu", "gpu", "ddp"):
        assert name in line


def test_bad_model_argument_lists_valid_values(run_cli, tmp_path):
    line = _one_line_error(run_cli("task=listops", "trainer=smoke", "model.attention=bogus",
                                   f"hydra.run.dir={tmp_path}"))
    for word in ("attention", "bogus", "softmax", "laplace", "relu2"):
        assert word in line


def test_missing_data_names_the_fetch_command(run_cli, tmp_path):
    line = _one_line_error(run_cli("task=retrieval", "trainer=smoke", "logger=none",
                                   f"data.root={tmp_path / 'nowhere'}", f"hydra.run.dir={tmp_path / 'run'}"))
    assert "download_lra.py" in line


@pytest.mark.parametrize("debug", [["hydra.verbose=true"], []])
def test_debug_shows_the_traceback(run_cli, tmp_path, debug):
    env = {} if debug else {"LRA_MEGA_DEBUG": "1"}
    proc = run_cli("task=listops", "trainer=smoke", "model.attention=bogus",
                   f"hydra.run.dir={tmp_path}", *debug, env=env)
    assert proc.returncode == 1 and "Traceback" in proc.stderr


@pytest.mark.parametrize(
    "override, needle",
    [
        ("trainer.max_steps=abc", "trainer.max_steps='abc'"),
        ("trainer.max_steps=0", "trainer.max_steps=0"),
        ("optim.lr=-1", "optim.lr=-1"),
        ("optim.weight_decay=-0.1", "optim.weight_decay=-0.1"),
        ("optim.warmup_steps=7", "optim.warmup_steps=7"),
    ],
)
def test_bad_run_numbers_name_the_key(override, needle):
    from lra_mega.run.train import check_run_settings

    cfg = compose_config(["task=listops", "trainer=smoke", override])
    with pytest.raises(ValueError) as err:
        check_run_settings(cfg)
    assert needle in str(err.value) and "must be" in str(err.value)


@pytest.mark.parametrize("override, nearest", [("seeed=3", "seed"), ("lr=1e-3", "optim.lr"),
                                               ("phase=x", None), ("optim.lrr=1", "optim.lr")])
def test_unknown_top_level_key_names_the_nearest(run_cli, override, nearest):
    """Hydra's null hydra.sweeper.params once crashed the helper that lists the valid keys."""
    key = override.split("=")[0]
    line = _one_line_error(run_cli("task=listops", "trainer=smoke", override))
    assert f"unknown key {key}" in line
    if nearest:
        assert f"nearest valid: {nearest}" in line
    assert "hydra." not in line and "_target_" not in line  # Hydra's own keys are no help here


@pytest.mark.parametrize("word, needle", [
    ("listops", "did you mean task=listops?"),
    ("smoke", "did you mean trainer=smoke?"),
    ("listop", "did you mean task=listops?"),
    ("task", "task=<choice>"),
    ("nonsense", "key=value"),
])
def test_bare_word_names_the_override_it_meant(run_cli, word, needle):
    line = _one_line_error(run_cli(word) if word == "listops" else run_cli("task=listops", word))
    assert needle in line and repr(word) in line


def test_unparsable_override_is_one_line(run_cli):
    line = _one_line_error(run_cli("task=listops", "optim.lr=[1"))
    assert "cannot parse the override 'optim.lr=[1'" in line and "key=value" in line


@pytest.mark.parametrize(
    "overrides, needle",
    [
        (["test=maybe"], "test='maybe' is not valid"),
        (["optimized_metric=best_val_ac"], "did you mean best_val_acc?"),
        (["optimized_metric=test_acc", "test=false"], "when test=false"),
    ],
)
def test_bad_top_level_values_name_the_key(overrides, needle):
    from lra_mega.run.validate import check_run_settings

    cfg = compose_config(["task=listops", "trainer=smoke", *overrides])
    with pytest.raises(ValueError) as err:
        check_run_settings(cfg)
    assert needle in str(err.value) and "must be" in str(err.value)


def test_unknown_stage_and_pretrain_keys_on_a_classification_run(run_cli):
    line = _one_line_error(run_cli("task=listops", "stage=x"))
    assert "unknown stage 'x'" in line and "classify, pretrain" in line
    line = _one_line_error(run_cli("task=listops", "pretrain.mask_prob=0.2"))
    assert "add stage=pretrain" in line
