"""Sharded, resumable, parallel generation and the Pathfinder datamodules."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lra_mega.data import DATAMODULES
from lra_mega.data import pathfinder as pf_mod
from lra_mega.data.errors import LRAConfigError
from lra_mega.data.pathfinder import PathfinderDataModule, PathXDataModule, generate_split
from lra_mega.data.pathfinder_generate import generate, pathfinder_settings
from lra_mega.data.shards import shard_path

S32 = pathfinder_settings(32, contour_length=6)


class Stop(Exception):
    pass


def test_workers_and_shard_size_do_not_change_the_data(tmp_path):
    a = generate_split(tmp_path / "a", S32, 1000, seed=3, shard_size=256, workers=1, progress=False)
    b = generate_split(tmp_path / "b", S32, 1000, seed=3, shard_size=512, workers=2, progress=False)
    ref = generate(S32, 1000, seed=3)
    assert a["pixels"].shape == (1000, 1024) and a["pixels"].dtype == np.uint8
    assert np.array_equal(a["pixels"], ref.images.reshape(1000, -1)) and np.array_equal(a["labels"], ref.labels)
    assert np.array_equal(a["pixels"], b["pixels"]) and np.array_equal(a["labels"], b["labels"])
    assert not (tmp_path / "a.shards").exists()  # shards removed after consolidation
    assert (tmp_path / "a" / "manifest.json").exists()


def test_interrupted_generation_resumes_without_redoing_shards(tmp_path):
    out = tmp_path / "split"
    shards = tmp_path / "split.shards"
    made: list[int] = []

    def die_after_two(i: int) -> None:
        made.append(i)
        if len(made) == 2:
            raise Stop

    with pytest.raises(Stop):
        generate_split(out, S32, 1000, seed=9, shard_size=256, workers=1, progress=False,
                       on_shard_done=die_after_two)
    assert made == [0, 1] and not out.exists()
    assert all(shard_path(shards, i).exists() for i in (0, 1)) and not shard_path(shards, 2).exists()
    # a torn shard (final name, garbage content) and a stale temporary are never trusted
    shard_path(shards, 2).write_bytes(b"PK\x03\x04 torn")
    (shards / ".shard_00003.npz.tmp-1-dead").write_bytes(b"partial")

    again: list[int] = []
    arrays = generate_split(out, S32, 1000, seed=9, shard_size=256, workers=1, progress=False,
                            on_shard_done=again.append)
    assert again == [2, 3]  # only the missing / broken shards were generated
    ref = generate(S32, 1000, seed=9)
    assert np.array_equal(arrays["pixels"], ref.images.reshape(1000, -1))
    assert np.array_equal(arrays["labels"], ref.labels)


def test_shard_size_must_be_block_multiple(tmp_path):
    with pytest.raises(LRAConfigError, match="multiple of 256.*100"):
        generate_split(tmp_path / "x", S32, 10, seed=0, shard_size=100)


def test_datamodule_batches_and_cache(tmp_path, monkeypatch):
    kw = dict(n_train=300, n_val=40, n_test=40, difficulty=6, cache_dir=tmp_path, batch_size=16,
              num_workers=0, workers=1, shard_size=256)
    dm = PathfinderDataModule(**kw)
    assert (dm.num_classes, dm.vocab_size, dm.input_kind, dm.seq_len, dm.dual) == (2, None, "pixels", 1024, False)
    assert DATAMODULES["pathfinder"] is PathfinderDataModule and DATAMODULES["pathx"] is PathXDataModule
    dm.prepare_data()
    dm.setup()
    ref = generate(S32, 40, seed=[0, 1])  # val is stream [seed, 1]
    batches = list(dm.val_dataloader())
    assert [len(b["label"]) for b in batches] == [16, 16, 8]  # eval keeps the last partial batch
    b = batches[0]
    assert b["input"].shape == (16, 1024) and b["input"].dtype == torch.float32
    assert b["mask"].dtype == torch.bool and bool(b["mask"].all())
    expect = (ref.images[:16].reshape(16, -1).astype(np.float32) / 255 - 0.5) / 0.5
    assert np.allclose(b["input"].numpy(), expect, atol=1e-6)
    assert np.array_equal(b["label"].numpy(), ref.labels[:16])
    # a second datamodule reads the cache and never generates
    monkeypatch.setattr(pf_mod, "generate_split", lambda *a, **k: pytest.fail("regenerated"))
    dm2 = PathfinderDataModule(**kw)
    dm2.setup()
    assert len(dm2.datasets["train"]) == 300


def test_pathx_attributes_and_bad_args(tmp_path):
    dm = PathXDataModule(cache_dir=tmp_path)
    assert (dm.seq_len, dm.num_classes, dm.input_kind, dm.settings.image_size) == (16384, 2, "pixels", 128)
    assert dm.sizes == {"train": 160_000, "val": 20_000, "test": 20_000} and dm.source == "generate"
    with pytest.raises(LRAConfigError, match="difficulty=10.*6, 9, 14"):
        PathfinderDataModule(difficulty=10, cache_dir=tmp_path)
    with pytest.raises(LRAConfigError, match="n_val.*0"):
        PathfinderDataModule(n_val=0, cache_dir=tmp_path)


def test_resolution_override_selects_the_official_sizes(tmp_path):
    dm = PathfinderDataModule(resolution=256, cache_dir=tmp_path)
    assert (dm.seq_len, dm.settings.image_size, dm.shard_size) == (65_536, 256, 256)
    assert PathXDataModule(resolution=64, difficulty=6, cache_dir=tmp_path).seq_len == 4096
    assert PathXDataModule(cache_dir=tmp_path).shard_size == 512
    with pytest.raises(LRAConfigError, match="data.resolution=100.*32, 64, 128, 256"):
        PathfinderDataModule(resolution=100, cache_dir=tmp_path)
