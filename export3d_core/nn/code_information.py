"""Code information: how much of each expression parameter β the LeBS coefficients λ keep.

Read by CLeBS pre-training (`train/clebs.py`, logged while it trains) and by the evaluation
report (`eval/`), so it lives below both.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from export3d_core.errors import Export3DError


def min_expressions_for_information(n_basis: int, held_out: float = 0.25) -> int:
    """Fewest expressions `code_information` accepts: a fit with more rows than unknowns and
    at least four held-out rows to score it on."""
    return max(math.ceil((n_basis + 2) / (1 - held_out)), math.ceil(4 / held_out))


@torch.no_grad()
def code_information(lebs: nn.Module, betas: torch.Tensor, held_out: float = 0.25) -> torch.Tensor:
    """How much of each β parameter the coefficients keep: (beta_dim,) R² of β predicted linearly
    (least squares with a bias) from λ = LeBS(β), fitted on the first betas and scored on the last
    `held_out` share. A linear read-out is a lower bound on what the generator's nonlinear layers
    can get from λ, but on the demo corpus the parameters with a low R² were those the model did
    not render (module docstring). Constant parameters score 1."""
    betas = betas.float()
    lam = lebs.coefficients(betas.to(next(lebs.parameters()).device)).float().cpu()  # (N, n)
    split = int(round(len(betas) * (1 - held_out)))
    if len(betas) < min_expressions_for_information(lam.shape[1], held_out):
        raise Export3DError(f"need at least {min_expressions_for_information(lam.shape[1], held_out)} expressions "
                            f"to measure code information, got {len(betas)}")
    design = torch.cat([lam, torch.ones(len(lam), 1)], dim=1).double()  # (N, n + 1)
    solution = torch.linalg.lstsq(design[:split], betas[:split].double()).solution  # (n + 1, D)
    residual = design[split:] @ solution - betas[split:].double()  # (N', D)
    variance = betas[split:].double().var(dim=0)
    r2 = 1 - residual.pow(2).mean(dim=0) / variance.clamp_min(1e-12)
    return torch.where(variance > 1e-12, r2, torch.ones_like(r2)).float()


def describe_code_information(r2: list[float], names: list[str] | None = None) -> str:
    """One line on how much of β the coefficients keep: the mean R² and the three weakest."""
    names = names or [f"β[{i}]" for i in range(len(r2))]
    weakest = sorted(range(len(r2)), key=r2.__getitem__)[:3]
    return (f"code information, R² of β from λ (1 = kept): mean {sum(r2) / len(r2):.2f}; weakest "
            + ", ".join(f"{names[i]} {r2[i]:.2f}" for i in weakest))


__all__ = ["code_information", "describe_code_information", "min_expressions_for_information"]
