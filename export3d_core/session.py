"""A portrait kept resident on the device, with the three caches of DESIGN.md §1.

`PortraitSession` is what the editor and the headless commands render through: a new portrait
re-encodes, a λ change re-runs only the expression-dependent part of G, a camera change only
decoder + volume rendering + SR. Counters record each stage so tests can prove nothing is redone.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from export3d_core.camera import OrbitCamera
from export3d_core.model import Export3D, RenderOutput
from export3d_core.render.renderer import VolumeRenderer

RENDER_MODES = ("final", "raw", "depth", "opacity")
QUALITIES = ("full", "preview")


@dataclass(frozen=True)
class PreviewSettings:
    """The fast path used while the artist drags: fewer rays and samples, no SR."""

    ray_fraction: int = 2  # neural_size // ray_fraction rays per side
    sample_fraction: int = 2  # num_coarse and num_fine divided by this


@dataclass
class StageCounters:
    encode: int = 0
    triplane: int = 0
    render: int = 0


@dataclass
class _Cache:
    appearance: object | None = None
    lam_key: tuple[float, ...] | None = None
    planes: Tensor | None = None
    counters: StageCounters = field(default_factory=StageCounters)


def image_to_tensor(image: np.ndarray, size: int) -> Tensor:
    """uint8 (H, W, 3) RGB -> (1, 3, size, size) float in [-1, 1] (area resampling)."""
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"expected a uint8 (H, W, 3) image, got {image.dtype} {image.shape}")
    tensor = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)[None].float() / 127.5 - 1.0
    if tensor.shape[-2:] != (size, size):
        tensor = F.interpolate(tensor, size=(size, size), mode="area")
    return tensor


def tensor_to_image(tensor: Tensor) -> np.ndarray:
    """(3, H, W) or (1, 3, H, W) in [-1, 1] -> uint8 (H, W, 3)."""
    if tensor.dim() == 4:
        tensor = tensor[0]
    array = ((tensor.detach().float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    return array.permute(1, 2, 0).cpu().numpy()


def view_image(output: RenderOutput, mode: str, ray_start: float, ray_end: float) -> np.ndarray:
    """One render mode of the first item of a batch as uint8 RGB (H, W, 3)."""
    if mode == "final":
        return tensor_to_image(output.image)
    if mode == "raw":
        return tensor_to_image(output.image_raw)
    if mode == "opacity":
        return tensor_to_image(output.alpha[:, :1].repeat(1, 3, 1, 1) * 2 - 1)
    if mode == "depth":
        # Near is bright; rays that hit nothing are black.
        near = 1 - (output.depth - ray_start) / (ray_end - ray_start)
        shade = (near.clamp(0, 1) * output.alpha.clamp(0, 1)).repeat(1, 3, 1, 1)
        return tensor_to_image(shade * 2 - 1)
    raise ValueError(f"unknown render mode {mode!r}; choose one of {RENDER_MODES}")


class PortraitSession:
    """One model + one portrait, resident on `device`, rendering any (λ, camera)."""

    def __init__(self, model: Export3D, device: str | torch.device | None = None,
                 preview: PreviewSettings = PreviewSettings()) -> None:
        self.device = torch.device(device) if device is not None else next(model.parameters()).device
        self.model = model.to(self.device).eval()
        self.preview = preview
        self._cache = _Cache()
        self._source: Tensor | None = None
        render_cfg = self.config.render
        step = preview.sample_fraction
        self._preview_renderer = VolumeRenderer(dataclasses.replace(
            render_cfg, num_coarse=max(4, render_cfg.num_coarse // step), num_fine=max(4, render_cfg.num_fine // step)))

    @property
    def counters(self) -> StageCounters:
        return self._cache.counters

    @property
    def config(self):
        return self.model.config

    @property
    def source(self) -> Tensor | None:
        return self._source

    @torch.no_grad()
    def set_portrait(self, image: np.ndarray | Tensor) -> None:
        """A new portrait: uint8 (H, W, 3) RGB or a (1, 3, S, S) tensor in [-1, 1]. Re-encodes."""
        size = self.config.input_size
        source = image_to_tensor(image, size) if isinstance(image, np.ndarray) else image
        self._source = source.to(self.device)
        self._cache.appearance = self.model.encode(self._source)
        self._cache.lam_key, self._cache.planes = None, None
        self._cache.counters.encode += 1

    @torch.no_grad()
    def planes(self, lam: tuple[float, ...] | list[float] | np.ndarray) -> Tensor:
        """The tri-plane for λ; cached, so only a λ change re-runs the expression-dependent part."""
        if self._cache.appearance is None:
            raise RuntimeError("set_portrait() first")
        key = tuple(float(v) for v in np.asarray(lam, dtype=np.float64).reshape(-1))
        if len(key) != self.config.n_basis:
            raise ValueError(f"λ needs {self.config.n_basis} values, got {len(key)}")
        if not all(np.isfinite(key)):
            raise ValueError("λ values must be finite numbers")
        if key != self._cache.lam_key:
            lam_tensor = torch.tensor([key], dtype=torch.float32, device=self.device)
            e = self.model.expression(lam=lam_tensor)
            self._cache.planes = self.model.triplane(self._cache.appearance, e)
            self._cache.lam_key = key
            self._cache.counters.triplane += 1
        return self._cache.planes

    @torch.no_grad()
    def render(self, lam, camera: OrbitCamera | Tensor, quality: str = "full") -> RenderOutput:
        """Render λ from `camera`; `quality="preview"` takes the fast path."""
        if quality not in QUALITIES:
            raise ValueError(f"unknown quality {quality!r}; choose one of {QUALITIES}")
        planes = self.planes(lam)
        cameras = camera.params(device=self.device)[None] if isinstance(camera, OrbitCamera) else camera
        self._cache.counters.render += 1
        if quality == "full":
            return self.model.render(planes, cameras)
        return self.model.render(planes, cameras, neural_size=self._preview_size(), renderer=self._preview_renderer)

    def _preview_size(self) -> int:
        return max(8, self.config.neural_size // self.preview.ray_fraction)

    def render_image(self, lam, camera: OrbitCamera, mode: str = "final", quality: str = "full") -> np.ndarray:
        output = self.render(lam, camera, quality)
        render_cfg = self.config.render
        return view_image(output, mode, render_cfg.ray_start, render_cfg.ray_end)
