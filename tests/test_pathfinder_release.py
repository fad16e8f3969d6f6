"""Reader of the official Pathfinder release, on a tiny hand-made release."""

from __future__ import annotations

import logging

import numpy as np
import pytest
from PIL import Image

from lra_mega.data.errors import LRADataError
from lra_mega.data.pathfinder import PathfinderDataModule
from lra_mega.data.pathfinder_release import read_release, split_indices

N = 24
BROKEN = {3: b"", 5: b"\x89PNG\r\n\x1a\n this is not a png"}


def make_release(root, n=N):
    """``root/lra_release/pathfinder32/curv_contour_length_14`` with n images in two subdirs."""
    set_dir = root / "lra_release" / "pathfinder32" / "curv_contour_length_14"
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (n, 32, 32), dtype=np.uint8)
    labels = rng.integers(0, 2, n)
    lines: dict[int, list[str]] = {0: [], 1: []}
    for i in range(n):
        k = i % 2
        d = set_dir / "imgs" / str(k)
        d.mkdir(parents=True, exist_ok=True)
        path = d / f"sample_{i}.png"
        if i in BROKEN:
            path.write_bytes(BROKEN[i])
        else:
            Image.fromarray(images[i], mode="L").save(path)
        lines[k].append(f"imgs/{k} sample_{i}.png {i} {labels[i]} 14 4 2 0.5 1 1")
    (set_dir / "metadata").mkdir()
    for k, rows in lines.items():
        (set_dir / "metadata" / f"{k}.npy").write_text("\n".join(rows) + "\n")
    order = [i for k in (0, 1) for i in range(n) if i % 2 == k]  # metadata order
    return set_dir, images, labels, order


def test_reader_returns_pixels_labels_and_skips_broken(tmp_path, caplog):
    set_dir, images, labels, order = make_release(tmp_path)
    with caplog.at_level(logging.WARNING):
        pixels, got_labels, skipped = read_release(set_dir, 32, workers=1, progress=False)
    keep = [i for i in order if i not in BROKEN]
    assert skipped == 2 and "skipped 2 of 24" in caplog.text
    assert pixels.shape == (N - 2, 1024) and pixels.dtype == np.uint8
    assert np.array_equal(pixels, images[keep].reshape(len(keep), -1))
    assert np.array_equal(got_labels, labels[keep])


def test_parallel_decode_matches_serial(tmp_path):
    set_dir, *_ = make_release(tmp_path, n=1100)  # three decode chunks
    a = read_release(set_dir, 32, workers=1, progress=False)
    b = read_release(set_dir, 32, workers=2, progress=False)
    assert all(np.array_equal(x, y) for x, y in zip(a[:2], b[:2])) and a[2] == b[2] == 2


def test_split_is_a_fixed_shuffle_80_10_10():
    s = split_indices(200, seed=0)
    assert [len(s[k]) for k in ("train", "val", "test")] == [160, 20, 20]
    assert np.array_equal(np.sort(np.concatenate(list(s.values()))), np.arange(200))
    assert all(np.array_equal(s[k], split_indices(200, seed=0)[k]) for k in s)
    assert not np.array_equal(s["test"], split_indices(200, seed=1)["test"])


def test_datamodule_reads_release(tmp_path):
    set_dir, images, labels, order = make_release(tmp_path)
    dm = PathfinderDataModule(source="release", root=tmp_path, cache_dir=tmp_path / "cache", batch_size=4,
                              num_workers=0, workers=1)
    dm.setup()
    got = {k: dm.datasets[k] for k in ("train", "val", "test")}
    assert [len(d) for d in got.values()] == [18, 2, 2]
    seen = sorted(bytes(np.asarray(d[i][0])) + bytes([d[i][1]]) for d in got.values() for i in range(len(d)))
    want = sorted(bytes(images[i].reshape(-1)) + bytes([labels[i]]) for i in order if i not in BROKEN)
    assert seen == want


def test_missing_release_names_the_fix(tmp_path):
    with pytest.raises(LRADataError, match=r"does not exist.*data\.root.*download_lra.*source=generate"):
        read_release(tmp_path / "nope", 32)
    (tmp_path / "empty").mkdir()
    with pytest.raises(LRADataError, match="no metadata files"):
        read_release(tmp_path / "empty", 32)
    dm = PathfinderDataModule(source="release", root=tmp_path, cache_dir=tmp_path / "cache", num_workers=0)
    with pytest.raises(LRADataError, match="pathfinder32/curv_contour_length_14.*download_lra"):
        dm.setup()
