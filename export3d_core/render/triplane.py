"""Tri-plane lookup: project 3D points onto three axis-aligned feature planes and average.

Planes are (B, 3, C, R, R) in EG3D's order: plane 0 is indexed by (x, y), plane 1 by (x, z),
plane 2 by (z, y); the first coordinate runs along the plane's width (last axis), the second
along its height. (EG3D's released `project_onto_planes` actually sends plane 2 to (z, x)
through a transposed inverse; we use the intended (z, y) so that every axis pair is seen.)
Points are scaled by 2 / box_warp so the planes cover [-box_warp/2, box_warp/2]^3; lookups
are bilinear, zero outside (padding "zeros"), align_corners=False, and the mean over the three
planes is returned (docs/architecture.md, "EG3D conventions").
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

# (first, second) world axis of each plane: first -> grid_sample x (width), second -> y (height).
PLANE_AXES: tuple[tuple[int, int], ...] = ((0, 1), (0, 2), (2, 1))


def project_onto_planes(points: Tensor, box_warp: float) -> Tensor:
    """Normalized 2D plane coordinates of points (B, N, 3) -> (B, 3, N, 2) in [-1, 1] inside the box."""
    scaled = points * (2.0 / box_warp)  # (B, N, 3)
    # Stacked slices, not `scaled[..., [a, b]]`: list indexing gathers (about 10x slower on the CPU)
    # and copies its index to the device on every call.
    pairs = [torch.stack([scaled[..., first], scaled[..., second]], dim=-1) for first, second in PLANE_AXES]
    return torch.stack(pairs, dim=1)  # (B, 3, N, 2)


def sample_triplane(planes: Tensor, points: Tensor, box_warp: float) -> Tensor:
    """Mean of the bilinear lookups in the three planes: planes (B,3,C,R,R), points (B,N,3) -> (B,N,C)."""
    if planes.dim() != 5 or planes.shape[1] != len(PLANE_AXES):
        raise ValueError(f"planes must be (B, 3, C, R, R), got {tuple(planes.shape)}")
    if points.dim() != 3 or points.shape[-1] != 3 or points.shape[0] != planes.shape[0]:
        raise ValueError(f"points must be (B, N, 3) with B = {planes.shape[0]}, got {tuple(points.shape)}")
    batch, n_planes, channels, height, width = planes.shape
    n_points = points.shape[1]
    # Lookups in fp32 (a no-op for fp32 planes): bf16 coordinates would be off by up to a texel.
    grid = project_onto_planes(points.float(), box_warp)  # (B, 3, N, 2)
    grid = grid.reshape(batch * n_planes, n_points, 1, 2)  # (B*3, N, 1, 2)
    sampled = F.grid_sample(
        planes.float().reshape(batch * n_planes, channels, height, width), grid,
        mode="bilinear", padding_mode="zeros", align_corners=False,
    )  # (B*3, C, N, 1)
    sampled = sampled.reshape(batch, n_planes, channels, n_points)  # (B, 3, C, N)
    return sampled.mean(dim=1).transpose(1, 2)  # (B, N, C)
