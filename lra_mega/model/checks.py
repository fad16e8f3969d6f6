"""Argument checks that speak to the user: name the argument, the value and what is allowed."""

from __future__ import annotations

from collections.abc import Iterable


def check_choice(name: str, value: str, allowed: Iterable[str]) -> str:
    """Return ``value`` if it is one of ``allowed``; else raise a ValueError listing the choices."""
    allowed = tuple(allowed)
    if value not in allowed:
        raise ValueError(f"{name}={value!r} is not valid; choose one of: {', '.join(allowed)}")
    return value


def check_positive(name: str, value: int, *, allow_minus_one: bool = False) -> int:
    """Return ``value`` if it is an int ≥ 1 (or -1 meaning "off" when allowed); else ValueError."""
    ok = isinstance(value, int) and (value >= 1 or (allow_minus_one and value == -1))
    if not ok:
        extra = " (or -1 to disable)" if allow_minus_one else ""
        raise ValueError(f"{name}={value!r} is not valid; it must be an integer >= 1{extra}")
    return value


def check_probability(name: str, value: float) -> float:
    """Return ``value`` if it lies in [0, 1); else ValueError."""
    if not 0.0 <= float(value) < 1.0:
        raise ValueError(f"{name}={value!r} is not valid; a dropout rate must be in [0, 1)")
    return float(value)
