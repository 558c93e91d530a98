"""Fit files: the tensors a per-portrait fit changed, in safetensors, with JSON metadata in its header.

The header names the photo crop and the checkpoint the fit was made for, so a fit is never applied
to another portrait or another model: `load_fit` refuses with one clear line. The checkpoint is
named by its sha256; the crop by a 32² thumbnail, because the editor keeps portraits at 256 px and
the command line crops at the model's input size: the same crop at 128, 256 or 512 px differs by
less than 0.5 (of 255) there, two different photos by more than 35 (docs/fitting.md). Nothing is
unpickled; the file is written atomically.
"""
from __future__ import annotations

import base64
import dataclasses
import hashlib
import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import save_file

from export3d_core.atomic import atomic_path
from export3d_core.errors import Export3DError
from export3d_core.fit import FitResult, apply_tensors, fit_shapes
from export3d_core.model import Export3D
from export3d_core.tensor_files import read_tensor_file

FIT_FORMAT = "export3d-fit"
FIT_VERSION = 2  # 2: the offset follows λ (generator.expression_flow.*); an upscaler (upscaler.*) is optional
FIT_SUFFIX = ".safetensors"
THUMBNAIL_SIDE = 32  # crops are compared at this side
SAME_CROP = 2.0  # mean absolute difference (0-255) of two thumbnails under which they are one crop


def photo_digest(aligned: np.ndarray) -> str:
    """sha256 of an aligned uint8 crop (its shape and pixels): what a fit belongs to."""
    aligned = np.ascontiguousarray(aligned, dtype=np.uint8)
    digest = hashlib.sha256(repr(aligned.shape).encode("ascii"))
    digest.update(aligned.tobytes())
    return digest.hexdigest()


def photo_thumbnail(aligned: np.ndarray) -> np.ndarray:
    """(32, 32, 3) uint8: the crop box-filtered to `THUMBNAIL_SIDE`, whatever its own size."""
    from PIL import Image

    image = Image.fromarray(np.ascontiguousarray(aligned, dtype=np.uint8))
    return np.asarray(image.resize((THUMBNAIL_SIDE, THUMBNAIL_SIDE), Image.Resampling.BOX))


def same_crop(aligned: np.ndarray, thumbnail_b64: str | None) -> bool:
    """Whether `aligned` is the crop whose base64 thumbnail a fit file holds (at any size)."""
    try:
        stored = np.frombuffer(base64.b64decode(thumbnail_b64 or "", validate=True), np.uint8)
    except ValueError:
        return False
    ours = photo_thumbnail(aligned)
    if stored.size != ours.size:
        return False
    return float(np.abs(stored.astype(np.float64) - ours.reshape(-1)).mean()) < SAME_CROP


def file_digest(path: str | os.PathLike | None) -> str | None:
    """sha256 of a checkpoint file (None for a model without one, e.g. a random initialisation)."""
    if path is None:
        return None
    path = Path(path)
    if path.is_dir():
        path = path / "model.safetensors"
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def save_fit(path: str | os.PathLike, result: FitResult, checkpoint: str | os.PathLike | None,
             aligned: np.ndarray) -> Path:
    """Write `result`'s changed tensors and its metadata to `path` (a .safetensors file), atomically."""
    path = Path(path)
    if path.suffix != FIT_SUFFIX:
        raise Export3DError(f"a fit file ends in {FIT_SUFFIX}, got {path.name}")
    meta = {
        "photo_sha256": photo_digest(aligned),
        "photo_thumbnail": base64.b64encode(photo_thumbnail(aligned).tobytes()).decode("ascii"),
        "photo_shape": list(np.asarray(aligned).shape),
        "checkpoint_sha256": file_digest(checkpoint),
        "checkpoint_name": None if checkpoint is None else Path(checkpoint).name,
        "steps": len(result.losses),
        "loss_first": result.losses[0],
        "loss_last": result.losses[-1],
        "losses": [round(v, 6) for v in result.losses],
        "seconds": round(result.seconds, 2),
        "lam": result.lam,
        "camera": result.camera,
        "settings": dataclasses.asdict(result.settings),
        "upscaled": result.upscaled,
        "upscale_note": result.upscale_note,
    }
    header = {"format": FIT_FORMAT, "format_version": str(FIT_VERSION), "meta": json.dumps(meta)}
    with atomic_path(path) as tmp:
        save_file({name: t.contiguous() for name, t in result.changed.items()}, tmp, metadata=header)
    return path


def read_fit(path: str | os.PathLike) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """The tensors and the metadata of a fit file; a wrong or damaged file is a one-line error."""
    path = Path(path)
    if not path.is_file():
        raise Export3DError(f"fit file not found: {path}")
    tensors, header = read_tensor_file(path, "fit")
    if header.get("format") != FIT_FORMAT:
        raise Export3DError(f"{path} is a safetensors file but not an Export3D fit (made by `export3d fit`)")
    if header.get("format_version") != str(FIT_VERSION):
        raise Export3DError(f"{path.name} has fit format version {header.get('format_version')} and this build reads "
                            f"{FIT_VERSION}; fit the portrait again")
    try:
        meta = json.loads(header["meta"])
    except (KeyError, ValueError) as exc:
        raise Export3DError(f"{path} has invalid fit metadata: {exc}") from None
    return tensors, meta


def load_fit(path: str | os.PathLike, model: Export3D, checkpoint: str | os.PathLike | None,
             aligned: np.ndarray) -> dict[str, Any]:
    """Apply a fit file to `model` in place and return its metadata.

    Refuses (Export3DError) a fit made for another photo crop or another checkpoint, before it
    touches the model.
    """
    tensors, meta = read_fit(path)
    name = Path(path).name
    if not same_crop(aligned, meta.get("photo_thumbnail")):
        raise Export3DError(f"the fit {name} was made for another photo (or another crop of it); fit this portrait with `export3d fit`")
    if meta.get("checkpoint_sha256") != file_digest(checkpoint):
        made_for = meta.get("checkpoint_name") or "a randomly initialised model"
        raise Export3DError(f"the fit {name} was made for another checkpoint ({made_for}); fit again with this one")
    shapes = fit_shapes(model, tensors)
    for key, tensor in tensors.items():
        if key not in shapes or shapes[key] != tensor.shape:
            raise Export3DError(f"the fit {name} does not match this model's architecture (tensor {key})")
    apply_tensors(model, tensors)
    return meta
