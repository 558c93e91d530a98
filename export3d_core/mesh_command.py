"""`export3d mesh`: the head as a coloured PLY/OBJ/GLB mesh, optionally with morph targets (GLB).

`run_mesh_export(model, portrait, args)` does the work on an already-built model, so a model
fitted to the portrait can come through the same path as a checkpoint's.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from export3d_core.errors import Export3DError
from export3d_core.export import STILL_SUFFIXES, check_target, write_png
from export3d_core.mesh import KEEP_MODES, MeshSettings
from export3d_core.mesh_export import export_head_mesh
from export3d_core.mesh_io import check_mesh_target, validate_glb
from export3d_core.view_commands import add_model_arguments, apply_fit_argument, load_model, parse_lambda


def add_mesh_command(subparsers) -> None:
    mesh = subparsers.add_parser("mesh", help="export the head as a coloured mesh (.ply, .obj, .glb)")
    add_model_arguments(mesh)
    mesh.add_argument("--portrait", type=Path, help="portrait photo (default: a shipped demo portrait)")
    mesh.add_argument("--face-index", type=int, default=None, help="which face when the photo has several")
    mesh.add_argument("--fit", type=Path, help="a fit file of this portrait (from `export3d fit`)")
    mesh.add_argument("--lam", help="coefficients, e.g. v1=2.5,v3=-4 (others 0); the base of morph targets")
    mesh.add_argument("--resolution", type=int, default=256, help="grid points per side of the head's box")
    mesh.add_argument("--level", type=float, default=None,
                      help="iso level of the density (default: fitted to the rendered depth)")
    mesh.add_argument("--faces", type=int, default=None, help="decimate to about this many faces")
    mesh.add_argument("--keep", choices=KEEP_MODES, default="head",
                      help="pieces to keep: the head (default), the largest piece, or all")
    mesh.add_argument("--morph-targets", action="store_true", help="one morph target per basis vector (.glb)")
    mesh.add_argument("--morph-scale", type=float, default=10.0,
                      help="k: target i is the head at λ_i + k (glTF weight 1 = +k)")
    mesh.add_argument("--names", help="comma-separated target names (default v1..vn, as in --lam)")
    mesh.add_argument("--preview", type=Path, help="also write a PNG of the written mesh from three sides")
    mesh.add_argument("--overwrite", action="store_true", help="replace existing output files")
    mesh.add_argument("-o", "--output", type=Path, required=True, help="head.ply, head.obj or head.glb")
    mesh.set_defaults(handler=run_mesh)


def run_mesh(args: argparse.Namespace) -> int:
    from export3d_core.portrait import default_portrait, load_portrait

    settings = mesh_settings(args)
    check_mesh_target(args.output, args.overwrite, settings.morph_targets)  # before loading anything
    if args.preview is not None:
        check_target(args.preview, STILL_SUFFIXES, args.overwrite)
    model = load_model(args)
    portrait = load_portrait(args.portrait or default_portrait().path, model.config.input_size,
                             face_index=args.face_index)
    apply_fit_argument(args, model, portrait)
    return run_mesh_export(model, portrait.image, args, settings)


def mesh_settings(args: argparse.Namespace) -> MeshSettings:
    return MeshSettings(resolution=args.resolution, level=args.level, faces=args.faces, keep=args.keep,
                        morph_targets=args.morph_targets, morph_scale=args.morph_scale)


def run_mesh_export(model, portrait: np.ndarray, args: argparse.Namespace, settings: MeshSettings) -> int:
    """Mesh `portrait` with `model` as `args` ask, with a progress bar, and print what was made."""
    from tqdm import tqdm

    n_basis = model.config.n_basis
    lam = parse_lambda(args.lam, n_basis)
    names = parse_names(args.names, n_basis)
    bar = tqdm(total=1, desc="mesh", unit="step")

    def progress(done: int, total: int, stage: str) -> None:
        bar.total = total
        bar.set_description_str(f"mesh: {stage}" if stage else "mesh")
        bar.update(done - bar.n)

    try:
        path, mesh, report = export_head_mesh(model, portrait, lam, args.output, settings, names=names,
                                              overwrite=args.overwrite, progress=progress)
    finally:
        bar.close()
    print_report(path, mesh, report)
    if getattr(args, "preview", None) is not None:
        from export3d_core.mesh_raster import preview_file

        image = preview_file(path)
        print(f"wrote {write_png(args.preview, image, overwrite=args.overwrite)} (the mesh file from three sides)")
    return 0


def parse_names(text: str | None, n_basis: int) -> tuple[str, ...] | None:
    if not text:
        return None
    names = tuple(part.strip() for part in text.split(","))
    if len(names) != n_basis or not all(names):
        raise Export3DError(f"--names needs {n_basis} non-empty comma-separated names, got {len(names)}")
    return names


def print_report(path: Path, mesh, report) -> None:
    size = path.stat().st_size
    print(f"wrote {path} ({len(mesh.vertices):,} vertices, {len(mesh.faces):,} faces, {size / 1e6:.2f} MB)")
    how = f"fitted to the frontal depth, mean first-crossing error {report.level_error:.4f}" \
        if report.level_source == "calibrated" else "given"
    print(f"iso level σ = {report.level:.4g} ({how})")
    check = report.check
    if check is not None:
        print(f"frontal depth check: mesh vs rendered depth on {check.coverage:.1%} of {check.rays} opaque rays: "
              f"mean {check.mean_abs:.4f} (signed {check.mean_signed:+.4f}), median {check.median_abs:.4f}, "
              f"p90 {check.p90_abs:.4f} "
              f"(voxel {check.voxel:.4f}); vertex colours {check.colour_psnr:.1f} dB; spill {check.spill:.1%}")
    elif report.check_skipped:
        print(f"frontal depth check skipped: {report.check_skipped}")
    if mesh.targets:
        summary = validate_glb(path)
        found = min(report.morph_found)
        print(f"{summary.targets} morph targets ({', '.join(summary.target_names)}), each with "
              f"{summary.vertices:,} vertices; surface found for ≥ {found:.1%} of vertices per target")
    timings = ", ".join(f"{stage} {seconds:.1f} s" for stage, seconds in report.timings.items())
    print(f"times: {timings}")
