"""Generate the Pathfinder / Path-X splits into the data cache (what training would do on first use).

    python scripts/generate_pathfinder.py                          # Pathfinder, 160k/20k/20k, contour 14
    python scripts/generate_pathfinder.py --task pathx --workers 16
    python scripts/generate_pathfinder.py --resolution 256 --n-train 2048 --n-val 256 --n-test 256   # Path-256
    python scripts/generate_pathfinder.py --difficulty 6 --n-train 2048 --n-val 256 --n-test 256
    python scripts/generate_pathfinder.py --samples docs/pathfinder_samples.png   # ours next to official images

Re-running after an interruption continues where it stopped; a finished split is not regenerated.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from lra_mega.data.errors import LRADataError
from out_paths import require_writable
from lra_mega.data.pathfinder import PathfinderDataModule, PathXDataModule
from lra_mega.data.pathfinder_generate import generate, pathfinder_settings

REFERENCE = Path(__file__).resolve().parents[1].parent / "shared" / "reference" / "pathfinder"
TILE, PER_ROW, LABEL_W = 128, 8, 250


def _strip(path: Path, size: int) -> np.ndarray:
    """The images of a released sample strip (tiles of ``size`` px, 2 px white borders)."""
    a = np.asarray(Image.open(path).convert("L"))
    n = (a.shape[1] - 2) // (size + 2)
    return np.stack([a[2:2 + size, 2 + i * (size + 2):2 + i * (size + 2) + size] for i in range(n)])


def samples_figure(out: str | Path, reference: Path = REFERENCE, seed: int = 0) -> None:
    """Rows of 8 images: official (generator arrays, released strips) and ours, per size."""
    ref32 = np.load(reference / "official_generator_pf32.npz")["images"]
    ref128 = np.load(reference / "official_generator_pf128_17distractors.npz")["images"]
    rows = [("official generator, 32 px", ref32),
            ("ours, 32 px", generate(pathfinder_settings(32), PER_ROW, seed).images),
            ("released Pathfinder-64", _strip(reference / "release_path64_curv_contour_length_14_samples.png", 64)),
            ("ours, 64 px", generate(pathfinder_settings(64), PER_ROW, seed).images),
            ("released Path-X, 128 px", _strip(reference / "release_pathx_curv_contour_length_14_8samples.png", 128)),
            ("official generator, 128 px", ref128),
            ("ours, 128 px", generate(pathfinder_settings(128), PER_ROW, seed).images)]
    gap = 4
    fig = Image.new("L", (LABEL_W + PER_ROW * (TILE + gap), len(rows) * (TILE + gap)), 90)
    draw = ImageDraw.Draw(fig)
    try:
        font = ImageFont.load_default(size=17)
    except TypeError:  # Pillow < 10.1: fixed-size bitmap font
        font = ImageFont.load_default()
    for r, (name, images) in enumerate(rows):
        y = r * (TILE + gap)
        draw.text((8, y + TILE // 2 - 9), name, fill=255, font=font)
        for i, img in enumerate(images[:PER_ROW]):
            tile = Image.fromarray(np.ascontiguousarray(img)).resize((TILE, TILE), Image.Resampling.NEAREST)
            fig.paste(tile, (LABEL_W + i * (TILE + gap), y))
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    fig.save(out)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--task", choices=("pathfinder", "pathx"), default="pathfinder")
    p.add_argument("--difficulty", type=int, default=14, help="contour length: 6, 9 or 14 (default)")
    p.add_argument("--resolution", type=int, default=None,
                   help="image size 32, 64, 128 or 256 (default: 32 for pathfinder, 128 for pathx)")
    p.add_argument("--n-train", type=int, default=160_000)
    p.add_argument("--n-val", type=int, default=20_000)
    p.add_argument("--n-test", type=int, default=20_000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--cache-dir", default=None, help="default: $LRA_MEGA_CACHE or ~/.cache/lra_mega")
    p.add_argument("--workers", type=int, default=None, help="processes (default: all CPUs)")
    p.add_argument("--shard-size", type=int, default=None, help="images per shard (multiple of 256)")
    p.add_argument("--samples", default=None, metavar="PNG",
                   help="only draw ours next to the official samples (../shared/reference/pathfinder) into PNG")
    args = p.parse_args(argv)
    if args.samples:
        require_writable("generate_pathfinder", "--samples", args.samples, is_file=True)
        if not REFERENCE.exists():
            print(f"error: reference samples not found at {REFERENCE}", file=sys.stderr)
            return 2
        samples_figure(args.samples, seed=args.seed)
        print(f"wrote {args.samples}")
        return 0
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    cls = PathXDataModule if args.task == "pathx" else PathfinderDataModule
    extra = {} if args.shard_size is None else {"shard_size": args.shard_size}
    try:
        dm = cls(n_train=args.n_train, n_val=args.n_val, n_test=args.n_test, difficulty=args.difficulty,
                 resolution=args.resolution,
                 seed=args.seed, cache_dir=args.cache_dir, workers=args.workers, num_workers=0, **extra)
        t0 = time.perf_counter()
        dm.prepare_data()
    except LRADataError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"{args.task}: splits ready in {dm.cache_dir / dm.task} ({time.perf_counter() - t0:.1f}s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
