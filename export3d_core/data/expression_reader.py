"""The expression reader: 68 face landmarks -> the synthetic expression β (the twelve named parameters).

Geometry is what real faces and our synthetic heads share, so β read from landmarks carries
across the domain gap that an image CNN trained on renders cannot cross. The reader is a small
MLP on pose-normalised landmarks:

1. `normalise_landmarks`: a similarity transform (translation, scale, in-plane rotation) that
   puts the face's stable points (eye corners, nose) onto the canonical mean shape, the frontal
   projection of the synthetic neutral template (`face_template`), in a canonical 512-pixel
   aligned frame. Stable points only, so a smile or an open jaw does not shift the alignment.
2. `landmark_features`: the normalised points of the reader's subset (by default without the
   jaw contour, which is a silhouette on real faces, so its shape says more about the person
   than the expression), minus the mean shape, plus the head's yaw and pitch from PnP of the
   template on the normalised points: the MLP learns how a turned head foreshortens an expression.
3. The MLP maps the standardised features to β; `read_beta` clips it to BETA_RANGES.

The file is one safetensors file whose header carries the JSON config and meta (nothing is
ever unpickled); `save_reader` writes it atomically. Training lives in `train.expression_reader`.
"""
from __future__ import annotations

import dataclasses
import functools
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import save_file
from torch import Tensor, nn

from export3d_core.atomic import atomic_path
from export3d_core.checkpoint import REPO_ROOT
from export3d_core.data.head_landmarks import BETA_NAMES, BETA_RANGES
from export3d_core.errors import Export3DError
from export3d_core.tensor_files import check_format, read_tensor_file

FORMAT_NAME = "export3d-expression-reader"
FORMAT_VERSION = 1
READER_FILE = "expression_reader.safetensors"
DEFAULT_READER = REPO_ROOT / "resources" / "models" / "demo" / READER_FILE

NUM_LANDMARKS = 68
NO_JAW = tuple(range(17, 68))  # brows, nose, eyes, mouth
ALL_POINTS = tuple(range(68))
# Points a facial expression barely moves: eye corners, nose bridge and base. The alignment uses
# these so that the expression stays in the residual instead of being averaged into the pose.
STABLE_POINTS = (36, 39, 42, 45, 27, 28, 29, 30, 31, 33, 35)
CANONICAL_SIZE = 512.0  # side of the aligned frame the features live in (the paper's crop side)
FEATURE_SCALE = 100.0  # canonical pixels per feature unit, so features are of order 1


@dataclass(frozen=True)
class ReaderConfig:
    """What the reader reads and how it is built."""

    points: tuple[int, ...] = NO_JAW  # landmark indices fed to the MLP
    use_pose: bool = True  # append PnP yaw and pitch of the normalised landmarks
    hidden: tuple[int, ...] = (256, 256)
    dropout: float = 0.3  # after each hidden layer, in training only (0.1 and 0.5 measured worse)
    beta_names: tuple[str, ...] = BETA_NAMES
    landmark_source: str = "dlib"  # which landmarks it was trained on: "dlib" | "geometric"

    @property
    def feature_dim(self) -> int:
        return 2 * len(self.points) + (2 if self.use_pose else 0)

    @property
    def beta_dim(self) -> int:
        return len(self.beta_names)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @staticmethod
    def from_dict(data: dict[str, Any]) -> "ReaderConfig":
        known = {f.name for f in dataclasses.fields(ReaderConfig)}
        values = {k: tuple(v) if isinstance(v, list) else v for k, v in data.items() if k in known}
        config = ReaderConfig(**values)
        if not config.points or min(config.points) < 0 or max(config.points) >= NUM_LANDMARKS:
            raise ValueError(f"landmark indices must lie in 0..67, got {config.points}")
        return config


# -- normalisation ---------------------------------------------------------------------------------
@functools.lru_cache(maxsize=1)
def mean_shape() -> np.ndarray:
    """(68, 2) the neutral template seen by the frontal camera in the canonical aligned frame."""
    from export3d_core.camera import DEFAULT_FOV_DEG, OrbitCamera, focal_from_fov
    from export3d_core.data.face_template import load_template, project

    cam2world = OrbitCamera().cam2world().numpy()
    return project(load_template(), cam2world, focal_from_fov(DEFAULT_FOV_DEG), CANONICAL_SIZE)


def check_landmarks(landmarks: np.ndarray) -> np.ndarray:
    points = np.asarray(landmarks, dtype=np.float64)
    if points.shape != (NUM_LANDMARKS, 2) or not np.isfinite(points).all():
        raise Export3DError(f"the expression reader needs 68 finite 2D landmarks, got an array of shape {points.shape}")
    return points


def normalise_landmarks(landmarks: np.ndarray) -> np.ndarray:
    """(68, 2) pixels -> (68, 2) in the canonical frame (Umeyama similarity on STABLE_POINTS)."""
    points = check_landmarks(landmarks)
    src, dst = points[list(STABLE_POINTS)], mean_shape()[list(STABLE_POINTS)]
    src_c, dst_c = src - src.mean(0), dst - dst.mean(0)
    u, s, vt = np.linalg.svd(dst_c.T @ src_c)  # cross-covariance, (2, 2)
    flip = np.diag([1.0, np.sign(np.linalg.det(u @ vt))])  # a proper rotation, never a mirror
    rotation = u @ flip @ vt
    variance = (src_c ** 2).sum()
    if variance < 1e-9:
        raise Export3DError("the landmarks collapse to a point; no expression can be read from them")
    scale = float(np.trace(np.diag(s) @ flip)) / variance
    return (points - src.mean(0)) @ rotation.T * scale + dst.mean(0)


def landmark_features(landmarks: np.ndarray, config: ReaderConfig) -> np.ndarray:
    """(feature_dim,) float32: normalised subset offsets from the mean shape (+ yaw, pitch)."""
    aligned = normalise_landmarks(landmarks)
    offsets = (aligned - mean_shape())[list(config.points)] / FEATURE_SCALE
    parts = [offsets.reshape(-1)]
    if config.use_pose:
        from export3d_core.data.face_pose import estimate_pose

        pose = estimate_pose(aligned, CANONICAL_SIZE)
        parts.append(np.array([pose.yaw, pose.pitch]))
    return np.concatenate(parts).astype(np.float32)


# -- the model -------------------------------------------------------------------------------------
class ExpressionReader(nn.Module):
    """MLP: standardised landmark features -> β (beta_dim,)."""

    def __init__(self, config: ReaderConfig) -> None:
        super().__init__()
        self.config = config
        self.meta: dict[str, Any] = {}
        layers: list[nn.Module] = []
        width = config.feature_dim
        for hidden in config.hidden:
            layers += [nn.Linear(width, hidden), nn.GELU(), nn.Dropout(config.dropout)]
            width = hidden
        layers.append(nn.Linear(width, config.beta_dim))
        self.mlp = nn.Sequential(*layers)
        self.register_buffer("feature_mean", torch.zeros(config.feature_dim))
        self.register_buffer("feature_std", torch.ones(config.feature_dim))
        lo = [BETA_RANGES.get(n, (-np.inf, np.inf))[0] for n in config.beta_names]
        hi = [BETA_RANGES.get(n, (-np.inf, np.inf))[1] for n in config.beta_names]
        self.register_buffer("beta_lo", torch.tensor(lo, dtype=torch.float32))
        self.register_buffer("beta_hi", torch.tensor(hi, dtype=torch.float32))

    def forward(self, features: Tensor) -> Tensor:
        """(B, feature_dim) raw features -> (B, beta_dim) unclipped β."""
        return self.mlp((features - self.feature_mean) / self.feature_std)

    @torch.no_grad()
    def read_features(self, features: np.ndarray) -> np.ndarray:
        """(B, feature_dim) -> (B, beta_dim) float32 β within BETA_RANGES."""
        x = torch.as_tensor(np.asarray(features, dtype=np.float32)).to(self.feature_mean.device)
        beta = torch.maximum(torch.minimum(self(x), self.beta_hi), self.beta_lo)
        return beta.cpu().numpy()

    def read_beta(self, landmarks68: np.ndarray) -> np.ndarray:
        """(68, 2) pixel landmarks of one face (iBUG order) -> β (beta_dim,) float32."""
        return self.read_features(landmark_features(landmarks68, self.config)[None])[0]


# -- file format -----------------------------------------------------------------------------------
def save_reader(reader: ExpressionReader, path: str | os.PathLike) -> Path:
    """Weights + config + meta in one safetensors file, written atomically."""
    tensors = {k: v.detach().cpu().contiguous() for k, v in reader.state_dict().items()}
    header = {"format": FORMAT_NAME, "format_version": str(FORMAT_VERSION),
              "config": json.dumps(reader.config.to_dict()), "meta": json.dumps(reader.meta)}
    with atomic_path(path) as tmp:
        save_file(tensors, tmp, metadata=header)
    return Path(path)


def load_reader(path: str | os.PathLike = DEFAULT_READER) -> ExpressionReader:
    path = Path(path)
    if not path.is_file():
        raise Export3DError(f"no expression reader at {path} (train one with `export3d train-expression-reader`)")
    tensors, header = read_tensor_file(path, "expression reader")
    check_format(header, path, "expression reader", FORMAT_NAME, FORMAT_VERSION)
    try:
        reader = ExpressionReader(ReaderConfig.from_dict(json.loads(header["config"])))
        reader.load_state_dict(tensors, strict=True)
        reader.meta = json.loads(header.get("meta", "{}"))
    except (KeyError, ValueError, TypeError, RuntimeError) as exc:
        raise Export3DError(f"{path}: reader weights do not match its config: {str(exc).splitlines()[0]}") from None
    return reader.eval()
