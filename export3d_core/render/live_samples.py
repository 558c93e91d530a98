"""Evaluating only the samples that can change a pixel: the sample store and the front-to-back march.

`Samples` keeps the raw densities of a batch of rays' samples (dense, `EMPTY_RAW` where not
evaluated) and the colours of the evaluated ones; `march` evaluates the wanted samples of each ray
a few at a time, front to back, and stops a ray once its transmittance falls below
`MarchSettings.early_stop` (its remaining samples can change the pixel by at most that much).
Live samples are gathered into one flat batch per field call (`evaluate_at`) and scattered back.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from export3d_core.render.marcher import MarchResult, expected_depth, interval_alpha, interval_weights
from export3d_core.render.renderer import FieldFn
from export3d_core.render.sampling import gather_merged

EMPTY_RAW = -1e4  # raw density given to skipped samples: softplus(EMPTY_RAW + shift) == 0 exactly
EARLY_STOP = 1e-4  # transmittance below which a ray is finished
SAMPLES_PER_STEP = 4  # wanted samples per ray in the first field call, before transmittance is checked
STEP_GROWTH = 2  # each later call takes this many times more samples per ray (few calls, little waste)


@dataclass(frozen=True)
class MarchSettings:
    """How `march` walks the rays."""

    early_stop: float = EARLY_STOP  # transmittance at which a ray stops being evaluated
    samples_per_step: int = SAMPLES_PER_STEP  # wanted samples per ray in the first round
    step_growth: int = STEP_GROWTH  # each later round takes this many times more


@dataclass
class Samples:
    """Field values of the samples of a ray batch: raw densities dense, colours only where evaluated."""

    raw: Tensor  # (B, R, S, 1), EMPTY_RAW where not evaluated
    known: Tensor  # (B, R, S) bool, evaluated
    index: list[Tensor]  # per evaluation: (M, 2) flat ray (b * R + r), sample
    colours: list[Tensor]  # per evaluation: (M, F)
    n_features: int

    @staticmethod
    def empty(depths: Tensor, n_features: int) -> "Samples":
        known = torch.zeros(depths.shape[:3], dtype=torch.bool, device=depths.device)
        return Samples(torch.full_like(depths, EMPTY_RAW), known, [], [], n_features)

    def record(self, ray: Tensor, sample: Tensor, raw: Tensor, colours: Tensor) -> None:
        """Store evaluated values of samples (ray (M,), sample (M,)), ray flat over B * R."""
        batch, n_rays, n_samples, _ = self.raw.shape
        flat = self.raw.reshape(batch * n_rays, n_samples)
        flat = flat.index_put((ray, sample), raw[:, 0].to(flat.dtype))  # out of place: keeps autograd simple
        self.raw = flat.reshape(batch, n_rays, n_samples, 1)
        self.known.view(batch * n_rays, n_samples)[ray, sample] = True
        self.index.append(torch.stack([ray, sample], dim=1))
        self.colours.append(colours)

    def merged(self, fine_depths: Tensor, order: Tensor) -> "Samples":
        """These samples followed by not-yet-evaluated fine samples, reordered like `merge_depths`."""
        raw = gather_merged(self.raw, torch.full_like(fine_depths, EMPTY_RAW), order)  # (B, R, S, 1)
        known = gather_merged(self.known[..., None].float(), torch.zeros_like(fine_depths), order)[..., 0] > 0
        batch, n_rays, n_merged = known.shape
        position = torch.empty_like(order[..., 0])  # (B, R, S): merged position of each old sample
        position.scatter_(2, order[..., 0], torch.arange(n_merged, device=order.device).expand_as(position))
        position = position.reshape(batch * n_rays, n_merged)
        index = [torch.stack([i[:, 0], position[i[:, 0], i[:, 1]]], dim=1) for i in self.index]
        return Samples(raw, known, index, list(self.colours), self.n_features)

    def composite(self, depths: Tensor, density_shift: float) -> MarchResult:
        """`marcher.composite` with colour zero at unevaluated samples, summed over evaluated ones only.

        sum_i w_i (c_i + c_i+1) / 2 = sum_j c_j (w_j-1 + w_j) / 2, so each evaluated colour c_j is
        added to its ray with the mean weight of its two intervals.
        """
        weights = interval_weights(self.raw, depths, density_shift)  # (B, R, S-1, 1)
        depth, alpha = expected_depth(weights, depths)  # (B, R, 1) each
        batch, n_rays = depths.shape[:2]
        features = depths.new_zeros(batch * n_rays, self.n_features)  # (B*R, F)
        if self.index:
            where = torch.cat(self.index)  # (M, 2)
            colours = torch.cat(self.colours).to(features.dtype)  # (M, F)
            padded = F.pad(weights[..., 0], (1, 1))  # (B, R, S+1): zero before the first, after the last
            share = 0.5 * (padded[..., :-1] + padded[..., 1:])  # (B, R, S) per sample
            factor = share.reshape(batch * n_rays, -1)[where[:, 0], where[:, 1]]  # (M,)
            features = features.index_add(0, where[:, 0], colours * factor[:, None])
        features = features.reshape(batch, n_rays, self.n_features)  # (B, R, F)
        return MarchResult(features=features * 2.0 - 1.0, depth=depth, weights=weights, alpha=alpha)


def wanted_samples(samples: Samples, occupied: Tensor | None, live: Tensor | None) -> Tensor:
    """The unevaluated samples (B, R, S) the composite needs: those occupied or with an occupied
    neighbour along the ray (the compositing averages neighbouring raw densities), on live rays
    (B, R) only when `live` is given."""
    wanted = ~samples.known  # (B, R, S)
    if occupied is not None:
        near = occupied.clone()
        near[..., 1:] |= occupied[..., :-1]
        near[..., :-1] |= occupied[..., 1:]
        wanted &= near
    if live is not None:
        wanted &= live[..., None]
    return wanted


@dataclass
class _Rows:
    """The rays of a march that have wanted samples, flattened to rows (A of them)."""

    index: Tensor  # (A,) flat b * R + r of each row
    wanted: Tensor  # (A, S) bool
    rank: Tensor  # (A, S) rank of each wanted sample in its row
    n_wanted: Tensor  # (A,)
    depths: Tensor  # (A, S)
    origins: Tensor  # (A, 3)
    directions: Tensor  # (A, 3)
    raw: Tensor  # (A, S) raw densities known so far, no grad (for termination)
    alive: Tensor  # (A,) bool: transmittance still above the stop


def _rows(origins: Tensor, directions: Tensor, depths: Tensor, samples: Samples, wanted: Tensor) -> _Rows | None:
    batch, n_rays, n_samples = depths.shape[:3]
    wanted = wanted.reshape(batch * n_rays, n_samples)  # (BR, S)
    index = wanted.any(dim=1).nonzero()[:, 0]  # (A,) rays with work to do
    if index.numel() == 0:
        return None
    wanted = wanted[index]  # (A, S)
    n_wanted = wanted.sum(dim=1)
    return _Rows(index=index, wanted=wanted, rank=torch.cumsum(wanted, dim=1) - 1, n_wanted=n_wanted,
                 depths=depths.reshape(batch * n_rays, n_samples)[index],
                 origins=origins.reshape(batch * n_rays, 3)[index],
                 directions=directions.reshape(batch * n_rays, 3)[index],
                 raw=samples.raw.detach().reshape(batch * n_rays, n_samples)[index].clone(),
                 alive=torch.ones_like(n_wanted, dtype=torch.bool))


def march(field: FieldFn, origins: Tensor, directions: Tensor, depths: Tensor, samples: Samples,
          occupied: Tensor | None, settings: MarchSettings, density_shift: float, live: Tensor | None = None) -> None:
    """Evaluate, front to back, every wanted sample (`wanted_samples`) of rays origins / directions
    (B, R, 3) at depths (B, R, S, 1), until each ray is opaque; values go into `samples`.

    Each ray's wanted samples are visited by rank, a few per round (growing each round, so long
    rays need few rounds), and only rays that still have wanted samples take part: empty rays
    cost nothing.
    """
    batch, n_rays = depths.shape[:2]
    rows = _rows(origins, directions, depths, samples, wanted_samples(samples, occupied, live))
    if rows is None:
        return
    log_stop = math.log(settings.early_stop)
    lo, size = 0, settings.samples_per_step
    while True:
        act = (rows.alive & (rows.n_wanted > lo)).nonzero()[:, 0]  # (a,) indices into rows
        if act.numel() == 0:
            break
        hi = lo + size
        _evaluate_round(field, rows, act, lo, hi, samples, n_rays, batch)
        with torch.no_grad():  # termination is a decision, not part of the image's graph
            rows.alive[act] = _log_transmittance(rows, act, hi, density_shift) > log_stop
        lo, size = hi, size * settings.step_growth


def _evaluate_round(field: FieldFn, rows: _Rows, act: Tensor, lo: int, hi: int, samples: Samples,
                    n_rays: int, batch: int) -> None:
    """Evaluate the wanted samples of rank lo..hi-1 of the active rows `act` (a,)."""
    todo = rows.wanted[act] & (rows.rank[act] >= lo) & (rows.rank[act] < hi)  # (a, S)
    local, sample = todo.nonzero().unbind(1)  # (M,), (M,)
    ray = act[local]  # (M,) index into rows
    points = rows.origins[ray] + rows.depths[ray, sample, None] * rows.directions[ray]  # (M, 3)
    flat_row = rows.index[ray]  # (M,) index into B*R
    raw, colours = evaluate_at(field, points, torch.div(flat_row, n_rays, rounding_mode="floor"), batch)
    samples.record(flat_row, sample, raw, colours)
    with torch.no_grad():
        rows.raw[ray, sample] = raw[:, 0].detach().to(rows.raw.dtype)


def _log_transmittance(rows: _Rows, act: Tensor, hi: int, density_shift: float) -> Tensor:
    """Log transmittance (a,) of the active rows through their final intervals: those before the
    next unevaluated wanted sample (the frontier, rank `hi`)."""
    n_samples = rows.depths.shape[1]
    pending = rows.wanted[act] & (rows.rank[act] == hi)  # (a, S)
    frontier = torch.where(pending.any(dim=1), pending.float().argmax(dim=1), n_samples)  # (a,)
    alpha = interval_alpha(rows.raw[act, :, None], rows.depths[act, :, None], density_shift)
    log_t = torch.log1p(-alpha[..., 0].clamp(max=1 - 1e-7))  # (a, S-1)
    positions = torch.arange(n_samples - 1, device=rows.depths.device)  # (S-1,)
    return log_t.masked_fill(positions >= frontier[:, None], 0.0).sum(dim=1)  # (a,)


def scatter_rays(rays: MarchResult, live: Tensor, depths: Tensor) -> MarchResult:
    """Composited live rays (1, A, ...) back into the full batch of rays with depths (B, R, K, 1);
    the other rays are empty: features -1, opacity 0, depth at their far end."""
    batch, n_rays, n_samples, _ = depths.shape

    def fill(values: Tensor, empty: Tensor) -> Tensor:
        flat = empty.reshape(batch * n_rays, *empty.shape[2:]).index_copy(0, live, values[0].to(empty.dtype))
        return flat.reshape(empty.shape)

    n_features = rays.features.shape[-1]
    return MarchResult(
        features=fill(rays.features, depths.new_full((batch, n_rays, n_features), -1.0)),
        depth=fill(rays.depth, depths[..., -1, :].clone()),
        weights=fill(rays.weights, depths.new_zeros(batch, n_rays, n_samples - 1, 1)),
        alpha=fill(rays.alpha, depths.new_zeros(batch, n_rays, 1)),
        depths=depths,
    )


def evaluate_at(field: FieldFn, points: Tensor, batch_index: Tensor, batch: int) -> tuple[Tensor, Tensor]:
    """Evaluate the field at scattered points (M, 3) of batch elements batch_index (M,), sorted by batch.

    The field takes one row of points per batch element (its tri-plane), so the points are packed
    into a (B, max count, 3) batch (padding at the origin, discarded) and unpacked again.
    Returns raw (M, 1) and colours (M, F) in the input order.
    """
    if batch == 1:
        raw, colours = field(points[None])  # (1, M, 1), (1, M, F)
        return raw[0], colours[0]
    counts = torch.bincount(batch_index, minlength=batch)  # (B,)
    starts = torch.cumsum(counts, 0) - counts  # (B,)
    slot = torch.arange(points.shape[0], device=points.device) - starts[batch_index]  # (M,)
    packed = points.new_zeros(batch, int(counts.max()), 3)  # (B, W, 3)
    packed[batch_index, slot] = points
    raw, colours = field(packed)  # (B, W, 1), (B, W, F)
    return raw[batch_index, slot], colours[batch_index, slot]


__all__ = ["EMPTY_RAW", "MarchSettings", "Samples", "evaluate_at", "march", "scatter_rays", "wanted_samples"]
