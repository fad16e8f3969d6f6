"""`model=megalodon` and the Megalodon presets: they compose, hold Mega's recipe plus the official
Megalodon architecture values (docs/PRESETS.md, "Megalodon"), and a lite preset trains a few steps."""

from __future__ import annotations

import pytest
from harness import TASKS, compose_config
from omegaconf import OmegaConf

from lra_mega.run.train import train

# official fairseq-apollo (branch residual) architectures, fairseq/models/lra/model.py:
# encoder_ffn_embed_dim (image: the base default = encoder_hidden_dim) and moving_act (default rmsnorm)
OFFICIAL = {"listops": (200, "rmsnorm"), "text": (320, "rmsnorm"), "retrieval": (320, "rmsnorm"),
            "image": (320, "rmsnorm"), "pathfinder": (320, "silu"), "pathx": (160, "silu")}
CHUNK = {"listops": 128, "text": 128, "retrieval": 128, "image": 128, "pathfinder": 128, "pathx": 4096}
# keys both encoders read the same way: Mega's recipe for the task
SHARED = ("depth", "dim", "zdim", "hdim", "ndim", "attention", "dropout", "attention_dropout", "hidden_dropout",
          "bidirectional")


def _plain(cfg, *drop: str) -> dict:
    out = OmegaConf.to_container(cfg, resolve=True)
    for key in drop:
        out.pop(key, None)
    return out


@pytest.mark.parametrize("task", TASKS)
def test_megalodon_presets_are_megas_recipe_with_the_official_architecture(task):
    mega = compose_config([f"experiment={task}_paper"])
    full = compose_config([f"experiment={task}_megalodon"])
    chunk = compose_config([f"experiment={task}_megalodon_chunk"])
    m = full.model
    assert m._target_ == "lra_mega.model.MegalodonEncoder"
    assert all(m[k] == mega.model[k] for k in SHARED), {k: (m[k], mega.model[k]) for k in SHARED}
    assert (m.ffn_dim, m.moving_act) == OFFICIAL[task]
    assert (m.norm, m.prenorm, m.chunk_size, m.truncation, m.rel_pos, m.num_heads) == ("layernorm", True, -1, None,
                                                                                        "rotary", 1)
    assert (m.ffn_residual, m.norm_num_groups, m.omega_init, m.init_mode) == ("block", None, "normal", "bert")
    assert m.laplace_approx  # the official logistic laplace, memory-lean at Path-X's 16,384 positions too
    # everything outside the encoder is Mega's paper run: data, optimiser, schedule, steps, head, fp32
    assert _plain(full, "model") == _plain(mega, "model")
    assert _plain(chunk, "model") == _plain(full, "model")
    assert {**_plain(chunk.model), "chunk_size": None} == {**_plain(m), "chunk_size": None}
    assert chunk.model.chunk_size == CHUNK[task]


@pytest.mark.parametrize("task", TASKS)
def test_megalodon_lite_runs_megas_lite_preset(task):
    mega = compose_config([f"experiment={task}_lite"])
    lite = compose_config([f"experiment={task}_megalodon_lite"])
    paper = compose_config([f"experiment={task}_megalodon"])
    assert _plain(lite, "model") == _plain(mega, "model")  # data, steps, optimiser, head, compile
    assert all(lite.model[k] == mega.model[k] for k in (*SHARED, "chunk_size"))
    for key in ("norm", "prenorm", "truncation", "moving_act", "laplace_approx", "rel_pos", "ffn_residual"):
        assert lite.model[key] == paper.model[key], key
    assert lite.model.ffn_dim == (None if task == "image" else 80)  # 1.25 x hdim, as the official widths


def test_model_group_selects_megalodon_on_any_task(run_cli):
    out = run_cli("task=pathfinder", "model=megalodon", "--cfg", "job")
    assert out.returncode == 0, out.stderr[-2000:]
    assert "_target_: lra_mega.model.MegalodonEncoder" in out.stdout
    cfg = compose_config(["task=pathfinder", "model=megalodon"])
    assert (cfg.model.attention, cfg.model.norm) == ("laplace", "batchnorm")  # Mega's keys, read by the rule


def test_megalodon_lite_trains_a_few_steps(tmp_path, offline_env):
    run_dir = tmp_path / "pathfinder_megalodon_lite"
    cfg = compose_config([
        "experiment=pathfinder_megalodon_lite", "logger=csv", "callbacks.progress_bar=null",
        "data.limit_examples={train: 8, val: 4, test: 4}", "data.batch_size=2", "trainer.max_steps=2",
        "trainer.val_check_interval=2", "optim.warmup_steps=1", "trainer.limit_val_batches=null",
        "trainer.limit_test_batches=null", "compile=false",
    ], output_dir=run_dir)
    results = train(cfg)
    assert results["steps"] == 2 and results["experiment"] == "pathfinder_megalodon_lite"
    assert results["test_acc"] is not None and results["model"] == "MegalodonEncoder"


@pytest.mark.parametrize("task", TASKS)
def test_each_megalodon_preset_runs_a_smoke_step(task, data_overrides, tmp_path, offline_env):
    """The paper preset of every task, shrunk by trainer=smoke (one layer, chunks of 64, tiny data),
    trains one step, validates and tests through the real datamodule."""
    cfg = compose_config([
        f"experiment={task}_megalodon", "trainer=smoke", "logger=csv", "callbacks.progress_bar=null",
        "trainer.max_steps=1", "trainer.val_check_interval=1", "optim.warmup_steps=0", "model.depth=1",
        "model.chunk_size=64",
        "data.batch_size=2", *data_overrides[task],
    ], output_dir=tmp_path)
    results = train(cfg)
    assert (results["steps"], results["experiment"], results["model"]) == (1, f"{task}_megalodon", "MegalodonEncoder")
    assert 0.0 <= results["test_acc"] <= 1.0
    # the attention path is recorded: the official logistic laplace through the blockwise kernel
    softmax, laplace = {"softmax attention": ["blockwise", "sdpa"]}, {"laplace_approx attention": ["blockwise"]}
    want = {"listops": softmax, "text": softmax, "retrieval": softmax, "image": laplace, "pathfinder": laplace,
            "pathx": laplace}
    assert results["ran"]["attention_paths"] == want[task]
