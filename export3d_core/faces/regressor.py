"""The attribute regressor: our stand-in for the paper's 3DMM extractor and ArcFace.

A small CNN that reads an image and predicts the synthetic head's expression β, its pose
(yaw, pitch) and its identity vector (see `data.synthetic_views.identity_vector`), and its file
format: one safetensors file whose header carries the JSON config and meta (as
`export3d_core.checkpoint`; nothing is ever unpickled). Training it on freshly rendered synthetic
heads is `regressor_training`'s job; this module loads without the synthetic renderer.

Targets are standardised with the training set's mean and std (kept as buffers), so the three
heads weigh alike in the loss; `predict` returns them in their natural units. The identity
*embedding* used for identity similarity is the standardised identity prediction: raw colours
and sizes share a large positive mean, which would make every cosine close to 1.

The CNN reads two views of an image, stacked as six channels: the whole image and the inner face
(`face_box`, which holds the brows, eyes, nose and mouth of every corpus pose), both resized to
`resolution` with area interpolation (bilinear when enlarging). The whole view carries pose,
head shape, hair and clothes; the face view carries the small features expressions move, at
1.6x the detail of the whole view. Training renders go through the same resampling (rendered at
`render_resolution`), so the model's 128-pixel outputs and the corpus frames are seen alike.
"""
from __future__ import annotations

import dataclasses
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
from export3d_core.camera import POSE_DIM
from export3d_core.checkpoint import REPO_ROOT
from export3d_core.data.dataset import resize_rgb
from export3d_core.errors import Export3DError
from export3d_core.tensor_files import check_format, read_tensor_file

FORMAT_NAME = "export3d-attribute-regressor"
FORMAT_VERSION = 1
DEFAULT_REGRESSOR = REPO_ROOT / "resources" / "models" / "demo" / "attribute_regressor.safetensors"


@dataclass(frozen=True)
class RegressorConfig:
    """Sizes and training schedule of the attribute regressor."""

    resolution: int = 64  # side of both views the CNN reads
    face_box: tuple[float, ...] = (0.19, 0.25, 0.81, 0.87)  # inner-face crop (x0, y0, x1, y1), fractions of the side
    render_resolution: int = 128  # side training heads are rendered at before shrinking (as model outputs)
    widths: tuple[int, ...] = (16, 32, 64, 128)  # one stride-2 conv stage each (~90 ms per step of 64 on one core)
    hidden: int = 256  # width of the fully connected layer after the conv stages
    beta_dim: int = 12  # expression parameters (synthetic β)
    identity_dim: int = 0  # length of the identity vector; 0 = taken from the renderer's identities
    identity_names: tuple[str, ...] = ()  # entry names of the identity vector (filled when trained)
    train_identities: int = 4000  # identities rendered for training (1000 could not read gaze yaw or furrow)
    # Index of the first training identity (of corpus seed REGRESSOR_SEED); the test identities
    # follow the training ones. Another range gives a network that never saw these renders
    # (the face-feature loss of train/face_features.py).
    first_identity: int = 0
    frames_per_identity: int = 8  # expressions x cameras per identity
    test_identities: int = 100  # identities held out to report the regressor's accuracy
    steps: int = 15000  # Adam steps (3000 underfit: held-out expression MAE 0.17; 0.11 at 15000)
    batch_size: int = 64
    lr: float = 2e-3  # Adam, cosine-decayed to 0
    # Max std (pixels at `resolution`) of the random blur augmentation. Model outputs are soft, and
    # a regressor that reads blur as expression would charge a sharp-enough-but-soft output with
    # expression error (with 0.5, a 1.5-pixel blur of a real frame alone cost 0.11 AED).
    blur_max: float = 1.5
    noise_max: float = 0.03  # max std of the additive noise augmentation, in [-1, 1] units
    seed: int = 0  # torch seed for initialisation and batches
    # Loss weight of the β targets against pose and identity (1 each): expressions are subtle
    # (a few pixels of iris or mouth corner) and would otherwise lose to the many identity targets.
    expression_weight: float = 2.0

    @property
    def pose_dim(self) -> int:
        return POSE_DIM

    @property
    def out_dim(self) -> int:
        return self.beta_dim + self.pose_dim + self.identity_dim

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @staticmethod
    def from_dict(data: dict[str, Any]) -> "RegressorConfig":
        known = {f.name for f in dataclasses.fields(RegressorConfig)}
        values = {k: (tuple(v) if isinstance(v, list) else v) for k, v in data.items() if k in known}
        return RegressorConfig(**values)


@dataclass
class Attributes:
    """What the regressor reads from a batch of images."""

    expression: Tensor  # (B, beta_dim) β in natural units
    pose: Tensor  # (B, 2) yaw, pitch in radians
    identity: Tensor  # (B, I) identity parameters in natural units
    identity_embedding: Tensor  # (B, I) standardised identity: use this for cosine similarity


class AttributeRegressor(nn.Module):
    """Conv stages (stride 2) -> FC -> standardised (β, pose, identity)."""

    def __init__(self, config: RegressorConfig) -> None:
        super().__init__()
        if config.identity_dim <= 0:
            raise ValueError("RegressorConfig.identity_dim must be set (> 0) before building the network")
        self.config = config
        layers: list[nn.Module] = []
        channels = 2 * 3  # whole image + inner face
        for width in config.widths:
            layers += [nn.Conv2d(channels, width, 3, stride=2, padding=1), nn.BatchNorm2d(width), nn.ReLU(inplace=True),
                       nn.Conv2d(width, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU(inplace=True)]
            channels = width
        self.features = nn.Sequential(*layers)
        side = config.resolution // 2 ** len(config.widths)
        # Flatten rather than pool: where a feature sits in the image is what pose is made of.
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(channels * side * side, config.hidden),
                                  nn.ReLU(inplace=True), nn.Linear(config.hidden, config.out_dim))
        self.register_buffer("target_mean", torch.zeros(config.out_dim))
        self.register_buffer("target_std", torch.ones(config.out_dim))

    def forward(self, images: Tensor) -> Tensor:
        """two views (B, 6, res, res) in [-1, 1] -> standardised targets (B, out_dim)."""
        return self.head(self.features(images))

    def split(self, standardised: Tensor) -> Attributes:
        """Standardised outputs, on any device (predictions come back on the CPU), -> Attributes there."""
        device = standardised.device
        natural = standardised * self.target_std.to(device) + self.target_mean.to(device)  # (B, out_dim)
        b, p = self.config.beta_dim, self.config.pose_dim
        return Attributes(natural[:, :b], natural[:, b:b + p], natural[:, b + p:], standardised[:, b + p:])

    @torch.no_grad()
    def predict(self, images: list[np.ndarray] | np.ndarray, batch_size: int = 64) -> Attributes:
        """uint8 (H, W, 3) images (any side; see `two_views`) -> Attributes on the CPU."""
        self.eval()
        device = self.target_mean.device
        outputs = []
        for start in range(0, len(images), batch_size):
            chunk = np.stack([two_views(image, self.config) for image in images[start:start + batch_size]])
            outputs.append(self(to_float(torch.from_numpy(chunk)).to(device)).cpu())
        return self.split(torch.cat(outputs) if outputs else torch.zeros(0, self.config.out_dim))


def two_views(image: np.ndarray, config: RegressorConfig) -> np.ndarray:
    """uint8 (H, W, 3) -> uint8 (6, res, res): the whole image and the inner-face crop, resized."""
    image = np.asarray(image, dtype=np.uint8)
    h, w = image.shape[:2]
    x0, y0, x1, y1 = config.face_box
    face = image[round(y0 * h):round(y1 * h), round(x0 * w):round(x1 * w)]
    views_ = [resize_rgb(np.ascontiguousarray(v), config.resolution) for v in (image, face)]
    return np.concatenate(views_, axis=2).transpose(2, 0, 1)  # (6, res, res)


def to_float(batch: Tensor) -> Tensor:
    return batch.float().div(127.5).sub(1.0)  # uint8 -> [-1, 1]


# -- files ------------------------------------------------------------------------------------------
def save_regressor(model: AttributeRegressor, path: str | os.PathLike) -> Path:
    """Weights + config + meta in one safetensors file, written atomically."""
    path = Path(path)
    tensors = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    header = {"format": FORMAT_NAME, "format_version": str(FORMAT_VERSION),
              "config": json.dumps(model.config.to_dict()), "meta": json.dumps(getattr(model, "meta", {}))}
    with atomic_path(path, suffix=".tmp") as tmp:  # shipped and shared: ordinary permissions
        save_file(tensors, tmp, metadata=header)
    return path


def load_regressor(path: str | os.PathLike, device: str | torch.device = "cpu") -> AttributeRegressor:
    path = Path(path)
    tensors, header = read_tensor_file(path, "attribute regressor")
    check_format(header, path, "attribute regressor", FORMAT_NAME, FORMAT_VERSION)
    try:
        config = RegressorConfig.from_dict(json.loads(header["config"]))
        model = AttributeRegressor(config)
        model.load_state_dict(tensors, strict=True)
    except (KeyError, ValueError, TypeError, RuntimeError) as exc:
        raise Export3DError(f"{path}: regressor weights do not match its config: {str(exc).splitlines()[0]}") from None
    model.meta = json.loads(header.get("meta", "{}"))
    return model.to(device).eval()


__all__ = ["RegressorConfig", "Attributes", "AttributeRegressor", "DEFAULT_REGRESSOR", "FORMAT_NAME", "two_views",
           "save_regressor", "load_regressor"]
