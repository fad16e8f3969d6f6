#!/usr/bin/env python
"""A plain CNN on the task's own Pathfinder images: is the data learnable, and how long is the plateau?

    python scripts/pathfinder_baselines.py --difficulty 6 --minutes 30 \
        --out docs/results/pathfinder_cnn_d6.json

Not an LRA entry: a 2-D convolutional network sees the image as an image (LRA's sequence models
must not), so it is the easy reference. It reads the splits the training runs cache (generated,
or ``--root`` for the release) and trains a five-layer CNN with BatchNorm (Adam, batch 64) for ``--minutes`` of
wall time or ``--steps`` steps. Every ``--eval-every`` steps it scores the first ``--val-images``
validation images and rewrites the JSON, so a killed run keeps its curve; at the end it scores
the whole test split and writes a markdown table beside the JSON. ``images_to_leave_chance`` is
the number of training images seen at the first validation of 60% or more (null: never).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from out_paths import require_writable

LEFT_CHANCE = 0.60  # validation accuracy that counts as off the plateau (chance is 0.50)


def build_cnn(side: int):
    """Five 3x3 convolutions with BatchNorm (32-32-64-64-64 channels, three 2x2 poolings), then a
    128-unit MLP. Without the norms, a 20-minute try at contour length 6 predicted one class for
    all its 160,000 images (loss 0.6932)."""
    from torch import nn

    def conv(c_in: int, c_out: int) -> list:
        return [nn.Conv2d(c_in, c_out, 3, padding=1), nn.BatchNorm2d(c_out), nn.ReLU()]

    return nn.Sequential(
        *conv(1, 32), *conv(32, 32), nn.MaxPool2d(2), *conv(32, 64), *conv(64, 64), nn.MaxPool2d(2),
        *conv(64, 64), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(64 * (side // 8) ** 2, 128), nn.ReLU(),
        nn.Linear(128, 2))


def images(pixels: np.ndarray, side: int):
    """uint8 rows (N, side*side) -> float (N, 1, side, side), normalised as the harness does."""
    import torch

    from lra_mega.data.pathfinder import PathfinderDataModule as task

    x = torch.from_numpy(np.array(pixels, dtype=np.float32)).view(-1, 1, side, side)
    return (x / 255 - task.pixel_mean) / task.pixel_std


def accuracy(model, pixels: np.ndarray, labels: np.ndarray, side: int, batch: int = 500) -> float:
    """Share of ``labels`` the model gets right, in batches."""
    import torch

    right = 0
    with torch.no_grad():
        for lo in range(0, len(labels), batch):
            guess = model(images(pixels[lo:lo + batch], side)).argmax(1).numpy()
            right += int((guess == labels[lo:lo + batch]).sum())
    return right / len(labels)


def train(data: dict[str, dict[str, np.ndarray]], side: int, *, minutes: float, steps: int | None,
          batch: int, lr: float, eval_every: int, val_images: int, seed: int,
          on_eval=None) -> dict[str, Any]:
    """Train the CNN on ``data['train']``; its validation curve and final test accuracy."""
    import torch

    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    model = build_cnn(side)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    tr, val = data["train"], data["val"]
    n_val = min(val_images, len(val["labels"]))
    order, pos, losses, curve = rng.permutation(len(tr["labels"])), 0, [], []
    start, step = time.perf_counter(), 0
    while (steps is None or step < steps) and time.perf_counter() - start < 60 * minutes:
        if pos + batch > len(order):
            order, pos = rng.permutation(len(order)), 0
        idx = np.sort(order[pos:pos + batch])
        pos += batch
        loss = torch.nn.functional.cross_entropy(model(images(tr["pixels"][idx], side)),
                                                 torch.from_numpy(tr["labels"][idx]))
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
        step += 1
        if step % eval_every == 0:
            model.eval()
            acc = accuracy(model, val["pixels"][:n_val], val["labels"][:n_val], side)
            model.train()
            curve.append({"step": step, "images": step * batch, "seconds": round(time.perf_counter() - start, 1),
                          "train_loss": round(float(np.mean(losses)), 4), "val_acc": round(acc, 4)})
            losses = []
            if on_eval is not None:
                on_eval(curve)
    model.eval()
    test = accuracy(model, data["test"]["pixels"], data["test"]["labels"], side)
    first = next((c["images"] for c in curve if c["val_acc"] >= LEFT_CHANCE), None)
    return {"steps": step, "seconds": round(time.perf_counter() - start, 1), "curve": curve,
            "images_to_leave_chance": first, "test_acc": round(test, 4)}


def markdown(result: dict[str, Any]) -> str:
    """The curve (every evaluation, at most 12 rows) and the test accuracy as a table."""
    curve = result["curve"]
    keep = curve[max(1, len(curve) // 12) - 1::max(1, len(curve) // 12)][-12:]
    first = result["images_to_leave_chance"]
    plateau = f"off the plateau (val ≥ {100 * LEFT_CHANCE:.0f}%) after {first:,} images" if first else \
        f"never off the plateau (val < {100 * LEFT_CHANCE:.0f}% at every evaluation)"
    lines = [f"CNN reference on Pathfinder {result['resolution']} px, contour length {result['difficulty']} "
             f"({result['source']} data; {result['machine']}, {result['threads']} thread(s)): "
             f"test {100 * result['test_acc']:.2f}% after {result['steps']} steps of {result['batch']} "
             f"({result['seconds'] / 60:.0f} min); {plateau}.", "",
             "| step | images | minutes | train loss | val acc |", "|---|---|---|---|---|"]
    lines += [f"| {c['step']} | {c['images']} | {c['seconds'] / 60:.1f} | {c['train_loss']:.3f} | "
              f"{100 * c['val_acc']:.1f}% |" for c in keep]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--difficulty", type=int, default=14, help="contour length: 6, 9 or 14 (default)")
    p.add_argument("--resolution", type=int, default=32, help="image side (default 32)")
    p.add_argument("--out", type=Path, help="JSON path (default docs/results/pathfinder_cnn_d<difficulty>.json)")
    p.add_argument("--root", help="directory holding lra_release/ (default: the generated data)")
    p.add_argument("--cache-dir", help="data cache (default: the harness's)")
    p.add_argument("--sizes", type=int, nargs=3, default=(160_000, 20_000, 20_000), metavar=("TRAIN", "VAL", "TEST"),
                   help="generated split sizes (default: the LRA ones, which the training runs cache)")
    p.add_argument("--minutes", type=float, default=30.0, help="wall-time budget of the training")
    p.add_argument("--steps", type=int, help="stop after this many steps instead (default: time only)")
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--eval-every", type=int, default=250, help="steps between validations")
    p.add_argument("--val-images", type=int, default=2000, help="validation images read at each evaluation")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    args = p.parse_args(argv)
    out = args.out or Path(f"docs/results/pathfinder_cnn_d{args.difficulty}.json")
    require_writable("pathfinder_baselines", "--out", out, is_file=True)
    if min(args.batch, args.eval_every, args.val_images) < 1 or args.minutes <= 0:
        p.error("--batch, --eval-every and --val-images must be >= 1 and --minutes > 0")
    if args.resolution % 8:
        p.error(f"--resolution {args.resolution}: the CNN pools three times, so it must be a multiple of 8")

    import torch

    from lra_mega.data.errors import LRAConfigError, LRADataError
    from lra_mega.data.pathfinder import PathfinderDataModule

    torch.set_num_threads(args.threads)
    try:
        n_train, n_val, n_test = args.sizes
        dm = PathfinderDataModule(source="release" if args.root else "generate", root=args.root,
                                  cache_dir=args.cache_dir, n_train=n_train, n_val=n_val, n_test=n_test,
                                  difficulty=args.difficulty, resolution=args.resolution)
        data = {s: dm.load_split(s).arrays for s in ("train", "val", "test")}
    except (LRAConfigError, LRADataError) as e:
        print(f"pathfinder_baselines: error: {e}", file=sys.stderr)
        return 1
    meta = {"model": "cnn", "source": dm.source, "resolution": args.resolution, "difficulty": args.difficulty,
            "n_train": len(data["train"]["labels"]), "batch": args.batch, "lr": args.lr, "seed": args.seed,
            "threads": args.threads, "machine": f"{platform.machine()} {os.cpu_count()} CPUs",
            "torch": torch.__version__}
    budget = f"{args.steps} steps" if args.steps else f"{args.minutes:g} min"

    def on_eval(curve: list[dict[str, Any]]) -> None:
        c = curve[-1]
        done = c["step"] / args.steps if args.steps else c["seconds"] / (60 * args.minutes)
        left = c["seconds"] * (1 - done) / max(done, 1e-9)
        print(f"step {c['step']} | images {c['images']} | loss {c['train_loss']:.4f} | val {100 * c['val_acc']:.1f}% | "
              f"{c['images'] / c['seconds']:.0f} images/s | {100 * done:.0f}% of {budget} | left {left / 60:.1f} min",
              flush=True)
        out.write_text(json.dumps({**meta, "finished": False, "curve": curve}, indent=1) + "\n")

    result = {**meta, **train(data, args.resolution, minutes=args.minutes, steps=args.steps, batch=args.batch,
                               lr=args.lr, eval_every=args.eval_every, val_images=args.val_images,
                               seed=args.seed, on_eval=on_eval), "finished": True}
    out.write_text(json.dumps(result, indent=1) + "\n")
    table = markdown(result)
    out.with_suffix(".md").write_text(table)
    print(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
