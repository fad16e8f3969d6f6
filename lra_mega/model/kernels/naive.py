"""Reference laplace / relu² attention in plain PyTorch: the oracle every fused path is tested against.

All element-wise attention paths share one signature (``element_attention`` below):
q, k (N, c, z) and v (N, c, h) over N = batch · chunks independent chunks; ``bias`` the
(2c − 1,) relative position bias, entry c − 1 + j − i for query i and key j; ``key_mask`` (N, c)
bool (True = real key) or None; ``visible`` (N, c) float, the number n of keys query i may see.
out[i] = Σ_j allowed(i, j) · f(q_i·k_j / n_i + bias[c − 1 + j − i]) · v_j.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

LAPLACE_MU = math.sqrt(0.5)
LAPLACE_SIGMA = math.sqrt(1.0 / (4.0 * math.pi))
# Megalodon's (fairseq-apollo ``utils.laplace(x, mu=0.707107, sigma=0.282095, approx=True)``): the
# logistic approximation σ(1.702·(x − μ)/σ) of the Gauss error curve above, max |Δ| ≈ 0.01
APPROX_MU, APPROX_SIGMA, APPROX_SLOPE = 0.707107, 0.282095, 1.702


def laplace(x: Tensor, mu: float = LAPLACE_MU, sigma: float = LAPLACE_SIGMA) -> Tensor:
    """Laplace attention function 0.5·(1 + erf((x − μ)/(σ√2))) (Ma et al. 2022, §3.3)."""
    return 0.5 * (1.0 + torch.erf((x - mu) / (sigma * math.sqrt(2.0))))


def logistic_laplace(x: Tensor) -> Tensor:
    """Megalodon's laplace attention function σ(1.702·(x − μ)/σ) (``fn="laplace_approx"``)."""
    return torch.sigmoid((x - APPROX_MU) * (APPROX_SLOPE / APPROX_SIGMA))


def relu2(x: Tensor) -> Tensor:
    """Squared ReLU attention function."""
    return F.relu(x).square()


ACTIVATIONS = {"laplace": laplace, "laplace_approx": logistic_laplace, "relu2": relu2}


def toeplitz(bias: Tensor, length: int) -> Tensor:
    """(length, length) matrix with [i, j] = bias[length − 1 + j − i], built without an index tensor."""
    return bias.unfold(0, length, 1).flip(0)


def allowed_keys(key_mask: Tensor | None, causal: bool, length: int, device: torch.device) -> Tensor | None:
    """Boolean (N, c, c) (or broadcastable) matrix: True where query i may attend key j."""
    allowed = None if key_mask is None else key_mask.unsqueeze(-2)
    if causal:
        tri = torch.ones(length, length, dtype=torch.bool, device=device).tril()
        allowed = tri if allowed is None else allowed & tri
    return allowed


def naive_element_attention(
    q: Tensor, k: Tensor, v: Tensor, bias: Tensor, key_mask: Tensor | None, visible: Tensor,
    *, causal: bool, fn: str, dropout_p: float = 0.0,
) -> Tensor:
    """Plain PyTorch (keeps (N, c, c) tensors for autograd); the only path with attention dropout."""
    length = q.size(1)
    scores = q @ k.transpose(-1, -2) / visible.unsqueeze(-1).to(q.dtype) + toeplitz(bias, length).to(q.dtype)
    weights = ACTIVATIONS[fn](scores)
    allowed = allowed_keys(key_mask, causal, length, q.device)
    if allowed is not None:
        weights = weights * allowed.to(weights.dtype)
    if dropout_p > 0.0:
        weights = F.dropout(weights, p=dropout_p)
    return weights @ v
