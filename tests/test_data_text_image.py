"""IMDB bytes and CIFAR-10 grayscale from local parquet in the hub's format."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import textwrap

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from lra_mega.data import DATAMODULES, ImageDataModule, LRADataError, TextDataModule
from lra_mega.data.fixtures import write_cifar_parquet, write_imdb_parquet


@pytest.fixture(autouse=True)
def _offline(monkeypatch):
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


@pytest.mark.parametrize("hub_layout", [True, False])
def test_imdb_bytes_and_labels(tmp_path, hub_layout):
    written = write_imdb_parquet(tmp_path / "imdb", n_per_split=5, hub_layout=hub_layout)
    dm = TextDataModule(root=tmp_path / "imdb", batch_size=5, num_workers=0, cache_dir=tmp_path / "c", seq_len=64)
    assert (dm.num_classes, dm.vocab_size, dm.input_kind, dm.dual) == (2, 257, "tokens", False)
    dm.setup()
    for split, hub in (("val", "test"), ("test", "test")):
        b = next(iter(dm._loader(split, shuffle=False)))
        assert b["input"].dtype == torch.int64 and b["mask"].dtype == torch.bool
        assert b["input"].shape[1] <= 64
        for (text, label), row, mask, y in zip(written[hub], b["input"], b["mask"], b["label"]):
            expect = [c + 1 for c in text.encode("utf-8")][:64]
            assert row[mask].tolist() == expect
            assert int(y) == label
    assert len(dm.datasets["train"]) == 5


def test_imdb_bad_rows_skipped(tmp_path, caplog):
    d = tmp_path / "imdb"
    d.mkdir()
    for split in ("train", "test"):
        pq.write_table(pa.table({"text": ["ok one", None, "ok two", "bad label"], "label": [0, 1, 1, 5]}),
                       d / f"{split}-00000-of-00001.parquet")
    dm = TextDataModule(root=d, batch_size=8, num_workers=0, cache_dir=tmp_path / "c")
    with caplog.at_level("WARNING"):
        ds = dm.load_split("train")
    assert "skipped 2 rows" in caplog.text
    assert [bytes((ds[i][0] - 1).tolist()).decode() for i in range(len(ds))] == ["ok one", "ok two"]


def test_imdb_missing_root_and_columns(tmp_path):
    dm = TextDataModule(root=tmp_path / "nope", num_workers=0, cache_dir=tmp_path / "c")
    with pytest.raises(LRADataError, match=r"data.root=.*nope"):
        dm.setup()
    (tmp_path / "empty").mkdir()
    with pytest.raises(LRADataError, match=r"no train-\*\.parquet"):
        TextDataModule(root=tmp_path / "empty", num_workers=0, cache_dir=tmp_path / "c").setup()
    with pytest.raises(ValueError, match=r"'text'.*'release'.*hub"):
        TextDataModule(source="release")


def test_imdb_offline_without_root_is_one_clear_error(tmp_path):
    code = textwrap.dedent(f"""
        from lra_mega.data import TextDataModule, LRADataError
        try:
            TextDataModule(num_workers=0, cache_dir={str(tmp_path / 'c')!r}).setup()
        except LRADataError as e:
            print("MSG:" + str(e))
    """)
    env = {**os.environ, "HF_DATASETS_OFFLINE": "1", "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf"),
           "PYTHONPATH": os.pathsep.join([os.getcwd(), os.environ.get("PYTHONPATH", "")])}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    msg = [ln for ln in out.stdout.splitlines() if ln.startswith("MSG:")]
    assert msg, out.stderr[-2000:]
    assert "download_lra.py --tasks text" in msg[0] and "data.root=" in msg[0]


def gray_reference(rgb: np.ndarray) -> np.ndarray:
    r, g, b = (rgb[..., i].astype(np.float64) for i in range(3))
    return (299 * r + 587 * g + 114 * b) / 1000


def test_cifar_gray_normalised_and_split(tmp_path):
    written = write_cifar_parquet(tmp_path / "cifar", n_per_split=20)
    dm = ImageDataModule(root=tmp_path / "cifar", batch_size=64, num_workers=0, cache_dir=tmp_path / "c")
    assert (dm.num_classes, dm.vocab_size, dm.input_kind, dm.seq_len, dm.dual) == (10, None, "pixels", 1024, False)
    dm.setup()
    assert [len(dm.datasets[s]) for s in ("train", "val", "test")] == [18, 2, 20]
    test = next(iter(dm.test_dataloader()))
    assert test["input"].dtype == torch.float32 and test["input"].shape == (20, 1024) and test["mask"].all()
    for (rgb, label), x, y in zip(written["test"], test["input"], test["label"]):
        gray = gray_reference(rgb).reshape(-1)
        pix = x.double().numpy() * 0.24 + 0.48
        assert np.abs(pix * 255 - gray).max() <= 0.51 + 1e-4
        assert int(y) == label
    # train + val partition the train split; the split ignores `seed`
    rows = lambda b: {tuple(r.tolist()) for r in b["input"]}  # noqa: E731
    tr, va = rows(next(iter(dm.train_dataloader()))), rows(next(iter(dm.val_dataloader())))
    assert not tr & va and len(tr | va) == 20
    dm2 = ImageDataModule(root=tmp_path / "cifar", seed=7, batch_size=64, num_workers=0, cache_dir=tmp_path / "c2")
    dm2.setup("validate")
    assert rows(next(iter(dm2.val_dataloader()))) == va


def test_cifar_corrupt_image_skipped(tmp_path, caplog):
    write_cifar_parquet(tmp_path / "cifar", n_per_split=4, hub_layout=False)
    f = tmp_path / "cifar" / "test-00000-of-00001.parquet"
    t = pq.read_table(f)
    imgs = t.column("img").to_pylist()
    imgs[1] = {"bytes": b"\x89PNG garbage", "path": None}
    buf = io.BytesIO()
    from PIL import Image
    Image.new("RGB", (16, 16)).save(buf, format="PNG")
    imgs[2] = {"bytes": buf.getvalue(), "path": None}
    pq.write_table(pa.table({"img": pa.array(imgs, t.schema.field("img").type), "label": t.column("label")}), f)
    dm = ImageDataModule(root=tmp_path / "cifar", batch_size=8, num_workers=0, cache_dir=tmp_path / "c")
    with caplog.at_level("WARNING"):
        ds = dm.load_split("test")
    assert len(ds) == 2 and "skipped 2 bad rows" in caplog.text
    assert DATAMODULES["image"] is ImageDataModule and DATAMODULES["text"] is TextDataModule
