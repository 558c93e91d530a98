"""A portrait's own expression as λ: the attribute regressor reads β, LeBS maps β to λ.

This is what starts the editor's sliders at the portrait's expression and what "Match expression
from photo…" uses. The regressor is trained on synthetic renders (it ships beside the demo model),
so on real photos the estimate is outside its domain: callers say so rather than hide it.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from export3d_core.errors import Export3DError
from export3d_core.model import Export3D


@dataclass
class ExpressionEstimate:
    lam: list[float]  # (n,) coefficients for the sliders
    beta: list[float]  # (beta_dim,) the regressed expression parameters


class ExpressionEstimator:
    """λ from an aligned portrait: LeBS(regressor_β(image))."""

    def __init__(self, regressor: torch.nn.Module, model: Export3D) -> None:
        beta_dim = regressor.config.beta_dim
        if beta_dim != model.config.beta_dim:
            raise Export3DError(
                f"the attribute regressor reads {beta_dim} expression parameters but the model expects "
                f"{model.config.beta_dim}; no expression estimate for this checkpoint"
            )
        self.regressor = regressor.eval()
        self.model = model

    @staticmethod
    def for_checkpoint(model: Export3D, checkpoint: str | Path | None) -> "ExpressionEstimator":
        """The regressor shipped beside `checkpoint` (attribute_regressor.safetensors in its folder)."""
        from export3d_core.faces.regressor import load_regressor

        if checkpoint is None:
            raise Export3DError("no checkpoint file, so no attribute regressor beside it")
        folder = Path(checkpoint)
        folder = folder if folder.is_dir() else folder.parent
        path = folder / "attribute_regressor.safetensors"
        if not path.is_file():
            raise Export3DError(f"no attribute regressor at {path}; expression estimates need one")
        return ExpressionEstimator(load_regressor(path), model)

    @torch.no_grad()
    def estimate(self, image: np.ndarray) -> ExpressionEstimate:
        """uint8 (H, W, 3) aligned portrait -> λ and β."""
        attributes = self.regressor.predict([image])
        beta = attributes.expression[:1].to(next(self.model.parameters()).device)  # (1, beta_dim)
        lam = self.model.coefficients(beta)  # (1, n)
        return ExpressionEstimate(lam=[float(v) for v in lam[0].cpu()], beta=[float(v) for v in beta[0].cpu()])
