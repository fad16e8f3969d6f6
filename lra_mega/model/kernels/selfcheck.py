"""One-time self-check of the paths that only run on a GPU, and the record of which paths ran.

The fused paths (the Triton kernels; CUDA's SDPA kernels fed our padded q/k) have no CPU test:
a kernel that does not compile on a given GPU, or computes something subtly different there,
would otherwise end a long run at step 0 or train it on wrong attention. Before such a path's
first use, per process and combination (device, dtype, activation, causal, masked, widths),
:func:`check` runs a small forward and backward of it and of the PyTorch path that replaces it,
on the same device, and compares outputs and gradients: max |error| / (1 + max |reference|)
within :func:`tolerance` of the path's dtype. The caller decides what a failure means
(``attention.attend``: fall back under ``impl="auto"``, raise under an explicit path).

:func:`report` says what ran since :func:`start_record` (the run layer writes it into
results.json): the paths per layer kind, every self-check and every fallback.
"""

from __future__ import annotations

import contextlib
import logging
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

log = logging.getLogger(__name__)

# max |error| / (1 + max |reference|) a path may show against the PyTorch path, by the dtype it
# computes in; TF32 dot products (fp32 inputs, torch.backends.cuda.matmul.allow_tf32) get 1e-2
TOLERANCE = {torch.float64: 1e-8, torch.float32: 1e-4, torch.float16: 1e-2, torch.bfloat16: 5e-2}
TF32_TOLERANCE = 1e-2

_FINDINGS: dict[tuple, Finding] = {}  # every verdict of this process
_RAN: dict[str, set[str]] = {}  # layer kind -> paths that ran since start_record()
_FALLBACKS: dict[tuple, Finding] = {}  # failed checks whose fallback ran since start_record()


class SelfCheckError(ValueError):
    """An explicitly requested fused path failed its self-check (raised instead of falling back)."""


@dataclass(frozen=True)
class Finding:
    """The verdict on one path for one combination."""

    path: str
    fallback: str
    combination: tuple[tuple[str, Any], ...]
    ok: bool
    error: float | None  # None: the path raised
    tolerance: float
    reason: str  # empty when ok

    def label(self) -> str:
        """``laplace, cuda:0, bfloat16, bidirectional, masked keys``."""
        c = dict(self.combination)
        parts = [str(c.get("fn")), str(c.get("device")), str(c.get("dtype"))]
        parts.append("causal" if c.get("causal") else "bidirectional")
        parts.append("masked keys" if c.get("masked") else "no key mask")
        return ", ".join(parts)

    def as_dict(self) -> dict[str, Any]:
        return {"path": self.path, "fallback": self.fallback, **dict(self.combination), "ok": self.ok,
                "error": self.error, "tolerance": self.tolerance, "reason": self.reason}


def tolerance(dtype: torch.dtype, tf32: bool = False) -> float:
    """The largest relative error a path computing in ``dtype`` may show."""
    if dtype == torch.float32 and tf32:
        return TF32_TOLERANCE
    return TOLERANCE.get(dtype, TOLERANCE[torch.bfloat16])


def _key(path: str, combination: dict[str, Any]) -> tuple:
    return (path, *sorted(combination.items()))


def known(path: str, combination: dict[str, Any]) -> Finding | None:
    """The cached verdict, or None when this combination was not checked yet."""
    return _FINDINGS.get(_key(path, combination))


def relative_error(got: list[Tensor], want: list[Tensor]) -> float:
    """max over tensors of max |got − want| / (1 + max |want|); inf when anything is not finite."""
    worst = 0.0
    for a, b in zip(got, want, strict=True):
        a, b = a.detach().double(), b.detach().double()
        if a.shape != b.shape or not torch.isfinite(a).all():
            return math.inf
        worst = max(worst, (a - b).abs().max().item() / (1.0 + b.abs().max().item()))
    return worst


@contextlib.contextmanager
def _isolated() -> Iterator[None]:
    """Eager maths with gradients, whatever the caller's context: outside inference mode, autocast
    and dispatch modes (a FLOP counter must not count the check), the global RNG untouched."""
    try:
        from torch.utils._python_dispatch import _disable_current_modes
    except ImportError:  # pragma: no cover - a torch without it
        _disable_current_modes = contextlib.nullcontext
    with contextlib.ExitStack() as stack:
        stack.enter_context(torch.inference_mode(False))
        stack.enter_context(torch.enable_grad())
        for device_type in ("cpu", "cuda") if torch.cuda.is_available() else ("cpu",):
            stack.enter_context(torch.autocast(device_type, enabled=False))
        stack.enter_context(_disable_current_modes())
        yield


def _one_line(err: BaseException) -> str:
    text = " ".join(str(err).split())
    text = text if len(text) <= 160 else text[:157] + "..."
    return f"{type(err).__name__}: {text}" if text else type(err).__name__


def check(path: str, fallback: str, combination: dict[str, Any], run: Callable[[str], list[Tensor]],
          tol: float) -> Finding:
    """The verdict on ``path`` for ``combination``, computed once per process.

    ``run(name)`` returns the output and gradients of path ``name`` on the check's inputs (the
    same inputs for both; the fallback computes in fp32 or wider). A path that raises fails.
    """
    key = _key(path, combination)
    if key in _FINDINGS:
        return _FINDINGS[key]
    error: float | None = None
    try:
        with _isolated():
            got = run(path)
            want = run(fallback)
        error = relative_error(got, want)
        ok = error <= tol
        reason = "" if ok else (f"its outputs or gradients differ from the {fallback} path's: max error "
                                f"{error:.3g} > tolerance {tol:.0e}")
    except Exception as err:  # noqa: BLE001  (whatever a kernel raises is the finding)
        ok, reason = False, f"it raised {_one_line(err)}"
    finding = Finding(path, fallback, tuple(sorted(combination.items())), ok, error, tol, reason)
    _FINDINGS[key] = finding
    if ok:
        log.info("self-check of the %s attention path passed (%s): max error %.2g", path, finding.label(),
                 error)
    return finding


def note_ran(kind: str, path: str) -> None:
    """Record that ``path`` ran for layers of ``kind`` (e.g. ``"laplace attention"``)."""
    _RAN.setdefault(kind, set()).add(path)


def note_fallback(finding: Finding) -> None:
    """Record that ``finding``'s fallback ran in its place."""
    _FALLBACKS[_key(finding.path, dict(finding.combination))] = finding


def start_record() -> None:
    """Begin a new record of what runs (a run's start); the verdicts stay (one check per process)."""
    _RAN.clear()
    _FALLBACKS.clear()


def findings() -> list[dict[str, Any]]:
    """Every verdict of this process."""
    return [f.as_dict() for f in _FINDINGS.values()]


def report() -> dict[str, Any]:
    """What ran since :func:`start_record`: ``paths`` (layer kind -> paths), this process's
    ``self_checks``, and the ``fallbacks`` that ran (each with its reason)."""
    return {
        "paths": {kind: sorted(paths) for kind, paths in sorted(_RAN.items())},
        "self_checks": findings(),
        "fallbacks": [f.as_dict() for f in _FALLBACKS.values()],
    }


def forget() -> None:
    """Drop every verdict and the record (tests)."""
    _FINDINGS.clear()
    start_record()
