"""Every bad input ends in one line naming the key and the fix, before any data work; the
training order follows `seed` while generated data stays fixed by `data.seed`."""

from __future__ import annotations

import pytest
import torch
from harness import SMOKE, compose_config, error_lines
from hydra.errors import ConfigCompositionException
from hydra.utils import instantiate

from lra_mega.__main__ import composition_message, help_text
from lra_mega.data.errors import LRAConfigError
from lra_mega.run.identity import hydra_overrides
from lra_mega.run.validate import check_config


def _composition_error(overrides: list[str]) -> str:
    with pytest.raises(ConfigCompositionException) as err:
        compose_config(overrides)
    return composition_message(err.value)


@pytest.mark.parametrize("override, expected", [
    ("optim.lrr=1e-3", "unknown key optim.lrr; nearest valid: optim.lr"),
    ("data.limit_examples={trian: 16}", "unknown key data.limit_examples.trian; nearest valid: "
                                         "data.limit_examples.train"),
    ("model.dimm=3", "unknown key model.dimm; nearest valid: model.dim"),
])
def test_key_typos_name_the_nearest_valid_key(override, expected):
    assert _composition_error(["task=listops", "trainer=smoke", override]).startswith(expected)


@pytest.mark.parametrize("override, expected", [
    ("+lr=1e-3", "unknown key lr (added with +, but nothing reads it); nearest valid: optim.lr"),
    ("+trainer.max_stepz=3", "unknown key trainer.max_stepz (added with +, but trainer takes no such "
                             "argument); nearest valid: trainer.max_steps"),
    ("+model.dimm=3", "unknown key model.dimm"),
    ("+data.batch_sise=3", "nearest valid: data.batch_size"),
    ("+callbacks.foo=1", "+callbacks.foo must be a mapping with a _target_"),
])
def test_added_keys_nothing_reads_are_refused(override, expected):
    cfg = compose_config(["task=listops", "trainer=smoke", override])
    with pytest.raises(ValueError) as err:
        check_config(cfg, hydra_overrides())
    assert expected in str(err.value)


def test_added_trainer_flag_that_exists_is_accepted():
    cfg = compose_config(["task=listops", "trainer=smoke", "+trainer.profiler=simple"])
    check_config(cfg, hydra_overrides())


@pytest.mark.parametrize("override, needle", [
    ("data.batch_size=big", "data.batch_size='big' is not valid; it must be an integer >= 1"),
    ("data.num_workers=-1", "data.num_workers=-1 is not valid; it must be an integer >= 0"),
    ("data.pin_memory=maybe", "data.pin_memory='maybe' is not valid"),
    ("data.root=/tmp", "data.root=/tmp is not read by data.source='generate'"),
    ("data.limit_examples={train: 0}", "data.limit_examples.train=0 is not valid"),
])
def test_bad_data_settings_name_the_key(override, needle, tmp_path):
    cfg = compose_config(["task=listops", "trainer=smoke", override], output_dir=tmp_path)
    check_config(cfg, [])
    with pytest.raises(Exception) as err:  # hydra wraps it in an InstantiationException
        instantiate(cfg.data)
    assert isinstance(err.value.__cause__, LRAConfigError) and needle in str(err.value.__cause__)


def test_int_limit_examples_caps_generation_too():
    cfg = compose_config(["task=pathx", "data.limit_examples=16"])
    check_config(cfg, [])
    assert (cfg.data.n_train, cfg.data.n_val, cfg.data.n_test) == (16, 16, 16)
    with pytest.raises(ValueError, match="data.limit_examples=0 is not valid"):
        check_config(compose_config(["task=pathx", "data.limit_examples=0"]), [])


@pytest.mark.parametrize("override, needle", [
    ("model.attention=bogus", "attention"),
    ("trainer=gpu", "trainer.accelerator='gpu' asks for a device this machine does not have"),
    ("trainer.accelerator=tpu", "trainer.accelerator='tpu'"),
])
@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-GPU message")
def test_model_and_trainer_are_checked_before_any_data_work(override, needle, tmp_path, monkeypatch,
                                                            offline_env):
    """Path-X at full size: data work would mean generating 200k images."""
    from lra_mega.data.base import LRADataModule
    from lra_mega.run.train import train

    def no_data(self):
        raise AssertionError("data work started before the settings were checked")

    monkeypatch.setattr(LRADataModule, "prepare_data", no_data)
    monkeypatch.setattr(LRADataModule, "setup", no_data)
    with pytest.raises(ValueError) as err:
        train(compose_config(["task=pathx", "logger=csv", override], output_dir=tmp_path))
    assert needle in str(err.value) and "\n" not in str(err.value)
    assert not (tmp_path / ".hydra").exists()  # nothing recorded for a refused run


def test_help_is_a_real_help_text(run_cli):
    proc = run_cli("--help")
    assert proc.returncode == 0 and proc.stdout == help_text()
    for word in ("usage:", "task:", "listops", "experiment:", "pathfinder_chunk", "trainer:", "smoke",
                 "seed=", "resume=", "--cfg job"):
        assert word in proc.stdout


def test_cli_prints_one_line_for_a_key_typo(run_cli, tmp_path):
    proc = run_cli("task=listops", "optim.lrr=1e-3", f"hydra.run.dir={tmp_path}")
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert error_lines(proc.stderr) == ["lra_mega: error: unknown key optim.lrr; nearest valid: "
                                        "optim.lr, optim.eps, optim.betas"]


def _first_batch(overrides: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
    cfg = compose_config([*SMOKE, *overrides])
    check_config(cfg, [])
    dm = instantiate(cfg.data)
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    return batch["label"], batch["input"]


def test_training_order_follows_seed_not_data_seed(offline_env):
    one, two, one_again = (_first_batch([f"seed={s}"]) for s in (1, 2, 1))
    assert torch.equal(one[1], one_again[1]) and torch.equal(one[0], one_again[0])
    assert not torch.equal(one[1], two[1])
    # the data itself (generated from data.seed) is the same for both seeds
    cfg1, cfg2 = (compose_config([*SMOKE, f"seed={s}"]) for s in (1, 2))
    ds1, ds2 = (instantiate(c.data) for c in (cfg1, cfg2))
    ds1.setup("fit"), ds2.setup("fit")
    assert [ds1.datasets["train"][i][1] for i in range(32)] == [ds2.datasets["train"][i][1] for i in range(32)]
