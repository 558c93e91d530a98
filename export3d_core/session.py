"""A portrait kept resident on the device, with the three caches of docs/architecture.md, "The three caches".

`PortraitSession` is what the editor and the headless commands render through: a new portrait
re-encodes, a λ change re-runs only the expression-dependent part of G (and rebuilds the
occupancy grid of the accelerated renderer, cached with the planes), a camera change only
decoder + volume rendering + SR, through `Export3D.render` (the one composition of the three).
Counters record each stage so tests can prove nothing is redone.

The session owns caches and CUDA graphs only: what each frame costs is set by `Acceleration`
(`acceleration.py`), SR precision and layout live in the SR module, display conversion in
`display.py`, device probes in `devices.py`. Both qualities render with `AcceleratedRenderer`
by default (`renderer="reference"` switches to the reference renderer, e.g. for comparisons).
On CUDA the planes stay resident and every frame is the reference renderer's replayed as a CUDA
graph (`Acceleration.cuda_graphs`: a GPU frame is bound by kernel launches, which a graph removes).
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor

from export3d_core.acceleration import Acceleration, PreviewSettings, accelerated_renderer, preview_render_config
from export3d_core.camera import OrbitCamera
from export3d_core.cuda_graph import GraphedCall
from export3d_core.devices import native_bf16
# Display conversion is imported from here by many callers; it is defined in `display.py`.
from export3d_core.display import RENDER_MODES, image_to_tensor, tensor_to_image, view_image
from export3d_core.errors import Export3DError
from export3d_core.lambda_units import check_lambda
from export3d_core.model import Export3D, RenderOutput
from export3d_core.render.occupancy import OccupancyGrid
from export3d_core.render.renderer import FieldFn, VolumeRenderer

QUALITIES = ("full", "preview")
RENDERERS = ("accelerated", "reference")


@dataclass
class StageCounters:
    encode: int = 0
    triplane: int = 0
    grid: int = 0  # occupancy grids built: one per tri-plane, never per camera
    render: int = 0
    graph_captures: int = 0  # CUDA graphs captured: one per quality, not per camera or λ


@dataclass
class _Cache:
    appearance: object | None = None
    lam_key: tuple[float, ...] | None = None
    planes: Tensor | None = None
    grid: OccupancyGrid | None = None  # of `planes`; None until the first accelerated render
    counters: StageCounters = field(default_factory=StageCounters)


class PortraitSession:
    """One model + one portrait, resident on `device`, rendering any (λ, camera)."""

    def __init__(self, model: Export3D, device: str | torch.device | None = None,
                 preview: PreviewSettings = PreviewSettings(), renderer: str = "accelerated",
                 acceleration: Acceleration = Acceleration()) -> None:
        if renderer not in RENDERERS:
            raise ValueError(f"unknown renderer {renderer!r}; choose one of {RENDERERS}")
        self.device = torch.device(device) if device is not None else next(model.parameters()).device
        self.model = model.to(self.device).eval()
        self.preview = preview
        self.renderer = renderer
        self.acceleration = acceleration
        self._cache = _Cache()
        self._source: Tensor | None = None
        render_cfg = self.config.render
        preview_cfg = preview_render_config(render_cfg, preview)
        self.accelerated_renderer = accelerated_renderer(render_cfg, acceleration)
        self._preview_renderers = {"reference": VolumeRenderer(preview_cfg),
                                   "accelerated": accelerated_renderer(preview_cfg, acceleration)}
        self._decoder = self.model.decoder
        if self.device.type == "cuda" and acceleration.compile_decoder and hasattr(torch, "compile"):
            self._decoder = torch.compile(self.model.decoder, dynamic=True)
        self.model.superres.use_channels_last()
        self.sr_bf16 = native_bf16(self.device) if acceleration.sr_bf16 is None else acceleration.sr_bf16
        self.cuda_graphs = self.device.type == "cuda" and acceleration.cuda_graphs
        self._graphs: dict[str, GraphedCall] = {}

    @property
    def counters(self) -> StageCounters:
        return self._cache.counters

    @property
    def config(self):
        return self.model.config

    @property
    def source(self) -> Tensor | None:
        return self._source

    def _autocast(self):
        if not self.acceleration.autocast_bf16:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=torch.bfloat16)

    @torch.no_grad()
    def set_portrait(self, image: np.ndarray | Tensor) -> None:
        """A new portrait: uint8 (H, W, 3) RGB or a (1, 3, S, S) tensor in [-1, 1]. Re-encodes."""
        size = self.config.input_size
        source = image_to_tensor(image, size) if isinstance(image, np.ndarray) else image
        self._source = source.to(self.device)
        with self._autocast():
            appearance = self.model.encode(self._source)
        self._cache.appearance = appearance
        self._cache.lam_key, self._cache.planes, self._cache.grid = None, None, None
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
        check_lambda(key)
        if key != self._cache.lam_key:
            lam_tensor = torch.tensor([key], dtype=torch.float32, device=self.device)
            with self._autocast():
                e = self.model.expression(lam=lam_tensor)
                planes = self.model.triplane(self._cache.appearance, e)
            if not bool(torch.isfinite(planes).all()):
                # a model whose arithmetic overflows below MAX_ABS_LAMBDA: say so, never a black image
                raise Export3DError(f"λ {max(key, key=abs):g} overflows this model's arithmetic "
                                    "(the tri-plane is not finite); use smaller coefficients")
            # fp32 and contiguous: the planes are sampled millions of times per frame.
            self._cache.planes = planes.float().contiguous()
            self._cache.grid = None
            self._cache.lam_key = key
            self._cache.counters.triplane += 1
        return self._cache.planes

    @property
    def decoder(self):
        """The decoder frames go through: the model's own, or its compiled copy."""
        return self._decoder

    def field(self, planes: Tensor) -> FieldFn:
        """The model's radiance field of `planes`, through the (optionally compiled) decoder."""
        return self.model.field(planes, self._decoder)

    @torch.no_grad()
    def grid(self, lam) -> OccupancyGrid:
        """The occupancy grid of λ's tri-plane: built once per tri-plane, reused for every camera."""
        planes = self.planes(lam)
        if self._cache.grid is None:
            self._cache.grid = self.build_grid(planes)
            self._cache.counters.grid += 1
        return self._cache.grid

    @torch.no_grad()
    def build_grid(self, planes: Tensor) -> OccupancyGrid:
        """A fresh occupancy grid of `planes` (uncached; `grid` caches it per λ)."""
        acc = self.acceleration
        return self.accelerated_renderer.build_grid(
            self.model.density_field(planes), acc.grid_resolution, batch=planes.shape[0],
            alpha_threshold=acc.grid_alpha, device=self.device)

    @torch.no_grad()
    def render(self, lam, camera: OrbitCamera | Tensor, quality: str = "full") -> RenderOutput:
        """Render λ from `camera`; `quality="preview"` takes the fast path."""
        if quality not in QUALITIES:
            raise ValueError(f"unknown quality {quality!r}; choose one of {QUALITIES}")
        planes = self.planes(lam)
        cameras = camera.params(device=self.device)[None] if isinstance(camera, OrbitCamera) else camera
        cameras = cameras.to(self.device)
        self._cache.counters.render += 1
        if self.cuda_graphs:
            return self._graphed(quality, planes, cameras)
        grid = self.grid(lam) if self.renderer == "accelerated" else None
        if quality == "full":
            renderer = self.accelerated_renderer if self.renderer == "accelerated" else self.model.renderer
            return self._render(planes, cameras, None, renderer, grid)
        return self._render(planes, cameras, self._preview_size(), self._preview_renderers[self.renderer], grid)

    def _graphed(self, quality: str, planes: Tensor, cameras: Tensor) -> RenderOutput:
        """The reference renderer's frame of `quality`, replayed from its CUDA graph."""
        graph = self._graphs.get(quality)
        if graph is None or not graph.accepts(planes, cameras):
            if quality == "full":
                size, renderer = None, self.model.renderer
            else:
                size, renderer = self._preview_size(), self._preview_renderers["reference"]

            def frame(planes: Tensor, cameras: Tensor) -> tuple[Tensor, ...]:
                out = self._render(planes, cameras, size, renderer)
                return out.image, out.image_raw, out.depth, out.alpha, out.features

            graph = self._graphs[quality] = GraphedCall(frame, planes, cameras)
            self._cache.counters.graph_captures += 1
        return RenderOutput(*graph(planes, cameras))

    def _render(self, planes: Tensor, cameras: Tensor, size: int | None, renderer,
                grid: OccupancyGrid | None = None) -> RenderOutput:
        """`Export3D.render` with the session's decoder (compiled or not) and SR precision."""
        return self.model.render(planes, cameras, neural_size=size, renderer=renderer, grid=grid,
                                 decoder=self._decoder, sr_bf16=self.sr_bf16)

    def super_resolve(self, image_raw: Tensor, features: Tensor) -> Tensor:
        """The model's SR at the session's precision (bench times it against fp32)."""
        return self.model.superres(image_raw, features, bf16=self.sr_bf16)

    def _preview_size(self) -> int:
        return max(8, self.config.neural_size // self.preview.ray_fraction)

    def render_image(self, lam, camera: OrbitCamera, mode: str = "final", quality: str = "full") -> np.ndarray:
        output = self.render(lam, camera, quality)
        render_cfg = self.config.render
        return view_image(output, mode, render_cfg.ray_start, render_cfg.ray_end)


__all__ = ["Acceleration", "PortraitSession", "PreviewSettings", "QUALITIES", "RENDERERS", "RENDER_MODES",
           "StageCounters", "image_to_tensor", "native_bf16", "tensor_to_image", "view_image"]
