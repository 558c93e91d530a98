"""Basis response: which expression parameters each learned basis vector v_i moves (Fig. S3 analogue).

For every basis vector i and every scale s of the sweep, the model renders each basis source
with λ = s·e_i (all other λ = 0) from the source's own camera, and the attribute regressor reads
β̂ from the render. With σ_k the std of β_k in the regressor's training renders:

    Δ_k(i, s)   = mean over sources of |β̂_k(s·e_i) − β̂_k(0)| / σ_k         (std units)
    response[i][k] = mean over s ≠ 0 of Δ_k(i, s) / |s|   (std units of β_k per unit of λ_i)
    strength[i]    = max over s, k of Δ_k(i, s)           (the largest move the sweep produces)

v_i *moves* when strength[i] ≥ `move_threshold` (default 0.5: some β parameter shifts by half its
natural spread somewhere in the sweep). v_i is *meaningful* when it moves and its response row
is not a duplicate of an earlier meaningful row: cosine(response[i], response[j]) <
`duplicate_cosine` (default 0.9) for every earlier meaningful j. `meaningful` counts them. (The rows
hold magnitudes, so v and -v, or two vectors that move the same parameters, count once.)

The sweep grid is a PNG of n rows (v_1 .. v_n) by len(scales) columns, each cell the first
source's render at output_size, no gaps, so cell (i, j) is at (j·out, i·out).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from export3d_core.eval.clips import EvalClip
from export3d_core.metrics import cosine_similarity
from export3d_core.faces.regressor import AttributeRegressor
from export3d_core.eval.runner import ModelRunner

DEFAULT_SCALES = (-10.0, -5.0, 0.0, 5.0, 10.0, 15.0, 20.0)  # the paper sweeps λ over about -10 .. 20 (Fig. S3)
MOVE_THRESHOLD = 0.5  # std units of β a vector must move some parameter by
DUPLICATE_COSINE = 0.9  # response rows at least this similar count as the same direction


@dataclass
class BasisResult:
    response: np.ndarray  # (n, beta_dim) std units per unit λ
    strength: np.ndarray  # (n,) largest move in std units
    moving: list[bool]
    meaningful_vectors: list[int]  # indices (0-based) of the meaningful vectors
    scales: list[float]
    grid: np.ndarray  # (n * out, len(scales) * out, 3) uint8

    @property
    def meaningful(self) -> int:
        return len(self.meaningful_vectors)


def sweep_grid(images: list[np.ndarray], rows: int, columns: int) -> np.ndarray:
    """Tile row-major images (all of one size) into a (rows * h, columns * w, 3) uint8 grid."""
    if len(images) != rows * columns:
        raise ValueError(f"expected {rows * columns} images, got {len(images)}")
    lines = [np.concatenate(images[r * columns:(r + 1) * columns], axis=1) for r in range(rows)]
    return np.concatenate(lines, axis=0)


def meaningful_vectors(response: np.ndarray, strength: np.ndarray, move_threshold: float = MOVE_THRESHOLD,
                       duplicate_cosine: float = DUPLICATE_COSINE) -> list[int]:
    """Indices of the vectors that move and do not repeat an earlier meaningful vector's response."""
    kept: list[int] = []
    for i in range(len(response)):
        if strength[i] < move_threshold:
            continue
        if all(float(cosine_similarity(response[i], response[j])) < duplicate_cosine for j in kept):
            kept.append(i)
    return kept


def basis_response(runner: ModelRunner, regressor: AttributeRegressor, clips: list[EvalClip], *,
                   scales: tuple[float, ...] = DEFAULT_SCALES, sources: int = 2,
                   move_threshold: float = MOVE_THRESHOLD, duplicate_cosine: float = DUPLICATE_COSINE) -> BasisResult:
    """Sweep every basis vector over `scales` on the first `sources` clips' source frames."""
    n = runner.config.n_basis
    picked = clips[:max(1, sources)]
    sweep = [float(s) for s in scales]
    all_scales = sweep + ([0.0] if 0.0 not in sweep else [])  # λ = 0 is the reference of every Δ
    frames, cameras, lams = [], [], []
    for clip in picked:
        index = clip.source_index()
        for i in range(n):
            for s in all_scales:
                lam = np.zeros(n, dtype=np.float32)
                lam[i] = s
                frames.append(clip.frames[index])
                cameras.append(clip.cameras[index])
                lams.append(lam)
    images = runner.generate(frames, np.stack(cameras), lams=np.stack(lams), desc="basis sweep")
    beta = regressor.predict(images).expression.double().numpy()  # (S * n * K, beta_dim)
    sigma = regressor.target_std[:regressor.config.beta_dim].double().cpu().numpy()  # (beta_dim,)
    beta = beta.reshape(len(picked), n, len(all_scales), -1) / sigma  # (S, n, K, beta_dim) in std units
    zero = all_scales.index(0.0)
    delta = np.abs(beta - beta[:, :, zero:zero + 1]).mean(axis=0)  # (n, K, beta_dim)
    nonzero = [j for j, s in enumerate(all_scales) if s != 0.0]
    per_unit = delta[:, nonzero] / np.abs(np.asarray(all_scales)[nonzero])[None, :, None]  # (n, K', beta_dim)
    response = per_unit.mean(axis=1) if nonzero else np.zeros((n, beta.shape[-1]))  # (n, beta_dim)
    strength = delta.max(axis=(1, 2))  # (n,)
    kept = meaningful_vectors(response, strength, move_threshold, duplicate_cosine)
    first = images[:n * len(all_scales)]  # the first source's renders, row-major (vector, scale)
    cells = [first[i * len(all_scales) + j] for i in range(n) for j in range(len(sweep))]
    return BasisResult(response, strength, [bool(s >= move_threshold) for s in strength], kept, sweep,
                       sweep_grid(cells, n, len(sweep)))


def save_grid(grid: np.ndarray, path: str | Path) -> Path:
    """Write the sweep grid as a PNG (RGB)."""
    from PIL import Image

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(grid).save(path)
    return path


__all__ = ["BasisResult", "DEFAULT_SCALES", "MOVE_THRESHOLD", "DUPLICATE_COSINE", "sweep_grid",
           "meaningful_vectors", "basis_response", "save_grid"]
