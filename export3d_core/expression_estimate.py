"""A portrait's own expression as λ: β read from the face, then LeBS maps β to λ.

This is what starts the editor's sliders at the portrait's expression and what "Match expression
from photo…" uses. Two readers of β can ship beside a checkpoint:

- the expression reader (`data.expression_reader`): dlib's 68 landmarks on the aligned portrait, in
  the known face box of the FFHQ framing (no detector), read by a small MLP trained on the
  landmarks of synthetic heads. Geometry is what real and synthetic faces share, so this is the
  reader for anything that may be a real face, and the default;
- the attribute regressor (`faces.regressor`), an image CNN trained on synthetic renders. It reads
  synthetic renders better than the landmarks do (it sees gaze and cheeks, which no landmark
  marks), but a real photo is outside its domain; callers that know their image is a synthetic
  render ask for it with `source="image"`.

Each estimate says which reader made it (`source`), so the UI can say so.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from export3d_core.errors import Export3DError
from export3d_core.model import Export3D

SOURCE_LANDMARKS, SOURCE_IMAGE = "landmarks", "image"
REGRESSOR_FILE = "attribute_regressor.safetensors"


@dataclass
class ExpressionEstimate:
    lam: list[float]  # (n,) coefficients for the sliders
    beta: list[float]  # (beta_dim,) the expression parameters read from the face
    source: str = SOURCE_LANDMARKS  # "landmarks" (dlib + expression reader) | "image" (attribute regressor)


def _check_beta_dim(what: str, beta_dim: int, model: Export3D) -> None:
    if beta_dim != model.config.beta_dim:
        raise Export3DError(
            f"the {what} reads {beta_dim} expression parameters but the model expects "
            f"{model.config.beta_dim}; no expression estimate for this checkpoint"
        )


class ExpressionEstimator:
    """λ from an aligned portrait: LeBS(β), β from its landmarks or from the image."""

    def __init__(self, regressor: torch.nn.Module | None, model: Export3D, reader=None) -> None:
        if regressor is None and reader is None:
            raise Export3DError("no expression reader and no attribute regressor: nothing reads β")
        if regressor is not None:
            _check_beta_dim("attribute regressor", regressor.config.beta_dim, model)
        if reader is not None:
            _check_beta_dim("expression reader", reader.config.beta_dim, model)
        self.regressor = regressor.eval() if regressor is not None else None
        self.reader = reader.eval() if reader is not None else None
        self.model = model
        self._landmarker = None

    @staticmethod
    def for_checkpoint(model: Export3D, checkpoint: str | Path | None) -> "ExpressionEstimator":
        """The reader and/or regressor shipped beside `checkpoint` (in its folder)."""
        from export3d_core.faces.regressor import load_regressor
        from export3d_core.data.expression_reader import READER_FILE, load_reader

        if checkpoint is None:
            raise Export3DError("no checkpoint file, so no expression reader or attribute regressor beside it")
        folder = Path(checkpoint)
        folder = folder if folder.is_dir() else folder.parent
        reader_path, regressor_path = folder / READER_FILE, folder / REGRESSOR_FILE
        if not reader_path.is_file() and not regressor_path.is_file():
            raise Export3DError(f"no expression reader ({reader_path.name}) and no attribute regressor "
                                f"({regressor_path.name}) in {folder}; expression estimates need one")
        reader = load_reader(reader_path) if reader_path.is_file() else None
        regressor = load_regressor(regressor_path) if regressor_path.is_file() else None
        return ExpressionEstimator(regressor, model, reader=reader)

    @property
    def sources(self) -> list[str]:
        """The sources this estimator can use, the default first."""
        found = [SOURCE_LANDMARKS] if self.reader is not None and self._dlib() is not None else []
        return found + ([SOURCE_IMAGE] if self.regressor is not None else [])

    def source_for(self, path: str | Path | None) -> str | None:
        """The source for a portrait file: "image" for a shipped synthetic demo portrait when the
        regressor is there (on held-out renders it reads β better: mean R² 0.79 against the
        landmarks' 0.51), else None (the default: landmarks, for anything that may be a real face)."""
        from export3d_core.portrait import demo_portraits

        if path is None or self.regressor is None:
            return None
        try:
            resolved = Path(path).resolve(strict=True)
        except (OSError, RuntimeError):
            return None
        synthetic = any(p.path.resolve() == resolved and p.aligned and p.in_domain for p in demo_portraits())
        return SOURCE_IMAGE if synthetic else None

    def _dlib(self):
        if self._landmarker is None and self.reader is not None:
            from export3d_core.data.landmarks_dlib import get_dlib_landmarker

            self._landmarker = get_dlib_landmarker()
        return self._landmarker

    @torch.no_grad()
    def estimate(self, image: np.ndarray, source: str | None = None) -> ExpressionEstimate:
        """uint8 (H, W, 3) aligned portrait -> λ and β; `source` None = landmarks when possible."""
        image = np.asarray(image)
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise Export3DError(f"expected an aligned (H, W, 3) uint8 RGB portrait, got {image.dtype} {image.shape}")
        available = self.sources
        if not available:
            raise Export3DError("the expression reader needs dlib (pip install dlib-bin face-recognition-models)")
        source = source or available[0]
        if source not in available:
            raise Export3DError(f"no {source!r} expression reader for this model (available: {', '.join(available)})")
        if source == SOURCE_LANDMARKS:
            beta = torch.from_numpy(self.landmark_beta(image))[None]
        else:
            beta = self.regressor.predict([image]).expression[:1]
        beta = beta.to(next(self.model.parameters()).device)  # (1, beta_dim)
        lam = self.model.coefficients(beta)  # (1, n)
        return ExpressionEstimate(lam=[float(v) for v in lam[0].cpu()], beta=[float(v) for v in beta[0].cpu()],
                                  source=source)

    def landmark_beta(self, image: np.ndarray) -> np.ndarray:
        """β (beta_dim,) float32 read from the aligned portrait's landmarks."""
        from export3d_core.data.expression_reader_data import aligned_landmark_beta

        return aligned_landmark_beta(self.reader, self._dlib(), image)

