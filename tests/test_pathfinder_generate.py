"""Pathfinder generator: sizes, balance, determinism, settings, and the rendering rules."""

from __future__ import annotations

import numpy as np
import pytest

from lra_mega.data.errors import LRAConfigError, LRADataError
from lra_mega.data.pathfinder_generate import (BLOCK_SIZE, GENERATOR_VERSION, PathfinderSettings, generate,
                                               pathfinder_settings)
from lra_mega.data.pathfinder_render import sprite_bank, to_uint8


@pytest.fixture(scope="module")
def pf32():
    return generate(pathfinder_settings(32), 600, seed=123)


def test_pf32_size_dtype_labels_and_rescale(pf32):
    assert pf32.images.shape == (600, 32, 32) and pf32.images.dtype == np.uint8
    assert pf32.labels.shape == (600,) and set(np.unique(pf32.labels)) == {0, 1}
    assert (pf32.images.reshape(600, -1).max(1) == 255).all()  # every image rescaled to a maximum of 255
    first = pf32.labels[:BLOCK_SIZE]
    assert first.sum() == BLOCK_SIZE // 2  # exactly balanced within a block


def test_markers_are_bright_discs_on_the_image(pf32):
    """The marker centres the generator reports are lit, and 2x2 lit (a disc, not a line)."""
    for img, marks in zip(pf32.images[:200], pf32.markers[:200]):
        for y, x in marks.astype(int):
            assert img[y, x] >= 100
            win = img[max(0, y - 1):y + 2, max(0, x - 1):x + 2]
            assert (win >= 60).sum() >= 4


@pytest.mark.parametrize("resolution,difficulty", [(64, 9), (128, 6), (256, 14)])
def test_other_sizes_and_difficulties(resolution, difficulty):
    out = generate(pathfinder_settings(resolution, contour_length=difficulty), 8, seed=0)
    assert out.images.shape == (8, resolution, resolution) and out.images.dtype == np.uint8
    assert 0.005 < (out.images >= 30).mean() < 0.3  # drawn, not flooded


def test_same_seed_same_bytes_and_prefix():
    s = pathfinder_settings(32, contour_length=9)
    a = generate(s, 300, seed=7)
    b = generate(s, 300, seed=7)
    assert a.images.tobytes() == b.images.tobytes() and np.array_equal(a.labels, b.labels)
    part = generate(s, 50, seed=7, start=BLOCK_SIZE - 10)  # straddles a block boundary
    assert np.array_equal(part.images, a.images[BLOCK_SIZE - 10:BLOCK_SIZE + 40])
    c = generate(s, 300, seed=8)
    assert not np.array_equal(a.images, c.images)
    assert GENERATOR_VERSION >= 2  # images of the old (continuous-stroke) generator are never reused


def test_settings_follow_lra_per_size():
    s32, s128 = pathfinder_settings(32), pathfinder_settings(128)
    assert (s32.paddle_length, s32.paddle_margins, s32.seed_distance, s32.continuity) == (2, (1,), 7, 1.0)
    assert (s32.target_contrast, s32.distractor_contrast, s32.marker_contrast) == (1.5, 2.0, 1.0)
    assert (s128.paddle_length, s128.paddle_margins, s128.marker_radius, s128.num_distractors) == (5, (2, 3), 3.0, 17)
    assert pathfinder_settings(256).padding == 22 and pathfinder_settings(64).seed_distance == 12
    assert pathfinder_settings(32, contour_length=6).distractor_length == 2
    # LRA's 32 px count: 20 distractor paddles in curves of contour_length // 3
    assert [pathfinder_settings(32, contour_length=c).num_distractors for c in (6, 9, 14)] == [10, 6, 5]
    # 64, 128, 256: snakes2_wrapper.py's count, budget / (6 / 3) in Python 2, kept for lengths 9 and 14
    for size, budget in ((64, 22), (128, 35), (256, 30)):
        for c in (6, 9, 14):
            s = pathfinder_settings(size, contour_length=c)
            assert (s.num_distractors, s.distractor_length) == (budget // 2, c // 3)


def test_paddle_sprite_is_a_2x_lanczos_line():
    """The pasted paddle equals drawing it at 2x and shrinking, computed here independently:
    a horizontal paddle of length 2 and width 1 (fine) covers fine pixels (8, 8..12)."""
    from PIL import Image

    s = pathfinder_settings(32)
    bank = sprite_bank(s, 1)
    fine = np.zeros((17, 17), np.uint8)  # (reach=4) * 2 * 2 + 1
    fine[8, 8:13] = 255
    want = np.asarray(Image.fromarray(fine).resize((9, 9), Image.Resampling.LANCZOS), np.float32) / 255
    assert np.allclose(bank.line[180], want)  # id 180 = 0 degrees
    assert 0.5 < bank.line[180].max() < 0.7  # a thin line is dim after shrinking
    halo = bank.halo[180]
    assert halo.max() == 1.0 and (halo > 0).sum() > (bank.line[180] > 0).sum()  # the halo is wider


def test_to_uint8_rescales_each_image_to_255():
    x = np.zeros((2, 4, 4), np.float32)
    x[0, 0, 0], x[0, 1, 1], x[1, 2, 2] = 1.0, 0.5, 0.25  # 0.5 -> 127.5, rounded up
    out = to_uint8(x)
    assert out[0, 0, 0] == 255 and out[0, 1, 1] == 128 and out[1, 2, 2] == 255 and out[1].sum() == 255


def test_bad_settings_are_clear_errors():
    with pytest.raises(LRAConfigError, match="difficulty.*7.*6, 9, 14"):
        pathfinder_settings(32, contour_length=7)
    with pytest.raises(LRAConfigError, match="resolution 48.*32, 64, 128, 256"):
        pathfinder_settings(48)
    with pytest.raises(LRADataError, match="paddle_margins"):
        PathfinderSettings(paddle_margins=(0,))
    with pytest.raises(LRAConfigError, match="unknown generator setting.*margin"):
        pathfinder_settings(32, margin=2)


def _search_finds_pixels(kernel: list[tuple[int, int]], size: int) -> bool:
    """The original's start search on an empty mask, pixel by pixel: OpenCV's dilation gives
    -DBL_MAX where no kernel offset lands inside the image, and any negative value makes the
    search report no free pixel."""
    for y in range(size):
        for x in range(size):
            if not any(0 <= y + qy < size and 0 <= x + qx < size for qy, qx in kernel):
                return False
    return True


def test_start_search_rule_against_a_pixel_loop():
    from lra_mega.data.pathfinder_render import start_search_ok
    kernels = [[(1, 1)], [(1, 1), (1, 2), (1, 3)], [(1, 1), (0, 0)], [(1, 1), (-1, -1)],
               [(1, 1), (-1, -1), (1, -1), (-1, 1)], [(1, 1), (-1, -1), (3, -3)], [(2, 0), (0, -1), (-1, 2)]]
    for k in kernels:
        assert start_search_ok(np.array(k), 20) == _search_finds_pixels(k, 20), k
    # by hand: some image corner must see a kernel offset inside (row and column <= 0 or >= 0)
    assert [start_search_ok(np.array(k), 20) for k in kernels] == [False, False, True, False, True, False, True]


def test_pf32_start_kernels_are_the_originals():
    """Kernels (offsets of the exact-1 halo pixels from the dilation anchor) for 0, 45 and 90
    degrees, as printed by the original's ``draw_line_n_mask`` with the LRA 32 settings; none
    of the three can start a curve, and only a narrow fan of up-left directions can."""
    bank = sprite_bank(pathfinder_settings(32), 1)
    official = {0: {(1, 1), (1, 2), (1, 3)}, 45: {(1, 1), (2, 2)}, 90: {(1, 1), (3, 1)}}
    for deg, kernel in official.items():
        assert {tuple(q) for q in bank.core[deg + 180].tolist()} == kernel
        assert not bank.seed_ok[deg + 180]
    ok_degrees = np.flatnonzero(bank.seed_ok) - 180
    assert len(ok_degrees) == sum(_search_finds_pixels([tuple(q) for q in c.tolist()], 32) for c in bank.core)
    assert ok_degrees.min() >= -160 and ok_degrees.max() <= -110


def test_generation_fails_clearly_when_no_direction_can_start():
    with pytest.raises(LRAConfigError, match="no paddle direction can start a curve"):
        generate(pathfinder_settings(32, paddle_length=1), 4, seed=0)
