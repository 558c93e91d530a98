"""Mesh export: marching cubes on the field, level fitted to the rendered depth, colours, morph targets, files.

The known fields are built the way the model computes every field: a tri-plane sampled by
`sample_triplane` and decoded by the tiny model's own decoder, whose weights are set so that the
density is a ball of known radius and the colour is red for x > 0 and blue for x < 0.
"""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import trimesh

from export3d_core.errors import Export3DError
from export3d_core.export import ExportCancelled
from export3d_core.mesh import HeadField, MeshSettings, density_grid
from export3d_core.mesh_export import build_head_mesh, export_head_mesh, mesh_progress_total
from export3d_core.mesh_io import validate_glb, write_head_mesh

RADIUS = 0.25
GROWTH = 0.002  # radius per unit of λ_1: the sphere's only expression
PLANE_RES = 128
STEEP = 200.0  # raw density per unit of the decoder's hidden unit: a sharp, opaque surface


def plane_coords() -> tuple[torch.Tensor, torch.Tensor]:
    """World coordinates of the texel centres along the width and height of a plane (box 1)."""
    centres = (torch.arange(PLANE_RES, dtype=torch.float32) * 2 + 1) / PLANE_RES - 1  # align_corners=False
    world = centres * 0.5
    height, width = torch.meshgrid(world, world, indexing="ij")
    return width, height


def ball_planes(model, radius: float) -> torch.Tensor:
    """Channel 0: a sum of squares whose mean over the planes is 2/3 r²; channel 1: 2/3 x."""
    width, height = plane_coords()
    planes = torch.zeros(1, 3, model.config.plane_channels, PLANE_RES, PLANE_RES)
    planes[0, :, 0] = width ** 2 + height ** 2  # (x,y), (x,z), (z,y): every axis twice
    planes[0, 0, 1] = width  # x is the width axis of planes 0 and 1
    planes[0, 1, 1] = width
    planes[0, :, 2] = radius ** 2 * 2 / 3  # the ball's radius, read by the decoder below
    planes[0, :, 3] = 1.0  # 1 inside the box, at most 1/3 outside it (zero padding): outside stays empty
    return planes


def make_ball_decoder(model) -> None:
    """Density: hidden h = softplus(50 (channel 2 − channel 0) − 100 (1 − channel 3)), ln 2 at r = radius;
    raw = STEEP (h − ln 2), so σ = softplus(raw − 1) equals softplus(−1) exactly on the sphere.
    Colour: red rises with x, blue falls with it, green stays dark."""
    density, colour = model.decoder.density, model.decoder.colour
    with torch.no_grad():
        for layer in (density[0], density[2], colour[0], colour[2]):
            layer.weight.zero_(), layer.bias.zero_()
        density[0].weight[0, 0], density[0].weight[0, 2] = -50.0, 50.0
        density[0].weight[0, 3], density[0].bias[0] = 100.0, -100.0
        density[2].weight[0, 0], density[2].bias[0] = STEEP, -STEEP * math.log(2)
        colour[0].weight[0, 1], colour[0].weight[1, 1] = 30.0, -30.0  # softplus(u) − softplus(−u) = u
        colour[2].weight[0, 0], colour[2].weight[0, 1] = 20.0, -20.0  # R
        colour[2].weight[2, 0], colour[2].weight[2, 1] = -20.0, 20.0  # B
        colour[2].bias[1] = -6.0  # G


SURFACE_LEVEL = math.log1p(math.exp(-1.0))  # σ on the sphere


@pytest.fixture
def ball_field(tiny_model) -> HeadField:
    make_ball_decoder(tiny_model)
    return HeadField(tiny_model, lambda lam: ball_planes(tiny_model, RADIUS + GROWTH * float(lam[0])))


def radii(vertices: np.ndarray) -> np.ndarray:
    return np.linalg.norm(vertices, axis=1)


def test_ball_mesh_lies_at_its_radius_within_a_voxel(ball_field):
    settings = MeshSettings(resolution=64, level=SURFACE_LEVEL, check_depth=False)
    mesh, _ = build_head_mesh(ball_field, [0.0] * 10, settings)
    voxel = 1.0 / 63
    assert len(mesh.faces) > 1000
    assert np.abs(radii(mesh.vertices) - RADIUS).max() < voxel
    tm = trimesh.Trimesh(mesh.vertices, mesh.faces, process=False)
    assert tm.is_watertight and tm.volume > 0  # closed, wound outward
    assert tm.volume == pytest.approx(4 / 3 * math.pi * RADIUS ** 3, rel=0.04)


def test_coarse_to_fine_grid_gives_the_same_surface_from_fewer_points(ball_field):
    from export3d_core.mesh import level_grid, marching_surface

    counted = []
    density = ball_field.density([0.0] * 10)

    def counting(points):
        counted.append(len(points))
        return density(points)

    dense = density_grid(counting, ball_field.half, 64)
    dense_points, counted[:] = sum(counted), []
    sparse = level_grid(counting, ball_field.half, 64, SURFACE_LEVEL, step=4)
    assert sum(counted) < 0.6 * dense_points
    for got, want in zip(marching_surface(sparse, SURFACE_LEVEL, 0.5), marching_surface(dense, SURFACE_LEVEL, 0.5)):
        np.testing.assert_array_equal(got, want)


def test_head_region_cuts_a_thin_joint_to_the_background_and_keeps_thin_parts_of_the_head():
    from export3d_core.camera import OrbitCamera
    from export3d_core.mesh_pieces import head_region

    axis = np.linspace(-0.5, 0.5, 101)
    x, y, z = np.meshgrid(axis, axis, axis, indexing="ij")
    ball = x ** 2 + y ** 2 + z ** 2 < 0.2 ** 2
    pillar = (x > 0.3) & (x < 0.45)  # the whole height, like the demo model's background
    bridge = (x > 0) & (x < 0.35) & (np.abs(y + 0.1) < 0.012) & (np.abs(z) < 0.012)  # 0.024 thick
    ear = (x < 0) & (x > -0.28) & (np.abs(y) < 0.05) & (np.abs(z) < 0.008)  # thin, joined to the ball
    grid = np.where(ball | pillar | bridge | ear, 10.0, 0.0)
    region = head_region(grid, 1.0, 0.5, OrbitCamera(pivot=(0.0, 0.0, 0.0)), joint=0.02)
    assert region[ball].all() and region[ear].all()
    assert not region[pillar].any()
    assert region[bridge].mean() < 0.9  # cut on its way to the pillar


def test_fitted_level_puts_the_ball_at_the_rendered_depth(ball_field):
    settings = MeshSettings(resolution=64)
    mesh, report = build_head_mesh(ball_field, [0.0] * 10, settings)
    assert report.level_source == "calibrated"
    check = report.check
    assert check.rays > 100 and check.coverage > 0.95
    assert check.mean_abs < check.voxel and check.spill < 0.05
    # The rendered depth of a sharp ball is its surface: the fitted level lands near it.
    assert abs(np.median(radii(mesh.vertices)) - RADIUS) < 2 * check.voxel


def test_two_coloured_field_colours_the_right_sides(ball_field):
    mesh, report = build_head_mesh(ball_field, [0.0] * 10, MeshSettings(resolution=48, level=SURFACE_LEVEL))
    x = mesh.vertices[:, 0]
    right, left = mesh.colours[x > 0.05], mesh.colours[x < -0.05]
    assert len(right) > 100 and len(left) > 100
    assert (right[:, 0] > 200).all() and (right[:, 2] < 55).all()
    assert (left[:, 2] > 200).all() and (left[:, 0] < 55).all()
    assert (mesh.colours[:, 1] < 5).all()
    assert report.check.colour_psnr > 15  # the rasterised colours agree with the raw render


def test_glb_has_ten_morph_targets_on_the_base_topology(ball_field, tmp_path):
    settings = MeshSettings(resolution=40, level=SURFACE_LEVEL, morph_targets=True, morph_scale=10.0,
                            faces=1500, check_depth=False)
    names = tuple(f"slider {i}" for i in range(10))
    calls = []
    mesh, report = build_head_mesh(ball_field, [0.0] * 10, settings, names=names,
                                   progress=lambda done, total, stage: calls.append((done, total, stage)))
    assert len(mesh.faces) <= 1500 and len(mesh.targets) == 10
    total = mesh_progress_total(settings, 10)
    assert {t for _, t, _ in calls} == {total} and calls[-1][0] == total
    assert all(a[0] <= b[0] for a, b in zip(calls, calls[1:]))
    assert {"density grid", "marching cubes", "decimation", "morph targets"} <= {stage for *_, stage in calls}
    assert min(report.morph_found) > 0.99
    # λ_1 = +10 grows the ball by 0.02; the other basis vectors leave it as it is.
    assert np.abs(radii(mesh.targets[0]) - (RADIUS + 10 * GROWTH)).max() < 0.004
    assert np.abs(radii(mesh.targets[3]) - radii(mesh.vertices)).max() < 1e-3
    path = write_head_mesh(tmp_path / "ball.glb", mesh)

    summary = validate_glb(path)
    assert (summary.vertices, summary.faces, summary.targets) == (len(mesh.vertices), len(mesh.faces), 10)
    assert summary.target_names == names and summary.has_colours
    loaded = trimesh.load(path, process=False)
    (geometry,) = loaded.geometry.values()
    assert len(geometry.vertices) == len(mesh.vertices)
    np.testing.assert_allclose(geometry.vertices, mesh.vertices, atol=1e-6)
    np.testing.assert_allclose(read_target(path, 0), mesh.targets[0] - mesh.vertices, atol=1e-6)


def test_settle_offsets_removes_lone_jumps_and_fills_misses():
    from export3d_core.mesh_morph import settle_offsets

    sphere = trimesh.creation.icosphere(subdivisions=3)
    offsets = np.full(len(sphere.vertices), 0.01)
    found = np.ones(len(sphere.vertices), bool)
    offsets[5], found[9] = 0.5, False  # a jump to another sheet, a search that met nothing
    settled = settle_offsets(offsets, found, np.asarray(sphere.faces), limit=0.05)
    np.testing.assert_allclose(settled, 0.01, atol=1e-9)


def test_drop_fins_removes_faces_wound_both_ways_and_zero_area_faces():
    from export3d_core.mesh import drop_fins, vertex_normals

    box = trimesh.creation.box()
    vertices = np.concatenate([box.vertices, [[2.0, 0, 0], [3.0, 0, 0]]])  # a fin's tip, a sliver's
    fin = [[0, 1, 8], [0, 8, 1]]  # the same triangle both ways: its tip's normal would be zero
    sliver = [[0, 0, 9]]  # no area
    faces = np.concatenate([box.faces, fin, sliver])
    assert np.linalg.norm(vertex_normals(vertices, faces), axis=1).min() < 0.5
    kept_vertices, kept_faces = drop_fins(vertices, faces)
    assert len(kept_faces) == len(box.faces) and len(kept_vertices) == 8
    np.testing.assert_allclose(np.linalg.norm(vertex_normals(kept_vertices, kept_faces), axis=1), 1.0, atol=1e-6)


def read_target(path, index: int) -> np.ndarray:
    """The POSITION displacements of morph target `index`, read with pygltflib."""
    from pygltflib import GLTF2

    gltf = GLTF2().load(str(path))
    target = gltf.meshes[0].primitives[0].targets[index]
    accessor = gltf.accessors[target["POSITION"] if isinstance(target, dict) else target.POSITION]
    view = gltf.bufferViews[accessor.bufferView]
    blob = gltf.binary_blob()
    start = view.byteOffset + (accessor.byteOffset or 0)
    return np.frombuffer(blob[start:start + accessor.count * 12], np.float32).reshape(-1, 3)


def test_ply_and_obj_load_back_with_colours(ball_field, tmp_path):
    mesh, _ = build_head_mesh(ball_field, [0.0] * 10, MeshSettings(resolution=32, level=SURFACE_LEVEL,
                                                                   check_depth=False))
    for suffix in (".ply", ".obj"):
        path = write_head_mesh(tmp_path / f"ball{suffix}", mesh)
        loaded = trimesh.load(path, process=False)
        assert len(loaded.vertices) == len(mesh.vertices) and len(loaded.faces) == len(mesh.faces)
        np.testing.assert_array_equal(loaded.visual.vertex_colors[:, :3], mesh.colours)
        with pytest.raises(Export3DError, match="exists"):
            write_head_mesh(path, mesh)
    with pytest.raises(Export3DError, match="glb"):
        mesh.targets = [mesh.vertices] * 10
        write_head_mesh(tmp_path / "targets.ply", mesh)


@pytest.mark.parametrize("cancel_after", [3, 40])
def test_cancelled_export_leaves_no_file(tiny_model, tmp_path, cancel_after):
    calls = []

    def should_cancel() -> bool:
        calls.append(1)
        return len(calls) > cancel_after

    portrait = np.full((64, 64, 3), 128, np.uint8)
    settings = MeshSettings(resolution=32, level=0.1, morph_targets=True, check_depth=False)
    with pytest.raises(ExportCancelled):
        export_head_mesh(tiny_model, portrait, [0.0] * 10, tmp_path / "head.glb", settings,
                         should_cancel=should_cancel)
    assert list(tmp_path.iterdir()) == []


def test_mesh_command_end_to_end_with_the_tiny_model(tmp_path, capsys):
    """The production path: checkpoint model -> portrait -> session -> mesh -> GLB with morph targets."""
    from export3d_core import Export3D, ModelConfig
    from export3d_core.cli import main
    from export3d_core.portrait import default_portrait, load_portrait

    torch.manual_seed(0)  # the model `--random-init tiny` builds
    model = Export3D(ModelConfig.preset("tiny")).eval()
    field = HeadField.from_portrait(model, load_portrait(default_portrait().path, 64).image)
    level = float(np.median(density_grid(field.density([0.0] * 10), field.half, 24)))
    output = tmp_path / "head.glb"
    args = ["mesh", "--random-init", "tiny", "--resolution", "24", "--level", repr(level), "--morph-targets",
            "--morph-scale", "5", "-o", str(output), "--preview", str(tmp_path / "head.png")]
    assert main(args) == 0
    summary = validate_glb(output)
    assert summary.targets == 10 and summary.target_names == tuple(f"v{i}" for i in range(1, 11))
    assert summary.vertices > 0 and summary.faces > 0
    assert "10 morph targets" in capsys.readouterr().out
    from PIL import Image

    preview = np.asarray(Image.open(tmp_path / "head.png"))
    assert preview.shape == (256, 768, 3)
    assert (np.abs(preview.astype(int) - preview[0, 0]).sum(axis=2) > 30).mean() > 0.01  # the mesh shows
    before = output.read_bytes()
    assert main(args) == 2  # refuses to overwrite
    assert "exists" in capsys.readouterr().err and output.read_bytes() == before
    assert main(["mesh", "--random-init", "tiny", "--morph-targets", "-o", str(tmp_path / "h.obj")]) == 2
    assert "glb" in capsys.readouterr().err
