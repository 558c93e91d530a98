"""The attribute regressor: our stand-in for the paper's 3DMM extractor and ArcFace.

Owns a small CNN that reads an image and predicts the synthetic head's expression β, its pose
(yaw, pitch) and its identity vector (see `synthetic_views.identity_vector`), its training on
freshly rendered synthetic heads with known attributes, its held-out accuracy, and its file
format: one safetensors file whose header carries the JSON config and meta (as
`export3d_core.checkpoint`; nothing is ever unpickled).

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
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file
from torch import Tensor, nn

from export3d_core.checkpoint import REPO_ROOT
from export3d_core.data.dataset import resize_rgb
from export3d_core.errors import Export3DError
from export3d_core.data import synthetic_views as views
from export3d_core.metrics import cosine_similarity, l1_distance

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
        return views.POSE_DIM

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
            outputs.append(self(_to_float(torch.from_numpy(chunk)).to(device)).cpu())
        return self.split(torch.cat(outputs) if outputs else torch.zeros(0, self.config.out_dim))


def two_views(image: np.ndarray, config: RegressorConfig) -> np.ndarray:
    """uint8 (H, W, 3) -> uint8 (6, res, res): the whole image and the inner-face crop, resized."""
    image = np.asarray(image, dtype=np.uint8)
    h, w = image.shape[:2]
    x0, y0, x1, y1 = config.face_box
    face = image[round(y0 * h):round(y1 * h), round(x0 * w):round(x1 * w)]
    views_ = [resize_rgb(np.ascontiguousarray(v), config.resolution) for v in (image, face)]
    return np.concatenate(views_, axis=2).transpose(2, 0, 1)  # (6, res, res)


def _to_float(batch: Tensor) -> Tensor:
    return batch.float().div(127.5).sub(1.0)  # uint8 -> [-1, 1]


# -- data -------------------------------------------------------------------------------------------
@dataclass
class RenderSet:
    inputs: np.ndarray  # (N, 6, res, res) uint8: the two views the CNN reads
    targets: np.ndarray  # (N, out_dim) float32: β, pose, identity
    identity_index: np.ndarray  # (N,) which identity of the set each render shows
    identity_names: list[str] = field(default_factory=list)


def render_set(config: RegressorConfig, first: int, count: int, progress: bool = True, label: str = "") -> RenderSet:
    """Render `frames_per_identity` frames of the regressor's identities `first .. first+count-1`
    (of corpus seed `REGRESSOR_SEED`), with their attribute targets."""
    from export3d_core.data.synthetic import HeadRenderer

    images, targets, owners = [], [], []
    names: list[str] = []
    bar = _progress(count * config.frames_per_identity, f"rendering {label}", progress)
    with HeadRenderer(config.render_resolution) as renderer:
        for index in range(first, first + count):
            head = views.draw_head(views.REGRESSOR_SEED, index, config.frames_per_identity)
            identity = views.identity_vector(head.identity)
            names = names or views.identity_keys(head.identity)
            for image, beta, camera in zip(views.render_head(renderer, head), head.betas, head.cameras):
                images.append(two_views(image, config))
                targets.append(np.concatenate([beta, views.pose_of(camera), identity]).astype(np.float32))
                owners.append(index)
                bar.update(1)
    bar.close()
    return RenderSet(np.stack(images), np.stack(targets), np.asarray(owners), names)


def _progress(total: int, desc: str, enabled: bool):
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, disable=not enabled, leave=False, file=sys.stderr)


def _augment(batch: Tensor, config: RegressorConfig, generator: torch.Generator) -> Tensor:
    """Random blur and noise: model outputs are softer and noisier than clean renders."""
    b = batch.shape[0]
    sigma = torch.rand(b, generator=generator) * config.blur_max  # (B,)
    radius = max(1, int(np.ceil(2 * config.blur_max)))
    coords = torch.arange(-radius, radius + 1, dtype=torch.float32)  # (k,)
    kernel = torch.exp(-coords[None] ** 2 / (2 * sigma[:, None].clamp_min(1e-3) ** 2))  # (B, k)
    kernel = kernel / kernel.sum(dim=1, keepdim=True)
    c, h, w = batch.shape[1:]
    x = batch.reshape(1, b * c, h, w)
    k = kernel.repeat_interleave(c, dim=0)  # (B*C, k)
    x = F.conv2d(F.pad(x, (radius, radius, 0, 0), mode="replicate"), k[:, None, None, :], groups=b * c)
    x = F.conv2d(F.pad(x, (0, 0, radius, radius), mode="replicate"), k[:, None, :, None], groups=b * c)
    noise = torch.randn(batch.shape, generator=generator) * torch.rand(b, 1, 1, 1, generator=generator) * config.noise_max
    return x.reshape(b, c, h, w) + noise


# -- training ---------------------------------------------------------------------------------------
def train_regressor(config: RegressorConfig, progress: bool = True, device: str | torch.device = "cpu",
                    log: Callable[[str], None] | None = None) -> AttributeRegressor:
    """Render training and test heads, fit the CNN, and record its test accuracy in `model.meta`."""
    started = time.perf_counter()
    first_test = config.first_identity + config.train_identities
    train = render_set(config, config.first_identity, config.train_identities, progress, "regressor training heads")
    test = render_set(config, first_test, config.test_identities, progress, "regressor test heads")
    config = dataclasses.replace(config, identity_dim=train.targets.shape[1] - config.beta_dim - views.POSE_DIM,
                                 identity_names=tuple(train.identity_names))
    return fit_regressor(config, train, test, progress=progress, device=device, log=log, started=started)


def fit_regressor(config: RegressorConfig, train: RenderSet, test: RenderSet, progress: bool = True,
                  device: str | torch.device = "cpu", log: Callable[[str], None] | None = None,
                  started: float | None = None) -> AttributeRegressor:
    """Fit the CNN on rendered `train` (inputs made by `two_views` with this config) and record its
    accuracy on `test` in `model.meta`. `config.identity_dim` must be set."""
    log = log or (lambda message: print(message, file=sys.stderr))
    started = time.perf_counter() if started is None else started
    torch.manual_seed(config.seed)
    model = AttributeRegressor(config).to(device)
    targets = torch.from_numpy(train.targets)  # (N, out_dim)
    model.target_mean.copy_(targets.mean(dim=0))
    model.target_std.copy_(targets.std(dim=0).clamp_min(1e-6))  # constant entries stay finite
    images = torch.from_numpy(train.inputs)  # (N, 6, res, res) uint8
    standardised = (targets - model.target_mean.cpu()) / model.target_std.cpu()

    loss_weights = torch.ones(config.out_dim, device=device)
    loss_weights[:config.beta_dim] = config.expression_weight
    loss_weights = loss_weights / loss_weights.mean()  # the same loss scale for any weight
    optimiser = torch.optim.Adam(model.parameters(), lr=config.lr)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimiser, T_max=max(1, config.steps))
    generator = torch.Generator().manual_seed(config.seed)
    model.train()
    bar = _progress(config.steps, "training attribute regressor", progress)
    for _ in range(config.steps):
        index = torch.randint(len(images), (min(config.batch_size, len(images)),), generator=generator)
        batch = _augment(_to_float(images[index]), config, generator)
        loss = ((model(batch.to(device)) - standardised[index].to(device)).square() * loss_weights).mean()
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
        schedule.step()
        bar.set_postfix(loss=f"{loss.item():.3f}", refresh=False)
        bar.update(1)
    bar.close()
    model.eval()
    model.meta = {"accuracy": evaluate_regressor(model, test), "train_renders": len(images),
                  "test_renders": len(test.inputs), "train_seconds": round(time.perf_counter() - started, 1)}
    log("attribute regressor held-out accuracy: " + format_accuracy(model.meta["accuracy"]))
    return model


def evaluate_regressor(model: AttributeRegressor, test: RenderSet) -> dict[str, float]:
    """Accuracy on renders of unseen identities, next to the "predict the mean" baseline.

    expression_mae / pose_mae: mean L1 error (β units / radians); *_baseline: the same error of
    always predicting the training mean; identity_cos_same / _other: mean cosine of the identity
    embedding of a render with the true standardised identity of the same / of another identity;
    expression_corr: Pearson r of predicted and true β, one per parameter.
    """
    with torch.no_grad():
        device = model.target_mean.device
        found = model.split(torch.cat([model(_to_float(torch.from_numpy(test.inputs[i:i + 64])).to(device)).cpu()
                                       for i in range(0, len(test.inputs), 64)]))
    cfg = model.config
    truth = torch.from_numpy(test.targets).double()
    mean = model.target_mean.cpu().double()
    b, p = cfg.beta_dim, cfg.pose_dim
    true_id = (truth[:, b + p:] - mean[b + p:]) / model.target_std.cpu().double()[b + p:]
    other = torch.roll(true_id, shifts=cfg.frames_per_identity, dims=0)  # a render of the next identity
    return {
        "expression_mae": float(l1_distance(found.expression, truth[:, :b]).mean()),
        "expression_mae_baseline": float(l1_distance(mean[:b].expand(len(truth), b), truth[:, :b]).mean()),
        "pose_mae": float(l1_distance(found.pose, truth[:, b:b + p]).mean()),
        "pose_mae_baseline": float(l1_distance(mean[b:b + p].expand(len(truth), p), truth[:, b:b + p]).mean()),
        "identity_cos_same": float(cosine_similarity(found.identity_embedding, true_id).mean()),
        "identity_cos_other": float(cosine_similarity(found.identity_embedding, other).mean()),
        "expression_corr": [round(_correlation(found.expression[:, k], truth[:, k]), 3) for k in range(b)],
    }


def _correlation(a: Tensor, b: Tensor) -> float:
    """Pearson r of two 1-D samples (0 when either is constant)."""
    a, b = a.double() - a.double().mean(), b.double() - b.double().mean()
    return float((a * b).sum() / (a.norm() * b.norm()).clamp_min(1e-12))


def format_accuracy(acc: dict[str, float]) -> str:
    return (f"expression MAE {acc['expression_mae']:.3f} (mean-guess {acc['expression_mae_baseline']:.3f}), "
            f"pose MAE {np.degrees(acc['pose_mae']):.2f} deg (mean-guess {np.degrees(acc['pose_mae_baseline']):.2f}), "
            f"identity cosine {acc['identity_cos_same']:.3f} same / {acc['identity_cos_other']:.3f} other")


# -- files ------------------------------------------------------------------------------------------
def save_regressor(model: AttributeRegressor, path: str | os.PathLike) -> Path:
    """Weights + config + meta in one safetensors file, written atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    header = {"format": FORMAT_NAME, "format_version": str(FORMAT_VERSION),
              "config": json.dumps(model.config.to_dict()), "meta": json.dumps(getattr(model, "meta", {}))}
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        save_file(tensors, tmp, metadata=header)
        os.chmod(tmp, 0o644)  # mkstemp makes files private; this one is shipped and shared
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def load_regressor(path: str | os.PathLike, device: str | torch.device = "cpu") -> AttributeRegressor:
    path = Path(path)
    try:
        with safe_open(str(path), framework="pt", device="cpu") as handle:
            header = handle.metadata() or {}
            tensors = {key: handle.get_tensor(key) for key in handle.keys()}
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise Export3DError(f"{path} is not a valid attribute regressor file: {exc}") from None
    if header.get("format") != FORMAT_NAME or header.get("format_version") != str(FORMAT_VERSION):
        raise Export3DError(f"{path} is not an attribute regressor (format {header.get('format')!r} "
                            f"version {header.get('format_version')!r})")
    try:
        config = RegressorConfig.from_dict(json.loads(header["config"]))
        model = AttributeRegressor(config)
        model.load_state_dict(tensors, strict=True)
    except (KeyError, ValueError, TypeError, RuntimeError) as exc:
        raise Export3DError(f"{path}: regressor weights do not match its config: {str(exc).splitlines()[0]}") from None
    model.meta = json.loads(header.get("meta", "{}"))
    return model.to(device).eval()


def build_or_load_regressor(path: str | os.PathLike = DEFAULT_REGRESSOR, *, config: RegressorConfig | None = None,
                            device: str | torch.device = "cpu", progress: bool = True,
                            log: Callable[[str], None] | None = None) -> AttributeRegressor:
    """Load the regressor at `path`; when the file is absent, train one on fresh renders and save it."""
    path = Path(path)
    log = log or (lambda message: print(message, file=sys.stderr))
    if path.is_file():
        return load_regressor(path, device)
    log(f"attribute regressor {path} not found: training one on synthetic renders "
        "(with the default config about 40 min on 2 CPU cores)")
    model = train_regressor(config or RegressorConfig(), progress=progress, device=device, log=log)
    save_regressor(model, path)
    log(f"saved attribute regressor to {path}")
    return model


__all__ = [
    "RegressorConfig", "Attributes", "AttributeRegressor", "DEFAULT_REGRESSOR", "two_views", "render_set",
    "train_regressor", "fit_regressor", "evaluate_regressor", "format_accuracy", "save_regressor", "load_regressor",
    "build_or_load_regressor",
]
