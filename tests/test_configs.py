"""Every packaged config composes, and each task's values equal the paper's (docs/PRESETS.md)."""

from __future__ import annotations

import importlib.util

import pytest
from harness import compose_config
from hydra.utils import get_class

from lra_mega.data import LRADataModule

# docs/PRESETS.md (the paper's appendix and the official commands), copied by hand:
# layers, d, z, v, attention, norm, prenorm, lr, batch, updates, warmup, wd, dropout, chunk, trunc
PAPER = {
    "listops":    (6, 80, 64, 160, "softmax", "layernorm", False, 1e-3, 64, 90_000, 3_000, 0.01, 0.1, -1, 1024),
    "text":       (4, 128, 64, 256, "softmax", "scalenorm", False, 4e-3, 50, 25_000, 10_000, 0.01, 0.1, -1, 1024),
    "retrieval":  (6, 128, 64, 256, "softmax", "scalenorm", False, 3e-3, 64, 91_960, 10_000, 0.04, 0.1, -1, 1024),
    "image":      (8, 160, 96, 320, "laplace", "batchnorm", True, 1e-2, 50, 180_000, 9_000, 0.02, 0.0, -1, 1024),
    "pathfinder": (6, 128, 64, 256, "laplace", "batchnorm", True, 1e-2, 128, 250_000, 50_000, 0.01, 0.0, -1, 1024),
    "pathx":      (4, 64, 32, 128, "laplace", "batchnorm", True, 1e-2, 128, 125_000, 25_000, 0.01, 0.0, -1, 4096),
}
GENERATED_SIZES = {"listops": (96_000, 2_000, 2_000), "pathfinder": (160_000, 20_000, 20_000),
                   "pathx": (160_000, 20_000, 20_000)}
CHUNK = {"listops": 128, "text": 128, "retrieval": 128, "image": 128, "pathfinder": 128, "pathx": 4096}


def _row(cfg) -> tuple:
    m, o = cfg.model, cfg.optim
    return (m.depth, m.dim, m.zdim, m.hdim, m.attention, m.norm, m.prenorm, o.lr, cfg.data.batch_size,
            cfg.trainer.max_steps, o.warmup_steps, o.weight_decay, m.dropout, m.chunk_size, m.truncation)


@pytest.mark.parametrize("task", PAPER)
def test_task_config_is_the_paper_run(task):
    cfg = compose_config([f"task={task}"])
    assert cfg.task_name == task
    assert _row(cfg) == PAPER[task]
    # shared recipe: AdamW(0.9, 0.98, 1e-8), clip 1.0, EMA dim 16, mean pooling, schedule over all updates
    assert list(cfg.optim.betas) == [0.9, 0.98] and cfg.optim.eps == 1e-8
    assert cfg.optim.total_steps == PAPER[task][9]
    assert cfg.trainer.gradient_clip_val == 1.0
    assert cfg.model.ndim == 16 and cfg.head.pooling == "mean"
    assert cfg.model.attention_dropout == 0.0 and cfg.model.hidden_dropout == 0.0
    head = "RetrievalHead" if task == "retrieval" else "ClassificationHead"
    assert cfg.head._target_ == f"lra_mega.model.{head}"
    dm_cls = get_class(cfg.data._target_)
    assert issubclass(dm_cls, LRADataModule) and dm_cls.task == task
    if task in GENERATED_SIZES:
        assert cfg.data.source == "generate"
        assert (cfg.data.n_train, cfg.data.n_val, cfg.data.n_test) == GENERATED_SIZES[task]
    # validation lands on the last update, so the final weights can be the chosen checkpoint
    val_updates = cfg.trainer.val_check_interval // cfg.trainer.accumulate_grad_batches
    assert cfg.trainer.max_steps % val_updates == 0
    # everything else as the paper preset, which only pins fp32
    paper = compose_config([f"experiment={task}_paper"])
    assert {k: v for k, v in paper.items() if k != "trainer"} == {k: v for k, v in cfg.items() if k != "trainer"}
    assert {**paper.trainer, "precision": None} == {**cfg.trainer, "precision": None}
    assert cfg.trainer.check_val_every_n_epoch is None
    # the checkpoint is chosen by best validation accuracy
    assert cfg.callbacks.model_checkpoint.monitor == "val/acc"
    assert cfg.callbacks.model_checkpoint.mode == "max"


@pytest.mark.parametrize("task", PAPER)
def test_experiments_compose(task):
    paper = compose_config([f"experiment={task}_paper"])
    assert paper.task_name == task and _row(paper) == PAPER[task]
    chunk = compose_config([f"experiment={task}_chunk"])
    expected = list(PAPER[task])
    expected[13] = CHUNK[task]
    assert _row(chunk) == tuple(expected)


def test_config_digest_ignores_where_a_run_lives(tmp_path):
    from omegaconf import OmegaConf

    from lra_mega.run.train import config_digest

    def digest(out, *extra):
        cfg = compose_config(["task=listops", "trainer=smoke", *extra], output_dir=tmp_path / out)
        return config_digest(OmegaConf.to_container(cfg, resolve=True))

    assert digest("a") == digest("b", "data.num_workers=2", "logger=csv", f"data.cache_dir={tmp_path}")
    assert digest("a") != digest("a", "optim.lr=3e-3")
    assert digest("a") != digest("a", "seed=1")


def test_smoke_is_tiny_and_slices_generated_data():
    cfg = compose_config(["task=pathfinder", "trainer=smoke"])
    assert (cfg.model.depth, cfg.model.dim) == (2, 32)
    assert cfg.trainer.accelerator == "cpu" and cfg.trainer.max_steps <= 10
    limits = cfg.data.limit_examples
    assert (cfg.data.n_train, cfg.data.n_val, cfg.data.n_test) == (limits.train, limits.val, limits.test)
    assert cfg.optim.total_steps == cfg.trainer.max_steps


def test_trainer_variants(monkeypatch):
    ddp = compose_config(["task=listops", "trainer=ddp"]).trainer
    assert ddp.strategy == "ddp" and ddp.sync_batchnorm is True and ddp.accelerator == "gpu"
    # a strategy override alone also swaps BatchNorm for SyncBatchNorm, on GPUs only
    by_flag = compose_config(["task=pathfinder", "trainer.devices=2", "trainer.strategy=ddp",
                              "trainer.accelerator=gpu"]).trainer
    assert by_flag.sync_batchnorm is True
    on_cpu = ["task=pathfinder", "trainer.devices=2", "trainer.strategy=ddp", "trainer.accelerator=cpu"]
    import lra_mega.run.resolvers

    monkeypatch.setattr(lra_mega.run.resolvers, "_warned", set())  # the warning is printed once per process
    with pytest.warns(UserWarning, match="keeping plain BatchNorm"):
        assert compose_config(on_cpu).trainer.sync_batchnorm is False
    assert compose_config(["task=pathfinder"]).trainer.sync_batchnorm is False
    assert compose_config(["task=listops", "trainer=gpu"]).trainer.precision == "bf16-mixed"
    assert compose_config(["task=listops", "trainer=cpu"]).trainer.precision == "32-true"
    # default: bf16 only where a GPU supports it; the test machine decides which
    import torch

    expected = "bf16-mixed" if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else "32-true"
    assert compose_config(["task=listops"]).trainer.precision == expected


def test_logger_variants():
    default = compose_config(["task=text"]).logger
    assert set(default) == {"wandb", "csv"}
    assert default.wandb.offline is True and default.wandb.project == "lra-mega"
    # name / group / tags null: train.py sets them from the run's identity (tests/test_run_identity.py)
    assert default.wandb.group is None and default.wandb.resume == "allow"
    assert compose_config(["task=text", "logger=wandb_online"]).logger.wandb.offline is False
    assert set(compose_config(["task=text", "logger=csv"]).logger) == {"csv"}
    none = compose_config(["task=text", "logger=none"])
    assert none.logger is None and none.callbacks.learning_rate_monitor is None


@pytest.mark.skipif(importlib.util.find_spec("hydra_plugins.hydra_optuna_sweeper") is None,
                    reason="needs the sweep extra (hydra-optuna-sweeper)")
def test_optuna_sweep_config():
    from hydra import compose, initialize_config_module
    from hydra.core.global_hydra import GlobalHydra

    GlobalHydra.instance().clear()
    with initialize_config_module("lra_mega.configs", version_base="1.3"):
        cfg = compose("config", overrides=["task=listops", "sweep=optuna"], return_hydra_config=True)
    params = cfg.hydra.sweeper.params
    assert set(params) == {"optim.lr", "optim.weight_decay", "model.dropout"}
    assert cfg.hydra.sweeper.direction == "maximize"


# Amos, Berant and Gupta (2024): the share of positions masked in self-pretraining, per task
SPT_MASK_PROB = {"listops": 0.10, "text": 0.15, "retrieval": 0.15, "image": 0.50, "pathfinder": 0.50,
                 "pathx": 0.50}


@pytest.mark.parametrize("task", PAPER)
def test_pretrain_stage_takes_the_paper_mask_share_and_the_task_model(task):
    cfg = compose_config([f"task={task}", "stage=pretrain"])
    plain = compose_config([f"task={task}"])
    assert cfg.stage == "pretrain" and plain.stage == "classify" and plain.init_from is None
    assert cfg.pretrain.objective == "masked" and cfg.pretrain.mask_prob == SPT_MASK_PROB[task]
    assert cfg.pretrain.loss is None and cfg.model == plain.model and cfg.data == plain.data
    assert cfg.callbacks.model_checkpoint.monitor == "val/loss" and cfg.callbacks.model_checkpoint.mode == "min"
    assert cfg.callbacks.chance_level is None and cfg.optimized_metric == "best_val_loss"
    assert "pretrain" not in plain


@pytest.mark.parametrize("task", ["listops", "pathfinder"])
def test_lite_spt_pair_shares_the_lite_budget(task):
    """Pretraining + fine-tuning steps = the _lite run's steps, with its model, data and recipe; the
    fine-tuning run finds the pretraining run of its seed by path."""
    from hydra import compose, initialize_config_module
    from hydra.core.global_hydra import GlobalHydra
    from omegaconf import OmegaConf

    def resolved(preset):
        return OmegaConf.to_container(compose_config([f"experiment={preset}", "seed=3"]), resolve=True)

    lite, pre, ft = resolved(f"{task}_lite"), resolved(f"{task}_lite_spt_pretrain"), resolved(f"{task}_lite_spt")
    assert (pre["stage"], ft["stage"]) == ("pretrain", "classify")
    assert pre["trainer"]["max_steps"] + ft["trainer"]["max_steps"] == lite["trainer"]["max_steps"]
    for run in (pre, ft):
        assert run["model"] == lite["model"] and run["data"] == lite["data"]
        assert run["compile"] == lite["compile"]
        assert run["trainer"]["max_steps"] % run["trainer"]["val_check_interval"] == 0
        assert run["optim"]["total_steps"] == run["trainer"]["max_steps"]
        assert {**run["optim"], "total_steps": 0} == {**lite["optim"], "total_steps": 0}
    assert ft["head"] == lite["head"] and pre["pretrain"]["mask_prob"] == SPT_MASK_PROB[task]
    GlobalHydra.instance().clear()
    with initialize_config_module("lra_mega.configs", version_base="1.3"):
        full = compose("config", overrides=[f"experiment={task}_lite_spt_pretrain", "seed=3"],
                       return_hydra_config=True)
    run_dir = OmegaConf.select(full, "hydra.run.dir")
    assert run_dir == ft["init_from"] and run_dir.endswith(f"outputs/{task}/lite_spt_pretrain/seed3")
