"""Per-portrait fit: fine-tune a copy of the model on one aligned photo at its estimated camera.

In the spirit of pivotal tuning for 3D-aware GANs (PTI, Roich et al. 2022): the photo's own λ and
camera are the pivot, and a few tensors are tuned until the render at that pivot matches the
photo. What is tuned was chosen by measuring on the demo model (tools/fit_eval.py, `eval-real --fit`):

- a per-portrait tri-plane offset added to G's planes (as the EMA tri-plane of Eq. (2) is): G's
  expression response (the planes' change with λ) stays exactly the unfitted model's, and G need
  not run in the loop (its output is computed once per λ), so a step costs one render. On the astronaut, 60 steps
  reach 27.4 dB at her camera; tuning G itself instead (encoder and tri-plane head at 1e-3 or
  3e-3, same steps) reached only 22.0 / 21.3 dB with identity distances of 0.64-0.74.
- the decoder and the super-resolution, at small rates: colours the synthetic heads never had.

The loss is MSE on the final and the raw image. The rays are jittered (`perturb`) so the offset
cannot learn the fixed sample positions of the coarse fit renderer (without jitter the fit reached
27.6 dB with its own 12+12 samples but 22.7 dB with the model's 24+24). A regulariser keeps the
fitted depth and opacity at random side views close to the unfitted model's, so the head keeps
its relief instead of flattening into a card painted with the photo.

The offset is painted at the photo's own λ (the pivot). Added as it is, it would hold the photo's
eyes and mouth still while λ moves the model's own features under them (0.6-1.0 % of the
inter-ocular distance at λ ± 10 on the astronaut). So after the fit the offset becomes an
`ExpressionFlow` (nn/expression_flow.py): it is warped along the flow G's own planes undergo when λ
leaves the pivot, estimated from G's planes at the pivot and at pivot ± 10 e_k. At the pivot the
warp is the identity, so the optimised render is unchanged.

Everything here is Qt-free: the editor runs `fit_portrait` in a worker thread with `progress` and
`cancel`, then `save_fit`; renders use the returned model through the ordinary `PortraitSession`.
"""
from __future__ import annotations

import copy
import dataclasses
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from export3d_core.camera import OrbitCamera
from export3d_core.errors import Export3DError
from export3d_core.fit_upscale import UpscaleSettings, train_upscaler
from export3d_core.model import Export3D
from export3d_core.nn.expression_flow import ExpressionFlow, FlowEstimate, estimate_flow_fields, lam_readout
from export3d_core.nn.upscaler import Upscaler
from export3d_core.render.renderer import VolumeRenderer
from export3d_core.session import image_to_tensor

FLOW_PREFIX = "generator.expression_flow."  # the state-dict names of a fitted portrait's offset and flow
UPSCALER_PREFIX = "upscaler."  # the state-dict names of a fitted portrait's upscaler


@dataclass(frozen=True)
class FitSettings:
    """How a portrait is fitted. Defaults measured on the demo model (docs/fitting.md)."""

    steps: int = 60  # Adam steps; ~0.4 s each for the demo model on one CPU core
    lr_planes: float = 0.5  # Adam rate of the tri-plane offset (0.05: 20.9 dB after 60 steps, 0.5: 27.4 dB)
    offset_resolution: int = 0  # texels per side of the offset, bilinearly upsampled to the planes (0: theirs)
    lr_decoder: float = 1e-3  # Adam rate of the decoder MLP (0: leave it as trained)
    lr_superres: float = 1e-3  # Adam rate of the super-resolution (0: leave it as trained)
    lr_appearance: float = 0.0  # Adam rate of G's expression-independent part (encoder, ViT, skip; 0: frozen)
    lr_triplane_head: float = 0.0  # Adam rate of G's expression-dependent part (EAdaLN blocks to the planes; 0: frozen)
    raw_weight: float = 1.0  # weight of the raw (pre-SR) image's MSE against the photo at the neural size
    samples: int = 12  # coarse and fine samples per ray while fitting (the model renders with its own)
    perturb: bool = True  # jitter the samples, so the fit cannot exploit their fixed positions
    side_weight: float = 1.0  # weight of the side-view depth and opacity regulariser (0: off)
    offset_weight: float = 0.0  # weight of the offset's mean square: paint only what G cannot (0: off)
    side_views: int = 8  # fixed random side views the regulariser cycles through, one per step
    side_yaw_deg: float = 40.0  # side views' yaw within ± this
    side_pitch_deg: float = 15.0  # side views' pitch within ± this
    side_size: int = 32  # rays per side of the side-view renders (no SR: only depth and opacity count)
    follow_expression: bool = True  # warp the offset along G's flow under λ (False: it holds still)
    flow: FlowEstimate = FlowEstimate()  # how that flow is estimated
    # The per-photo upscaler learnt after the flow (fit_upscale.py), so full-quality renders are
    # `factor` times the output size; it needs the photo crop at that size or larger (None: none).
    upscale: UpscaleSettings | None = UpscaleSettings()
    storage_dtype: str = "float16"  # how the fit file stores the tensors; the fitted model is rounded alike
    seed: int = 0  # side views and ray jitter, so a fit is reproducible
    preview_every: int = 0  # every this many steps the progress report carries the tensors so far (0: never)

    def __post_init__(self) -> None:
        if self.steps < 1:
            raise Export3DError(f"a fit needs at least 1 step, got {self.steps}")
        if self.storage_dtype not in ("float16", "float32"):
            raise Export3DError(f"storage_dtype must be float16 or float32, got {self.storage_dtype!r}")
        if self.samples < 2 or self.side_views < 1 or self.side_size < 4:
            raise Export3DError("samples >= 2, side_views >= 1 and side_size >= 4 are needed")


@dataclass
class FitProgress:
    """One step's report to the caller's progress callback."""

    step: int  # steps done, 1..total (the fit's steps, then the upscaler's)
    total: int
    loss: float  # the reconstruction loss of this step (MSE of final + raw; the upscaler's own loss)
    eta_s: float  # estimated seconds left
    # Every `preview_every` steps: the changed tensors so far (name -> detached copy), for a preview
    # (the offset does not follow λ yet); `apply_tensors(model_copy, preview)` shows them in any
    # copy of the unfitted model.
    preview: dict[str, Tensor] | None = None
    stage: str = "fit"  # "fit" (the tri-plane offset and the tuned tensors) or "upscale"


@dataclass
class FitResult:
    """A fitted copy of the model and what `save_fit` writes."""

    model: Export3D  # the fitted copy, eval mode, no gradients; the input model is untouched
    changed: dict[str, Tensor]  # name -> the tensors the fit changed, as stored (rounded to storage_dtype)
    losses: list[float]  # reconstruction loss per step
    seconds: float  # wall time of the fit (the expression flow and the upscaler's training included)
    lam: list[float]  # the pivot λ the fit used
    camera: list[float]  # the pivot camera (25,)
    settings: FitSettings = field(default_factory=FitSettings)
    upscaled: bool = False  # whether the model carries an upscaler (full-quality renders at factor × output size)
    upscale_note: str = ""  # one line saying what became of the upscaler (`upscale_plan`)
    upscale_losses: list[float] = field(default_factory=list)  # the upscaler's training loss per step


class FitCancelled(Export3DError):
    """The caller's cancel flag was set; nothing was written and the input model is unchanged."""


def fit_portrait(model: Export3D, aligned: np.ndarray, camera: np.ndarray | Tensor, lam: list[float],
                 settings: FitSettings = FitSettings(),
                 progress: Callable[[FitProgress], None] | None = None,
                 cancel: Callable[[], bool] | None = None, native_side: float | None = None) -> FitResult:
    """Fit a copy of `model` to the aligned uint8 photo seen from `camera` (25,) with expression `lam`.

    `progress` is called after every step; `cancel()` returning True stops the fit (`FitCancelled`).
    With `settings.upscale`, a crop of at least `factor` times the output size also gets an upscaler
    (`upscale_plan`); `native_side` says how many pixels of the original photo span the crop (an
    enlarged crop of a small face holds too little detail to learn one from).
    """
    device = next(model.parameters()).device
    cfg = model.config
    generator = torch.Generator().manual_seed(settings.seed)
    jitter = torch.Generator(device=device).manual_seed(settings.seed + 1)  # the rays' jitter
    cameras, source, target, target_raw = _photo_tensors(model, aligned, camera)
    pivot = [float(v) for v in lam]
    lam_t = torch.tensor([pivot], dtype=torch.float32, device=device)

    fitted = copy.deepcopy(model).eval()
    for parameter in fitted.parameters():
        parameter.requires_grad_(False)
    offset = _Offset(fitted.generator.triplane_ema, settings.offset_resolution)
    optimizer = torch.optim.Adam(_param_groups(fitted, offset.delta, settings), betas=(0.9, 0.99))
    planes_at = _PlaneSource(fitted, source, offset, settings.lr_appearance > 0 or settings.lr_triplane_head > 0)
    renderer = VolumeRenderer(dataclasses.replace(cfg.render, num_coarse=settings.samples, num_fine=settings.samples))
    with torch.no_grad():
        side = _side_targets(model, planes_at(lam_t), renderer, settings, generator, device)

    upscaling, note = upscale_plan(cfg.output_size, aligned, settings.upscale, native_side)
    total = settings.steps + (settings.upscale.steps if upscaling else 0)
    later_s = settings.upscale.time_budget_s if upscaling else 0.0  # the upscaler stops at its budget at the latest
    losses: list[float] = []
    start = time.perf_counter()
    for step in range(settings.steps):
        if cancel is not None and cancel():
            raise FitCancelled("the fit was cancelled; nothing was written")
        planes_at.begin_step()
        planes = planes_at(lam_t)
        out = fitted.render(planes, cameras, renderer=renderer, perturb=settings.perturb, generator=jitter)
        reconstruction = F.mse_loss(out.image, target) + settings.raw_weight * F.mse_loss(out.image_raw, target_raw)
        loss = reconstruction + settings.side_weight * _side_loss(fitted, planes, renderer, side[step % len(side)], settings)
        if settings.offset_weight > 0:
            loss = loss + settings.offset_weight * offset.delta.pow(2).mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        losses.append(float(reconstruction.detach()))
        if progress is not None:
            elapsed = time.perf_counter() - start
            every = settings.preview_every
            preview = _current_tensors(fitted, pivot, offset, settings) if every and (step + 1) % every == 0 else None
            progress(FitProgress(step + 1, total, losses[-1],
                                 elapsed / (step + 1) * (settings.steps - step - 1) + later_s, preview))
    flow = _expression_flow(fitted, source, pivot, offset, settings, cancel)
    fitted.generator.expression_flow = flow.to(device)
    upscale_losses = _attach_upscaler(fitted, aligned, cameras, pivot, settings, total, progress, cancel) if upscaling else []
    seconds = time.perf_counter() - start
    changed = _round_changed(fitted, settings)
    return FitResult(fitted, changed, losses, seconds, pivot, [float(v) for v in cameras[0].cpu()], settings,
                     upscaled=upscaling, upscale_note=note, upscale_losses=upscale_losses)


def _photo_tensors(model: Export3D, aligned: np.ndarray, camera) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """The pivot camera (1, 25) and the photo at the model's input, output and neural sizes, on its device."""
    device, cfg = next(model.parameters()).device, model.config
    cameras = torch.as_tensor(np.asarray(camera, dtype=np.float32)).reshape(1, -1).to(device)
    if cameras.shape[1] != cfg.camera_dim:
        raise Export3DError(f"the photo's camera needs {cfg.camera_dim} numbers, got {cameras.shape[1]}")
    return cameras, *(image_to_tensor(aligned, size).to(device)
                      for size in (cfg.input_size, cfg.output_size, cfg.neural_size))


def fit_crop_size(config, settings: FitSettings) -> int:
    """The side to crop a photo at for a fit: the model's input size, or larger where the upscaler
    needs it (factor × the output size), so a fit of a photo that holds the detail upscales."""
    if settings.upscale is None:
        return config.input_size
    return max(config.input_size, settings.upscale.factor * config.output_size)


def with_upscale_steps(settings: FitSettings, steps: int | None) -> FitSettings:
    """`settings` with the upscaler's steps replaced (None: as they are; 0: no upscaler)."""
    if steps is None:
        return settings
    if steps < 0:
        raise Export3DError(f"the upscaler's steps must be 0 (none) or more, got {steps}")
    if steps == 0:
        return dataclasses.replace(settings, upscale=None)
    return dataclasses.replace(settings, upscale=dataclasses.replace(settings.upscale or UpscaleSettings(), steps=steps))


def upscale_plan(output_size: int, aligned: np.ndarray, upscale: UpscaleSettings | None,
                 native_side: float | None = None) -> tuple[bool, str]:
    """Whether a fit of `aligned` learns an upscaler, and the one line that says so (or why not).

    `native_side`: how many pixels of the original photo span the crop (None: the crop's own side)."""
    if upscale is None:
        return False, f"not upscaled: the upscaler is off in the fit settings; renders stay {output_size}²"
    side, big = min(np.asarray(aligned).shape[:2]), upscale.factor * output_size
    native = side if native_side is None else min(side, native_side)
    if side < big:
        return False, (f"not upscaled: the photo crop is {side} px and a {upscale.factor}× upscaler learns from "
                       f"{big} px or more; renders stay {output_size}²")
    if native < upscale.min_detail * output_size:
        return False, (f"not upscaled: the photo holds the face at {native:.0f} px, and an upscaler needs "
                       f"{upscale.min_detail * output_size:.0f} px or more; renders stay {output_size}²")
    detail = "" if native >= big else f"; the photo holds the face at {native:.0f} px, finer detail is interpolated"
    return True, f"upscaled {upscale.factor}× ({output_size}² -> {big}²){detail}"


def _attach_upscaler(fitted: Export3D, aligned: np.ndarray, cameras: Tensor, lam: list[float], settings: FitSettings,
                     total: int, progress: Callable[[FitProgress], None] | None,
                     cancel: Callable[[], bool] | None) -> list[float]:
    """Train the per-photo upscaler on the fitted model at the pivot and attach it; its losses."""
    def check() -> None:
        if cancel is not None and cancel():
            raise FitCancelled("the fit was cancelled; nothing was written")

    def step(done: int, loss: float, eta_s: float) -> None:
        if progress is not None:
            progress(FitProgress(settings.steps + done, total, loss, eta_s, stage="upscale"))

    result = train_upscaler(fitted, aligned, aligned, cameras[0].cpu().numpy(), lam, settings.upscale, step, check)
    fitted.upscaler = result.upscaler.to(cameras.device)
    if progress is not None and len(result.losses) < settings.upscale.steps:  # stopped by its time budget
        progress(FitProgress(total, total, result.losses[-1], 0.0, stage="upscale"))
    return result.losses


def _param_groups(fitted: Export3D, offset: Tensor, settings: FitSettings) -> list[dict]:
    groups = [{"params": [offset], "lr": settings.lr_planes}]
    for module, lr in ((fitted.decoder, settings.lr_decoder), (fitted.superres, settings.lr_superres),
                       *((part, settings.lr_appearance) for part in _generator_modules(fitted, APPEARANCE_PARTS)),
                       *((part, settings.lr_triplane_head) for part in _generator_modules(fitted, HEAD_PARTS))):
        if lr > 0:
            params = list(module.parameters())
            for parameter in params:
                parameter.requires_grad_(True)
            groups.append({"params": params, "lr": lr})
    return groups


class _Offset:
    """The tuned tri-plane offset, learnt at `resolution` texels per side (0: the planes' own) and
    bilinearly upsampled, which keeps it smooth when coarser."""

    def __init__(self, like: Tensor, resolution: int) -> None:
        self.size = like.shape[-2:]
        side = resolution or like.shape[-1]
        self.delta = torch.zeros(*like.shape[:2], side, side, device=like.device, requires_grad=True)

    def __call__(self) -> Tensor:
        delta = self.delta
        if delta.shape[-2:] != self.size:
            delta = F.interpolate(delta, size=self.size, mode="bilinear", align_corners=False)
        return delta


APPEARANCE_PARTS = ("conv_encoder", "patch_merge", "patch_norm", "vit_blocks", "skip_encoder")  # what `encode` runs
HEAD_PARTS = ("eadaln_blocks", "out_norm", "to_planes", "skip_expression", "fuse")  # what `triplane` runs


def _generator_modules(model: Export3D, names: tuple[str, ...]) -> list[torch.nn.Module]:
    return [getattr(model.generator, name) for name in names if getattr(model.generator, name) is not None]


class _PlaneSource:
    """The tri-plane being fitted at any λ: G's planes plus the tuned offset (held still: the flow
    that makes it follow λ is estimated after the fit). With G's appearance frozen, G's planes
    are computed once per λ; tuned, once per step."""

    def __init__(self, fitted: Export3D, source: Tensor, offset: "_Offset", tune_appearance: bool) -> None:
        self.fitted, self.source, self.offset, self.tuned = fitted, source, offset, tune_appearance
        self.appearance = None
        self.cache: dict[tuple[float, ...], Tensor] = {}

    def begin_step(self) -> None:
        if self.tuned:
            self.appearance = self.fitted.encode(self.source)

    def __call__(self, lam: Tensor) -> Tensor:
        fitted = self.fitted
        if self.tuned:
            appearance = self.appearance if self.appearance is not None else fitted.encode(self.source)
            return fitted.triplane(appearance, fitted.expression(lam=lam)) + self.offset()
        key = tuple(lam.flatten().tolist())
        if key not in self.cache:
            with torch.no_grad():
                self.cache[key] = fitted.triplane(fitted.encode(self.source), fitted.expression(lam=lam))
        return self.cache[key] + self.offset()


def _expression_flow(fitted: Export3D, source: Tensor, lam: list[float], offset: "_Offset", settings: FitSettings,
                     cancel: Callable[[], bool] | None) -> ExpressionFlow:
    """The fitted offset as an `ExpressionFlow`: warped along G's own flow under λ (or held still)."""
    flow = _held_flow(fitted, lam, offset)
    if not settings.follow_expression:
        return flow

    def check() -> None:
        if cancel is not None and cancel():
            raise FitCancelled("the fit was cancelled; nothing was written")

    with torch.no_grad():
        appearance = fitted.encode(source)

    def planes_at(row: list[float]) -> Tensor:
        lam_row = torch.tensor([row], dtype=torch.float32, device=source.device)
        return fitted.triplane(appearance, fitted.expression(lam=lam_row))[0]

    flow.fields.copy_(estimate_flow_fields(planes_at, lam, settings.flow, check))
    return flow


def _held_flow(fitted: Export3D, lam: list[float], offset: "_Offset") -> ExpressionFlow:
    """The offset as an `ExpressionFlow` whose fields are still zero: it holds still under λ."""
    flow = _empty_flow(fitted)
    cfg = fitted.config
    with torch.no_grad():
        flow.offset.copy_(offset().detach())
        flow.pivot.copy_(torch.tensor(lam, dtype=torch.float32))
        flow.to_lam.copy_(lam_readout(fitted.basis(), cfg.lambda_scale, cfg.expression_gain))
    return flow


def _empty_flow(model: Export3D) -> ExpressionFlow:
    """An `ExpressionFlow` of this model's shapes that changes nothing (zero offset and fields)."""
    cfg = model.config
    device = next(model.parameters()).device
    return ExpressionFlow(cfg.n_basis, cfg.expr_dim, cfg.plane_channels, cfg.plane_res).to(device)


FLOW_EXACT = ("pivot", "to_lam")  # kept in float32 whatever storage_dtype: at the pivot the warp must be the identity


def changed_names(model: Export3D, settings: FitSettings) -> list[str]:
    """The state-dict names a fit with `settings` changes (and its file stores); the upscaler's
    when `model` (a fitted copy) carries one."""
    names = [FLOW_PREFIX + name for name, _ in _empty_flow(model).named_buffers()]
    if model.upscaler is not None:
        names += [UPSCALER_PREFIX + name for name in model.upscaler.state_dict()]
    state = model.state_dict()
    for prefix, lr in (("decoder.", settings.lr_decoder), ("superres.", settings.lr_superres),
                       *((f"generator.{p}.", settings.lr_appearance) for p in APPEARANCE_PARTS),
                       *((f"generator.{p}.", settings.lr_triplane_head) for p in HEAD_PARTS)):
        if lr > 0:
            names += [name for name in state if name.startswith(prefix)]
    return names


def fit_shapes(model: Export3D, tensors: dict[str, Tensor] | None = None) -> dict[str, torch.Size]:
    """Every name a fit file may hold for `model`, with its shape (the model's own and the flow's),
    and the upscaler's when `tensors` (a fit file's) hold one; an upscaler this model cannot run
    is an Export3DError."""
    shapes = {name: tensor.shape for name, tensor in model.state_dict().items()
              if not name.startswith(UPSCALER_PREFIX)}
    shapes.update({FLOW_PREFIX + name: tensor.shape for name, tensor in _empty_flow(model).named_buffers()})
    if tensors is not None and any(name.startswith(UPSCALER_PREFIX) for name in tensors):
        shapes.update({UPSCALER_PREFIX + name: tensor.shape
                       for name, tensor in _upscaler_for(model, tensors).state_dict().items()})
    return shapes


def _upscaler_for(model: Export3D, tensors: dict[str, Tensor]) -> Upscaler:
    """An upscaler of the shape `tensors` (state-dict names) describe, on the model's device."""
    state = {name[len(UPSCALER_PREFIX):]: t for name, t in tensors.items() if name.startswith(UPSCALER_PREFIX)}
    try:
        upscaler = Upscaler.from_state(state, model.superres.blocks[-1].conv1.out_channels)
    except (ValueError, KeyError):
        raise Export3DError("the fit's upscaler does not match this model's architecture") from None
    return upscaler.to(next(model.parameters()).device).eval().requires_grad_(False)


def _current_tensors(fitted: Export3D, lam: list[float], offset: "_Offset", settings: FitSettings) -> dict[str, Tensor]:
    """The changed tensors as they stand mid-fit: the offset so far, held still (no flow yet)."""
    state = fitted.state_dict()
    tensors = {name: state[name].detach().clone() for name in changed_names(fitted, settings)
               if not name.startswith(FLOW_PREFIX)}
    flow = _held_flow(fitted, lam, offset)
    tensors.update({FLOW_PREFIX + name: tensor for name, tensor in flow.named_buffers()})
    return tensors


def apply_tensors(model: Export3D, tensors: dict[str, Tensor]) -> Export3D:
    """Copy `tensors` (state-dict names) into `model` in place, giving it an expression flow and an
    upscaler if they hold them; returns it."""
    if any(name.startswith(FLOW_PREFIX) for name in tensors) and model.generator.expression_flow is None:
        model.generator.expression_flow = _empty_flow(model)
    if any(name.startswith(UPSCALER_PREFIX) for name in tensors) and model.upscaler is None:
        model.upscaler = _upscaler_for(model, tensors)
    state = model.state_dict()
    with torch.no_grad():
        for name, tensor in tensors.items():
            state[name].copy_(tensor.to(state[name].dtype))
    return model


def _round_changed(fitted: Export3D, settings: FitSettings) -> dict[str, Tensor]:
    """Round the changed tensors to the storage dtype, in the fitted model too, so that the model
    returned here and the one rebuilt from the file render bit-identically."""
    dtype = getattr(torch, settings.storage_dtype)
    state = fitted.state_dict()
    changed = {}
    with torch.no_grad():
        for name in changed_names(fitted, settings):
            exact = name.startswith(FLOW_PREFIX) and name[len(FLOW_PREFIX):] in FLOW_EXACT
            stored = state[name].detach().to("cpu", torch.float32 if exact else dtype).contiguous()
            state[name].copy_(stored.to(state[name].dtype))
            changed[name] = stored
    for parameter in fitted.parameters():
        parameter.requires_grad_(False)
    return changed


@dataclass
class _SideTarget:
    cameras: Tensor  # (1, 25)
    depth: Tensor  # (1, 1, n, n) of the unfitted model
    alpha: Tensor  # (1, 1, n, n) of the unfitted model


@torch.no_grad()
def _side_targets(model: Export3D, planes: Tensor, renderer: VolumeRenderer, settings: FitSettings,
                  generator: torch.Generator, device: torch.device) -> list[_SideTarget]:
    """The unfitted model's depth and opacity at `side_views` random views around the pivot."""
    if settings.side_weight <= 0:
        return [None]  # type: ignore[list-item]
    targets = []
    for _ in range(settings.side_views):
        yaw, pitch = (torch.rand(2, generator=generator) * 2 - 1).tolist()
        camera = OrbitCamera(yaw=math.radians(yaw * settings.side_yaw_deg),
                             pitch=math.radians(pitch * settings.side_pitch_deg))
        cameras = camera.params(device=device)[None]
        out = model.render(planes, cameras, neural_size=settings.side_size, renderer=renderer, super_resolve=False)
        targets.append(_SideTarget(cameras, out.depth, out.alpha))
    return targets


def _side_loss(fitted: Export3D, planes: Tensor, renderer: VolumeRenderer, target: _SideTarget | None,
               settings: FitSettings) -> Tensor:
    """L1 of depth (where the unfitted head is opaque) and of opacity against the unfitted model."""
    if target is None:
        return planes.new_zeros(())
    out = fitted.render(planes, target.cameras, neural_size=settings.side_size, renderer=renderer,
                        super_resolve=False)
    return ((out.depth - target.depth).abs() * target.alpha).mean() + (out.alpha - target.alpha).abs().mean()
