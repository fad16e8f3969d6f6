"""Laplace / relu² attention paths with one signature; ``naive`` is the reference the others are tested against.

``triton_laplace`` is imported only when used: triton is optional, and ``TRITON_INTERPRET=1`` must
be set before its kernels are defined.
"""

from __future__ import annotations

import importlib.util

from torch import Tensor

HAS_TRITON = importlib.util.find_spec("triton") is not None


def triton_element_attention(*args: Tensor, **kwargs) -> Tensor:
    """``triton_laplace.triton_element_attention``, imported on first use."""
    if not HAS_TRITON:
        raise ValueError("impl='triton' needs the triton package (pip install triton); use impl='auto'")
    from .triton_laplace import triton_element_attention as fused

    return fused(*args, **kwargs)
