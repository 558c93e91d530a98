"""A portrait kept resident on the device, with the three caches of DESIGN.md §1.

`PortraitSession` is what the editor and the headless commands render through: a new portrait
re-encodes, a λ change re-runs only the expression-dependent part of G (and rebuilds the
occupancy grid of the accelerated renderer, cached with the planes), a camera change only
decoder + volume rendering + SR. Counters record each stage so tests can prove nothing is redone.

Both qualities render with `AcceleratedRenderer` by default (`renderer="reference"` switches to
the reference renderer, e.g. for comparisons). The SR convolutions run channels-last, in bf16
where the device computes bf16 natively (AMX / AVX512-BF16 CPUs, CUDA; `export3d bench` reports
the agreement with fp32). On CUDA the planes stay resident, TF32 is on, and every frame is the
reference renderer's replayed as a CUDA graph (`Acceleration.cuda_graphs`: a GPU frame is bound
by kernel launches, which a graph removes); `Acceleration` also offers bf16 autocast of G and
torch.compile of the decoder.
"""
from __future__ import annotations

import contextlib
import dataclasses
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from export3d_core.camera import OrbitCamera
from export3d_core.cuda_graph import GraphedCall
from export3d_core.errors import Export3DError
from export3d_core.lambda_units import check_lambda
from export3d_core.model import Export3D, RenderOutput
from export3d_core.render.accelerated import AcceleratedRenderer, OccupancyGrid
from export3d_core.render.renderer import FieldFn, VolumeRenderer, chunked_field
from export3d_core.render.triplane import sample_triplane

RENDER_MODES = ("final", "raw", "depth", "opacity")
QUALITIES = ("full", "preview")
RENDERERS = ("accelerated", "reference")


@dataclass(frozen=True)
class PreviewSettings:
    """The fast path used while the artist drags: fewer rays and samples, no SR."""

    ray_fraction: int = 2  # neural_size // ray_fraction rays per side
    sample_fraction: int = 2  # num_coarse and num_fine divided by this


@dataclass(frozen=True)
class Acceleration:
    """How the accelerated renderer trades exactness for speed (measured in `export3d bench`)."""

    grid_resolution: int = 48  # occupancy cells per side; built once per tri-plane (λ change)
    grid_alpha: float = 1e-2  # a cell is empty when its side of path stays below this opacity
    # Samples per ray placed from the grid's densities instead of a coarse pass, as a fraction of
    # the reference's num_coarse + num_fine (0: the reference's samples, skipping only), and
    # evenly spaced samples added to them, as a fraction too; rays whose grid weights spread over
    # more than `soft_spread` coarse intervals take the reference's samples instead (None: none
    # do). Chosen with `export3d bench --sweep` (every demo portrait, 3 views, 2 λ) as the fastest
    # setting that keeps every frame above 40 dB with a margin; see the README's performance notes.
    # (The fifth demo release needs 3: at 4 its default bench frame agreed at 38.3 dB. The sixth
    # needed 1/6 evenly spaced samples: with 1/8 its bench frame agreed at 38.1 dB. The seventh
    # is back at 1/8: sweep minimum 43.9 dB; at spread 4 its bench frame agrees at only 42.2 dB.)
    proposal_fraction: float = 1 / 4
    proposal_uniform_fraction: float = 1 / 8
    soft_spread: int | None = 3
    fine_divisor: int = 4  # without proposals: live importance samples = num_fine // fine_divisor
    early_stop: float = 1e-3  # transmittance at which a ray stops being evaluated
    fine_skip_alpha: float = 1e-2  # without proposals: rays with less coarse opacity skip the importance pass
    sr_bf16: bool | None = None  # SR convolutions in bf16; None: where the device computes bf16 natively
    autocast_bf16: bool = False  # bf16 autocast of G (encode, tri-plane): check agreement with bench
    compile_decoder: bool = False  # torch.compile the decoder MLP (worth it on CUDA)
    # On CUDA: render every frame with the reference renderer replayed as a CUDA graph (one graph
    # per quality, captured on first use; a λ change copies the new planes in). The GPU is bound
    # by kernel launches, which a graph removes; the image is the reference's own.
    cuda_graphs: bool = True


def native_bf16(device: torch.device) -> bool:
    """Whether `device` computes bf16 convolutions natively (so bf16 is a speed-up, not an emulation)."""
    if device.type == "cuda":  # Ampere (8.x) and later; is_bf16_supported() also says yes where it is emulated
        return torch.cuda.get_device_capability(device)[0] >= 8
    if device.type != "cpu":
        return False
    probes = ("_is_amx_tile_supported", "_is_avx512_bf16_supported")  # private, so looked up defensively
    return any(bool(getattr(torch.cpu, name, lambda: False)()) for name in probes)


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


def image_to_tensor(image: np.ndarray, size: int) -> Tensor:
    """uint8 (H, W, 3) RGB -> (1, 3, size, size) float in [-1, 1] (area resampling)."""
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"expected a uint8 (H, W, 3) image, got {image.dtype} {image.shape}")
    tensor = torch.from_numpy(np.array(image, copy=True)).permute(2, 0, 1)[None].float() / 127.5 - 1.0  # copy: inputs may be read-only
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
        step = preview.sample_fraction
        preview_cfg = dataclasses.replace(
            render_cfg, num_coarse=max(4, render_cfg.num_coarse // step), num_fine=max(4, render_cfg.num_fine // step))
        self.accelerated_renderer = self._accelerated(render_cfg)
        self._preview_renderers = {"reference": VolumeRenderer(preview_cfg), "accelerated": self._accelerated(preview_cfg)}
        self._decoder = self.model.decoder
        # channels-last: 1.3-1.7x faster SR convolutions on CPU (oneDNN) and CUDA alike
        self.model.superres.to(memory_format=torch.channels_last)
        self.sr_bf16 = native_bf16(self.device) if acceleration.sr_bf16 is None else acceleration.sr_bf16
        self.cuda_graphs = self.device.type == "cuda" and acceleration.cuda_graphs
        self._graphs: dict[str, GraphedCall] = {}
        if self.device.type == "cuda":
            self._prepare_cuda()

    def _accelerated(self, cfg) -> AcceleratedRenderer:
        acc = self.acceleration
        total = cfg.num_coarse + cfg.num_fine
        proposal = max(2, round(acc.proposal_fraction * total)) if acc.proposal_fraction > 0 else None
        uniform = round(acc.proposal_uniform_fraction * total)
        return AcceleratedRenderer(cfg, early_stop=acc.early_stop, fine_skip_alpha=acc.fine_skip_alpha,
                                   fine_samples=max(1, cfg.num_fine // max(1, acc.fine_divisor)),
                                   proposal_samples=proposal, proposal_uniform=uniform if uniform >= 2 else 0,
                                   soft_spread=acc.soft_spread)

    def _prepare_cuda(self) -> None:
        """TF32 matmuls/convs, optionally a compiled decoder (CUDA only)."""
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        if self.acceleration.compile_decoder and hasattr(torch, "compile"):
            self._decoder = torch.compile(self.model.decoder, dynamic=True)

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
            self._density_field(planes), acc.grid_resolution, batch=planes.shape[0],
            alpha_threshold=acc.grid_alpha, device=self.device)

    def _density_field(self, planes: Tensor) -> FieldFn:
        """Density only (the grid needs no colour): half the decoder's work per grid point."""
        box_warp, decoder = self.config.render.box_warp, self.model.decoder

        def evaluate(points: Tensor) -> tuple[Tensor, Tensor]:
            raw = decoder.density(sample_triplane(planes, points, box_warp))  # (B, N, 1)
            return raw, raw

        return chunked_field(evaluate)

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
        kwargs = {}
        if self.renderer == "accelerated":
            kwargs["grid"] = self.grid(lam)
        if quality == "full":
            renderer = self.accelerated_renderer if self.renderer == "accelerated" else self.model.renderer
            return self._render(planes, cameras, None, renderer, kwargs)
        return self._render(planes, cameras, self._preview_size(), self._preview_renderers[self.renderer], kwargs)

    def _graphed(self, quality: str, planes: Tensor, cameras: Tensor) -> RenderOutput:
        """The reference renderer's frame of `quality`, replayed from its CUDA graph."""
        graph = self._graphs.get(quality)
        if graph is None or not graph.accepts(planes, cameras):
            if quality == "full":
                size, renderer = None, self.model.renderer
            else:
                size, renderer = self._preview_size(), self._preview_renderers["reference"]

            def frame(planes: Tensor, cameras: Tensor) -> tuple[Tensor, ...]:
                out = self._render(planes, cameras, size, renderer, {})
                return out.image, out.image_raw, out.depth, out.alpha, out.features

            graph = self._graphs[quality] = GraphedCall(frame, planes, cameras)
            self._cache.counters.graph_captures += 1
        return RenderOutput(*graph(planes, cameras))

    def _render(self, planes: Tensor, cameras: Tensor, size: int | None, renderer, kwargs: dict) -> RenderOutput:
        """model.render with the session's decoder (compiled or not); mirrors Export3D.render."""
        model = self.model
        size = size or self.config.neural_size
        result = renderer.render(self.field(planes), cameras.to(planes.dtype), size, **kwargs)
        image_raw = result.features[:, :3]  # (B, 3, n, n)
        if size == self.config.neural_size:
            image = self.super_resolve(image_raw, result.features)
        else:  # the preview: cheap bilinear upsampling instead of SR
            image = F.interpolate(image_raw, size=(self.config.output_size,) * 2, mode="bilinear", align_corners=False)
        return RenderOutput(image, image_raw, result.depth, result.alpha, result.features)

    def super_resolve(self, image_raw: Tensor, features: Tensor) -> Tensor:
        """The model's SR, channels-last and (where `sr_bf16`) in bf16; the image comes back in fp32."""
        features = features.contiguous(memory_format=torch.channels_last)
        if not self.sr_bf16:
            return self.model.superres(image_raw, features)
        with torch.autocast(self.device.type, dtype=torch.bfloat16):
            return self.model.superres(image_raw, features).float()

    def _preview_size(self) -> int:
        return max(8, self.config.neural_size // self.preview.ray_fraction)

    def render_image(self, lam, camera: OrbitCamera, mode: str = "final", quality: str = "full") -> np.ndarray:
        output = self.render(lam, camera, quality)
        render_cfg = self.config.render
        return view_image(output, mode, render_cfg.ray_start, render_cfg.ray_end)
