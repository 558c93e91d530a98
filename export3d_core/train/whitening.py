"""Whitening of the frozen CLeBS coefficients, folded into LeBS' last layer.

CLeBS is trained with a cosine-similarity InfoNCE loss (see `train/clebs.py`), which fixes the
directions of the expression codes but not how far each expression moves them. On the demo
corpus the result was lopsided: a unit of jaw opening or a blink moved e up to 14 times further
than a unit of brow raise, smile or cheek puff, while the generator reads e = λ V without any
normalisation. Whitening evens that out (on the demo model: PSNR +0.45 dB and 7 instead of 5
meaningful basis vectors after 1,850 steps, though not a lower AED; see its model card).

`whiten_coefficients` rescales λ so that, over the corpus' expressions, it has the identity
covariance (ZCA whitening, which stays as close to the original axes as whitening can), with a
floor so that no direction is amplified more than about 1/sqrt(floor) times relative to the
strongest.
λ = mlp(β) is affine in the last layer's weights, so the map is folded into them: V, the
sliders' meaning (λ_i scales v_i) and every downstream shape stay as they are; LeBS stays frozen
afterwards. No centring: β = 0 keeps mapping to the same direction, scaled.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from export3d_core.errors import Export3DError

WHITENING_FLOOR = 0.01  # eigenvalue floor, relative to the largest: at most 10x amplification


@torch.no_grad()
def whitening_matrix(raw: torch.Tensor, floor: float = WHITENING_FLOOR) -> torch.Tensor:
    """ZCA matrix W (n, n), symmetric, with cov(raw W) ≈ I up to the floor; raw is (N, n)."""
    if raw.dim() != 2 or raw.shape[0] <= raw.shape[1]:
        raise Export3DError(f"whitening needs more expressions than coefficients, got {tuple(raw.shape)}")
    centred = raw.double() - raw.double().mean(dim=0)
    covariance = centred.T @ centred / (raw.shape[0] - 1)  # (n, n)
    values, vectors = torch.linalg.eigh(covariance)
    if not torch.isfinite(values).all() or float(values.max()) <= 0:
        raise Export3DError("the expression parameters give constant λ; nothing to whiten")
    values = values.clamp_min(0) + floor * values.max()
    return (vectors * values.rsqrt()) @ vectors.T


@torch.no_grad()
def whiten_coefficients(lebs: nn.Module, betas: np.ndarray | torch.Tensor, floor: float = WHITENING_FLOOR) -> torch.Tensor:
    """Fold the whitening of λ over `betas` (N, beta_dim) into `lebs.mlp[-1]`, in place; returns W."""
    last = lebs.mlp[-1]
    betas = torch.as_tensor(np.asarray(betas), dtype=last.weight.dtype, device=last.weight.device)
    matrix = whitening_matrix(lebs.mlp(betas), floor).to(last.weight.dtype)  # (n, n)
    # raw' = raw W = h (Aᵀ W) + b W, with A the (n, hidden) weight; W is symmetric.
    last.weight.copy_(matrix @ last.weight)
    last.bias.copy_(matrix @ last.bias)
    return matrix


__all__ = ["WHITENING_FLOOR", "whitening_matrix", "whiten_coefficients"]
