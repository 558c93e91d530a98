"""Free-space sparsity: a training regulariser that empties the space the images do not need.

The reconstruction loss only sees density through the rays it renders, so a field is free to
fill the space around the head with a thin fog that the compositing hides (the demo model's
background was such a medium: 86 % of its occupancy grid occupied, 30 % of its rays spreading
their weight over many intervals). That costs nothing in the image and everything in rendering
speed: the accelerated renderer can neither skip that space nor stop those rays early.

This loss measures the fog directly: the mean opacity of one nominal sample interval
(ray length / num_coarse) at points drawn uniformly in the cube the occupancy grid covers
(`GRID_EXTENT` times the tri-plane box). Opacity, not density, so solid matter (opacity ~1)
pays a constant and feels no gradient: only thin, semi-transparent density is pushed to zero
or into the opaque surfaces the image needs.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from export3d_core.config import RenderConfig
from export3d_core.render.occupancy import GRID_EXTENT
from export3d_core.render.renderer import FieldFn

SPARSITY_POINTS = 4096  # random points per image: ~2 % of the rendered samples of a demo view


def free_space_opacity(field: FieldFn, cfg: RenderConfig, batch: int, n_points: int = SPARSITY_POINTS, *,
                       device: torch.device | str | None = None, dtype: torch.dtype = torch.float32,
                       generator: torch.Generator | None = None) -> Tensor:
    """Mean opacity of a nominal interval at n_points uniform random points per batch element -> (B,)."""
    if n_points < 1:
        raise ValueError(f"n_points must be >= 1, got {n_points}")
    bound = GRID_EXTENT * cfg.box_warp / 2
    unit = torch.rand(batch, n_points, 3, device=device, dtype=dtype, generator=generator)  # (B, N, 3)
    raw, _ = field(unit * (2 * bound) - bound)  # (B, N, 1)
    interval = (cfg.ray_end - cfg.ray_start) / cfg.num_coarse  # world units
    sigma = F.softplus(raw.float() + cfg.density_shift)
    return (1.0 - torch.exp(-sigma * interval)).mean(dim=(1, 2))  # (B,)
