"""Morph targets of a head mesh: its vertices moved onto the iso-surface of another λ's field
(step 8 of `export3d_core.mesh`), without spikes."""
from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np

from export3d_core.mesh import PointFn
from export3d_core.render.renderer import FIELD_CHUNK


def project_onto_level(density: PointFn, points: np.ndarray, normals: np.ndarray, level: float, search: float,
                       steps: int, tick: Callable[[], None] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Move each point along its outward normal onto the nearest outward crossing of σ = level.

    σ is sampled at `steps` offsets in [-search, search]; the crossing from inside (σ ≥ level)
    to outside nearest to the point is refined twice by regula falsi on log σ (σ changes by orders
    of magnitude across a surface, its log far less). Points with no crossing in reach stay put.
    Returns (moved points, found mask).
    """
    offsets = np.linspace(-search, search, steps, dtype=np.float32)
    log_level = math.log(level)
    moved, found = points.copy(), np.zeros(len(points), bool)
    step = max(1, FIELD_CHUNK // steps)

    def g(p: np.ndarray) -> np.ndarray:
        return np.log(np.maximum(density(p), 1e-30)) - log_level

    for start in range(0, len(points), step):
        p, n = points[start:start + step], normals[start:start + step]
        values = g((p[:, None] + offsets[None, :, None] * n[:, None]).reshape(-1, 3)).reshape(len(p), steps)
        crossing = (values[:, :-1] >= 0) & (values[:, 1:] < 0)
        mid = 0.5 * (offsets[:-1] + offsets[1:])
        score = np.where(crossing, np.abs(mid)[None], np.inf)
        j = score.argmin(axis=1)
        ok = np.isfinite(score.min(axis=1))
        rows = np.arange(len(p))
        lo_t, hi_t = offsets[j].copy(), offsets[j + 1].copy()  # σ ≥ level at lo, below at hi
        lo_g, hi_g = values[rows, j], values[rows, j + 1]
        def falsi() -> np.ndarray:  # where the line through the bracket's ends crosses 0
            gap = lo_g - hi_g  # > 0 on every bracket found; rows without one stay put anyway
            return lo_t + lo_g / np.where(gap > 0, gap, 1.0) * (hi_t - lo_t)

        for _ in range(2):
            t = falsi()
            gt = g(p + t[:, None] * n)
            inside = gt >= 0
            lo_t, lo_g = np.where(inside, t, lo_t), np.where(inside, gt, lo_g)
            hi_t, hi_g = np.where(inside, hi_t, t), np.where(inside, hi_g, gt)
        t = falsi()
        moved[start:start + step] = p + np.where(ok, t, 0.0)[:, None] * n
        found[start:start + step] = ok
        if tick is not None:
            tick()
    return moved, found


def settle_offsets(offsets: np.ndarray, found: np.ndarray, faces: np.ndarray, limit: float,
                   rounds: int = 2) -> np.ndarray:
    """Offsets along the normals (V,) with lone jumps and misses replaced by their neighbours' median.

    A vertex whose search met no crossing, or a different sheet of the surface than its
    neighbours did (its offset differs from their median by more than `limit`), would make a spike.
    The median, not the mean: a spike must not drag its neighbours along.
    """
    neighbours = neighbour_table(faces, len(offsets))  # (V, max degree), -1 pads
    t, valid = np.where(found, offsets, np.nan), found.copy()
    for _ in range(rounds):
        values = np.where(neighbours >= 0, t[neighbours], np.nan)
        known = np.isfinite(values).any(axis=1)
        median = np.full(len(t), np.nan)
        median[known] = np.nanmedian(values[known], axis=1)
        bad = (~valid | (np.abs(t - median) > limit)) & known
        t, valid = np.where(bad, median, t), valid | bad
    return np.nan_to_num(t, nan=0.0)


def neighbour_table(faces: np.ndarray, n: int) -> np.ndarray:
    """Each vertex's edge neighbours as rows of a (n, max degree) index table, padded with -1."""
    from scipy.sparse import coo_matrix

    edges = np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]])
    edges = np.concatenate([edges, edges[:, ::-1]])
    adjacency = coo_matrix((np.ones(len(edges)), (edges[:, 0], edges[:, 1])), shape=(n, n)).tocsr()
    adjacency.sum_duplicates()  # an edge shared by two faces counts once
    degree = np.diff(adjacency.indptr)
    table = np.full((n, max(1, int(degree.max(initial=0)))), -1, np.int64)
    rows = np.repeat(np.arange(n), degree)
    table[rows, np.arange(len(rows)) - np.repeat(adjacency.indptr[:-1], degree)] = adjacency.indices
    return table


def morph_lambdas(lam: Sequence[float], scale: float) -> list[list[float]]:
    """λ of each target: the base λ with coefficient i moved by +scale."""
    rows = []
    for i in range(len(lam)):
        row = [float(v) for v in lam]
        row[i] += scale
        rows.append(row)
    return rows
