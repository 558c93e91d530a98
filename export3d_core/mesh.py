"""Meshes of the head: marching cubes on the field's density, coloured by the colour branch.

The tri-plane is a real 3D head, so a mesh is its density's iso-surface. This module holds the
steps; `mesh_export.build_head_mesh` runs them as one job (the CLI's `export3d mesh` and the
editor's export job call it), reporting progress and honouring a cancel flag between bounded steps:

1. the iso level: the density σ = softplus(raw + density_shift) at which the mesh sits where the
   rendered depth does. Along every opaque ray of the frontal depth map the first crossing of a
   candidate level is compared with the rendered (expected) depth; the level with the smallest
   mean error wins (a ray the level never crosses counts as a miss to the far end of the ray).
2. σ on a regular grid over the tri-plane's box, evaluated in slabs of at most `FIELD_CHUNK`
   points, padded with one layer of empty space so the surface closes where it meets the box.
3. scikit-image's marching cubes at that level (on log σ, see `marching_surface`).
4. Pieces: by default (`keep="head"`) the connected piece with the most surface near the frontal
   view's axis is kept, which is where every aligned portrait puts the face, so the head and what
   it is joined to (neck, shoulders) stay. The demo model also paints the background with matter:
   pillars at the sides of the box, a slab at its top and floating specks of the thin medium
   behind the head; these are separate pieces and go. Where a pillar touches the shoulders, the
   joint is cut first (before marching cubes). The pieces are `mesh_pieces`' job. `keep="largest"` keeps the piece with
   the most faces instead (on the demo model that can be a pillar), `keep="all"` everything.
5. Optional decimation to a face count (fast-simplification's quadric decimation); the decimated
   vertices are put back on the surface and the few degenerate faces it leaves are dropped.
6. Vertex colours: the colour branch at each vertex; its first three channels are the raw RGB the
   renderer composites (sigmoid·1.002 − 0.001, clipped to [0, 1]).
7. The check: the mesh rasterised from the frontal camera against the rendered depth map.
8. Morph targets: for each basis vector, the base vertices moved along their normals onto the
   iso-surface of the field at λ_i = base_i + k; every target shares the base topology. A vertex
   whose search found nothing or jumped to another sheet takes its neighbours' offset; the flat
   cap where the head leaves the box stays put. Motion along the surface (lips sliding over each
   other) is not captured: only the surface's position along each normal (`mesh_morph`).

World units and axes are EG3D's (y up, the face looks toward +z), which are glTF's too.
"""
from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from export3d_core.camera import OrbitCamera
from export3d_core.errors import Export3DError
from export3d_core.export import ExportCancelled
from export3d_core.render.renderer import FIELD_CHUNK
from export3d_core.render.triplane import sample_triplane

KEEP_MODES = ("head", "largest", "all")
MIN_FACE_AREA = 1e-12  # world units²; a face at 256 points per side is ~1e-5
NEAR_LEVEL = math.log(10.0)  # a coarse σ within 10x of the level marks its cell for exact evaluation
LOG_FLOOR = 1e-12  # σ below this counts as this much (log σ stays finite), and so does the box's outside
PointFn = Callable[[np.ndarray], np.ndarray]  # points (N, 3) float32 -> values (N,) or (N, 3), numpy
ProgressFn = Callable[[int, int, str], None]  # (done, total, stage)


@dataclass(frozen=True)
class MeshSettings:
    """How a head mesh is made. A comment per field says what it changes."""

    resolution: int = 256  # grid points per side of the tri-plane box; a voxel is box / (resolution - 1)
    level: float | None = None  # iso level of σ; None: chosen so the mesh sits at the rendered depth
    faces: int | None = None  # decimate to about this many faces; None keeps marching cubes' faces
    keep: str = "head"  # "head": the piece at the frontal view's axis; "largest": the most faces; "all": every piece
    joint: float = 0.02  # keep="head": matter joined to the head by less than 2x this (world units) is cut off; 0: not
    opaque_alpha: float = 0.99  # frontal rays at least this opaque are the head the level is fitted to
    level_samples: int = 384  # σ samples per ray for the level's search (a step of ~1/4 voxel at 256)
    morph_targets: bool = False  # add one target per basis vector (GLB only)
    morph_scale: float = 10.0  # k: target i is the surface at λ_i = base_i + k (glTF weight 1 = +k)
    morph_search: float = 0.06  # world units searched along each vertex normal, both ways (~15 voxels)
    morph_steps: int = 25  # samples of that search; the crossing is then refined twice
    check_depth: bool = True  # rasterise the mesh and compare it with the frontal depth map
    # The grid is first sampled every `coarse_step` points per side, then evaluated exactly only
    # near the surface (`level_grid`); 1 evaluates every point (slower; catches matter thinner
    # than a coarse cell that never comes near the level at a coarse point).
    coarse_step: int = 4

    def __post_init__(self) -> None:
        if not 16 <= self.resolution <= 512:
            raise Export3DError(f"resolution must be between 16 and 512, got {self.resolution}")
        if self.level is not None and not (math.isfinite(self.level) and self.level > 0):
            raise Export3DError(f"the iso level must be a positive number, got {self.level}")
        if self.faces is not None and self.faces < 4:
            raise Export3DError(f"the face count must be at least 4, got {self.faces}")
        if self.keep not in KEEP_MODES:
            raise Export3DError(f"unknown piece filter {self.keep!r}; use one of {', '.join(KEEP_MODES)}")
        if not (math.isfinite(self.morph_scale) and self.morph_scale != 0):
            raise Export3DError(f"the morph scale must be a non-zero number, got {self.morph_scale}")
        if not (math.isfinite(self.joint) and self.joint >= 0):
            raise Export3DError(f"the joint width must be a number >= 0, got {self.joint}")
        if self.coarse_step < 1:
            raise Export3DError(f"the coarse step must be at least 1, got {self.coarse_step}")
        if not (self.morph_search > 0 and self.morph_steps >= 3):
            raise Export3DError("the morph search needs a positive distance and at least 3 steps")


@dataclass
class HeadMesh:
    """A coloured triangle mesh of the head, with optional morph targets on the same topology."""

    vertices: np.ndarray  # (V, 3) float32, world units
    faces: np.ndarray  # (F, 3) int64, counter-clockwise seen from outside
    colours: np.ndarray  # (V, 3) uint8, the colour branch's raw RGB
    level: float  # the iso level of σ the surface sits at
    lam: tuple[float, ...]  # λ of the base mesh
    targets: list[np.ndarray] = field(default_factory=list)  # (V, 3) float32 positions, one per basis vector
    target_names: tuple[str, ...] = ()
    morph_scale: float = 0.0  # k of the targets


@dataclass
class DepthCheck:
    """The mesh seen from the frontal camera against the rendered depth map (same rays)."""

    rays: int  # opaque rays (alpha >= opaque_alpha) of the depth map
    coverage: float  # share of those rays that hit the mesh
    mean_abs: float  # mean |mesh depth − rendered depth| on the covered rays, world units
    mean_signed: float  # mean (mesh depth − rendered depth): > 0 when the mesh lies behind the render
    median_abs: float
    p90_abs: float
    voxel: float  # the grid's voxel side, for scale
    colour_psnr: float  # vertex colours against the raw render on the covered rays, dB
    spill: float  # share of the mesh's pixels where the render is mostly empty (alpha < 0.5)


@dataclass
class MeshReport:
    level: float
    level_source: str  # "calibrated" or "given"
    level_error: float | None  # mean |first crossing − rendered depth| of the chosen level, world units
    check: DepthCheck | None = None
    check_skipped: str | None = None  # why there is no check (e.g. no OpenGL context)
    morph_found: list[float] = field(default_factory=list)  # per target: share of vertices whose search met the surface
    timings: dict[str, float] = field(default_factory=dict)  # seconds per stage


# -- the field ------------------------------------------------------------------------------------
class HeadField:
    """One portrait's radiance field at any λ, as numpy callables on world points.

    `planes_for(lam)` gives the (1, 3, C, R, R) tri-plane; a `PortraitSession`'s `planes` is one
    (cached per λ). Tests pass planes they built by hand, so the same code meshes them.
    """

    def __init__(self, model, planes_for: Callable[[Sequence[float]], torch.Tensor]) -> None:
        self.model = model
        self.planes_for = planes_for
        render = model.config.render
        self.half = render.box_warp / 2
        self.shift = render.density_shift
        self.device = next(model.parameters()).device

    @classmethod
    def from_portrait(cls, model, portrait: np.ndarray) -> "HeadField":
        """The field of a uint8 (H, W, 3) portrait, through its own session."""
        from export3d_core.session import PortraitSession

        session = PortraitSession(model, renderer="reference")
        session.set_portrait(portrait)
        return cls(model, session.planes)

    def _evaluate(self, lam, points: np.ndarray, colour: bool) -> np.ndarray:
        planes = self.planes_for(lam)
        warp, decoder = 2 * self.half, self.model.decoder
        out = []
        with torch.no_grad():
            for start in range(0, len(points), FIELD_CHUNK):
                chunk = torch.from_numpy(np.ascontiguousarray(points[start:start + FIELD_CHUNK], np.float32))
                features = sample_triplane(planes, chunk.to(self.device)[None], warp)
                if colour:
                    values = decoder(features)[1][0, :, :3]
                else:
                    values = F.softplus(decoder.density(features)[0, :, 0] + self.shift)
                out.append(values.float().cpu().numpy())
        return np.concatenate(out) if out else np.zeros((0, 3) if colour else (0,), np.float32)

    def density(self, lam) -> PointFn:
        """σ = softplus(raw + density_shift), the renderer's density."""
        return lambda points: self._evaluate(lam, points, colour=False)

    def colour(self, lam) -> PointFn:
        """The colour branch's first three channels, raw RGB in [-0.001, 1.001]."""
        return lambda points: self._evaluate(lam, points, colour=True)

    def frontal_view(self, lam, camera: OrbitCamera) -> dict[str, np.ndarray]:
        """The reference renderer's depth, opacity and raw RGB at `camera`, with its rays."""
        from export3d_core.render.rays import generate_rays

        model = self.model
        size = model.config.neural_size
        params = camera.params(device=self.device)[None]
        with torch.no_grad():
            out = model.render(self.planes_for(lam), params, super_resolve=False)
            origins, directions = generate_rays(params, size)
        return {
            "depth": out.depth[0, 0].float().cpu().numpy(),
            "alpha": out.alpha[0, 0].float().cpu().numpy(),
            "rgb": ((out.image_raw[0].float().clamp(-1, 1) + 1) / 2).permute(1, 2, 0).cpu().numpy(),
            "origins": origins[0].cpu().numpy(), "directions": directions[0].cpu().numpy(),
        }


# -- progress -------------------------------------------------------------------------------------
class _Steps:
    """Progress in units, a cancel check at every tick, and the seconds of each stage."""

    def __init__(self, total: int, progress: ProgressFn | None, should_cancel: Callable[[], bool] | None) -> None:
        self.total, self.done = total, 0
        self.progress, self.should_cancel = progress, should_cancel
        self.timings: dict[str, float] = {}
        self._stage, self._start = "", time.perf_counter()

    def stage(self, name: str) -> None:
        now = time.perf_counter()
        if self._stage:
            self.timings[self._stage] = self.timings.get(self._stage, 0.0) + now - self._start
        self._stage, self._start = name, now

    def tick(self, units: int = 1) -> None:
        if self.should_cancel is not None and self.should_cancel():
            raise ExportCancelled()
        self.done = min(self.total, self.done + units)
        if self.progress is not None:
            self.progress(self.done, self.total, self._stage)


# -- the level ------------------------------------------------------------------------------------
def first_crossings(sigma: np.ndarray, depths: np.ndarray, level: float) -> np.ndarray:
    """Depth where each ray's σ (R, S) first reaches `level` (linear between samples); NaN if never."""
    above = sigma >= level
    hit = above.any(axis=1)
    index = above.argmax(axis=1)
    before = np.maximum(index - 1, 0)
    rows = np.arange(len(sigma))
    s0, s1 = sigma[rows, before], sigma[rows, index]
    frac = np.clip((level - s0) / np.maximum(s1 - s0, 1e-12), 0.0, 1.0)
    crossing = depths[before] + frac * (depths[index] - depths[before])
    return np.where(hit, crossing, np.nan)


def calibrate_level(density: PointFn, view: dict[str, np.ndarray], ray_start: float, ray_end: float,
                    opaque_alpha: float, samples: int) -> tuple[float, float]:
    """The σ level whose first crossing along the opaque frontal rays best matches the rendered depth.

    Returns (level, mean absolute error in world units). A ray that never reaches a level counts
    as a miss to the far end of the ray, so a level too high to cover the head loses.
    """
    opaque = view["alpha"].reshape(-1) >= opaque_alpha
    if opaque.sum() < 16:
        raise Export3DError("cannot choose the iso level: the frontal view has almost no opaque pixels; "
                            "pass a level (--level)")
    origins, directions = view["origins"][opaque], view["directions"][opaque]
    rendered = view["depth"].reshape(-1)[opaque]
    depths = np.linspace(ray_start, ray_end, samples, dtype=np.float32)
    points = origins[:, None] + depths[None, :, None] * directions[:, None]
    sigma = density(points.reshape(-1, 3)).reshape(len(rendered), samples)
    top = float(sigma.max())
    if not top > 0:
        raise Export3DError("cannot choose the iso level: the field is empty along the frontal rays")
    best = (math.inf, top)
    for level in np.geomspace(top * 1e-4, top * 0.9, 96):
        crossing = first_crossings(sigma, depths, float(level))
        error = np.where(np.isnan(crossing), np.abs(ray_end - rendered), np.abs(crossing - rendered))
        best = min(best, (float(error.mean()), float(level)))
    return best[1], best[0]


# -- the surface ----------------------------------------------------------------------------------
def grid_axis(half: float, resolution: int) -> np.ndarray:
    return np.linspace(-half, half, resolution, dtype=np.float32)


def density_grid(density: PointFn, half: float, resolution: int, tick: Callable[[], None] | None = None) -> np.ndarray:
    """σ at resolution³ grid points over [-half, half]³, one x-slab (resolution² points) at a time."""
    axis = grid_axis(half, resolution)
    ys, zs = np.meshgrid(axis, axis, indexing="ij")
    grid = np.empty((resolution,) * 3, np.float32)
    for i, x in enumerate(axis):
        points = np.stack([np.full_like(ys, x), ys, zs], axis=-1).reshape(-1, 3)
        grid[i] = density(points).reshape(resolution, resolution)
        if tick is not None:
            tick()
    return grid


def level_grid(density: PointFn, half: float, resolution: int, level: float, step: int,
               tick: Callable[[], None] | None = None) -> np.ndarray:
    """σ on the same grid as `density_grid`, exact wherever the surface σ = level can be.

    A coarse grid with about 1/step of the points per side comes first. Its cells whose corners
    straddle the level or come within a factor NEAR_LEVEL of it, and their neighbours, are then
    evaluated at every grid point; elsewhere σ is interpolated from the coarse grid (log-linearly),
    which stays on the same side of the level, so marching cubes finds the same surface. Matter
    thinner than a coarse cell that never comes near the level at a coarse point is missed:
    step 1 evaluates everything. Calls `tick` `resolution` times.
    """
    from scipy.ndimage import binary_dilation, zoom

    coarse_n = -(-(resolution - 1) // step) + 1
    if step <= 1 or coarse_n < 4:
        return density_grid(density, half, resolution, tick)
    log_level = math.log(level)
    coarse = np.log(np.maximum(density_grid(density, half, coarse_n), LOG_FLOOR)) - log_level
    corners = np.stack([coarse[a:coarse_n - 1 + a, b:coarse_n - 1 + b, c:coarse_n - 1 + c]
                        for a in (0, 1) for b in (0, 1) for c in (0, 1)])
    near = ((corners.min(axis=0) < 0) & (corners.max(axis=0) >= 0)) | (np.abs(corners) < NEAR_LEVEL).any(axis=0)
    cells = binary_dilation(near, np.ones((3, 3, 3), bool))
    # A grid point is in the cell its coordinates floor to; one more grid point around every
    # such point adds the far faces of those cells.
    cell_of = np.minimum(np.arange(resolution) * (coarse_n - 1) // (resolution - 1), coarse_n - 2)
    exact = binary_dilation(cells[np.ix_(cell_of, cell_of, cell_of)], np.ones((3, 3, 3), bool))
    grid = np.exp(zoom(coarse, resolution / coarse_n, order=1, grid_mode=False) + log_level).astype(np.float32)
    axis = grid_axis(half, resolution)
    for i, x in enumerate(axis):
        j, k = np.nonzero(exact[i])
        if len(j):
            grid[i, j, k] = density(np.stack([np.full(len(j), x, np.float32), axis[j], axis[k]], axis=-1))
        if tick is not None:
            tick()
    return grid


def marching_surface(grid: np.ndarray, level: float, half: float) -> tuple[np.ndarray, np.ndarray]:
    """scikit-image's marching cubes at σ = `level`; one empty layer around the grid closes the surface."""
    from skimage import measure

    spacing = 2 * half / (grid.shape[0] - 1)
    top = float(grid.max())
    if not top > level or level <= LOG_FLOOR:
        raise Export3DError(f"the density never exceeds the level {level:g} in the head's box "
                            f"(its maximum is {top:.4g}); choose a lower --level")
    # On log σ: across a surface σ changes by orders of magnitude within a voxel, so marching
    # cubes' linear interpolation of σ itself puts the vertices up to a voxel too far out (on a
    # ball, mean radius +1.5 %); log σ is close to linear there. The iso-surface is the same.
    log_grid = np.log(np.maximum(grid, LOG_FLOOR))
    padded = np.pad(log_grid, 1, mode="constant", constant_values=math.log(LOG_FLOOR))
    vertices, faces, _, _ = measure.marching_cubes(padded, math.log(level), spacing=(spacing,) * 3,
                                                   allow_degenerate=False)
    vertices = vertices - (spacing + half)  # padded index p sits at -half + (p - 1) * spacing
    # scikit-image winds its triangles clockwise seen from the high-density side's outside;
    # reversing them gives the counter-clockwise outward winding glTF and PLY readers expect.
    return vertices.astype(np.float32), faces[:, ::-1].astype(np.int64)


def compact(vertices: np.ndarray, faces: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Drop vertices no face uses and renumber the faces."""
    used, inverse = np.unique(faces.reshape(-1), return_inverse=True)
    return vertices[used], inverse.reshape(faces.shape).astype(np.int64)


def decimate(vertices: np.ndarray, faces: np.ndarray, target: int) -> tuple[np.ndarray, np.ndarray]:
    """Quadric decimation to about `target` faces (fast-simplification, the library trimesh wraps)."""
    if target >= len(faces):
        return vertices, faces
    try:
        from fast_simplification import simplify
    except ImportError:
        raise Export3DError("decimation needs the fast-simplification package: "
                            "pip install fast-simplification") from None
    points, triangles = simplify(vertices.astype(np.float32), faces.astype(np.int32), target_count=int(target))
    return compact(np.asarray(points, np.float32), np.asarray(triangles, np.int64))


def drop_fins(vertices: np.ndarray, faces: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Remove faces of (near) zero area and every copy of a face repeated on the same three
    vertices. Decimation leaves a few such pairs wound both ways (fins of no volume); their
    normals cancel, and a vertex with a zero normal is invalid glTF."""
    keys = np.sort(faces, axis=1)
    _, inverse, counts = np.unique(keys, axis=0, return_inverse=True, return_counts=True)
    edges = vertices[faces[:, 1:]] - vertices[faces[:, :1]]
    area = 0.5 * np.linalg.norm(np.cross(edges[:, 0], edges[:, 1]), axis=1)
    keep = (counts[inverse.reshape(-1)] == 1) & (area > MIN_FACE_AREA)
    return compact(vertices, faces[keep])


def vertex_normals(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """Area-weighted outward unit normals per vertex (trimesh's)."""
    import trimesh

    return np.asarray(trimesh.Trimesh(vertices, faces, process=False).vertex_normals, np.float32)


def to_rgb8(colour: np.ndarray) -> np.ndarray:
    return np.round(np.clip(colour, 0.0, 1.0) * 255).astype(np.uint8)


def default_names(n: int) -> tuple[str, ...]:
    """The sliders' default names, which `--lam v1=...` uses too."""
    return tuple(f"v{i + 1}" for i in range(n))
