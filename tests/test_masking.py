"""Self-pretraining's tensor functions against hand computations and brute-force loops: which
positions are hidden, what the causal objective predicts, pixel levels, and losses that count only
the predicted positions."""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest
import torch

from lra_mega.data.sequences import PadCollate
from lra_mega.training.masking import (choose_masked, masked_accuracy, masked_loss, next_position_targets,
                              pixel_levels)


def _padding_mask(lengths: list[int], width: int) -> torch.Tensor:
    return torch.tensor([[t < n for t in range(width)] for n in lengths])


@pytest.mark.parametrize("prob", ["0.1", "0.15", "0.5"])
def test_masking_hides_the_requested_share_and_never_padding(prob):
    lengths = [1, 2, 3, 7, 10, 13, 20, 33, 40, 40]
    mask = _padding_mask(lengths, 40)
    torch.manual_seed(0)
    for _ in range(20):
        hidden = choose_masked(mask, float(prob))
        for row, n in enumerate(lengths):
            # round(p * n), halves up, at least one: exact rational arithmetic, by hand
            expected = max(1, math.floor(Fraction(prob) * n + Fraction(1, 2)))
            assert int(hidden[row].sum()) == expected, (prob, n)
            assert not hidden[row, n:].any()  # never a padding position
    assert (choose_masked(mask, float(prob)) & ~mask).sum() == 0


def test_masking_is_uniform_over_the_real_positions_and_follows_its_generator():
    mask = _padding_mask([10, 6], 12)
    counts = torch.zeros(2, 12)
    draws = 4000
    generator = torch.Generator().manual_seed(1)
    for _ in range(draws):
        counts += choose_masked(mask, 0.5, generator).float()
    # 5 of 10 and 3 of 6 real positions per draw: each real position is hidden half the time
    share = counts / draws
    assert torch.all((share[0, :10] - 0.5).abs() < 0.04) and torch.all((share[1, :6] - 0.5).abs() < 0.04)
    assert counts[0, 10:].sum() == 0 and counts[1, 6:].sum() == 0
    a = choose_masked(mask, 0.15, torch.Generator().manual_seed(7))
    b = choose_masked(mask, 0.15, torch.Generator().manual_seed(7))
    assert torch.equal(a, b)


def test_next_position_targets_by_loops():
    values = torch.tensor([[5, 6, 7, 8, 0], [1, 2, 0, 0, 0], [9, 0, 0, 0, 0]])
    mask = values != 0
    targets, predicted = next_position_targets(values, mask)
    for b in range(3):
        for t in range(5):
            real_next = t + 1 < 5 and bool(mask[b, t]) and bool(mask[b, t + 1])
            assert bool(predicted[b, t]) == real_next, (b, t)
            if real_next:
                assert targets[b, t] == values[b, t + 1]
    assert predicted.sum() == 3 + 1 + 0


@pytest.mark.parametrize("mean, std", [(0.5, 0.5), (0.48, 0.24)], ids=["pathfinder", "image"])
def test_pixel_levels_recover_every_grey_level_from_the_batch(mean, std):
    """The collate normalises uint8 pixels; the levels come back exactly, all 256 of them."""
    levels = np.arange(256, dtype=np.uint8)
    batch = PadCollate("pixels", 256, pixel_mean=mean, pixel_std=std)([(levels, 0)])
    assert torch.equal(pixel_levels(batch["input"], mean, std)[0], torch.arange(256))


def test_masked_cross_entropy_counts_only_the_hidden_positions():
    # two classes; positions 1 and 2 hidden: losses log(1 + e^-2) and log(1 + e^-3), by hand
    logits = torch.tensor([[[9.0, -9.0], [2.0, 0.0], [0.0, 3.0]]])
    target = torch.tensor([[1, 0, 1]])
    where = torch.tensor([[False, True, True]])
    expected = (math.log(1 + math.exp(-2)) + math.log(1 + math.exp(-3))) / 2
    assert masked_loss(logits, target, where, "ce").item() == pytest.approx(expected, rel=1e-6)
    # position 0 is badly wrong (loss 18 if it counted), and changing it changes nothing
    logits[0, 0] = torch.tensor([-50.0, 50.0])
    assert masked_loss(logits, target, where, "ce").item() == pytest.approx(expected, rel=1e-6)
    hits, count = masked_accuracy(logits, target, where, "ce")
    assert (int(hits), int(count)) == (2, 2)  # argmax 0 = 0 at position 1, 1 = 1 at position 2


def test_masked_l1_counts_only_the_hidden_positions():
    prediction = torch.tensor([[1.0, 2.0, -1.0, 0.5], [7.0, 7.0, 7.0, 0.25]])
    target = torch.zeros(2, 4)
    where = torch.tensor([[True, False, False, True], [False, False, False, True]])
    # |1| + |0.5| + |0.25| over 3 hidden positions
    assert masked_loss(prediction, target, where, "l1").item() == pytest.approx(1.75 / 3)
    # l1 accuracy compares grey levels: a prediction a hair off level 128 is level 128 (a hit);
    # level 3 against level 4 is a miss
    prediction = torch.tensor([[(128 / 255 - 0.5) / 0.5 + 1e-3, (3 / 255 - 0.5) / 0.5]])
    target = torch.tensor([[(128 / 255 - 0.5) / 0.5, (4 / 255 - 0.5) / 0.5]])
    hits, count = masked_accuracy(prediction, target, torch.ones(1, 2, dtype=torch.bool), "l1", 0.5, 0.5)
    assert (int(hits), int(count)) == (1, 2)


def test_nothing_to_predict_gives_zero_not_nan():
    logits = torch.randn(1, 3, 4)
    nothing = torch.zeros(1, 3, dtype=torch.bool)
    assert masked_loss(logits, torch.zeros(1, 3, dtype=torch.long), nothing, "ce").item() == 0.0
