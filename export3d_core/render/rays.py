"""Camera rays: one ray per pixel centre from EG3D 25-vector cameras (EG3D's RaySampler).

Pixels are row-major with y down (ray index = row * resolution + column); pixel (i, j) has
normalized image coordinates ((j + 0.5) / resolution, (i + 0.5) / resolution), which the
normalized intrinsics lift to a camera-space direction and cam2world turns into a world ray.
"""
from __future__ import annotations

import torch
from torch import Tensor

CAMERA_DIM = 25  # 16 cam2world + 9 normalized intrinsics


def split_cameras(cameras: Tensor) -> tuple[Tensor, Tensor]:
    """(B, 25) -> cam2world (B, 4, 4), intrinsics (B, 3, 3)."""
    if cameras.dim() != 2 or cameras.shape[1] != CAMERA_DIM:
        raise ValueError(f"cameras must be (B, {CAMERA_DIM}), got {tuple(cameras.shape)}")
    return cameras[:, :16].reshape(-1, 4, 4), cameras[:, 16:].reshape(-1, 3, 3)


def generate_rays(cameras: Tensor, resolution: int) -> tuple[Tensor, Tensor]:
    """World-space rays through pixel centres: origins (B, H*W, 3), unit directions (B, H*W, 3)."""
    if resolution < 1:
        raise ValueError(f"resolution must be >= 1, got {resolution}")
    # fp32 and outside autocast (which would run the rotation's matmul in bf16): a ray's origin
    # and direction place every sample, so they keep full precision in mixed-precision training.
    with torch.autocast(cameras.device.type, enabled=False):
        return _rays(cameras.float(), resolution)


def _rays(cameras: Tensor, resolution: int) -> tuple[Tensor, Tensor]:
    cam2world, intr = split_cameras(cameras)
    device, dtype = cameras.device, cameras.dtype
    fx, fy = intr[:, 0, 0, None], intr[:, 1, 1, None]  # (B, 1)
    cx, cy, skew = intr[:, 0, 2, None], intr[:, 1, 2, None], intr[:, 0, 1, None]  # (B, 1)

    centres = (torch.arange(resolution, device=device, dtype=dtype) + 0.5) / resolution  # (W,)
    v, u = torch.meshgrid(centres, centres, indexing="ij")  # rows (y down), columns (x right)
    u, v = u.reshape(1, -1), v.reshape(1, -1)  # (1, H*W)

    # Pinhole lift at unit camera depth, with EG3D's skew term (zero for our cameras).
    y_cam = (v - cy) / fy  # (B, H*W)
    x_cam = (u - cx - skew * y_cam) / fx  # (B, H*W)
    dirs_cam = torch.stack([x_cam, y_cam, torch.ones_like(x_cam)], dim=-1)  # (B, H*W, 3)

    rotation = cam2world[:, :3, :3]  # (B, 3, 3)
    directions = torch.nn.functional.normalize(dirs_cam @ rotation.transpose(1, 2), dim=-1)  # (B, H*W, 3)
    origins = cam2world[:, None, :3, 3].expand_as(directions)  # (B, H*W, 3)
    return origins, directions
