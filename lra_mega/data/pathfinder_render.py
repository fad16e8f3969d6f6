"""Pre-rendered pieces of a Pathfinder image: paddle sprites, their halo masks, markers.

The original generator draws every paddle at ``antialias_scale`` times the resolution
(a PIL line of width ``round(thickness * scale)``) in a small square patch around its
start pixel and shrinks the patch with a Lanczos filter (in 8-bit, as the old
``scipy.misc.imresize`` did). Its *halo* is the same line dilated by a disc of radius
``margin`` (at the fine scale) and shrunk the same way: a soft mask with values up to 1.
Paddles start on whole pixels and their directions come from a finite set (whole degrees
for a curve's first paddle, pixel offsets on a circle for the others), so every patch
the generator can draw is rendered once here and then only pasted.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

from lra_mega.data.pathfinder_settings import PathfinderSettings

#: Halo values at or below this leave a pixel free for a new curve's first paddle.
FREE_BELOW = 0.3
CORE_AT = 1.0


def _shrink(fine: np.ndarray, size: int) -> np.ndarray:
    """8-bit Lanczos shrink of a 0/255 uint8 square to ``size`` x ``size``, as floats in [0, 1]."""
    img = Image.fromarray(fine, mode="L").resize((size, size), resample=Image.Resampling.LANCZOS)
    return np.asarray(img, np.float32) / 255.0


def _disc(radius: float) -> np.ndarray:
    """Boolean disc x^2 + y^2 <= radius^2 on a (2r+1)^2 grid, r = floor(radius)."""
    r = int(math.floor(radius))
    y, x = np.ogrid[-r:r + 1, -r:r + 1]
    return x * x + y * y <= radius * radius


def _ceil_offset(length: float, angle: float) -> tuple[int, int]:
    """Offset of ``ceil(p + length * (sin, cos)(angle))`` from a whole pixel ``p`` (the
    original's ``translate_coord``), evaluated at p = 64 so float absorption matches."""
    return (int(math.ceil(64.0 + float(length) * np.sin(angle))) - 64,
            int(math.ceil(64.0 + float(length) * np.cos(angle))) - 64)


def _paddle(s: PathfinderSettings, margin: int, angle: float) -> tuple[np.ndarray, np.ndarray]:
    """(line, halo) patches (P, P) of one paddle starting at the patch centre along ``angle``."""
    aa, length = s.antialias_scale, s.paddle_length
    reach = length + int(math.ceil(s.paddle_thickness)) + margin
    fine_size, centre = reach * 2 * aa + 1, reach * aa
    hy, hx = _ceil_offset(length * aa, angle)
    canvas = Image.new("L", (fine_size, fine_size), 0)
    ImageDraw.Draw(canvas).line([(centre, centre), (centre + hx, centre + hy)], fill=255,
                                width=int(round(s.paddle_thickness * aa)))
    fine = np.asarray(canvas)
    # dilation by a disc of radius margin*aa (max filter over the disc's offsets)
    disc = _disc(margin * aa)
    r = disc.shape[0] // 2
    padded = np.pad(fine, r)
    halo = np.zeros_like(fine)
    for dy, dx in zip(*np.nonzero(disc)):
        np.maximum(halo, padded[dy:dy + fine_size, dx:dx + fine_size], out=halo)
    return _shrink(fine, 2 * reach + 1), _shrink(halo, 2 * reach + 1)


@dataclass(frozen=True)
class SpriteBank:
    """Every paddle patch for one (settings, margin), indexed by *sprite id*.

    Ids ``0..359`` are first paddles at ``deg - 180`` degrees, drawn from their start pixel.
    Ids ``360 + k`` are later paddles towards candidate offset ``steps[k]`` from the pivot,
    drawn from their far end back (direction ``angles[k] + pi``).
    """

    margin: int
    reach: int  # patch half-size: a patch covers start +- reach
    line: np.ndarray  # (ids, P, P) float32
    halo: np.ndarray  # (ids, P, P) float32
    seed_angles: np.ndarray  # (360,) radians of the first-paddle ids
    core: np.ndarray  # (360, C, 2) per first-paddle id: pixel offsets that must be free (repeats pad)
    seed_ok: np.ndarray  # (360,) bool: first-paddle ids that can start a curve (start_search_ok)
    steps: np.ndarray  # (K, 2) int offsets pivot -> far end of a later paddle
    angles: np.ndarray  # (K,) direction of those paddles (radians, from arctan2)
    disc: np.ndarray  # (d, 2) offsets of the margin disc (dilation of the occupancy mask)
    marker: np.ndarray  # (M, M) marker patch centred on its pixel
    marker_reach: int
    halo_at: np.ndarray  # (ids, C, 2) offsets of the non-zero halo pixels from the start (repeats pad)
    halo_val: np.ndarray  # (ids, C) their values (0 where padded)
    line_at: np.ndarray  # (ids, C', 2) the same for the line
    line_val: np.ndarray
    turn_to: np.ndarray  # (ids, T) candidates k a paddle of direction id can turn to (weight > 0)
    turn_w: np.ndarray  # (ids, T) their weights cos^2(min(continuity * turn, 90 deg)); 0 where padded


def _flip(angle: float) -> float:
    return angle + math.pi if angle < 0 else angle - math.pi


@functools.lru_cache(maxsize=16)
def sprite_bank(s: PathfinderSettings, margin: int) -> SpriteBank:
    """Render (once per process) all patches of settings ``s`` with paddle margin ``margin``."""
    length = s.paddle_length
    reach = length + int(math.ceil(s.paddle_thickness)) + margin
    seed_angles = np.arange(-180, 180) * np.pi / 180
    # a later paddle ends on the pixel grid of a circle of radius length+margin around the pivot
    step = length + margin
    samples = np.arange(0, 360, 360.0 / (2 * step * np.pi)) * np.pi / 180
    raw = np.stack([np.floor(64.0 + step * np.sin(samples)) - 64,
                    np.floor(64.0 + step * np.cos(samples)) - 64], 1).astype(np.int64)
    steps = np.unique(raw, axis=0)
    angles = np.arctan2(steps[:, 0], steps[:, 1]).astype(np.float64)
    lines, halos = [], []
    for a in list(seed_angles) + [_flip(float(a)) for a in angles]:
        li, ha = _paddle(s, margin, float(a))
        lines.append(li)
        halos.append(ha)
    halo = np.stack(halos)
    # First paddle: a start pixel p is free when mask[p + 1 + q] <= FREE_BELOW for every q where
    # the halo patch is exactly 1, within the (2(length+margin)+1)^2 window the original uses
    # (its dilation kernel is that patch, anchored one pixel off the paddle start).
    core = []
    lim = length + margin
    for i in range(360):
        qy, qx = np.nonzero(halo[i] >= CORE_AT)
        qy, qx = qy - reach, qx - reach
        keep = (qy + lim + 1 >= 0) & (qy + lim + 1 <= 2 * lim) & (qx + lim + 1 >= 0) & (qx + lim + 1 <= 2 * lim)
        core.append(np.stack([qy[keep] + 1, qx[keep] + 1], 1))
    width = max(len(c) for c in core)
    core_arr = np.stack([np.concatenate([c, np.repeat(c[:1], width - len(c), 0)]) for c in core])
    ok = np.array([start_search_ok(c, s.image_size) for c in core])
    d = _disc(margin)
    disc = np.stack(np.nonzero(d), 1) - d.shape[0] // 2
    # marker: a disc of radius r (fine scale) centred on the fine pixel of the marker's pixel
    aa = s.antialias_scale
    mreach = int(math.ceil(s.marker_radius)) + 8
    fine = (2 * mreach + 1) * aa
    y, x = np.ogrid[-mreach * aa:fine - mreach * aa, -mreach * aa:fine - mreach * aa]
    circle = np.where(x * x + y * y <= (s.marker_radius * aa) ** 2, 255, 0).astype(np.uint8)
    marker = _shrink(circle, 2 * mreach + 1)
    line = np.stack(lines)
    halo_at, halo_val = _sparse(halo, reach)
    line_at, line_val = _sparse(line, reach)
    # turn weights from every direction id (seed angles, then candidate angles) to each candidate
    ids = np.concatenate([seed_angles, angles])
    turn = np.abs(angles[None, :] - ids[:, None])
    turn = np.minimum(np.minimum(turn, 2 * np.pi - turn) * s.continuity, 0.5 * np.pi)
    w = np.maximum(np.cos(turn), 0.0) ** 2
    w[w < 1e-12] = 0.0
    order = np.argsort(w <= 0, axis=1, kind="stable")
    t = int((w > 0).sum(1).max())
    turn_to = order[:, :t]
    turn_w = np.take_along_axis(w, turn_to, 1)
    return SpriteBank(margin=margin, reach=reach, line=line, halo=halo, seed_angles=seed_angles,
                      core=core_arr, seed_ok=ok, steps=steps, angles=angles, disc=disc, marker=marker,
                      marker_reach=mreach,
                      halo_at=halo_at, halo_val=halo_val, line_at=line_at, line_val=line_val,
                      turn_to=turn_to, turn_w=turn_w)


def start_search_ok(offsets: np.ndarray, size: int) -> bool:
    """Whether the original's start pixel search can succeed for a first paddle whose
    dilation kernel has ``offsets`` (``core``), on a ``size`` x ``size`` image.

    The original dilates the occupancy by the kernel with OpenCV, whose default border
    makes every pixel that sees *no* kernel offset inside the image ``-DBL_MAX``; the search
    then finds a negative value in the dilated mask and reports no free pixel at all, so the
    curve fails. The kernel sits one pixel down-right of the paddle start, so this happens
    unless the offsets reach every quadrant (row <= 0 and >= 0, column <= 0 and >= 0):
    thin short paddles (Pathfinder-32) pass in about 31 of the 360 directions.
    """
    covered = np.zeros((size, size), bool)
    for qy, qx in np.unique(np.asarray(offsets).reshape(-1, 2), axis=0):
        covered[max(0, -qy):min(size, size - qy), max(0, -qx):min(size, size - qx)] = True
    return bool(covered.all())


def _sparse(patches: np.ndarray, reach: int) -> tuple[np.ndarray, np.ndarray]:
    """Non-zero pixels of each patch: offsets from the centre (ids, C, 2) and values (ids, C),
    padded with zero values at offset (0, 0)."""
    nz = patches > 0
    width = int(nz.reshape(len(patches), -1).sum(1).max())
    at = np.zeros((len(patches), width, 2), np.int64)
    val = np.zeros((len(patches), width), np.float32)
    for i, p in enumerate(patches):
        y, x = np.nonzero(nz[i])
        at[i, :len(y), 0], at[i, :len(y), 1] = y - reach, x - reach
        val[i, :len(y)] = p[y, x]
    return at, val


def to_uint8(images: np.ndarray) -> np.ndarray:
    """Per-image rescale to 0..255 (minimum to 0, maximum to 255), rounded: what the original's
    8-bit save did to every float image."""
    n = len(images)
    flat = images.reshape(n, -1).astype(np.float64)
    lo = flat.min(1, keepdims=True)
    span = flat.max(1, keepdims=True) - lo
    span[span == 0] = 1.0
    out = np.clip((flat - lo) * (255.0 / span), 0.0, 255.0) + 0.5
    return out.astype(np.uint8).reshape(images.shape)
