"""The CPU path: `_lite` presets, length-grouped batches, log-file progress, the no-GPU warning,
FLOPs for the ThroughputMonitor."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest
import torch
from harness import SMOKE, TASKS, compose_config, csv_column
from omegaconf import OmegaConf
from torch.utils.data import DataLoader

from lra_mega.data.sampling import EpochShuffleSampler, LengthGroupedSampler
from lra_mega.run.identity import is_limited
from lra_mega.run.train import train

# the task's own attention, norm and norm placement (the official recipe's form)
FORM = {"listops": ("softmax", "layernorm"), "text": ("softmax", "scalenorm"),
        "retrieval": ("softmax", "scalenorm"), "image": ("laplace", "batchnorm"),
        "pathfinder": ("laplace", "batchnorm"), "pathx": ("laplace", "batchnorm")}


@pytest.mark.parametrize("task", TASKS)
def test_lite_preset_keeps_the_recipe_form(task):
    lite = compose_config([f"experiment={task}_lite"])
    paper = compose_config([f"experiment={task}_paper"])
    assert lite.task_name == task and lite.trainer.accelerator == "cpu"
    assert (lite.model.attention, lite.model.norm) == FORM[task]
    assert lite.model.norm == paper.model.norm and lite.data._target_ == paper.data._target_
    # full data: no example limit, the generated sizes of the paper run
    assert lite.data.limit_examples is None
    for key in ("n_train", "n_val", "n_test", "resolution", "difficulty"):
        assert lite.data.get(key) == paper.data.get(key)
    assert lite.trainer.limit_train_batches is None
    # the whole test split, except on Path-X (hours on a CPU): there a share, and the run says so
    if task == "pathx":
        assert 0 < lite.trainer.limit_test_batches < 1
        assert is_limited(OmegaConf.to_container(lite, resolve=True), "cpu")
    else:
        assert lite.trainer.limit_test_batches is None
    # AdamW with warmup and linear decay over the whole run; the final weights are validated
    assert lite.optim.total_steps == lite.trainer.max_steps
    assert 0 < lite.optim.warmup_steps < lite.trainer.max_steps
    assert lite.trainer.max_steps % lite.trainer.val_check_interval == 0
    assert lite.model.chunk_size > 0 and lite.model.dim < paper.model.dim


@pytest.mark.parametrize("task", TASKS)
def test_lite_preset_trains_a_few_steps(task, tmp_path, offline_env, data_overrides):
    run_dir = tmp_path / task
    cfg = compose_config([
        f"experiment={task}_lite", *data_overrides[task], "logger=csv", "callbacks.progress_bar=null",
        "data.limit_examples={train: 8, val: 4, test: 4}", "data.batch_size=2", "trainer.max_steps=2",
        "trainer.val_check_interval=2", "optim.warmup_steps=1", "trainer.limit_val_batches=null",
        "trainer.limit_test_batches=null", "compile=false",
    ], output_dir=run_dir)
    results = train(cfg)
    assert results["steps"] == 2 and results["experiment"] == f"{task}_lite"
    assert results["test_acc"] is not None and "CPUs" in results["machine"]
    assert (run_dir / "curves.png").read_bytes()[:4] == b"\x89PNG"


def test_compiled_encoder_trains_and_saves_plain_names(tmp_path, offline_env):
    run_dir = tmp_path / "compiled"  # one block on one image size: a short compilation
    cfg = compose_config(["task=pathfinder", "trainer=smoke", "logger=csv", "callbacks.progress_bar=null",
                          "compile=true", "model.depth=1", "trainer.max_steps=2", "trainer.val_check_interval=2",
                          "test=false"], output_dir=run_dir)
    assert train(cfg)["steps"] == 2
    state = torch.load(run_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    assert not any("_orig_mod" in k for k in state["state_dict"])


# ----- length-grouped batches ------------------------------------------------------------

def _batches(sampler, batch_size: int) -> list[list[int]]:
    return [b.tolist() for b in DataLoader(range(sampler.n), batch_size=batch_size, sampler=sampler)]


def test_grouped_batches_hold_every_example_once_and_pad_less():
    rng = np.random.default_rng(0)
    lengths = rng.integers(500, 2000, size=1003)
    sampler = LengthGroupedSampler(lengths, batch_size=16, seed=3, pool_batches=8)
    for epoch in (0, 1):
        sampler.set_epoch(epoch)
        batches = _batches(sampler, 16)
        flat = [i for b in batches for i in b]
        assert sorted(flat) == list(range(1003))  # each example exactly once
        assert [len(b) for b in batches[:-1]] == [16] * 62 and len(batches[-1]) == 1003 % 16
        # within a pool the batches are sorted: the spread inside a batch is small
        grouped = np.mean([lengths[b].max() for b in batches])
        plain = EpochShuffleSampler(1003, 3)
        plain.set_epoch(epoch)
        shuffled = np.mean([lengths[b].max() for b in _batches(plain, 16)])
        assert grouped < 0.8 * shuffled
    sampler.set_epoch(0)
    first = sampler.order(0)
    assert not np.array_equal(first, sampler.order(1))  # a new grouping every epoch
    assert np.array_equal(first, LengthGroupedSampler(lengths, 16, 3, 8).order(0))  # seeded
    assert not np.array_equal(first, LengthGroupedSampler(lengths, 16, 4, 8).order(0))


def test_grouped_batches_resume_mid_epoch():
    lengths = np.random.default_rng(1).integers(1, 100, size=200)
    whole = LengthGroupedSampler(lengths, batch_size=8, seed=0, pool_batches=4)
    whole.set_epoch(2)
    expected = _batches(whole, 8)
    resumed = LengthGroupedSampler(lengths, batch_size=8, seed=0, pool_batches=4)
    resumed.resume_at(2, 7 * 8)  # 7 batches of epoch 2 were trained on
    resumed.set_epoch(2)
    assert _batches(resumed, 8) == expected[7:]


def test_datamodule_groups_training_batches_only(tmp_path):
    from lra_mega.data import ListOpsDataModule

    dm = ListOpsDataModule(n_train=96, n_val=16, n_test=16, min_len=10, max_len=200, seq_len=200,
                           batch_size=8, num_workers=0, cache_dir=tmp_path, group_by_length=True)
    dm.setup()
    lengths = dm.datasets["train"].lengths()
    by_hand = [len(dm.datasets["train"][i][0]) for i in range(96)]
    assert lengths.tolist() == by_hand
    train_pad = [int(b["mask"].shape[1]) for b in dm.train_dataloader()]
    real = sorted(int(b["mask"].sum()) for b in dm.train_dataloader())
    assert sum(real) == sum(by_hand)
    shuffled = ListOpsDataModule(n_train=96, n_val=16, n_test=16, min_len=10, max_len=200, seq_len=200,
                                 batch_size=8, num_workers=0, cache_dir=tmp_path)
    plain_pad = [int(b["mask"].shape[1]) for b in shuffled.train_dataloader()]
    assert sum(train_pad) < sum(plain_pad)
    # validation keeps the file order
    val = [b["label"].tolist() for b in dm.val_dataloader()]
    assert [y for b in val for y in b] == [dm.datasets["val"][i][1] for i in range(16)]


def test_group_by_length_must_be_a_bool(run_cli):
    out = run_cli("task=listops", "trainer=smoke", "data.group_by_length=sometimes")
    assert out.returncode == 1
    assert "data.group_by_length='sometimes'" in out.stderr and "true" in out.stderr


# ----- what a log file shows --------------------------------------------------------------

def test_log_file_shows_progress_and_validation(run_cli, tmp_path):
    run_dir = tmp_path / "run"
    out = run_cli("task=listops", "trainer=smoke", "logger=csv", f"hydra.run.dir={run_dir}",
                  "callbacks.log_progress.every_n_steps=2")
    assert out.returncode == 0, out.stderr[-2000:]
    text = out.stdout + out.stderr  # a pipe, not a terminal
    for step in (2, 4, 6):
        line = next(ln for ln in text.splitlines() if f"step {step}/6 " in ln)
        for part in ("loss ", "acc ", "samples/s", "s/step", "left "):
            assert part in line, line
    assert "validation at step 3: val/loss" in text and "validation at step 6:" in text
    log_file = (run_dir / "lra_mega.log").read_text()
    assert "step 4/6" in log_file and "validation at step 6" in log_file


def test_no_log_lines_when_told_never(run_cli, tmp_path):
    out = run_cli("task=listops", "trainer=smoke", "logger=csv", f"hydra.run.dir={tmp_path / 'r'}",
                  "callbacks.log_progress.when=never")
    assert out.returncode == 0
    assert "step 2/6" not in out.stdout + out.stderr


@pytest.mark.parametrize("trigger", [["callbacks.cpu_run_estimate.after_steps=2"],
                                     ["callbacks.cpu_run_estimate.after_seconds=0"]], ids=["steps", "seconds"])
def test_cpu_warning_names_the_lite_command(run_cli, tmp_path, trigger):
    base = ["task=pathfinder", "trainer=smoke", "logger=csv", *trigger]
    slow = run_cli(*base, f"hydra.run.dir={tmp_path / 'a'}", "callbacks.cpu_run_estimate.max_hours=0")
    assert slow.returncode == 0, slow.stderr[-2000:]
    warning = [ln for ln in (slow.stdout + slow.stderr).splitlines() if "no GPU:" in ln]
    assert len(warning) == 1
    assert "s/step" in warning[0] and "days" in warning[0]
    assert "python -m lra_mega experiment=pathfinder_lite" in warning[0]
    quick = run_cli(*base, f"hydra.run.dir={tmp_path / 'b'}")  # 6 steps: far below 3 hours
    assert quick.returncode == 0 and "no GPU:" not in quick.stdout + quick.stderr


# ----- FLOPs for the ThroughputMonitor ------------------------------------------------------

def test_flops_per_batch_is_counted_without_touching_the_model(offline_env, tmp_path):
    from lra_mega.training.classifier import LRAClassifier

    encoder = dict(_target_="lra_mega.model.MegaEncoder", vocab_size=16, input_kind="tokens", dim=32,
                   depth=2, zdim=16, hdim=64, chunk_size=32, norm="batchnorm", dropout=0.1, max_len=256)
    head = dict(_target_="lra_mega.model.ClassificationHead", dim=32, num_classes=10)
    model = LRAClassifier(encoder=encoder, head=head, num_classes=10)
    batch = {"input": torch.randint(1, 16, (4, 128)), "mask": torch.ones(4, 128, dtype=torch.bool),
             "label": torch.randint(0, 10, (4,))}
    before = copy.deepcopy(model.state_dict())
    rng = torch.get_rng_state()
    model._count_flops(batch)
    assert torch.equal(rng, torch.get_rng_state())  # dropout draws are unchanged
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # weights and BatchNorm statistics
    # independent bound: a step costs 6 FLOPs per linear weight per position (2 forward, 4 backward),
    # plus attention and EMA on top
    linear = sum(m.weight.numel() for m in model.encoder.modules() if isinstance(m, torch.nn.Linear))
    flops = model._flops_per_position * 4 * 128
    assert 6 * linear * 4 * 128 <= flops <= 3 * 6 * linear * 4 * 128


def test_throughput_monitor_logs_flops(tmp_path, offline_env):
    run_dir = tmp_path / "run"
    cfg = compose_config([*SMOKE, "trainer.max_steps=8", "trainer.val_check_interval=8",
                          "callbacks.throughput.window_size=3",
                          "data.limit_examples={train: 64, val: 4, test: 4}"], output_dir=run_dir)
    train(cfg)
    flops = csv_column(run_dir, "train/device/flops_per_sec")
    assert flops and all(v > 0 for v in flops.values())
    assert json.loads((run_dir / "results.json").read_text())["steps"] == 8
