"""data.train_difficulties: a training split of mixed contour lengths, checked against each length
generated on its own."""

from __future__ import annotations

import numpy as np
import pytest

from lra_mega.data.errors import LRAConfigError
from lra_mega.data.pathfinder import SPLIT_STREAM, PathfinderDataModule
from lra_mega.data.pathfinder_generate import generate, pathfinder_settings


def _module(tmp_path, **kw) -> PathfinderDataModule:
    dm = PathfinderDataModule(n_train=kw.pop("n_train", 300), n_val=32, n_test=32, batch_size=20,
                              cache_dir=tmp_path, num_workers=0, workers=1, seed=3, **kw)
    dm.prepare_data()
    dm.setup("fit")
    return dm


def test_mixed_split_holds_equal_shares_of_each_length_own_images(tmp_path):
    dm = _module(tmp_path, n_train=301, train_difficulties=[6, 9, 14])
    arrays = dm.datasets["train"].arrays
    shares = {d: int((arrays["difficulty"] == d).sum()) for d in (6, 9, 14)}
    assert shares == {6: 101, 9: 100, 14: 100} and len(arrays["labels"]) == 301
    start = 0
    for d, n in shares.items():
        own = generate(pathfinder_settings(32, d), n, [3, SPLIT_STREAM["train"]])
        assert np.array_equal(arrays["pixels"][start:start + n], own.images.reshape(n, -1)), d
        assert np.array_equal(arrays["labels"][start:start + n], own.labels), d
        start += n
    # validation stays at data.difficulty (14): the same images as the plain module's
    plain = _module(tmp_path / "plain")
    assert np.array_equal(np.asarray(dm.datasets["val"].arrays["pixels"]), np.asarray(plain.datasets["val"].arrays["pixels"]))


def test_every_step_serves_a_mix_of_lengths(tmp_path):
    dm = _module(tmp_path, n_train=300, train_difficulties=[6, 14])
    difficulty = dm.datasets["train"].arrays["difficulty"]
    batches = list(dm.train_dataloader().batch_sampler)
    assert len(batches) == 15
    served = [np.bincount(difficulty[b], minlength=15)[[6, 14]] for b in batches]
    assert sum(s.sum() for s in served) == 300
    assert all(s.min() >= 3 for s in served), served  # no batch of one length only (20 images, p ≈ 1e-3 each)
    assert np.array_equal(np.sum(served, axis=0), [150, 150])


@pytest.mark.parametrize("value, fragment", [
    ([6, 7], r"train_difficulties=\[6, 7\] is not a contour length"), ([6, 6], "distinct"), ([], "distinct"),
])
def test_bad_curriculum_names_the_key(tmp_path, value, fragment):
    with pytest.raises(LRAConfigError, match=fragment):
        PathfinderDataModule(cache_dir=tmp_path, train_difficulties=value)
