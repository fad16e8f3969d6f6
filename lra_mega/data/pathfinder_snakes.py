"""The "snakes" growth rules of the original Pathfinder generator, compiled with numba.

One call grows whole images, each from its own seed (numba's generator, seeded per
image), on a padded occupancy plane ("mask"). Rules, per curve:

- First paddle: a random whole-degree direction and a start pixel drawn uniformly among
  the *free* ones (the paddle's halo core meets no occupancy above 0.3; the target pair's
  first seed also keeps ``2 * seed_distance`` from the border; the second seed is
  ``seed_distance`` away in a random direction, unchecked). Its *pivot* sits ``margin``
  behind the start; a paddle (or pivot) leaving the image is drawn again. A direction
  whose start search the original cannot complete (``SpriteBank.seed_ok``: its OpenCV
  dilation leaves ``-DBL_MAX`` on some border pixel and the search then reports no free
  pixel) fails the curve at once, without a redraw: at 32 px only 31 of 360 directions
  can start a curve, so most distractor tries fail there (about 1.2 of 5 distractors are
  placed per image, as in the original).
- Next paddle: the pivot advances ``paddle_length + 2 * margin`` along the last direction;
  the new paddle ends on a pixel of the circle of radius ``paddle_length + margin`` around
  it, drawn with weight cos^2(min(continuity * turn, 90 deg)) * (1 - occupancy dilated by
  ``margin``), and is kept if its halo plus the occupancy stays below 1.8 everywhere (the
  curve's previous paddle is not yet in the occupancy, so it is exempt). Up to
  ``max_paddle_tries`` draws; then the curve fails.
- The target pair grows alternately; any failure redraws the whole pair. Each distractor
  is tried ``max_distractor_tries`` times and otherwise left out; a failed try leaves no trace.

Occupancy is the max of committed halos plus a frame of ``padding`` pixels. Free start
pixels are found by uniform draws, then (if 200 draws miss) by an exact scan, so the
start is uniform over the free pixels as in the original.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from lra_mega.data.errors import LRAConfigError
from lra_mega.data.pathfinder_render import FREE_BELOW, SpriteBank
from lra_mega.data.pathfinder_settings import PathfinderSettings

#: A new paddle is rejected where its halo plus the occupancy reaches this.
OVERLAP_LIMIT = 1.8

# int parameters (ip) and float parameters (fp) of the kernels, by position
H, PAD, WP, LENGTH, MARGIN, SEED_DIST, CONTOUR, DLEN, NDIS, PTRIES, DTRIES = range(11)
TCON, DCON, MCON, LIMIT, FREE = range(5)
_ROUNDS = 200


@njit(cache=True)
def _move(y: int, x: int, angle: float, dist: float) -> tuple[int, int]:
    """The original's ``translate_coord``: ceil(p + dist * (sin, cos)(angle))."""
    return int(np.ceil(y + dist * np.sin(angle))), int(np.ceil(x + dist * np.cos(angle)))


@njit(cache=True)
def _reverse(angle: float) -> float:
    if angle + np.pi < np.pi:
        return angle + np.pi
    return angle - np.pi


@njit(cache=True)
def _occupy(mask, inside, base, sid, halo_off, halo_val, undo_idx, undo_old, nu):
    """Max a halo into the occupancy (inside the image only); logs old values from ``nu``."""
    for c in range(halo_off.shape[1]):
        idx = base + halo_off[sid, c]
        v = halo_val[sid, c] * inside[idx]
        undo_idx[nu] = idx
        undo_old[nu] = mask[idx]
        nu += 1
        if v > mask[idx]:
            mask[idx] = v
    return nu


@njit(cache=True)
def _restore(mask, undo_idx, undo_old, nu):
    for r in range(nu - 1, -1, -1):
        mask[undo_idx[r]] = undo_old[r]


@njit(cache=True)
def _free(mask, base, core_off, sid, limit):
    for c in range(core_off.shape[1]):
        if mask[base + core_off[sid, c]] > limit:
            return False
    return True


@njit(cache=True)
def _free_pixel(mask, ip, fp, core_off, sid):
    """A pixel drawn uniformly among those free for first paddle ``sid``; (-1, -1) if none."""
    h, pad, wp = ip[H], ip[PAD], ip[WP]
    for _ in range(_ROUNDS):
        y = np.random.randint(0, h)
        x = np.random.randint(0, h)
        if _free(mask, (y + pad) * wp + x + pad, core_off, sid, fp[FREE]):
            return y, x
    count = 0
    for y in range(h):
        for x in range(h):
            if _free(mask, (y + pad) * wp + x + pad, core_off, sid, fp[FREE]):
                count += 1
    if count == 0:
        return -1, -1
    k = np.random.randint(0, count)
    for y in range(h):
        for x in range(h):
            if _free(mask, (y + pad) * wp + x + pad, core_off, sid, fp[FREE]):
                if k == 0:
                    return y, x
                k -= 1
    return -1, -1


@njit(cache=True)
def _start(S, A, j, y, x, deg, ip):
    """Set curve ``j`` to a first paddle at (y, x), ``deg`` degrees; False if it leaves the image."""
    h, length, margin = ip[H], ip[LENGTH], ip[MARGIN]
    a = deg * np.pi / 180
    hy, hx = _move(y, x, a, float(length))
    py, px = _move(hy, hx, _reverse(a), float(length + margin))
    if not (0 <= hy < h and 0 <= hx < h and 0 <= py < h and 0 <= px < h):
        return False
    S[j, 0], S[j, 1], S[j, 2] = py, px, deg + 180
    S[j, 3], S[j, 4], S[j, 5], S[j, 6], S[j, 7], S[j, 8] = y, x, y, x, y, x
    A[j] = a
    return True


@njit(cache=True)
def _first(mask, S, A, j, ip, fp, core_off, core_lo, core_hi, seed_ok, border):
    """First paddle of curve ``j`` (``border`` >= 0: start at least that far from the edge).
    A direction whose start search finds nothing (``seed_ok``) fails the curve at once."""
    h = ip[H]
    for _ in range(ip[PTRIES]):
        deg = np.random.randint(-180, 180)
        sid = deg + 180
        if not seed_ok[sid]:
            return False
        if border >= 0:
            lo_y, hi_y = border - core_lo[sid, 0], h - 1 - border - core_hi[sid, 0]
            lo_x, hi_x = border - core_lo[sid, 1], h - 1 - border - core_hi[sid, 1]
            if lo_y > hi_y or lo_x > hi_x:
                return False
            y = lo_y + np.random.randint(0, hi_y - lo_y + 1)
            x = lo_x + np.random.randint(0, hi_x - lo_x + 1)
        else:
            y, x = _free_pixel(mask, ip, fp, core_off, sid)
            if y < 0:
                return False
        if _start(S, A, j, y, x, deg, ip):
            return True
    return False


@njit(cache=True)
def _second(S, A, ip):
    """Second target seed: ``seed_distance`` from the first in a random whole-degree direction."""
    for _ in range(ip[PTRIES]):
        deg = np.random.randint(-180, 180)
        phi = np.random.randint(0, 360) * np.pi / 180
        y = int(np.round(S[0, 5] + ip[SEED_DIST] * np.sin(phi)))
        x = int(np.round(S[0, 6] + ip[SEED_DIST] * np.cos(phi)))
        if _start(S, A, 1, y, x, deg, ip):
            return True
    return False


@njit(cache=True)
def _next(mask, S, A, j, ip, fp, w, steps, turn_to, turn_w, disc_off, halo_off, halo_val):
    """Draw the next paddle of curve ``j``; returns (candidate k or -1, pivot y, pivot x)."""
    h, pad, wp = ip[H], ip[PAD], ip[WP]
    py, px = _move(S[j, 0], S[j, 1], A[j], float(ip[LENGTH] + 2 * ip[MARGIN]))
    sid = S[j, 2]
    total = 0.0
    n = 0
    for t in range(turn_to.shape[1]):
        tw = turn_w[sid, t]
        if tw == 0.0:
            break
        n += 1
        k = turn_to[sid, t]
        hy, hx = py + steps[k, 0], px + steps[k, 1]
        w[t] = 0.0
        if 0 <= hy < h and 0 <= hx < h:
            b = (hy + pad) * wp + hx + pad
            dil = 0.0
            for d in range(disc_off.shape[0]):
                v = mask[b + disc_off[d]]
                if v > dil:
                    dil = v
            w[t] = tw * (1.0 - dil)
            total += w[t]
    if total < 1e-4:
        return -1, py, px
    for _ in range(ip[PTRIES]):
        u = np.random.random()
        acc = 0.0
        pick = 0
        for t in range(n):
            acc += w[t] / total
            if acc > u:
                pick = t
                break
        k = turn_to[sid, pick]
        b = (py + steps[k, 0] + pad) * wp + px + steps[k, 1] + pad
        ok = True
        for c in range(halo_off.shape[1]):
            if mask[b + halo_off[360 + k, c]] + halo_val[360 + k, c] >= fp[LIMIT]:
                ok = False
                break
        if ok:
            return k, py, px
    return -1, py, px


@njit(cache=True)
def _advance(S, A, j, k, py, px, steps, angles):
    hy, hx = py + steps[k, 0], px + steps[k, 1]
    S[j, 0], S[j, 1], S[j, 2] = py, px, 360 + k
    S[j, 3], S[j, 4], S[j, 7], S[j, 8] = hy, hx, hy, hx
    A[j] = angles[k]


@njit(cache=True)
def grow_images(seeds, origin, terminal, ip, fp, halo_off, halo_val, line_off, line_val, core_off, core_lo,
                core_hi, seed_ok, steps, angles, turn_to, turn_w, disc_off, marker_off, marker_val, frame, inside,
                out_images, out_tips):
    """Grow image ``i`` from ``seeds[i]``: target pair, distractors, lines, then markers on the
    origin of target ``origin[i]`` and the end of target ``terminal[i]``. Writes float images
    (n, H, H) and tips (n, 2, 2, 2) [curve, origin/terminal, yx]."""
    h, pad, wp = ip[H], ip[PAD], ip[WP]
    n_paddles = 2 * ip[CONTOUR] + ip[NDIS] * ip[DLEN]
    mask = np.empty(wp * wp, np.float32)
    image = np.empty(wp * wp, np.float32)
    cap = (2 * ip[CONTOUR] + ip[DLEN] + 4) * halo_off.shape[1]
    undo_idx = np.empty(cap, np.int64)
    undo_old = np.empty(cap, np.float32)
    rec_base = np.empty(n_paddles, np.int64)
    rec_sid = np.empty(n_paddles, np.int64)
    rec_con = np.empty(n_paddles, np.float32)
    w = np.empty(turn_to.shape[1], np.float64)
    S = np.zeros((3, 9), np.int64)
    A = np.zeros(3, np.float64)
    for i in range(len(seeds)):
        np.random.seed(seeds[i])
        mask[:] = frame
        # the target pair, redrawn whole until it succeeds
        while True:
            nu = 0
            nrec = 0
            ok = (_first(mask, S, A, 0, ip, fp, core_off, core_lo, core_hi, seed_ok, 2 * ip[SEED_DIST])
                  and _second(S, A, ip))
            if ok:
                for j in range(2):
                    rec_base[nrec] = (S[j, 3] + pad) * wp + S[j, 4] + pad
                    rec_sid[nrec], rec_con[nrec] = S[j, 2], fp[TCON]
                    nrec += 1
                for _ in range(ip[CONTOUR] - 1):
                    for j in range(2):
                        k, py, px = _next(mask, S, A, j, ip, fp, w, steps, turn_to, turn_w, disc_off, halo_off,
                                          halo_val)
                        if k < 0:
                            ok = False
                            break
                        nu = _occupy(mask, inside, (S[j, 3] + pad) * wp + S[j, 4] + pad, S[j, 2], halo_off,
                                     halo_val, undo_idx, undo_old, nu)
                        _advance(S, A, j, k, py, px, steps, angles)
                        rec_base[nrec] = (S[j, 3] + pad) * wp + S[j, 4] + pad
                        rec_sid[nrec], rec_con[nrec] = S[j, 2], fp[TCON]
                        nrec += 1
                    if not ok:
                        break
            if ok:
                break
            _restore(mask, undo_idx, undo_old, nu)
        # as in the original, only the second target's last paddle enters the occupancy
        _occupy(mask, inside, (S[1, 3] + pad) * wp + S[1, 4] + pad, S[1, 2], halo_off, halo_val, undo_idx,
                undo_old, 0)
        for j in range(2):
            out_tips[i, j, 0, 0], out_tips[i, j, 0, 1] = S[j, 5], S[j, 6]
            out_tips[i, j, 1, 0], out_tips[i, j, 1, 1] = S[j, 7], S[j, 8]
        # distractors
        for _ in range(ip[NDIS]):
            for _ in range(ip[DTRIES]):
                if not _first(mask, S, A, 2, ip, fp, core_off, core_lo, core_hi, seed_ok, -1):
                    continue
                nu = 0
                rec0 = nrec
                rec_base[nrec] = (S[2, 3] + pad) * wp + S[2, 4] + pad
                rec_sid[nrec], rec_con[nrec] = S[2, 2], fp[DCON]
                nrec += 1
                ok = True
                for _ in range(ip[DLEN] - 1):
                    k, py, px = _next(mask, S, A, 2, ip, fp, w, steps, turn_to, turn_w, disc_off, halo_off, halo_val)
                    if k < 0:
                        ok = False
                        break
                    nu = _occupy(mask, inside, (S[2, 3] + pad) * wp + S[2, 4] + pad, S[2, 2], halo_off, halo_val,
                                 undo_idx, undo_old, nu)
                    _advance(S, A, 2, k, py, px, steps, angles)
                    rec_base[nrec] = (S[2, 3] + pad) * wp + S[2, 4] + pad
                    rec_sid[nrec], rec_con[nrec] = S[2, 2], fp[DCON]
                    nrec += 1
                if ok:
                    _occupy(mask, inside, (S[2, 3] + pad) * wp + S[2, 4] + pad, S[2, 2], halo_off, halo_val,
                            undo_idx, undo_old, 0)
                    break
                _restore(mask, undo_idx, undo_old, nu)
                nrec = rec0
        # render: lines, then the two markers, max-composited
        image[:] = 0.0
        for r in range(nrec):
            for c in range(line_off.shape[1]):
                idx = rec_base[r] + line_off[rec_sid[r], c]
                v = line_val[rec_sid[r], c] * rec_con[r]
                if v > image[idx]:
                    image[idx] = v
        for e in range(2):
            j = origin[i] if e == 0 else terminal[i]
            b = (out_tips[i, j, e, 0] + pad) * wp + out_tips[i, j, e, 1] + pad
            for c in range(marker_off.shape[0]):
                v = marker_val[c] * fp[MCON]
                if v > image[b + marker_off[c]]:
                    image[b + marker_off[c]] = v
        for y in range(h):
            for x in range(h):
                out_images[i, y, x] = image[(y + pad) * wp + x + pad]


def grow(s: PathfinderSettings, bank: SpriteBank, seeds: np.ndarray, origin: np.ndarray, terminal: np.ndarray
         ) -> tuple[np.ndarray, np.ndarray]:
    """Images (n, H, H) float32 (before the final rescale) and target tips (n, 2, 2, 2) for
    per-image ``seeds``, all with the margin of ``bank``; markers on the origin of target
    ``origin[i]`` and the terminal of target ``terminal[i]``."""
    size, margin = s.image_size, bank.margin
    if not bank.seed_ok.any():
        raise LRAConfigError(f"pathfinder generator: with {s} (margin {margin}) no paddle direction can start a "
                             f"curve (the original's start search fails for all 360); use a longer paddle_length "
                             f"or paddle_thickness, or a larger margin")
    pad = max(bank.reach, bank.marker_reach, s.paddle_length + 3 * margin) + 3
    wp = size + 2 * pad
    inside = np.zeros((wp, wp), np.float32)
    inside[pad:pad + size, pad:pad + size] = 1.0
    frame = inside.copy()
    frame[pad + s.padding:pad + size - s.padding, pad + s.padding:pad + size - s.padding] = 0.0
    ip = np.array([size, pad, wp, s.paddle_length, margin, s.seed_distance, s.contour_length, s.distractor_length,
                   s.num_distractors, s.max_paddle_tries, s.max_distractor_tries], np.int64)
    fp = np.array([s.target_contrast, s.distractor_contrast, s.marker_contrast, OVERLAP_LIMIT, FREE_BELOW])

    def flat(at: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(at[..., 0] * wp + at[..., 1], dtype=np.int64)

    mr = np.arange(-bank.marker_reach, bank.marker_reach + 1)
    marker_off = (mr[:, None] * wp + mr[None, :]).ravel().astype(np.int64)
    n = len(seeds)
    images = np.zeros((n, size, size), np.float32)
    tips = np.zeros((n, 2, 2, 2), np.int64)
    grow_images(np.asarray(seeds, np.int64), np.asarray(origin, np.int64), np.asarray(terminal, np.int64), ip, fp,
                flat(bank.halo_at), bank.halo_val, flat(bank.line_at), bank.line_val, flat(bank.core),
                np.ascontiguousarray(bank.core.min(1)), np.ascontiguousarray(bank.core.max(1)), bank.seed_ok,
                bank.steps,
                bank.angles, np.ascontiguousarray(bank.turn_to, dtype=np.int64), bank.turn_w, flat(bank.disc),
                marker_off, bank.marker.ravel().astype(np.float32), frame.ravel(), inside.ravel(), images, tips)
    return images, tips
