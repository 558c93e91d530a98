"""The mesh export job: field -> mesh (-> morph targets) -> checked -> written atomically.

`export_head_mesh(model, portrait, lam, path, settings, ...)` is what both the CLI and the
editor's export job call, with an already-built model (a checkpoint's, or one fitted to the
portrait). `progress(done, total, stage)` is called after each bounded step and
`should_cancel()` is polled there; on cancel it raises `export.ExportCancelled` and writes nothing.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from export3d_core.camera import OrbitCamera
from export3d_core.errors import Export3DError
from export3d_core.export import ExportCancelled
from export3d_core.mesh import (DepthCheck, HeadField, HeadMesh, MeshReport, MeshSettings, ProgressFn, _Steps,
                                calibrate_level, decimate, default_names, drop_fins, level_grid, marching_surface,
                                to_rgb8, vertex_normals)
from export3d_core.mesh_morph import morph_lambdas, project_onto_level, settle_offsets
from export3d_core.mesh_pieces import head_region, keep_pieces
from export3d_core.mesh_io import check_mesh_target, write_head_mesh

MORPH_TICKS = 8  # progress units per morph target
SPIKE_VOXELS = 3.0  # a target offset this far from its neighbours' median is a jump to another sheet


def export_head_mesh(model, portrait: np.ndarray, lam: Sequence[float], path: Path, settings: MeshSettings,
                     *, names: Sequence[str] | None = None, overwrite: bool = False,
                     progress: ProgressFn | None = None,
                     should_cancel: Callable[[], bool] | None = None) -> tuple[Path, HeadMesh, MeshReport]:
    """Mesh the head of `portrait` (uint8 RGB, any size) at λ and write it to `path` (.ply/.obj/.glb)."""
    path = check_mesh_target(path, overwrite, settings.morph_targets)
    field = HeadField.from_portrait(model, portrait)
    mesh, report = build_head_mesh(field, lam, settings, names=names, progress=progress,
                                   should_cancel=should_cancel)
    if should_cancel is not None and should_cancel():
        raise ExportCancelled()
    return write_head_mesh(path, mesh, overwrite=overwrite), mesh, report


def mesh_progress_total(settings: MeshSettings, n_basis: int) -> int:
    """The `total` every progress call of a mesh job with these settings reports (for a progress
    bar sized before the job starts): one unit per grid slab, 16 for the other steps, and
    MORPH_TICKS per morph target."""
    return settings.resolution + 16 + (MORPH_TICKS * n_basis if settings.morph_targets else 0)


def build_head_mesh(field: HeadField, lam: Sequence[float], settings: MeshSettings, *,
                    names: Sequence[str] | None = None, progress: ProgressFn | None = None,
                    should_cancel: Callable[[], bool] | None = None,
                    camera: OrbitCamera = OrbitCamera()) -> tuple[HeadMesh, MeshReport]:
    """The mesh of `field` at λ (see the steps in `export3d_core.mesh`) and what was measured."""
    lam = tuple(float(v) for v in lam)
    n_basis = field.model.config.n_basis
    if len(lam) != n_basis:
        raise Export3DError(f"λ needs {n_basis} values, got {len(lam)}")
    names = tuple(names) if names is not None else default_names(n_basis)
    if len(names) != n_basis:
        raise Export3DError(f"{len(names)} target names for {n_basis} basis vectors")
    steps = _Steps(mesh_progress_total(settings, n_basis), progress, should_cancel)
    render = field.model.config.render

    steps.stage("frontal view")
    view = field.frontal_view(lam, camera)
    steps.tick()
    steps.stage("level")
    if settings.level is None:
        level, level_error = calibrate_level(field.density(lam), view, render.ray_start, render.ray_end,
                                             settings.opaque_alpha, settings.level_samples)
        report = MeshReport(level, "calibrated", level_error)
    else:
        report = MeshReport(settings.level, "given", None)
    steps.tick(3)
    mesh = _surface(field, lam, report.level, settings, steps, camera)
    mesh.target_names = names
    if settings.check_depth:
        steps.stage("depth check")
        _check(mesh, view, camera, field, settings, report)
    steps.tick(2)
    if settings.morph_targets:
        _add_targets(mesh, field, settings, steps, report)
    steps.stage("")
    report.timings = steps.timings
    return mesh, report


def _surface(field: HeadField, lam: tuple[float, ...], level: float, settings: MeshSettings,
             steps: _Steps, camera: OrbitCamera) -> HeadMesh:
    """Grid, marching cubes, pieces, decimation and colours (10 progress units + one per slab)."""
    steps.stage("density grid")
    grid = level_grid(field.density(lam), field.half, settings.resolution, level, settings.coarse_step, steps.tick)
    if settings.keep == "head" and settings.joint > 0:
        steps.stage("pieces")
        grid[(grid > level) & ~head_region(grid, level, field.half, camera, settings.joint)] = 0.0
    steps.stage("marching cubes")
    vertices, faces = marching_surface(grid, level, field.half)
    del grid
    steps.tick(4)
    steps.stage("pieces")
    vertices, faces = keep_pieces(vertices, faces, settings.keep, camera)
    steps.tick()
    if settings.faces is not None and settings.faces < len(faces):
        steps.stage("decimation")
        vertices, faces = decimate(vertices, faces, settings.faces)
        # Quadric decimation places vertices off the surface (on the tests' ball by up to 0.003, an
        # eighth of a voxel); back on it, the base agrees with its morph targets, which are
        # projected onto the surface too.
        voxel = _voxel(field, settings)
        vertices, _ = project_onto_level(field.density(lam), vertices, vertex_normals(vertices, faces), level,
                                         3 * voxel, 13)
        vertices, faces = drop_fins(vertices, faces)
    steps.tick(3)
    if len(faces) == 0:
        raise Export3DError(f"the surface at level {level:g} is empty; choose another --level")
    steps.stage("colours")
    colours = to_rgb8(field.colour(lam)(vertices))
    steps.tick(2)
    return HeadMesh(vertices, faces, colours, level, lam)


def _check(mesh: HeadMesh, view: dict[str, np.ndarray], camera: OrbitCamera, field: HeadField,
           settings: MeshSettings, report: MeshReport) -> None:
    """Rasterise the mesh at the frontal camera and compare it with the rendered depth and colour."""
    from export3d_core.mesh_raster import rasterise

    size = view["depth"].shape[0]
    try:
        raster = rasterise(mesh.vertices, mesh.faces, mesh.colours, vertex_normals(mesh.vertices, mesh.faces),
                           camera.params().numpy(), size)
    except Export3DError as exc:
        report.check_skipped = str(exc)
        return
    origin = np.asarray(camera.origin(), np.float32)
    mesh_depth = np.linalg.norm(raster.position - origin, axis=-1)
    opaque = view["alpha"] >= settings.opaque_alpha
    both = opaque & raster.covered
    spill = float((raster.covered & (view["alpha"] < 0.5)).sum() / max(1, raster.covered.sum()))
    if not both.any():
        report.check = DepthCheck(int(opaque.sum()), 0.0, *(float("nan"),) * 4, _voxel(field, settings),
                                  float("nan"), spill)
        return
    signed = (mesh_depth - view["depth"])[both]
    error = np.abs(signed)
    mse = float(np.mean((raster.colour[both] - view["rgb"][both]) ** 2))
    report.check = DepthCheck(
        rays=int(opaque.sum()), coverage=float(both.sum() / opaque.sum()), mean_abs=float(error.mean()),
        mean_signed=float(signed.mean()),
        median_abs=float(np.median(error)), p90_abs=float(np.percentile(error, 90)),
        voxel=_voxel(field, settings), colour_psnr=float(10 * np.log10(1.0 / max(mse, 1e-12))), spill=spill)


def _voxel(field: HeadField, settings: MeshSettings) -> float:
    return 2 * field.half / (settings.resolution - 1)


def _add_targets(mesh: HeadMesh, field: HeadField, settings: MeshSettings, steps: _Steps,
                 report: MeshReport) -> None:
    """One target per basis vector: the base vertices projected onto the surface at λ_i + k."""
    normals = vertex_normals(mesh.vertices, mesh.faces)
    voxel = _voxel(field, settings)
    # Where the head leaves the box the surface is a flat cap the grid's empty border adds, not
    # the field's: it stays put.
    on_box = (np.abs(mesh.vertices) > field.half - 1.5 * voxel).any(axis=1)
    chunks = max(1, -(-len(mesh.vertices) // max(1, 65536 // settings.morph_steps)))
    for index, target_lam in enumerate(morph_lambdas(mesh.lam, settings.morph_scale)):
        steps.stage("morph targets")
        ticked = 0

        def tick() -> None:
            nonlocal ticked
            units = (ticked + 1) * MORPH_TICKS // chunks - ticked * MORPH_TICKS // chunks
            ticked += 1
            steps.tick(units)

        moved, found = project_onto_level(field.density(target_lam), mesh.vertices, normals, mesh.level,
                                          settings.morph_search, settings.morph_steps, tick)
        offsets = settle_offsets(((moved - mesh.vertices) * normals).sum(axis=1), found, mesh.faces,
                                 SPIKE_VOXELS * voxel)
        offsets[on_box] = 0.0
        mesh.targets.append((mesh.vertices + offsets[:, None] * normals).astype(np.float32))
        report.morph_found.append(float(found.mean()))
    mesh.morph_scale = settings.morph_scale
