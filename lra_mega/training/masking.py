"""What self-pretraining (SPT) hides and predicts, as plain tensor functions.

* :func:`choose_masked` picks, in every sequence, ``round(prob · n)`` of its ``n`` real positions
  (at least one), uniformly, never a padding position.
* :func:`next_position_targets` gives the causal objective's targets: position ``t`` predicts the
  value at ``t + 1``; the last real position predicts nothing.
* :func:`pixel_levels` turns normalised pixels back into their 256 grey levels (``pretrain.loss=ce``).
* :func:`masked_loss` and :func:`masked_accuracy` count only the positions chosen to be predicted.

Amos, Berant and Gupta ("Never Train from Scratch", ICLR 2024) draw each position independently
with probability ``prob``; here each sequence gets exactly its share, so the fraction is the one
asked for, batch after batch.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.nn import functional as F

OBJECTIVES = ("masked", "causal")
LOSSES = ("ce", "l1")
PIXEL_LEVELS = 256
#: The paper's share of hidden positions per task (ListOps 10%, Text and Retrieval 15%, pixels 50%).
PAPER_MASK_PROB = {"listops": 0.10, "text": 0.15, "retrieval": 0.15, "image": 0.50, "pathfinder": 0.50,
                   "pathx": 0.50}


def masked_counts(mask: Tensor, prob: float) -> Tensor:
    """(B,) how many positions each sequence hides: ``round(prob · n)`` (halves up) of its ``n`` real
    positions, at least one when it has any."""
    real = mask.sum(-1)
    count = torch.floor(real.to(torch.float64) * prob + 0.5).long()
    return torch.minimum(count.clamp(min=1), real)


def choose_masked(mask: Tensor, prob: float, generator: torch.Generator | None = None) -> Tensor:
    """(B, L) bool: the positions to hide, :func:`masked_counts` of them per sequence, drawn uniformly
    among the real positions (``mask`` True) with ``generator`` (the global RNG when None)."""
    scores = torch.rand(mask.shape, generator=generator, device=mask.device)
    scores = scores.masked_fill(~mask, 2.0)  # padding sorts after every real position
    order = scores.argsort(dim=-1)
    rank = torch.empty_like(order).scatter_(-1, order, torch.arange(mask.shape[-1], device=mask.device)
                                            .expand_as(order).contiguous())
    return rank < masked_counts(mask, prob).unsqueeze(-1)


def next_position_targets(values: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
    """(targets, predicted): ``targets[:, t] = values[:, t + 1]``; ``predicted[:, t]`` is True where
    both ``t`` and ``t + 1`` are real positions (padding and the last position predict nothing)."""
    targets = torch.zeros_like(values)
    targets[:, :-1] = values[:, 1:]
    predicted = torch.zeros_like(mask)
    predicted[:, :-1] = mask[:, :-1] & mask[:, 1:]
    return targets, predicted


def pixel_levels(pixels: Tensor, mean: float, std: float) -> Tensor:
    """Normalised pixels ``(x / 255 - mean) / std`` back to their levels ``x`` in 0..255 (int64)."""
    levels = torch.round((pixels.double() * std + mean) * (PIXEL_LEVELS - 1))
    return levels.clamp(0, PIXEL_LEVELS - 1).long()


def masked_loss(prediction: Tensor, target: Tensor, where: Tensor, loss: str) -> Tensor:
    """Mean loss over the positions ``where`` is True, the others left out (0 when there are none).

    ``loss="ce"``: ``prediction`` (B, L, C) logits, ``target`` (B, L) class ids, cross-entropy;
    ``loss="l1"``: ``prediction`` (B, L) values, ``target`` (B, L) values, absolute error.
    """
    weight = where.to(torch.float32)
    if loss == "ce":
        per_position = F.cross_entropy(prediction.float().flatten(0, -2), target.flatten(),
                                       reduction="none").view_as(weight)
    else:
        per_position = (prediction.float() - target.float()).abs()
    return (per_position * weight).sum() / weight.sum().clamp(min=1.0)


def masked_accuracy(prediction: Tensor, target: Tensor, where: Tensor, loss: str,
                    mean: float = 0.0, std: float = 1.0) -> tuple[Tensor, Tensor]:
    """(exact predictions, positions) over ``where``: the arg-max class for ``ce``; for ``l1`` the
    predicted value's nearest pixel level against the true one (``mean``, ``std``: the pixel
    normalisation)."""
    if loss == "ce":
        hit = prediction.argmax(-1) == target
    else:
        hit = pixel_levels(prediction, mean, std) == pixel_levels(target, mean, std)
    return (hit & where).sum(), where.sum()
