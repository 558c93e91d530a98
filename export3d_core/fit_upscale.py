"""A per-photo 2× upscaler: one more super-resolution stage, learnt from the one photo a fit used.

The demo model renders 128²; a photo usually holds more detail than that. After a fit
(`fit.fit_portrait`, `FitSettings.upscale`), this stage (nn/upscaler.py) is trained in seconds to
turn the fitted model's final image at the photo's camera into the aligned photo at twice the size. It is a residual over a bicubic upsample of the final image (so
an untrained stage is exactly bicubic), a few 3×3 convolutions at the model's output size and a
pixel shuffle. Its inputs are the final image and, optionally, the hidden features of the model's
last SR block: both come from the tri-plane, so they move with the surface when the camera turns.

Why it stays local: the convolutions see only a few pixels around each output pixel and carry no
position, so the stage learns "this patch of render becomes this sharper patch", not "the photo's
eye sits here". Learnt at one view, it can then apply the same mapping at nearby views without
pasting the frontal photo onto a turned head (ghosting). The training inputs are renders with
jittered ray samples (`perturb`), cut into random patches, so it cannot memorise one noise pattern.

What it does, measured (tools/fit_upscale_eval.py, demo model, default fit): on the astronaut the
PSNR at her camera at 256² rises from 27.4 dB (bicubic) to about 30.3 dB, and dlib identity
improves at the photo's camera, yaw ±20° and pitch ±10°. Most of that gain is a correction of the
fitted render's colours and shapes, not added detail: the same images area-downsampled to 128²
gain as much, and only about 15 % of the photo's high band is recovered. It is a per-photo fit, not
a general sharpener: learnt from the left half of the photo only, it makes the right half worse
(-1.3 dB), so it helps where the photo shows the surface and should not be trusted where it does not.
"""
from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from export3d_core.display import image_to_tensor
from export3d_core.errors import Export3DError
from export3d_core.model import Export3D, RenderOutput
from export3d_core.nn.upscaler import Upscaler, bicubic

@dataclass(frozen=True)
class UpscaleSettings:
    """How the per-photo upscaler is built and trained."""

    factor: int = 2  # output side / the model's output side (2: 128² -> 256²; 4: two 2× stages' worth)
    width: int = 32  # channels of the hidden convolutions
    layers: int = 3  # convolutions before the pixel shuffle
    kernel: int = 3  # their kernel side (1: a per-pixel colour map, a control; 3: local detail)
    use_features: bool = True  # also feed the hidden features of the model's last SR block
    # Add only detail above the model's resolution: the residual minus its own area-downsample,
    # bicubic-upsampled back, so the image at the model's size stays (nearly) the render's. Off:
    # on the astronaut it sharpened the render's own edges, which sit a pixel or two off the
    # photo's, so the added high band matched the photo's worse than none (error ratio 1.19).
    high_band_only: bool = False
    steps: int = 600  # Adam steps (about 20 ms each for the demo model on one CPU core)
    lr: float = 2e-3
    patch: int = 48  # input patch side (pixels of the model's output) per training sample
    batch: int = 4  # patches per step
    renders: int = 4  # jittered renders of the fitted model at the photo's camera to cut patches from
    # The band of columns (fractions of the width) patches are cut from: (0, 0.5) learns from the
    # left half only, so the right half measures how the mapping does on pixels it never saw.
    columns: tuple[float, float] = (0.0, 1.0)
    loss: str = "l1"  # "l1" or "mse" against the photo
    # A fit learns an upscaler only when the photo holds the face at this many times the model's
    # output side in its own pixels (1.25: 160 px for the demo model); the crop is made at `factor`
    # times regardless, so between the two the photo's finest detail is its own interpolation.
    min_detail: float = 1.25
    time_budget_s: float = 15.0  # renders and training stop after this many seconds even if steps remain
    seed: int = 0

    def __post_init__(self) -> None:
        if self.factor not in (2, 4):
            raise Export3DError(f"the upscaler's factor must be 2 or 4, got {self.factor}")
        if self.kernel not in (1, 3, 5):
            raise Export3DError(f"the upscaler's kernel must be 1, 3 or 5, got {self.kernel}")
        if self.layers < 1 or self.width < 1 or self.steps < 1 or self.renders < 1 or self.batch < 1:
            raise Export3DError("layers, width, steps, renders and batch must be at least 1")
        if not 0.0 <= self.columns[0] < self.columns[1] <= 1.0:
            raise Export3DError(f"columns must be fractions 0 <= a < b <= 1, got {self.columns}")
        if self.loss not in ("l1", "mse"):
            raise Export3DError(f"loss must be l1 or mse, got {self.loss!r}")


@torch.no_grad()
def sr_features(model: Export3D, out: RenderOutput) -> Tensor:
    """The hidden features of the model's last SR block for a full-quality render (B, C, n, n).

    Re-runs the (cheap) SR convolutions from the render's raw image and feature image; a preview
    render (fewer rays than the model's neural size) has no SR and is refused."""
    if out.features.shape[-1] != model.config.neural_size:
        raise Export3DError("the upscaler needs a full-quality render (the model's own ray count)")
    x, rgb = out.features, out.image_raw
    for block in model.superres.blocks:
        x, rgb = block(x.contiguous(), rgb)
    return x.contiguous()


@torch.no_grad()
def upscale(model: Export3D, upscaler: Upscaler, out: RenderOutput) -> Tensor:
    """A render's final image, upscaled: (B, 3, f·output_size, f·output_size) in [-1, 1]."""
    features = sr_features(model, out) if upscaler.use_features else None
    return upscaler(out.image, features).clamp(-1, 1)


@dataclass
class UpscaleResult:
    upscaler: Upscaler  # eval mode, no gradients
    losses: list[float]  # training loss per step
    seconds: float  # wall time of the optimisation (the renders before it not included)
    render_seconds: float  # wall time of the training renders
    settings: UpscaleSettings = field(default_factory=UpscaleSettings)


def train_upscaler(model: Export3D, aligned: np.ndarray, photo: np.ndarray, camera: np.ndarray | Tensor,
                   lam: list[float], settings: UpscaleSettings = UpscaleSettings(),
                   step: Callable[[int, float, float], None] | None = None,
                   check: Callable[[], None] | None = None) -> UpscaleResult:
    """Learn an upscaler that maps the (fitted) model's renders of `aligned` at `camera` and `lam` to
    `photo`, the same aligned crop at `factor` times the model's output size or larger (uint8).

    `step(done, loss, eta_s)` is called after every step; `check()` before the renders and every step
    (it raises to stop, as a fit's cancel does)."""
    cfg = model.config
    side = cfg.output_size * settings.factor
    if photo.shape[0] < side:
        raise Export3DError(f"the upscaler learns from a photo crop of at least {side} px, got {photo.shape[0]}")
    if model.upscaler is not None:
        raise Export3DError("this model already has an upscaler; train one on the model without it")
    check = check or (lambda: None)
    check()
    begin = time.perf_counter()
    inputs, features = _training_renders(model, aligned, camera, lam, settings)
    render_seconds = time.perf_counter() - begin
    target = image_to_tensor(photo, side)  # (1, 3, side, side)
    upscaler = Upscaler(features.shape[1], factor=settings.factor, width=settings.width, layers=settings.layers,
                        kernel=settings.kernel, use_features=settings.use_features,
                        high_band_only=settings.high_band_only, seed=settings.seed)
    optimizer = torch.optim.Adam(upscaler.parameters(), lr=settings.lr)
    generator = torch.Generator().manual_seed(settings.seed + 1)
    losses: list[float] = []
    start = time.perf_counter()
    for done in range(1, settings.steps + 1):
        check()
        image, feats, wanted = _patches(inputs, features, target, settings, generator)
        predicted = upscaler(image, feats if settings.use_features else None)
        loss = F.l1_loss(predicted, wanted) if settings.loss == "l1" else F.mse_loss(predicted, wanted)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
        now = time.perf_counter()
        if step is not None:  # the time budget (renders included) may end the steps early
            left = (now - start) / done * (settings.steps - done)
            step(done, losses[-1], min(left, max(0.0, begin + settings.time_budget_s - now)))
        if now - begin > settings.time_budget_s:
            break
    upscaler.eval().requires_grad_(False)
    return UpscaleResult(upscaler, losses, time.perf_counter() - start, render_seconds, settings)


@torch.no_grad()
def _training_renders(model: Export3D, aligned: np.ndarray, camera, lam: list[float],
                      settings: UpscaleSettings) -> tuple[Tensor, Tensor]:
    """`renders` final images (R, 3, n, n) and SR features at the photo's camera, rays jittered."""
    cfg = model.config
    device = next(model.parameters()).device
    generator = torch.Generator(device=device).manual_seed(settings.seed)
    source = image_to_tensor(aligned, cfg.input_size).to(device)
    lam_t = torch.tensor([list(lam)], dtype=torch.float32, device=device)
    planes = model.triplane(model.encode(source), model.expression(lam=lam_t))
    cameras = torch.as_tensor(np.asarray(camera, dtype=np.float32)).reshape(1, -1).to(device)
    images, features = [], []
    for _ in range(settings.renders):
        out = model.render(planes, cameras, perturb=True, generator=generator)
        images.append(out.image)
        features.append(sr_features(model, out))
    return torch.cat(images).cpu(), torch.cat(features).cpu()


def _patches(images: Tensor, features: Tensor, target: Tensor, settings: UpscaleSettings,
             generator: torch.Generator) -> tuple[Tensor, Tensor, Tensor]:
    """`batch` random aligned patches: render (B, 3, p, p), features (B, C, p, p), photo (B, 3, f·p, f·p)."""
    n, f = images.shape[-1], settings.factor
    left, right = round(settings.columns[0] * n), round(settings.columns[1] * n)
    p = min(settings.patch, right - left)
    picks = torch.randint(0, images.shape[0], (settings.batch,), generator=generator).tolist()
    rows = torch.randint(0, n - p + 1, (settings.batch,), generator=generator)
    cols = torch.randint(left, right - p + 1, (settings.batch,), generator=generator)
    corners = torch.stack([rows, cols], dim=1).tolist()
    crops = [(images[i, :, y:y + p, x:x + p], features[i, :, y:y + p, x:x + p],
              target[0, :, f * y:f * (y + p), f * x:f * (x + p)]) for i, (y, x) in zip(picks, corners)]
    return tuple(torch.stack(parts) for parts in zip(*crops))  # type: ignore[return-value]
