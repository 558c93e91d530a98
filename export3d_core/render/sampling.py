"""Where along each ray to evaluate the field: stratified depths, importance depths, merging.

Depths are distances along unit ray directions, shaped (B, n_rays, S, 1) and sorted along S.

- `stratified_depths`: EG3D's coarse samples, `linspace(start, end, S)`. With `perturb` each
  sample is jittered uniformly within its own cell (±half the spacing, clamped to [start, end]),
  so training sees every depth while the mean sample stays on the inference grid. (EG3D adds
  U[0, spacing) and also jitters at inference; we keep inference deterministic.)
- `importance_depths`: EG3D's `sample_importance` + `sample_pdf`: the coarse compositing
  weights are smoothed (max-pool then avg-pool, width 2), given a floor of 0.01, and inverted
  as a piecewise-constant pdf. Interval i of the pdf is the segment [depth_i, depth_i+1] whose
  midpoint carried weight i (EG3D pairs shifted mid-points with trimmed weights; we keep the two
  aligned). `perturb=False` uses the stratified quantiles (k + 0.5) / n: deterministic.
- `merge_depths` / `gather_merged`: concatenate coarse and fine samples and sort them, carrying
  any per-sample values along (EG3D's `unify_samples`).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

WEIGHT_FLOOR = 0.01  # EG3D adds this to the smoothed weights so every interval keeps some samples
PDF_EPS = 1e-5  # EG3D's sample_pdf epsilon against empty bins


def stratified_depths(
    batch: int,
    n_rays: int,
    n_samples: int,
    start: float,
    end: float,
    device: torch.device | str | None = None,
    *,
    generator: torch.Generator | None = None,
    perturb: bool = True,
    disparity: bool = False,
    dtype: torch.dtype = torch.float32,
) -> Tensor:
    """Evenly spaced depths in [start, end] (optionally jittered), (B, n_rays, S, 1).

    `disparity=True` spaces the samples evenly in inverse depth instead (EG3D's option, off for FFHQ).
    """
    if n_samples < 2:
        raise ValueError(f"need at least 2 samples per ray, got {n_samples}")
    if not 0 < start < end:
        raise ValueError(f"need 0 < start < end, got start={start}, end={end}")
    t = torch.linspace(0.0, 1.0, n_samples, device=device, dtype=dtype)  # (S,)
    t = t.expand(batch, n_rays, n_samples)  # (B, R, S)
    if perturb:
        jitter = torch.rand(t.shape, generator=generator, device=device, dtype=dtype) - 0.5  # (B, R, S)
        t = (t + jitter / (n_samples - 1)).clamp(0.0, 1.0)
    if disparity:
        depths = 1.0 / (1.0 / start * (1.0 - t) + 1.0 / end * t)
    else:
        depths = start + (end - start) * t
    return depths.unsqueeze(-1).contiguous()  # (B, R, S, 1)


def smooth_weights(weights: Tensor) -> Tensor:
    """EG3D's weight smoothing: max-pool then avg-pool (width 2) plus a floor, (M, S-1) -> (M, S-1)."""
    padded = F.max_pool1d(weights.unsqueeze(1), kernel_size=2, stride=1, padding=1)  # (M, 1, S)
    smoothed = F.avg_pool1d(padded, kernel_size=2, stride=1).squeeze(1)  # (M, S-1)
    return smoothed + WEIGHT_FLOOR


def sample_pdf(
    edges: Tensor, weights: Tensor, n_samples: int, *, perturb: bool, generator: torch.Generator | None = None
) -> Tensor:
    """Inverse-CDF samples of a piecewise-constant pdf: edges (M, K+1), weights (M, K) -> (M, n)."""
    rows, bins = weights.shape
    pdf = weights + PDF_EPS
    pdf = pdf / pdf.sum(dim=-1, keepdim=True)  # (M, K)
    cdf = torch.cat([torch.zeros_like(pdf[:, :1]), torch.cumsum(pdf, dim=-1)], dim=-1)  # (M, K+1)
    cdf[:, -1] = 1.0  # exact top so every quantile finds a bin

    offsets = torch.arange(n_samples, device=weights.device, dtype=weights.dtype)  # (n,)
    if perturb:
        jitter = torch.rand((rows, n_samples), generator=generator, device=weights.device, dtype=weights.dtype)
    else:
        jitter = torch.full((rows, n_samples), 0.5, device=weights.device, dtype=weights.dtype)
    quantiles = ((offsets + jitter) / n_samples).contiguous()  # (M, n), stratified in [0, 1)

    upper = torch.searchsorted(cdf.contiguous(), quantiles, right=True).clamp(1, bins)  # (M, n)
    lower = upper - 1
    cdf_lo, cdf_hi = cdf.gather(1, lower), cdf.gather(1, upper)  # (M, n)
    edge_lo, edge_hi = edges.gather(1, lower), edges.gather(1, upper)  # (M, n)
    span = cdf_hi - cdf_lo
    span = torch.where(span < PDF_EPS, torch.ones_like(span), span)  # empty bin: any point is fine
    return edge_lo + (quantiles - cdf_lo) / span * (edge_hi - edge_lo)  # (M, n)


@torch.no_grad()
def importance_depths(
    depths: Tensor,
    weights: Tensor,
    n_samples: int,
    *,
    perturb: bool,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Fine depths drawn where the coarse pass found mass: depths (B,R,S,1), weights (B,R,S-1,1) -> (B,R,n,1)."""
    batch, n_rays, n_coarse, _ = depths.shape
    if weights.shape[:3] != (batch, n_rays, n_coarse - 1):
        raise ValueError(
            f"weights must be (B, R, S-1, 1) = {(batch, n_rays, n_coarse - 1, 1)}, got {tuple(weights.shape)}"
        )
    edges = depths.reshape(batch * n_rays, n_coarse).detach()  # (M, S)
    smoothed = smooth_weights(weights.reshape(batch * n_rays, n_coarse - 1).detach().float())  # (M, S-1)
    fine = sample_pdf(edges.float(), smoothed, n_samples, perturb=perturb, generator=generator)  # (M, n)
    fine, _ = torch.sort(fine, dim=-1)  # stratified quantiles are sorted already; jittered ones too
    return fine.to(depths.dtype).reshape(batch, n_rays, n_samples, 1)


def merge_depths(depths_a: Tensor, depths_b: Tensor) -> tuple[Tensor, Tensor]:
    """Sorted union of two sample sets: (B,R,Sa,1), (B,R,Sb,1) -> depths (B,R,Sa+Sb,1), order (B,R,Sa+Sb,1)."""
    merged = torch.cat([depths_a, depths_b], dim=-2)  # (B, R, Sa+Sb, 1)
    merged, order = torch.sort(merged, dim=-2, stable=True)
    return merged, order


def gather_merged(values_a: Tensor, values_b: Tensor, order: Tensor) -> Tensor:
    """Per-sample values (B,R,Sa,C), (B,R,Sb,C) reordered like `merge_depths` -> (B,R,Sa+Sb,C)."""
    values = torch.cat([values_a, values_b], dim=-2)  # (B, R, Sa+Sb, C)
    return values.gather(-2, order.expand(*order.shape[:-1], values.shape[-1]))
