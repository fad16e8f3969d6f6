"""Pathfinder generator: sizes, balance, determinism, and label correctness by connectivity."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from lra_mega.data.errors import LRAConfigError, LRADataError
from lra_mega.data.pathfinder_generate import BLOCK_SIZE, PathfinderSettings, generate, pathfinder_settings

EIGHT = np.ones((3, 3), bool)


@pytest.fixture(scope="module")
def pf32():
    return generate(pathfinder_settings(32), 2000, seed=123, return_curves=True)


def test_pf32_size_dtype_and_labels(pf32):
    assert pf32.images.shape == (2000, 32, 32) and pf32.images.dtype == np.uint8
    assert pf32.labels.shape == (2000,) and set(np.unique(pf32.labels)) == {0, 1}
    assert pf32.images.max() == 255  # markers are drawn at full intensity
    assert abs(pf32.labels.mean() - 0.5) <= 0.02


def test_pf128_size_and_dtype():
    out = generate(pathfinder_settings(128, contour_length=6), 20, seed=0)
    assert out.images.shape == (20, 128, 128) and out.images.dtype == np.uint8
    assert (out.images > 0).mean() > 0.01  # something was drawn


def test_same_seed_same_bytes_and_prefix():
    s = pathfinder_settings(32, contour_length=9)
    a = generate(s, 300, seed=7)
    b = generate(s, 300, seed=7)
    assert a.images.tobytes() == b.images.tobytes() and np.array_equal(a.labels, b.labels)
    part = generate(s, 50, seed=7, start=BLOCK_SIZE - 10)  # straddles a block boundary
    assert np.array_equal(part.images, a.images[BLOCK_SIZE - 10:BLOCK_SIZE + 40])
    c = generate(s, 300, seed=8)
    assert not np.array_equal(a.images, c.images)


def _component_ids(lab: np.ndarray, mask: np.ndarray) -> set[int]:
    return set(np.unique(lab[mask])) - {0}


def test_markers_on_one_curve_iff_positive(pf32):
    s = pathfinder_settings(32)
    yy, xx = np.mgrid[0:32, 0:32]
    for i in range(len(pf32.labels)):
        t1, t2, dis = (m[i] for m in pf32.curve_masks())
        # each target curve is drawn as one 4-connected stroke
        assert ndimage.label(t1)[1] == 1 and ndimage.label(t2)[1] == 1
        # markers, computed here: pixels within radius + 0.5 of the centres
        discs = [np.hypot(yy - c[0], xx - c[1]) < s.marker_radius + 0.5 for c in pf32.markers[i]]
        assert all((d & (t1 | t2)).any() for d in discs)  # each marker touches a target curve
        # components of all curves plus the markers (8-connected)
        lab, _ = ndimage.label(t1 | t2 | dis | discs[0] | discs[1], structure=EIGHT)
        c0, c1 = _component_ids(lab, discs[0]), _component_ids(lab, discs[1])
        assert len(c0) == 1 and len(c1) == 1
        same = c0 == c1
        assert same == bool(pf32.labels[i]), f"image {i}"
        for comp in c0 | c1:  # a marked component holds exactly one target curve, no distractor
            region = lab == comp
            assert (region & t1).any() != (region & t2).any()
            assert not (region & dis).any()


def test_image_alone_shows_the_label(pf32):
    """Independent of the masks: in the rendered image the two marker centres are 8-connected
    through lit pixels exactly for positives."""
    for i in range(len(pf32.labels)):
        lab, _ = ndimage.label(pf32.images[i] > 0, structure=EIGHT)
        y0, x0 = np.rint(pf32.markers[i, 0]).astype(int)
        y1, x1 = np.rint(pf32.markers[i, 1]).astype(int)
        assert lab[y0, x0] > 0 and lab[y1, x1] > 0
        assert (lab[y0, x0] == lab[y1, x1]) == bool(pf32.labels[i]), f"image {i}"


def test_positive_markers_sit_on_both_ends_of_a_curve(pf32):
    """Positive: the two markers are the two tips of one target curve (far apart along it)."""
    t1, t2, _ = pf32.curve_masks()
    pos = np.flatnonzero(pf32.labels == 1)[:200]
    s = pathfinder_settings(32)
    for i in pos:
        (y0, x0), (y1, x1) = pf32.markers[i]
        curve = t1[i] if t1[i][int(round(y0)), int(round(x0))] else t2[i]
        geo = ndimage.distance_transform_edt(~curve)  # both centres lie on the curve
        assert geo[int(round(y0)), int(round(x0))] < 1 and geo[int(round(y1)), int(round(x1))] < 1
        assert curve.sum() >= s.contour_length * s.paddle_length  # a full-length stroke


def test_bad_settings_are_clear_errors():
    with pytest.raises(LRAConfigError, match="difficulty.*7.*use 6"):
        pathfinder_settings(32, contour_length=7)
    with pytest.raises(LRAConfigError, match="resolution 48"):
        pathfinder_settings(48)
    with pytest.raises(LRADataError, match="margin"):
        PathfinderSettings(margin=-1)
