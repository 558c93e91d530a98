"""The occupancy grid: which cells around the tri-plane box may hold density, measured once per field.

Built once per radiance field (i.e. per tri-plane) by `build_grid` over `GRID_EXTENT` times the
tri-plane box (rays start and end outside it). A cell is occupied when the density at one of its
corners can exceed a small threshold; the grid also keeps those corner densities, so it can stand
in for the field's density (trilinearly) when the accelerated renderer places its samples.
"""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from export3d_core.config import RenderConfig
from export3d_core.render.renderer import FieldFn, chunked_field

GRID_THRESHOLD = 1e-3  # density below which a cell is empty: <= 1e-3 opacity per unit of path skipped
GRID_EXTENT = 1.5  # grid half side / tri-plane half side: also covers the frustum just outside the box
GRID_DILATION = 1  # extra cells around occupied ones: keeps shells thinner than a cell (tested)


@dataclass
class OccupancyGrid:
    """Which cells of the cube [-bound, bound]^3 may hold density, per batch element.

    `corner_raw` keeps the raw densities measured at the cell corners, so the grid can also
    stand in for the field's density (trilinearly) when placing samples: see `raw_at`.
    """

    occupied: Tensor  # (B, G, G, G) bool, indexed [x, y, z]
    bound: float  # half side of the cube, world units, centred at the origin
    threshold: float  # density used to decide occupancy
    corner_raw: Tensor | None = None  # (B, 1, G+1, G+1, G+1) raw density, indexed [z, y, x] for grid_sample

    @property
    def resolution(self) -> int:
        return self.occupied.shape[-1]

    @functools.cached_property
    def occupied_share(self) -> float:
        """Fraction of occupied cells, computed once (the renderer asks every frame)."""
        return self.occupied_fraction()

    @property
    def full(self) -> bool:
        """Every cell occupied (a fog-like field): nothing can be skipped, so lookups are wasted."""
        return self.occupied_share == 1.0

    def occupied_fraction(self) -> float:
        return self.occupied.float().mean().item()

    def lookup(self, points: Tensor) -> Tensor:
        """Occupancy of points (B, ..., 3) -> (B, ...) bool; points outside the cube count as occupied."""
        batch, res = points.shape[0], self.resolution
        flat = points.reshape(batch, -1, 3)  # (B, N, 3)
        cell = torch.floor((flat + self.bound) * (res / (2 * self.bound))).long()  # (B, N, 3)
        inside = ((cell >= 0) & (cell < res)).all(dim=-1)  # (B, N)
        cell = cell.clamp(0, res - 1)
        index = (cell[..., 0] * res + cell[..., 1]) * res + cell[..., 2]  # (B, N)
        occupied = self.occupied.reshape(batch, -1).gather(1, index)  # (B, N)
        return (occupied | ~inside).reshape(points.shape[:-1])

    def raw_at(self, points: Tensor) -> Tensor:
        """Trilinear raw density at points (B, ..., 3) -> (B, ..., 1); outside the cube the border value."""
        if self.corner_raw is None:
            raise ValueError("this grid keeps no corner densities")
        batch = points.shape[0]
        coords = (points / self.bound).reshape(batch, -1, 1, 1, 3).to(self.corner_raw.dtype)  # (B, N, 1, 1, 3)
        raw = F.grid_sample(self.corner_raw, coords, mode="bilinear", padding_mode="border", align_corners=True)
        return raw.reshape(*points.shape[:-1], 1)  # (B, ..., 1)


@torch.no_grad()
def build_grid(
    field: FieldFn,
    cfg: RenderConfig,
    resolution: int = 64,
    *,
    batch: int = 1,
    threshold: float = GRID_THRESHOLD,
    alpha_threshold: float | None = None,
    dilation: int = GRID_DILATION,
    extent: float = GRID_EXTENT,
    device: torch.device | str | None = None,
) -> OccupancyGrid:
    """Evaluate the density once on the (G+1)^3 corners of a G^3 grid around the tri-plane box.

    The grid spans `extent` times the box [-box_warp/2, box_warp/2]^3: rays start and end
    outside the box (2.25..3.3 around a pivot 2.7 away), and a tri-plane field is not empty
    there by construction (the in-range planes still contribute), so the grid measures it
    rather than assuming. A cell is occupied when any of its corners has density > threshold;
    occupied cells are then dilated by `dilation` cells. `batch` is the batch size the field expects;
    `cfg` gives the box and the ray range.
    `alpha_threshold`, when given, replaces `threshold` by the density at which a whole ray
    (ray_start..ray_end) would reach that opacity: a bound on what skipping can cost a pixel.
    """
    if resolution < 1 or extent <= 0:
        raise ValueError(f"need grid resolution >= 1 and extent > 0, got {resolution}, {extent}")
    bound = extent * cfg.box_warp / 2
    if alpha_threshold is not None:
        path = cfg.ray_end - cfg.ray_start  # world units
        threshold = -math.log1p(-alpha_threshold) / path  # 1 - exp(-density * path) = alpha_threshold
    axis = torch.linspace(-bound, bound, resolution + 1, device=device)  # (G+1,)
    corners = torch.stack(torch.meshgrid(axis, axis, axis, indexing="ij"), dim=-1).reshape(1, -1, 3)
    corners = corners.expand(batch, -1, -1).contiguous()  # (B, (G+1)^3, 3)
    raw = chunked_field(field)(corners)[0]  # (B, (G+1)^3, 1)
    raw = raw.float().reshape(batch, 1, *(resolution + 1,) * 3)  # (B, 1, G+1, G+1, G+1) indexed [x, y, z]
    dense = (F.softplus(raw + cfg.density_shift) > threshold).float()
    occupied = F.max_pool3d(dense, kernel_size=2, stride=1)  # any corner: (B, 1, G, G, G)
    if dilation > 0:
        occupied = F.max_pool3d(occupied, kernel_size=2 * dilation + 1, stride=1, padding=dilation)
    return OccupancyGrid(occupied=occupied[:, 0] > 0, bound=bound, threshold=threshold,
                         corner_raw=raw.permute(0, 1, 4, 3, 2).contiguous())


__all__ = ["GRID_DILATION", "GRID_EXTENT", "GRID_THRESHOLD", "OccupancyGrid", "build_grid"]
