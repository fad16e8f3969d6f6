"""Run identity: preset, trainer and overrides reach results.json and the wandb run; one sweep
writes under one directory."""

from __future__ import annotations

import json
from pathlib import Path

import yaml
from harness import compose_config
from omegaconf import OmegaConf

from lra_mega.run.identity import config_digest, run_identity
from lra_mega.run.validate import check_config

REPO = Path(__file__).resolve().parents[1]


def _identity(overrides):
    cfg = compose_config(overrides)
    check_config(cfg, overrides)
    return run_identity(OmegaConf.to_container(cfg, resolve=True)), cfg


def test_preset_trainer_and_overrides_name_the_run():
    ident, _ = _identity(["experiment=pathfinder_chunk", "trainer=smoke", "seed=3", "optim.lr=0.003"])
    assert (ident.task, ident.experiment, ident.trainer, ident.limited) == ("pathfinder", "pathfinder_chunk",
                                                                          "smoke", True)
    assert ident.name == "pathfinder_chunk[trainer=smoke,seed=3,optim.lr=0.003]"
    assert ident.group == "pathfinder_chunk[trainer=smoke,optim.lr=0.003]"  # seeds share a group
    assert ident.tags == ["pathfinder", "preset:pathfinder_chunk", "trainer:smoke", "stage:classify", "limited"]
    paper, _ = _identity(["experiment=pathfinder_paper"])
    assert paper.name == "pathfinder_paper" and not paper.limited and paper.trainer == "default"


def test_limited_runs_are_marked():
    for overrides in (["task=listops", "data.limit_examples=64"], ["task=listops", "trainer.limit_train_batches=5"],
                      ["task=listops", "+trainer.fast_dev_run=true"]):
        assert _identity(overrides)[0].limited, overrides
    assert not _identity(["task=listops", "trainer.limit_train_batches=1.0"])[0].limited


def test_seed_free_digest_groups_seeds():
    a, b = (OmegaConf.to_container(compose_config(["task=listops", f"seed={s}"]), resolve=True) for s in (1, 2))
    assert config_digest(a) != config_digest(b)
    assert config_digest(a, seed=False) == config_digest(b, seed=False)


def test_settings_added_later_keep_the_digest_at_their_earlier_value():
    """data.eos came after runs were recorded: at false (what those runs computed) it is left out."""
    cfg = OmegaConf.to_container(compose_config(["experiment=listops_lite", "seed=1"]), resolve=True)
    assert cfg["data"]["eos"] is False
    before = {**cfg, "data": {k: v for k, v in cfg["data"].items() if k != "eos"}}
    assert config_digest(cfg) == config_digest(before)
    assert config_digest({**cfg, "data": {**cfg["data"], "eos": True}}) != config_digest(cfg)


def test_lite_presets_still_compute_their_committed_runs():
    """A preset whose committed results (docs/results/) no longer match it must be re-run, not kept.
    A fine-tuning run's digest holds its pretraining run's config: that run must be committed too."""
    records = {path: json.loads(path.read_text())
               for path in sorted(REPO.glob("docs/results/*/seed*/results.json"))}
    composed = {path: OmegaConf.to_container(compose_config(r["overrides"]), resolve=True)
                for path, r in records.items()}
    pretrained = {r["best_checkpoint"]: composed[path]
                  for path, r in records.items() if r.get("stage") == "pretrain"}
    for path, record in records.items():
        init = None
        if record.get("init_from"):
            assert record["init_from"] in pretrained, f"{path}: its pretraining run is not committed"
            init = pretrained[record["init_from"]]
        assert config_digest(composed[path], init=init) == record["config_digest"], path


def test_wandb_run_carries_preset_trainer_and_overrides(tmp_path, offline_env):
    from lra_mega.run.train import instantiate_loggers

    ident, cfg = _identity(["experiment=listops_chunk", "trainer=smoke", "seed=3"])
    cfg = compose_config(["experiment=listops_chunk", "trainer=smoke", "seed=3"], output_dir=tmp_path)
    wandb, csv = instantiate_loggers(cfg, tmp_path, ident, fresh=True)
    init = wandb._wandb_init
    assert init["name"] == "listops_chunk[trainer=smoke,seed=3]"
    assert init["group"] == "listops_chunk[trainer=smoke]"
    assert init["tags"] == ["listops", "preset:listops_chunk", "trainer:smoke", "stage:classify", "limited"]
    assert ident.to_dict()["overrides"] == ["experiment=listops_chunk", "trainer=smoke", "seed=3"]
    named = compose_config(["task=listops", "logger.wandb.name=mine"], output_dir=tmp_path)
    assert instantiate_loggers(named, tmp_path, ident, fresh=True)[0]._wandb_init["name"] == "mine"


def test_multitask_sweep_writes_under_one_directory(run_cli, tmp_path):
    proc = run_cli("-m", "task=listops,pathfinder", "trainer=smoke", "logger=csv", "test=false",
                   "trainer.max_steps=2", "trainer.val_check_interval=2", "data.limit_examples=8",
                   "callbacks.progress_bar=null", f"paths.log_dir={tmp_path}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    (sweep,) = (tmp_path / "multiruns").iterdir()
    assert (sweep / "multirun.yaml").is_file()
    results = {p.parent.name: json.loads(p.read_text()) for p in sweep.glob("*/results.json")}
    assert {k: r["task"] for k, r in results.items()} == {"0": "listops", "1": "pathfinder"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["multiruns"]  # nothing under outputs/<task>/
    for job, r in results.items():
        assert r["trainer"] == "smoke" and r["limited"] is True
        stored = yaml.safe_load((sweep / job / ".hydra" / "config.yaml").read_text())
        assert stored["task_name"] == r["task"]


def test_stage_names_the_run_and_its_digest():
    """A pretraining run says so in its name, group and tags, whether the stage comes from the command
    line or from a preset; plain classification runs keep the names and digests they had."""
    ident, cfg = _identity(["task=listops", "stage=pretrain", "seed=2"])
    assert ident.stage == "pretrain" and cfg.pretrain.mask_prob == 0.1
    assert ident.name == "listops[stage=pretrain,seed=2]" and ident.group == "listops[stage=pretrain]"
    assert ident.tags == ["listops", "preset:listops", "trainer:default", "stage:pretrain"]
    preset, _ = _identity(["experiment=pathfinder_lite_spt_pretrain", "seed=1"])
    assert preset.name == "pathfinder_lite_spt_pretrain[stage=pretrain,trainer=cpu,seed=1]"
    finetune, _ = _identity(["experiment=listops_lite_spt", "seed=1"])
    assert finetune.stage == "classify" and "init:pretrained" in finetune.tags
    # a digest written before stages existed (no stage, no init_from keys) is unchanged
    plain = OmegaConf.to_container(compose_config(["task=listops", "seed=1"]), resolve=True)
    old = {k: v for k, v in plain.items() if k not in ("stage", "init_from")}
    assert config_digest(plain) == config_digest(old)
    pre = OmegaConf.to_container(compose_config(["task=listops", "seed=1", "stage=pretrain"]), resolve=True)
    assert config_digest(pre) != config_digest(plain)


def test_finetuning_digest_groups_by_the_pretraining_setting_not_its_path():
    """Seeds of one SPT setting start from different directories (one per seed): without the seed
    their digests agree, because the digest holds the pretraining run's setting, not its path."""
    pre = {s: OmegaConf.to_container(compose_config(["experiment=listops_lite_spt_pretrain", f"seed={s}"]),
                                     resolve=True) for s in (1, 2)}
    ft = {s: OmegaConf.to_container(compose_config(["experiment=listops_lite_spt", f"seed={s}"]), resolve=True)
          for s in (1, 2)}
    assert ft[1]["init_from"] != ft[2]["init_from"]
    assert config_digest(ft[1], seed=False, init=pre[1]) == config_digest(ft[2], seed=False, init=pre[2])
    assert config_digest(ft[1], init=pre[1]) != config_digest(ft[2], init=pre[2])
    other = OmegaConf.to_container(compose_config(["experiment=listops_lite_spt_pretrain", "seed=1",
                                                   "pretrain.mask_prob=0.3"]), resolve=True)
    assert config_digest(ft[1], seed=False, init=other) != config_digest(ft[1], seed=False, init=pre[1])
    scratch = OmegaConf.to_container(compose_config(["experiment=listops_lite", "seed=1",
                                                     "trainer.max_steps=1000", "trainer.val_check_interval=500"]),
                                     resolve=True)
    assert config_digest(scratch, seed=False) != config_digest(ft[1], seed=False, init=pre[1])
