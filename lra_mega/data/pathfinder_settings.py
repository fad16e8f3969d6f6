"""Settings of the Pathfinder "snakes" generator and the per-size presets LRA used.

Field names follow the original generator (drewlinsley/pathfinder ``snakes2.py``); the
presets are the LRA settings (google-research/long-range-arena
``lra_benchmarks/data/pathfinder.py``) for 32, 64, 128 and 256 pixels.

The number of distractor curves. LRA's docstrings write ``budget / distractor_length``
(budget 20 at 32, 22 at 64, 35 at 128, 30 at 256) after ``distractor_length =
contour_length / 3``, the block of the original's ``snakes2_wrapper.py``. That wrapper
computes the count once, with the baseline's contour length 6 (distractor length 2), and
its loop over contour lengths 9 and 14 changes only the two lengths: every difficulty gets
``budget // 2`` distractor curves (Python 2 division), ``distractor_length`` paddles each.
This is what the released images hold at 64 and 128 px: Path-X 17 (= 35 // 2; the
docstring's formula at contour length 14 gives 8), Pathfinder-64 11 (= 22 // 2, not 5;
tests/test_pathfinder_official.py compares with the released 64 px samples). 256 px
follows the same wrapper block. At 32 px, whose docstring differs (``//``, paddle contrast
0.75) and for which no released image is at hand here, the count stays ``20 //
distractor_length`` (5 at contour length 14), the count ``official_generator_pf32.npz``
was made with; by the wrapper's rule it would be 10.

Many distractors are never placed: a curve whose first paddle direction the original's
start search cannot handle fails at once, at 32 px 329 of the 360 directions, at 64 px
265 (see ``pathfinder_render.start_search_ok``); about 1.2 of 5 are placed at 32 px and
5.3 of 11 at 64 px.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Any

from lra_mega.data.errors import LRAConfigError

#: Contour lengths (paddles per target curve) of the three official difficulty levels.
DIFFICULTIES = {6: "curv_baseline", 9: "curv_contour_length_9", 14: "curv_contour_length_14"}
#: Image sizes of the official sets (Pathfinder-32, -64, Path-X = 128, Path-256).
RESOLUTIONS = (32, 64, 128, 256)


@dataclass(frozen=True)
class PathfinderSettings:
    """Everything that determines the generated images (lengths in pixels of the output).

    A curve is a chain of paddles (straight dashes ``paddle_length`` long); the next paddle
    starts ``2 * margin`` beyond the previous one, turning by an angle weighted
    cos^2(continuity * turn). ``paddle_margins`` holds the margins one is drawn from per
    image. Contrasts are relative; each image is finally rescaled to a maximum of 255.
    """

    image_size: int = 32
    paddle_length: int = 2
    paddle_thickness: float = 0.5
    paddle_margins: tuple[int, ...] = (1,)
    marker_radius: float = 1.5
    seed_distance: int = 7
    padding: int = 1
    contour_length: int = 14
    distractor_length: int = 4
    num_distractors: int = 5
    continuity: float = 1.0
    target_contrast: float = 1.5
    distractor_contrast: float = 2.0
    marker_contrast: float = 1.0
    antialias_scale: int = 2
    max_paddle_tries: int = 3
    max_distractor_tries: int = 5

    def __post_init__(self) -> None:
        object.__setattr__(self, "paddle_margins", tuple(int(m) for m in self.paddle_margins))
        checks = [
            ("image_size", self.image_size >= 16, "an int >= 16"),
            ("paddle_length", self.paddle_length >= 1, "an int >= 1"),
            ("antialias_scale", self.antialias_scale >= 1, "an int >= 1"),
            ("paddle_thickness", self.paddle_thickness > 0
             and float(self.paddle_thickness * self.antialias_scale).is_integer(),
             "positive, and a whole number of pixels when multiplied by antialias_scale"),
            ("paddle_margins", len(self.paddle_margins) > 0 and min(self.paddle_margins) >= 1,
             "a non-empty list of ints >= 1"),
            ("marker_radius", self.marker_radius > 0, "a positive number"),
            ("seed_distance", 0 < 4 * self.seed_distance < self.image_size, "an int in (0, image_size/4)"),
            ("padding", 1 <= self.padding < self.image_size / 4, "an int in [1, image_size/4)"),
            ("contour_length", self.contour_length >= 2, "an int >= 2"),
            ("distractor_length", self.distractor_length >= 1, "an int >= 1"),
            ("num_distractors", 0 <= self.num_distractors <= 200, "an int in [0, 200]"),
            ("continuity", self.continuity > 0, "a positive number"),
            ("target_contrast", self.target_contrast > 0, "a positive number"),
            ("distractor_contrast", self.distractor_contrast > 0, "a positive number"),
            ("marker_contrast", self.marker_contrast > 0, "a positive number"),
            ("max_paddle_tries", self.max_paddle_tries >= 1, "an int >= 1"),
            ("max_distractor_tries", self.max_distractor_tries >= 1, "an int >= 1"),
        ]
        for name, ok, want in checks:
            if not ok:
                raise LRAConfigError(f"pathfinder generator: {name} must be {want}; got {getattr(self, name, '?')!r} "
                                     f"in {self}")

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (for cache keys and manifests)."""
        d = asdict(self)
        d["paddle_margins"] = list(self.paddle_margins)
        return d


def pathfinder_settings(resolution: int = 32, contour_length: int = 14, **overrides: Any) -> PathfinderSettings:
    """LRA settings for ``resolution`` (32, 64, 128 = Path-X, 256) and difficulty ``contour_length``.

    ``contour_length`` 6 (curv_baseline), 9 or 14 (LRA's choice). Distractor curves are
    ``contour_length // 3`` paddles long; there are ``budget // 2`` of them at every
    difficulty (11 at 64, 17 at 128, 15 at 256: the wrapper's count, see the module
    docstring), and ``20 // (contour_length // 3)`` at 32. ``overrides`` replace single
    fields (e.g. ``num_distractors=8``).
    """
    if contour_length not in DIFFICULTIES:
        raise LRAConfigError(f"pathfinder: difficulty (contour length) {contour_length!r} is not one of "
                             f"{sorted(DIFFICULTIES)}; use 6 (curv_baseline), 9 or 14")
    dl = contour_length // 3
    if resolution == 32:
        base = PathfinderSettings(image_size=32, paddle_length=2, paddle_thickness=0.5, paddle_margins=(1,),
                                  marker_radius=1.5, seed_distance=7, padding=1, continuity=1.0,
                                  target_contrast=0.75 * 2, distractor_contrast=2.0, num_distractors=20 // dl)
    elif resolution == 64:
        base = PathfinderSettings(image_size=64, paddle_length=5, paddle_thickness=1.0, paddle_margins=(1,),
                                  marker_radius=2.5, seed_distance=12, padding=1, continuity=1.8,
                                  target_contrast=0.8, distractor_contrast=0.8, num_distractors=22 // 2)
    elif resolution == 128:
        base = PathfinderSettings(image_size=128, paddle_length=5, paddle_thickness=1.5, paddle_margins=(2, 3),
                                  marker_radius=3.0, seed_distance=20, padding=1, continuity=1.8,
                                  target_contrast=0.9, distractor_contrast=0.9, num_distractors=35 // 2)
    elif resolution == 256:
        base = PathfinderSettings(image_size=256, paddle_length=5, paddle_thickness=2.0, paddle_margins=(3,),
                                  marker_radius=5.0, seed_distance=27, padding=22, continuity=1.8,
                                  target_contrast=1.0, distractor_contrast=1.0, num_distractors=30 // 2)
    else:
        raise LRAConfigError(f"pathfinder: resolution {resolution!r} is not one of {list(RESOLUTIONS)}; "
                             f"set data.resolution to 32 (Pathfinder), 64, 128 (Path-X) or 256")
    base = replace(base, contour_length=contour_length, distractor_length=dl)
    if overrides:
        unknown = sorted(set(overrides) - set(base.to_dict()))
        if unknown:
            raise LRAConfigError(f"pathfinder: unknown generator setting(s) {unknown}; "
                                 f"known: {sorted(base.to_dict())}")
        base = replace(base, **overrides)
    return base
