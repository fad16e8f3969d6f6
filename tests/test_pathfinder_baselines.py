"""scripts/pathfinder_baselines.py: the CNN learns what is learnable, its curve says when, and the CLI runs."""

from __future__ import annotations

import json

import numpy as np
from harness import load_script


def _script():
    return load_script("pathfinder_baselines")


def _toy(n: int, seed: int) -> dict[str, np.ndarray]:
    """16 x 16 images with one bright 3 x 3 square: label 1 when it lies in the top half."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, n)
    pixels = np.zeros((n, 16, 16), np.uint8)
    for i, y in enumerate(labels):
        row = rng.integers(0, 5) if y else rng.integers(8, 13)
        col = rng.integers(0, 13)
        pixels[i, row:row + 3, col:col + 3] = 255
    return {"pixels": pixels.reshape(n, -1), "labels": labels}


def test_cnn_learns_a_separable_toy_and_notes_when_it_left_chance():
    mod = _script()
    data = {"train": _toy(512, 0), "val": _toy(128, 1), "test": _toy(256, 2)}
    seen = []
    result = mod.train(data, 16, minutes=5, steps=60, batch=32, lr=1e-3, eval_every=10, val_images=128,
                       seed=0, on_eval=lambda curve: seen.append(len(curve)))
    assert result["steps"] == 60 and seen == [1, 2, 3, 4, 5, 6]
    assert [c["images"] for c in result["curve"]] == [320, 640, 960, 1280, 1600, 1920]
    assert result["test_acc"] >= 0.9
    first = [c for c in result["curve"] if c["val_acc"] >= 0.6][0]
    assert result["images_to_leave_chance"] == first["images"]


def test_cnn_stays_at_chance_on_random_labels():
    mod = _script()
    data = {s: _toy(n, i) for i, (s, n) in enumerate([("train", 256), ("val", 512), ("test", 512)])}
    data["val"]["labels"] = np.random.default_rng(5).integers(0, 2, 512)  # unrelated to the images
    result = mod.train(data, 16, minutes=5, steps=20, batch=32, lr=1e-3, eval_every=10, val_images=512, seed=0)
    assert all(0.4 < c["val_acc"] < 0.6 for c in result["curve"])
    assert result["images_to_leave_chance"] is None


def test_cli_writes_json_and_markdown(run_cli, tmp_path):
    out = tmp_path / "cnn.json"
    proc = run_cli("--difficulty", "6", "--sizes", "256", "256", "256", "--cache-dir", str(tmp_path / "cache"),
                   "--steps", "4", "--eval-every", "2", "--val-images", "64", "--out", str(out),
                   script="pathfinder_baselines.py")
    assert proc.returncode == 0, proc.stderr
    result = json.loads(out.read_text())
    assert result["finished"] and result["steps"] == 4 and len(result["curve"]) == 2
    assert result["difficulty"] == 6 and result["n_train"] == 256
    assert "| step | images |" in out.with_suffix(".md").read_text()


def test_cli_bad_difficulty_is_one_line(run_cli, tmp_path):
    proc = run_cli("--difficulty", "7", "--cache-dir", str(tmp_path), "--out", str(tmp_path / "x.json"),
                   script="pathfinder_baselines.py")
    assert proc.returncode == 1
    assert proc.stderr.strip().count("\n") == 0 and "difficulty" in proc.stderr
