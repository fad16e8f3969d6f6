"""Split cache: round trip, atomicity, detection of partial/stale content, rebuild."""

from __future__ import annotations

import json

import numpy as np
import pytest

from lra_mega.data import ListOpsDataModule
from lra_mega.data.cache import load_split, pack_sequences, save_split, split_cache_dir
from lra_mega.data.fixtures import write_listops_release


def _arrays():
    return {"tokens": np.arange(100, dtype=np.uint8), "offsets": np.array([0, 40, 100], np.int64),
            "labels": np.array([3, 7], np.int64)}


def test_round_trip_memmap(tmp_path):
    p = split_cache_dir(tmp_path, "listops", {"task": "listops", "split": "train", "seed": 1})
    assert p.parent == tmp_path / "listops" and "train" in p.name
    assert p != split_cache_dir(tmp_path, "listops", {"task": "listops", "split": "train", "seed": 2})
    save_split(p, _arrays(), {"count": 2})
    out = load_split(p, verify=True)
    assert isinstance(out["tokens"], np.memmap)
    for k, v in _arrays().items():
        assert out[k].dtype == v.dtype and np.array_equal(out[k], v)
    m = json.loads((p / "manifest.json").read_text())
    assert m["meta"] == {"count": 2} and m["arrays"]["labels"]["shape"] == [2]
    assert [q.name for q in tmp_path.joinpath("listops").iterdir()] == [p.name]  # no temp dirs left


def test_detects_partial_and_stale(tmp_path, caplog):
    p = tmp_path / "s"
    assert load_split(p) is None  # missing
    save_split(p, _arrays(), {})
    (p / "manifest.json").unlink()
    assert load_split(p) is None  # partial: no manifest
    save_split(p, _arrays(), {})
    with open(p / "tokens.npy", "r+b") as f:
        f.truncate(100)
    assert load_split(p) is None  # truncated file
    save_split(p, _arrays(), {})
    m = json.loads((p / "manifest.json").read_text())
    m["format_version"] = 0
    (p / "manifest.json").write_text(json.dumps(m))
    assert load_split(p) is None  # stale version
    save_split(p, _arrays(), {})
    m = json.loads((p / "manifest.json").read_text())
    m["arrays"]["labels"]["shape"] = [3]
    (p / "manifest.json").write_text(json.dumps(m))
    assert load_split(p) is None  # shape mismatch
    save_split(p, _arrays(), {})
    raw = bytearray((p / "labels.npy").read_bytes())
    raw[-1] ^= 0xFF
    (p / "labels.npy").write_bytes(bytes(raw))
    assert load_split(p) is not None and load_split(p, verify=True) is None  # same size, bad bytes
    assert "rebuilding" in caplog.text


def test_failed_write_leaves_nothing(tmp_path):
    with pytest.raises(ValueError):
        save_split(tmp_path / "x", {"a": np.zeros(3), "b": np.array([object()])}, {})
    assert list(tmp_path.iterdir()) == []


def test_pack_sequences():
    flat, off = pack_sequences([b"ab", b"", b"xyz"])
    assert flat.dtype == np.uint8 and flat.tobytes() == b"abxyz" and off.tolist() == [0, 2, 2, 5]
    flat, off = pack_sequences([[1, 300], [-2]])
    assert flat.dtype == np.int16 and flat.tolist() == [1, 300, -2] and off.tolist() == [0, 2, 3]


def test_datamodule_rebuilds_corrupt_cache(tmp_path):
    write_listops_release(tmp_path, n_per_split=4)
    kw = dict(source="release", root=tmp_path, batch_size=4, num_workers=0, cache_dir=tmp_path / "c")
    first = ListOpsDataModule(**kw).load_split("train")
    ref = [first[i][0].tolist() for i in range(4)]
    d = next((tmp_path / "c" / "listops").glob("train_release*"))
    with open(d / "tokens.npy", "r+b") as f:
        f.truncate(64)
    again = ListOpsDataModule(**kw).load_split("train")
    assert [again[i][0].tolist() for i in range(4)] == ref
    # editing the source file changes the key, so the cache is not trusted
    f = tmp_path / "lra_release" / "listops-1000" / "basic_train.tsv"
    f.write_text("Source\tTarget\n( ( ( [MAX 2 ) 9 ) ] )\t9\n")
    assert len(ListOpsDataModule(**kw).load_split("train")) == 1


def test_dataset_pickles_without_copying(tmp_path):
    import pickle

    write_listops_release(tmp_path, n_per_split=3)
    ds = ListOpsDataModule(source="release", root=tmp_path, num_workers=0, cache_dir=tmp_path / "c").load_split("val")
    blob = pickle.dumps(ds)
    assert len(blob) < 1000
    clone = pickle.loads(blob)
    assert [clone[i][0].tolist() for i in range(3)] == [ds[i][0].tolist() for i in range(3)]


def test_files_fingerprint_changes_with_any_edit(tmp_path):
    import os

    from lra_mega.data.cache import files_fingerprint

    a, b = tmp_path / "a.tsv", tmp_path / "b.tsv"
    a.write_bytes(b"1234")
    b.write_bytes(b"xy")
    first = files_fingerprint([b, a, tmp_path / "missing.tsv"])
    assert first == [f"{a.resolve()}:4:{a.stat().st_mtime_ns}", f"{b.resolve()}:2:{b.stat().st_mtime_ns}"]
    # same size, mtime 1 ns later (an edit within the same second): the fingerprint moves
    st = a.stat()
    a.write_bytes(b"4321")
    os.utime(a, ns=(st.st_atime_ns, st.st_mtime_ns + 1))
    assert files_fingerprint([a, b]) != first
