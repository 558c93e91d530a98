"""The reference volume renderer (EG3D's ImportanceRenderer, written as small pure functions).

The renderer knows nothing of the model: it is given a `FieldFn` that maps world points to a
raw density and colour features. One `render` call generates the rays, evaluates the field at
`num_coarse` stratified depths, composites them to get weights, draws `num_fine` importance
depths from those weights, evaluates the field there too, and composites all merged samples
(docs/architecture.md, "EG3D conventions"). With `perturb=False` every depth is deterministic (inference); the output is
differentiable with respect to whatever the field closes over (the tri-plane, the decoder).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from torch import Tensor

from export3d_core.config import RenderConfig
from export3d_core.render.marcher import MarchResult, composite, interval_weights
from export3d_core.render.marcher import distortion as march_distortion
from export3d_core.render.rays import generate_rays
from export3d_core.render.sampling import gather_merged, importance_depths, merge_depths, stratified_depths

# points (B, N, 3) -> (raw density (B, N, 1), colour features (B, N, F) in ~[0, 1])
FieldFn = Callable[[Tensor], tuple[Tensor, Tensor]]

# Points per field call. A call's temporaries (e.g. 64 hidden channels: 16 MB) then stay below
# glibc's largest mmap threshold (32 MB), so the CPU allocator reuses them instead of mapping and
# faulting in fresh pages on every call: a demo field on 196k points took 64 ms in one call and
# 26 ms in calls of 64k (2 cores); a training pass of batch 4, forward and backward, 273 -> 201 ms.
FIELD_CHUNK = 1 << 16
# Sample points per rendering pass (batch x rays x samples per ray), for the same reason: a pass's
# per-sample tensors (33 features: 26 MB) stay reusable. A demo training step (batch 4, 4096
# rays of 48 samples each in one pass before) took 0.71 s, in passes of 1024 rays 0.62 s.
RENDER_PASS_POINTS = 3 << 16


def rays_per_pass(batch: int, cfg: RenderConfig) -> int:
    """How many rays of each image one rendering pass takes (see RENDER_PASS_POINTS)."""
    return max(1, RENDER_PASS_POINTS // (batch * (cfg.num_coarse + cfg.num_fine)))


def chunked_field(field: FieldFn, points_per_call: int = FIELD_CHUNK) -> FieldFn:
    """`field` evaluated on at most `points_per_call` points (over the whole batch) per call. Every
    point is independent of the others, so the values are the same up to rounding (vectorised
    kernels may round the last few values of a call differently, by an ulp)."""
    def evaluate(points: Tensor) -> tuple[Tensor, Tensor]:
        batch, n_points = points.shape[:2]
        step = max(1, points_per_call // batch)
        if n_points <= step:
            return field(points)
        parts = [field(points[:, s:s + step]) for s in range(0, n_points, step)]
        return torch.cat([raw for raw, _ in parts], dim=1), torch.cat([colour for _, colour in parts], dim=1)

    return evaluate


@dataclass
class VolumeImages:
    """What a volume renderer returns: feature, depth and opacity images of a batch of cameras
    (`Export3D.render` turns them into a `RenderOutput`, adding super-resolution)."""

    features: Tensor  # (B, F, H, W) in [-1, 1]; the first three channels are raw RGB
    depth: Tensor  # (B, 1, H, W) expected distance along the ray
    alpha: Tensor  # (B, 1, H, W) accumulated opacity in [0, 1]
    distortion: Tensor | None = None  # (B,) mean distortion loss over the rays, when asked for


def sample_points(origins: Tensor, directions: Tensor, depths: Tensor) -> Tensor:
    """Points along rays: origins/directions (B,R,3), depths (B,R,S,1) -> (B,R,S,3)."""
    return origins.unsqueeze(-2) + depths * directions.unsqueeze(-2)


def coarse_depths(cfg: RenderConfig, origins: Tensor, *, perturb: bool,
                  generator: torch.Generator | None = None) -> Tensor:
    """The stratified depths every ray of origins (B, R, 3) starts from -> (B, R, num_coarse, 1)."""
    batch, n_rays, _ = origins.shape
    return stratified_depths(
        batch, n_rays, cfg.num_coarse, cfg.ray_start, cfg.ray_end, origins.device,
        generator=generator, perturb=perturb, disparity=cfg.disparity_space, dtype=origins.dtype,
    )


def query_field(field: FieldFn, points: Tensor) -> tuple[Tensor, Tensor]:
    """Evaluate the field on points (B,R,S,3) -> raw density (B,R,S,1), colours (B,R,S,F)."""
    batch, n_rays, n_samples, _ = points.shape
    raw, colours = field(points.reshape(batch, n_rays * n_samples, 3))
    n_points = n_rays * n_samples
    if raw.shape != (batch, n_points, 1) or colours.dim() != 3 or colours.shape[:2] != (batch, n_points):
        raise ValueError(
            f"field must return density (B, N, 1) and colours (B, N, F) for N = {n_points}, "
            f"got {tuple(raw.shape)} and {tuple(colours.shape)}"
        )
    return raw.reshape(batch, n_rays, n_samples, 1), colours.reshape(batch, n_rays, n_samples, -1)


def render_chunks(render_rays: Callable[[Tensor, Tensor], MarchResult], cameras: Tensor, resolution: int,
                  chunk: int | None) -> list[MarchResult]:
    """The rays of cameras (B, 25) at resolution², rendered `chunk` rays (all when None) at a time."""
    origins, directions = generate_rays(cameras, resolution)  # (B, H*W, 3) each
    n_rays = origins.shape[1]
    step = n_rays if chunk is None else max(1, int(chunk))
    return [render_rays(origins[:, s:s + step], directions[:, s:s + step]) for s in range(0, n_rays, step)]


def to_images(rays: list[MarchResult], batch: int, resolution: int) -> VolumeImages:
    """Concatenate ray chunks and fold rays (B, H*W, C) into images (B, C, H, W)."""

    def fold(parts: list[Tensor]) -> Tensor:
        flat = torch.cat(parts, dim=1)  # (B, H*W, C)
        return flat.transpose(1, 2).reshape(batch, flat.shape[-1], resolution, resolution)

    return VolumeImages(
        features=fold([r.features for r in rays]),
        depth=fold([r.depth for r in rays]),
        alpha=fold([r.alpha for r in rays]),
    )


class VolumeRenderer:
    """Coarse + importance volume rendering of a radiance field, EG3D's sampling scheme."""

    def __init__(self, cfg: RenderConfig) -> None:
        if cfg.num_coarse < 2:
            raise ValueError(f"num_coarse must be >= 2, got {cfg.num_coarse}")
        if cfg.num_fine < 0:
            raise ValueError(f"num_fine must be >= 0, got {cfg.num_fine}")
        self.cfg = cfg

    def render(
        self,
        field: FieldFn,
        cameras: Tensor,
        resolution: int,
        *,
        perturb: bool = False,
        chunk: int | None = None,
        generator: torch.Generator | None = None,
        distortion: bool = False,
    ) -> VolumeImages:
        """Render cameras (B, 25) at resolution x resolution; `chunk` bounds the rays per pass.

        `distortion=True` also returns each image's mean distortion loss (`marcher.distortion`),
        a training regulariser that pulls density into thin surfaces.
        """
        parts = render_chunks(lambda origins, directions: self.render_rays(
            field, origins, directions, perturb=perturb, generator=generator), cameras, resolution, chunk)
        result = to_images(parts, cameras.shape[0], resolution)
        if distortion:
            per_ray = torch.cat([march_distortion(p.weights, p.depths, self.cfg.ray_start, self.cfg.ray_end)
                                 for p in parts], dim=1)  # (B, H*W)
            result.distortion = per_ray.mean(dim=1)
        return result

    def render_rays(
        self,
        field: FieldFn,
        origins: Tensor,
        directions: Tensor,
        *,
        perturb: bool = False,
        generator: torch.Generator | None = None,
    ) -> MarchResult:
        """Render a batch of rays, origins/directions (B, R, 3) -> composited rays."""
        cfg = self.cfg
        depths = coarse_depths(cfg, origins, perturb=perturb, generator=generator)  # (B, R, Sc, 1)
        raw, colours = query_field(field, sample_points(origins, directions, depths))
        if cfg.num_fine > 0:
            with torch.no_grad():  # the fine depths are a sampling decision, not differentiated (EG3D)
                weights = interval_weights(raw, depths, cfg.density_shift)  # (B, R, Sc-1, 1)
            fine_depths = importance_depths(
                depths, weights, cfg.num_fine, perturb=perturb, generator=generator
            )  # (B, R, Sf, 1)
            fine_raw, fine_colours = query_field(field, sample_points(origins, directions, fine_depths))
            depths, order = merge_depths(depths, fine_depths)  # (B, R, Sc+Sf, 1)
            raw = gather_merged(raw, fine_raw, order)
            colours = gather_merged(colours, fine_colours, order)
        return composite(colours, raw, depths, cfg.density_shift)
