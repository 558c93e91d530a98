"""Ray marching: composite per-sample colours and densities into pixels (EG3D's MipRayMarcher2).

For S sorted samples per ray the S-1 intervals between neighbours are used: interval i has
length delta_i = depth_i+1 - depth_i and takes the mean of its two end samples (colour, raw
density, depth) as its mid-point value. Then (NeRF quadrature)

    sigma_i = softplus(raw_mid_i + density_shift)     alpha_i = 1 - exp(-sigma_i * delta_i)
    T_i = prod_{j<i} (1 - alpha_j + 1e-10)            w_i = alpha_i * T_i
    features = 2 * sum_i w_i c_i - 1                  alpha = sum_i w_i
    depth = sum_i w_i d_i / sum_i w_i, clamped into [first depth, last depth] of the ray

Example (hand-computed): two intervals with alpha 0.5 each give T = (1, 0.5), w = (0.5, 0.25),
alpha = 0.75. The depth is normalised by the total weight as EG3D does, so it is the mean depth
of whatever the ray hit; a ray that hit nothing (0/0) is sent to its far end, and the clamp
keeps rounding from leaving the sampled range. Features go from the field's ~[0, 1] to [-1, 1]
with EG3D's `* 2 - 1`, so an empty ray renders as -1 (black); there is no white background.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

TRANSMITTANCE_EPS = 1e-10  # EG3D's guard that keeps the cumulative product from collapsing to 0


@dataclass
class MarchResult:
    """Composited rays. Interval weights have S-1 entries for S samples."""

    features: Tensor  # (B, R, F) in [-1, 1]
    depth: Tensor  # (B, R, 1) expected depth of the hit, far end for empty rays
    weights: Tensor  # (B, R, S-1, 1) compositing weight of each interval
    alpha: Tensor  # (B, R, 1) accumulated opacity, sum of the weights
    depths: Tensor | None = None  # (B, R, S, 1) the sample depths the weights belong to


def interval_alpha(densities_raw: Tensor, depths: Tensor, density_shift: float) -> Tensor:
    """Opacity of each interval between neighbouring samples: (B,R,S,1) -> (B,R,S-1,1)."""
    deltas = depths[..., 1:, :] - depths[..., :-1, :]  # (B, R, S-1, 1)
    raw_mid = 0.5 * (densities_raw[..., 1:, :] + densities_raw[..., :-1, :])  # (B, R, S-1, 1)
    sigma = F.softplus(raw_mid + density_shift)
    return 1.0 - torch.exp(-sigma * deltas)


def interval_weights(densities_raw: Tensor, depths: Tensor, density_shift: float) -> Tensor:
    """Compositing weight w_i = alpha_i * T_i of each interval: (B,R,S,1) -> (B,R,S-1,1)."""
    if depths.shape[-2] < 2:
        raise ValueError("compositing needs at least two samples per ray")
    alpha = interval_alpha(densities_raw, depths, density_shift)  # (B, R, S-1, 1)
    survive = torch.cat([torch.ones_like(alpha[..., :1, :]), 1.0 - alpha + TRANSMITTANCE_EPS], dim=-2)
    transmittance = torch.cumprod(survive, dim=-2)[..., :-1, :]  # (B, R, S-1, 1)
    return alpha * transmittance


def expected_depth(weights: Tensor, depths: Tensor) -> tuple[Tensor, Tensor]:
    """Weight-normalised mid-point depth, clamped into each ray's sampled range, and the opacity.

    weights (B,R,S-1,1), depths (B,R,S,1) -> depth (B,R,1), alpha (B,R,1).
    """
    depths_mid = 0.5 * (depths[..., 1:, :] + depths[..., :-1, :])  # (B, R, S-1, 1)
    total = weights.sum(dim=-2)  # (B, R, 1)
    near, far = depths[..., 0, :], depths[..., -1, :]  # (B, R, 1)
    hit = total > 0
    # Divide by a safe total so that empty rays give no NaN, not even in the backward pass.
    depth = (weights * depths_mid).sum(dim=-2) / torch.where(hit, total, torch.ones_like(total))  # (B, R, 1)
    depth = torch.where(hit, depth, far)
    return torch.maximum(torch.minimum(depth, far), near), total


def composite(colours: Tensor, densities_raw: Tensor, depths: Tensor, density_shift: float) -> MarchResult:
    """Composite S samples per ray: colours (B,R,S,F), raw densities and depths (B,R,S,1)."""
    weights = interval_weights(densities_raw, depths, density_shift)  # (B, R, S-1, 1)
    colours_mid = 0.5 * (colours[..., 1:, :] + colours[..., :-1, :])  # (B, R, S-1, F)
    features = (weights * colours_mid).sum(dim=-2)  # (B, R, F)
    depth, alpha = expected_depth(weights, depths)  # (B, R, 1) each
    return MarchResult(features=features * 2.0 - 1.0, depth=depth, weights=weights, alpha=alpha, depths=depths)


def distortion(weights: Tensor, depths: Tensor, start: float, end: float) -> Tensor:
    """Mip-NeRF 360's distortion loss of each ray: small when its weight sits in one thin interval.

    With interval mid-points m_i and widths d_i in units of the ray's length (start..end),
    L = sum_ij w_i w_j |m_i - m_j| + 1/3 sum_i w_i^2 d_i, computed in O(S) with running sums
    (sorted mid-points: sum_ij = 2 sum_i w_i (m_i W_<i - (wm)_<i)). A soft, fog-like density
    pays for every pair of intervals it spreads over; one opaque surface pays almost nothing.
    weights (B,R,S-1,1), depths (B,R,S,1) -> (B, R).
    """
    scale = 1.0 / (end - start)
    w = weights[..., 0]  # (B, R, S-1)
    edges = (depths[..., 0] - start) * scale  # (B, R, S)
    mid = 0.5 * (edges[..., 1:] + edges[..., :-1])  # (B, R, S-1)
    width = edges[..., 1:] - edges[..., :-1]
    w_before = torch.cumsum(w, dim=-1) - w  # (B, R, S-1) weight of earlier intervals
    wm_before = torch.cumsum(w * mid, dim=-1) - w * mid
    pairs = 2.0 * (w * (mid * w_before - wm_before)).sum(dim=-1)
    return pairs + (w.square() * width).sum(dim=-1) / 3.0
