"""Optimizer pieces of the paper recipe: weight-decay groups and the warmup/decay schedule."""

from __future__ import annotations

from torch import nn


def no_weight_decay(name: str, param: nn.Parameter) -> bool:
    """True for parameters exempt from weight decay: norms, biases, 1-d tensors, EMA params.

    The model marks parameters that are >1-d but still must not decay (the EMA's
    delta/alpha/beta/gamma) with a ``_no_weight_decay`` attribute.
    """
    return param.ndim < 2 or bool(getattr(param, "_no_weight_decay", False))


def param_groups(module: nn.Module, weight_decay: float) -> list[dict]:
    """Split trainable parameters into a decayed and a non-decayed AdamW group (named)."""
    decay, exempt = [], []
    for name, param in module.named_parameters():
        if param.requires_grad:
            (exempt if no_weight_decay(name, param) else decay).append(param)
    groups = [
        {"params": decay, "weight_decay": weight_decay, "name": "decay"},
        {"params": exempt, "weight_decay": 0.0, "name": "no_decay"},
    ]
    return [g for g in groups if g["params"]]


def warmup_linear_decay(step: int, warmup_steps: int, total_steps: int) -> float:
    """LR multiplier after ``step`` completed updates: linear ramp to 1, then linear to 0.

    ``(step + 1) / warmup`` during warmup (so the first update already moves), then
    ``(total - step) / (total - warmup)`` clipped at 0, reaching 0 at ``total_steps``.
    """
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    return max(0.0, (total_steps - step) / max(1, total_steps - warmup_steps))
