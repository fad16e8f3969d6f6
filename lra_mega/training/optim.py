"""Optimizer pieces of the paper recipe: weight-decay groups and the warmup/decay schedule.

The official Mega LRA runs (fairseq ``--optimizer adam`` with ``--weight-decay``) decay every
parameter in one group; the exemption of norms, biases, 1-d and EMA parameters is an option
(``optim.weight_decay_exempt=true``). The schedule is fairseq's ``linear_decay``
(docs/PRESETS.md).
"""

from __future__ import annotations

from functools import partial
from typing import Any

import torch
from torch import nn


def no_weight_decay(name: str, param: nn.Parameter) -> bool:
    """True for parameters the exemption switch spares: norms, biases, 1-d tensors, EMA params.

    The model marks parameters that are >1-d but still must not decay (the EMA's
    delta/alpha/beta/gamma) with a ``_no_weight_decay`` attribute.
    """
    return param.ndim < 2 or bool(getattr(param, "_no_weight_decay", False))


def is_ema_recurrence(param: nn.Parameter) -> bool:
    """True for the EMA's δ, α, β (decay and input of the recurrence), which the model marks."""
    return bool(getattr(param, "_ema_recurrence", False))


def param_groups(
    module: nn.Module,
    weight_decay: float,
    exempt: bool = False,
    ema_lr_scale: float = 1.0,
    ema_weight_decay: float | None = None,
) -> list[dict]:
    """AdamW parameter groups (named).

    ``exempt=False`` (the official runs): one group, every trainable parameter decays.
    ``exempt=True``: a decayed group and a ``no_decay`` group (:func:`no_weight_decay`).
    ``ema_lr_scale`` ≠ 1 or ``ema_weight_decay`` set: the EMA's δ, α, β get their own ``ema``
    group with ``lr_scale`` (times the schedule's LR) and that weight decay (default: as the
    others), as S4 trains its SSM's (Δ, A, B).
    """
    params = [(n, p) for n, p in module.named_parameters() if p.requires_grad]
    groups: list[dict] = []
    if ema_lr_scale != 1.0 or ema_weight_decay is not None:
        if not ema_lr_scale > 0:
            raise ValueError(f"optim.ema_lr_scale={ema_lr_scale!r} must be > 0 (1: the LR of the others)")
        ema = [p for _, p in params if is_ema_recurrence(p)]
        params = [(n, p) for n, p in params if not is_ema_recurrence(p)]
        decay = weight_decay if ema_weight_decay is None else ema_weight_decay
        groups.append({"params": ema, "weight_decay": decay, "lr_scale": ema_lr_scale, "name": "ema"})
    if not exempt:
        groups.insert(0, {"params": [p for _, p in params], "weight_decay": weight_decay, "name": "all"})
    else:
        decay, spared = [], []
        for name, param in params:
            (spared if no_weight_decay(name, param) else decay).append(param)
        groups[:0] = [
            {"params": decay, "weight_decay": weight_decay, "name": "decay"},
            {"params": spared, "weight_decay": 0.0, "name": "no_decay"},
        ]
    return [g for g in groups if g["params"]]


def warmup_linear_decay(
    step: int,
    warmup_steps: int,
    total_steps: int,
    init_ratio: float = 0.0,
    power: float = 1.0,
) -> float:
    """LR multiplier (of the peak LR) for the update that follows ``step`` completed updates.

    fairseq's ``linear_decay`` schedule, with ``init_ratio = warmup_init_lr / lr``:

    - ``step <= warmup``: ``init + (1 - init) * (step / warmup) ** power``
      (so the first update uses ``warmup_init_lr``, the peak is reached at ``step == warmup``);
    - ``warmup < step < total``: ``(total - step) / (total - warmup)``;
    - ``step >= total``: 0.
    """
    if warmup_steps > 0 and step <= warmup_steps:
        return init_ratio + (1.0 - init_ratio) * (step / warmup_steps) ** power
    if step >= total_steps:
        return 0.0
    return (total_steps - step) / max(1, total_steps - warmup_steps)


def check_schedule(lr: float, warmup_init_lr: float, warmup_power: float) -> None:
    """Reject schedule settings fairseq would reject, naming the key and the fix."""
    if not 0.0 <= warmup_init_lr < lr:
        raise ValueError(
            f"optim.warmup_init_lr={warmup_init_lr!r} must lie in [0, optim.lr={lr!r}); the "
            "paper's runs warm up from 1e-7"
        )
    if not warmup_power > 0:
        raise ValueError(f"optim.warmup_power={warmup_power!r} must be > 0 (1: linear, 2: Path-X)")


def adamw_with_schedule(module: nn.Module, hp: Any) -> dict[str, Any]:
    """Lightning's ``configure_optimizers`` answer for the recipe's hyper-parameters ``hp`` (``lr``,
    ``weight_decay``, ``weight_decay_exempt``, ``betas``, ``eps``, ``warmup_steps``, ``total_steps``,
    ``warmup_init_lr``, ``warmup_power``): AdamW (decoupled decay, as fairseq's adam), the LR
    stepped every update (LambdaLR over :func:`warmup_linear_decay`)."""
    groups = param_groups(
        module, hp.weight_decay, exempt=hp.weight_decay_exempt,
        ema_lr_scale=float(getattr(hp, "ema_lr_scale", 1.0)),
        ema_weight_decay=getattr(hp, "ema_weight_decay", None),
    )
    for group in groups:
        group["lr"] = hp.lr * group.get("lr_scale", 1.0)
    optimizer = torch.optim.AdamW(groups, lr=hp.lr, betas=tuple(hp.betas), eps=hp.eps)
    schedule = partial(
        warmup_linear_decay,
        warmup_steps=hp.warmup_steps,
        total_steps=hp.total_steps,
        init_ratio=hp.warmup_init_lr / hp.lr,
        power=hp.warmup_power,
    )
    # one multiplier for every group: each keeps its own peak LR (initial_lr) under the schedule
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
    return {
        "optimizer": optimizer,
        "lr_scheduler": {"scheduler": scheduler, "interval": "step", "name": "lr"},
    }
