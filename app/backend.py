"""What the editor loads: a model (checkpoint or a visible random fallback) and portrait images.

Plain functions, no widgets, so the window stays free of model logic and tests can call them.
Every failure a user can cause becomes an `Export3DError` with one line; a photo without a face
raises `NoPortraitFace` so the window can offer the manual crop.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from export3d_core import DEMO_CHECKPOINT, Export3DError, ModelConfig, load_checkpoint, pick_device, read_header

FALLBACK_PRESET = "tiny"  # what the editor runs when no trained checkpoint exists
FALLBACK_SEED = 0


@dataclass
class LoadedModel:
    model: torch.nn.Module
    path: Path | None  # None for the random fallback
    info: str  # one line: preset and sizes
    fallback: bool  # True: randomly initialised, not a trained model
    estimator: object | None = None  # ExpressionEstimator: photo -> λ, when a reader or regressor ships beside the weights
    estimator_note: str = "no expression estimator for this model"  # why not, when estimator is None


class NoPortraitFace(Export3DError):
    """No face was found; the image is attached so the artist can place the crop by hand."""

    def __init__(self, message: str, image: np.ndarray) -> None:
        super().__init__(message)
        self.image = image


def describe(config: ModelConfig, meta: dict | None = None) -> str:
    meta = meta or {}
    # A run grown from another (--init-from) counts its steps from 0; a released checkpoint may
    # record the steps of the whole lineage as "total_steps", which is what the artist should see.
    steps = meta.get("total_steps", meta.get("step"))
    trained = f" · {steps:,} steps" if steps else ""
    return (f"preset {config.name} · input {config.input_size}² · neural {config.neural_size}² · "
            f"output {config.output_size}² · n={config.n_basis} · d={config.expr_dim} · "
            f"tri-plane {config.plane_channels}×{config.plane_res}²{trained}")


def load_model(path: str | Path | None, device: torch.device | None = None) -> LoadedModel:
    """A checkpoint, the demo model when `path` is None, or a random `tiny` model if none is shipped."""
    device = device or pick_device()
    if path is None and not DEMO_CHECKPOINT.is_file():
        from export3d_core import Export3D

        torch.manual_seed(FALLBACK_SEED)
        model = Export3D(ModelConfig.preset(FALLBACK_PRESET)).to(device).eval()
        return LoadedModel(model, None, "UNTRAINED random " + describe(model.config), True)
    path = Path(path) if path is not None else DEMO_CHECKPOINT
    config, meta = read_header(path)  # cheap first: a bad file is refused before any weights load
    model, meta = load_checkpoint(path, device=device)
    loaded = LoadedModel(model, path, describe(config, meta), False)
    from export3d_core import ExpressionEstimator

    try:
        loaded.estimator = ExpressionEstimator.for_checkpoint(model, path)
    except Export3DError as exc:
        loaded.estimator_note = str(exc)
    return loaded


def default_portrait_path() -> Path | None:
    from export3d_core import default_portrait

    try:
        return default_portrait().path
    except Export3DError:
        return None


def placeholder_portrait(size: int) -> np.ndarray:
    """A neutral grey oval on white, used only when no demo portrait is shipped (said in the UI)."""
    yy, xx = np.mgrid[0:size, 0:size] / max(1, size - 1) * 2 - 1
    inside = (xx / 0.55) ** 2 + ((yy + 0.05) / 0.72) ** 2 < 1
    image = np.full((size, size, 3), 235, np.uint8)
    image[inside] = (196, 160, 140)
    return image


def load_portrait_image(path: str | Path, size: int) -> tuple[np.ndarray, str, np.ndarray | None, float | None]:
    """(aligned uint8 (size, size, 3) image, method, the photo's estimated camera (25,) or None,
    how many of the photo's own pixels span the crop). No face -> `NoPortraitFace`."""
    from export3d_core import NoFaceFoundError, load_portrait

    try:
        loaded = load_portrait(path, size)
    except NoFaceFoundError:
        from export3d_core import load_image

        raise NoPortraitFace(f"no face found in {Path(path).name}: place the crop by hand",
                             load_image(path)) from None
    except Export3DError:
        raise
    except Exception as exc:  # a strange file must never take the editor down
        raise Export3DError(f"could not read {Path(path).name}: {type(exc).__name__}: {exc}") from None
    return loaded.image, loaded.method, loaded.camera, loaded.native_side


def crop_by_hand(image: np.ndarray, center_xy: tuple[float, float], side: float, size: int) -> np.ndarray:
    """The artist's square crop (centre + side in image pixels), resized to `size` by the intake code."""
    from export3d_core import manual_crop

    return manual_crop(image, center_xy, side, size).image
