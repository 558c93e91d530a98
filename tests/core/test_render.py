"""The reference renderer against an analytic sphere, hand-computed compositing, tri-plane lookups."""
from __future__ import annotations

import math

import pytest
import torch

from export3d_core.camera import OrbitCamera
from export3d_core.config import RenderConfig
from export3d_core.render.marcher import composite
from export3d_core.render.rays import generate_rays
from export3d_core.render.renderer import VolumeRenderer, chunked_field, sample_points
from export3d_core.render.sampling import importance_depths, merge_depths, gather_merged, stratified_depths
from export3d_core.render.triplane import sample_triplane

CFG = RenderConfig()  # EG3D FFHQ: rays 2.25..3.3, 48 + 48 samples
SPHERE_RADIUS = 0.2
SPHERE_CENTRE = torch.tensor(OrbitCamera().pivot)
COLOUR = torch.tensor([0.1, 0.3, 0.6, 0.9])  # constant colour features in [0, 1]
RAW_DENSITY = 1e3  # raw density inside (huge) / minus outside (empty)
RES = 15  # odd, so the centre pixel's ray passes exactly through the pivot


def sphere_field(points: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Opaque sphere at the pivot: points (B, N, 3) -> raw density (B, N, 1), colour (B, N, 4)."""
    inside = (points - SPHERE_CENTRE).norm(dim=-1, keepdim=True) < SPHERE_RADIUS  # (B, N, 1)
    raw = torch.where(inside, RAW_DENSITY, -RAW_DENSITY).to(points.dtype)
    return raw, COLOUR.to(points.dtype).expand(*points.shape[:2], -1)


def frontal_cameras(batch: int = 1) -> torch.Tensor:
    return OrbitCamera().params()[None].expand(batch, -1).contiguous()  # (B, 25)


def test_rays_are_unit_row_major_y_down() -> None:
    cam = OrbitCamera()
    origins, dirs = generate_rays(frontal_cameras(2), RES)
    assert origins.shape == dirs.shape == (2, RES * RES, 3)
    torch.testing.assert_close(dirs.norm(dim=-1), torch.ones(2, RES * RES))
    torch.testing.assert_close(origins[0, 0], torch.tensor(cam.origin(), dtype=torch.float32))
    centre = (RES // 2) * RES + RES // 2
    torch.testing.assert_close(dirs[0, centre], torch.tensor([0.0, 0.0, -1.0]), atol=1e-6, rtol=0)
    top_left, top_right, bottom_left = dirs[0, 0], dirs[0, RES - 1], dirs[0, RES * (RES - 1)]
    assert top_left[1] > 0 > bottom_left[1]  # row 0 is the top of the image (world +y)
    assert top_right[0] > 0 > top_left[0]  # columns run toward world +x for the frontal camera


def test_sphere_depth_opacity_and_colour() -> None:
    result = VolumeRenderer(CFG).render(sphere_field, frontal_cameras(), RES)
    assert result.features.shape == (1, 4, RES, RES)
    assert result.depth.shape == result.alpha.shape == (1, 1, RES, RES)
    c = RES // 2
    expected_depth = OrbitCamera().radius - SPHERE_RADIUS
    assert result.depth[0, 0, c, c].item() == pytest.approx(expected_depth, abs=0.02)
    assert result.alpha[0, 0, c, c].item() == pytest.approx(1.0, abs=1e-3)
    torch.testing.assert_close(result.features[0, :, c, c], COLOUR * 2 - 1, atol=2e-3, rtol=0)
    for i, j in ((0, 0), (0, RES - 1), (RES - 1, 0), (RES - 1, RES - 1)):  # corners miss the sphere
        assert result.alpha[0, 0, i, j].item() < 1e-4
        torch.testing.assert_close(result.features[0, :, i, j], -torch.ones(4), atol=1e-3, rtol=0)
        assert result.depth[0, 0, i, j].item() == pytest.approx(CFG.ray_end)  # empty rays go far
    # The depth map is a sphere: hits near the centre are nearer than hits near the silhouette.
    hit = result.alpha[0, 0] > 0.99
    assert hit.sum() > 9 and result.depth[0, 0][hit].max() > result.depth[0, 0, c, c] + 0.01


def test_importance_samples_concentrate_at_the_surface() -> None:
    origins = torch.tensor([[[0.0, 0.0, 2.9]]])  # frontal camera centre, (1, 1, 3)
    dirs = torch.tensor([[[0.0, 0.0, -1.0]]])
    depths = stratified_depths(1, 1, CFG.num_coarse, CFG.ray_start, CFG.ray_end, perturb=False)
    raw, colour = sphere_field(sample_points(origins, dirs, depths).reshape(1, -1, 3))
    coarse = composite(colour.reshape(1, 1, -1, 4), raw.reshape(1, 1, -1, 1), depths, CFG.density_shift)
    assert coarse.weights.shape == (1, 1, CFG.num_coarse - 1, 1)
    fine = importance_depths(depths, coarse.weights, CFG.num_fine, perturb=False)  # (1, 1, Sf, 1)
    assert fine.shape == (1, 1, CFG.num_fine, 1)
    assert (fine.diff(dim=-2) >= 0).all() and fine.min() >= CFG.ray_start and fine.max() <= CFG.ray_end
    true_depth = 2.7 - SPHERE_RADIUS
    near_surface = ((fine - true_depth).abs() < 0.05).float().mean().item()
    uniform_share = 0.1 / (CFG.ray_end - CFG.ray_start)  # what stratified samples would put there
    assert near_surface > 0.5 > 4 * uniform_share


def test_compositing_by_hand() -> None:
    # raw 1 with shift -1 gives sigma = softplus(0) = ln 2, so over unit intervals alpha = 1 - 1/2:
    # T = (1, 0.5), w = (0.5, 0.25), alpha = 0.75, depth = (0.5 * 0.5 + 0.25 * 1.5) / 0.75.
    depths = torch.tensor([0.0, 1.0, 2.0]).reshape(1, 1, 3, 1) + 1.0
    raw = torch.ones(1, 1, 3, 1)
    colours = torch.tensor([1.0, 1.0, 0.0]).reshape(1, 1, 3, 1)  # interval colours 1 and 0.5
    out = composite(colours, raw, depths, density_shift=-1.0)
    torch.testing.assert_close(out.weights.flatten(), torch.tensor([0.5, 0.25]))
    torch.testing.assert_close(out.alpha.flatten(), torch.tensor([0.75]))
    torch.testing.assert_close(out.depth.flatten(), torch.tensor([1.0 + 0.625 / 0.75]))
    torch.testing.assert_close(out.features.flatten(), torch.tensor([2 * (0.5 + 0.25 * 0.5) - 1]))


def test_stratified_depths_deterministic_and_perturbed() -> None:
    fixed = stratified_depths(2, 3, 8, 2.0, 3.0, perturb=False)
    torch.testing.assert_close(fixed[1, 2, :, 0], torch.linspace(2.0, 3.0, 8))
    gen = torch.Generator().manual_seed(0)
    jittered = stratified_depths(2, 3, 8, 2.0, 3.0, generator=gen, perturb=True)
    assert not torch.equal(jittered, fixed)
    assert (jittered >= 2.0).all() and (jittered <= 3.0).all() and (jittered.diff(dim=-2) >= 0).all()
    assert (jittered - fixed).abs().max() <= 0.5 / 7 + 1e-6  # within half a spacing


def test_merge_keeps_values_with_their_depths() -> None:
    a = torch.tensor([1.0, 3.0]).reshape(1, 1, 2, 1)
    b = torch.tensor([2.0, 0.5]).reshape(1, 1, 2, 1)
    merged, order = merge_depths(a, b)
    torch.testing.assert_close(merged.flatten(), torch.tensor([0.5, 1.0, 2.0, 3.0]))
    torch.testing.assert_close(gather_merged(a * 10, b * 10, order).flatten(), merged.flatten() * 10)


def test_render_is_deterministic_and_chunking_agrees() -> None:
    renderer = VolumeRenderer(RenderConfig(num_coarse=16, num_fine=16))
    cams = torch.stack([OrbitCamera().params(), OrbitCamera(yaw=0.4, pitch=-0.2).params()])
    whole = renderer.render(sphere_field, cams, 9)
    again = renderer.render(sphere_field, cams, 9, chunk=7)
    for name in ("features", "depth", "alpha"):
        torch.testing.assert_close(getattr(again, name), getattr(whole, name))
    # The sphere is centred on the pivot, so every orbit camera sees the same picture.
    torch.testing.assert_close(whole.alpha[0], whole.alpha[1], atol=0.05, rtol=0)


def linear_planes(res: int) -> torch.Tensor:
    """Planes whose channel 0 / 1 hold the world coordinate of the plane's first / second axis."""
    centres = (torch.arange(res) * 2 + 1) / res - 1  # texel centres in [-1, 1], align_corners=False
    across = centres.expand(res, res) * 0.5  # varies along the width; box_warp 1 -> half
    down = across.T  # varies along the height
    plane = torch.stack([across, down])  # (2, R, R)
    return plane.expand(1, 3, 2, res, res).contiguous()  # (1, 3, 2, R, R)


def test_sample_triplane_projects_xy_xz_zy_and_averages() -> None:
    res = 16
    gen = torch.Generator().manual_seed(1)
    points = (torch.rand(1, 50, 3, generator=gen) - 0.5) * (1 - 2 / res)  # inside the texel-centre span
    features = sample_triplane(linear_planes(res), points, box_warp=1.0)  # (1, 50, 2)
    x, y, z = points[..., 0], points[..., 1], points[..., 2]
    torch.testing.assert_close(features[..., 0], (x + x + z) / 3, atol=1e-5, rtol=0)
    torch.testing.assert_close(features[..., 1], (y + z + y) / 3, atol=1e-5, rtol=0)
    # box_warp 2 stretches the planes over [-1, 1]^3: reading at 2p finds the texels p found before.
    torch.testing.assert_close(sample_triplane(linear_planes(res), points * 2, box_warp=2.0), features,
                               atol=1e-5, rtol=0)
    far = torch.full((1, 1, 3), 2.0)  # outside the box in every axis: zero padding
    assert sample_triplane(linear_planes(res), far, box_warp=1.0).abs().max() == 0


def test_gradients_flow_to_the_planes() -> None:
    gen = torch.Generator().manual_seed(2)
    planes = torch.randn(1, 3, 4, 8, 8, generator=gen).requires_grad_(True)

    def field(points: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        feats = sample_triplane(planes, points, box_warp=1.0)  # (B, N, 4)
        return feats[..., :1] * 5, torch.sigmoid(feats)

    result = VolumeRenderer(RenderConfig(num_coarse=8, num_fine=8)).render(field, frontal_cameras(), 6)
    (result.features.sum() + result.depth.sum()).backward()
    assert planes.grad is not None and torch.isfinite(planes.grad).all() and planes.grad.abs().sum() > 0


def test_bad_inputs_raise() -> None:
    renderer = VolumeRenderer(CFG)
    with pytest.raises(ValueError):
        renderer.render(sphere_field, torch.zeros(1, 24), 4)
    with pytest.raises(ValueError):
        renderer.render(lambda p: (p[..., :1], p[:, :1]), frontal_cameras(), 4)  # wrong colour shape
    with pytest.raises(ValueError):
        VolumeRenderer(RenderConfig(num_coarse=1))
    assert math.isfinite(CFG.ray_start)


def test_distortion_by_hand_and_thin_beats_spread() -> None:
    from export3d_core.render.marcher import distortion

    # Rays 0..1 with three unit-spaced samples: two intervals, mid-points 0.25 and 0.75, widths 0.5.
    depths = torch.tensor([0.0, 0.5, 1.0]).reshape(1, 1, 3, 1)
    split = torch.tensor([0.5, 0.5]).reshape(1, 1, 2, 1)
    # pairs: 2 * 0.5 * 0.5 * |0.75 - 0.25| = 0.25; self: (0.25 + 0.25) * 0.5 / 3
    torch.testing.assert_close(distortion(split, depths, 0.0, 1.0), torch.tensor([[0.25 + 0.5 / 6]]))
    one = torch.tensor([1.0, 0.0]).reshape(1, 1, 2, 1)
    torch.testing.assert_close(distortion(one, depths, 0.0, 1.0), torch.tensor([[0.5 / 3]]))
    # Units do not matter: the same ray in world units 2..4 gives the same loss.
    torch.testing.assert_close(distortion(split, depths * 2 + 2, 2.0, 4.0), distortion(split, depths, 0.0, 1.0))


def test_renderer_returns_a_differentiable_distortion_on_request() -> None:
    planes = (torch.randn(2, 3, 4, 16, 16) * 0.5).requires_grad_(True)

    def field(points: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        feats = sample_triplane(planes, points, CFG.box_warp)
        return feats[..., :1] * 4, torch.sigmoid(feats[..., 1:])

    renderer = VolumeRenderer(RenderConfig(num_coarse=8, num_fine=8))
    assert renderer.render(field, frontal_cameras(2), 6).distortion is None
    out = renderer.render(field, frontal_cameras(2), 6, distortion=True, chunk=10)
    assert out.distortion.shape == (2,) and (out.distortion > 0).all()
    out.distortion.sum().backward()
    assert planes.grad is not None and planes.grad.abs().sum() > 0


def test_free_space_opacity_by_hand_covers_the_grid_cube_and_spares_solid_matter() -> None:
    from export3d_core.render.occupancy import GRID_EXTENT
    from export3d_core.render.sparsity import free_space_opacity

    seen = []
    raw_value = torch.tensor(0.7, requires_grad=True)

    def constant_fog(points: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        seen.append(points)
        return raw_value.expand(*points.shape[:2], 1), torch.zeros(*points.shape[:2], 3)

    loss = free_space_opacity(constant_fog, CFG, batch=2, n_points=500)
    interval = (CFG.ray_end - CFG.ray_start) / CFG.num_coarse
    expected = 1 - math.exp(-math.log1p(math.exp(0.7 + CFG.density_shift)) * interval)
    assert loss.shape == (2,)
    torch.testing.assert_close(loss, torch.full((2,), expected))
    bound = GRID_EXTENT * CFG.box_warp / 2
    points = seen[0]
    assert points.shape == (2, 500, 3) and points.abs().max() <= bound
    assert points.abs().max() > 0.9 * bound and points.min() < -0.9 * bound  # the whole cube, both sides
    loss.sum().backward()
    assert raw_value.grad > 0  # more fog, more loss: the gradient empties it

    solid = torch.tensor(400.0, requires_grad=True)  # the demo head's density is ~100-300 per unit
    opaque = free_space_opacity(lambda p: (solid.expand(*p.shape[:2], 1), torch.zeros(*p.shape[:2], 3)), CFG, 1, 100)
    opaque.sum().backward()
    assert opaque.item() == pytest.approx(1.0, abs=1e-3)
    assert 0 < solid.grad.item() < 1e-3 * raw_value.grad.item()  # surfaces are all but left alone
    with pytest.raises(ValueError, match="n_points"):
        free_space_opacity(constant_fog, CFG, 1, 0)


def test_rays_stay_fp32_under_bf16_autocast() -> None:
    """Mixed-precision training (bf16 autocast) must not round the ray geometry: in bf16 the
    rotation's matmul would shift origins and directions by up to a texel."""
    cameras = OrbitCamera(yaw=0.4, pitch=-0.2).params()[None]  # (1, 25)
    exact = generate_rays(cameras, RES)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        mixed = generate_rays(cameras, RES)
    for a, b in zip(exact, mixed):
        assert b.dtype == torch.float32
        torch.testing.assert_close(b, a, atol=0, rtol=0)


def test_bf16_planes_are_looked_up_at_fp32_coordinates() -> None:
    """bf16 planes give their own (rounded) features, read at the exact points: a bf16 coordinate
    near the box edge is off by up to 1/128 of the box, a texel of a 128² plane."""
    gen = torch.Generator().manual_seed(3)
    planes = torch.randn(1, 3, 4, 128, 128, generator=gen).bfloat16()
    points = (torch.rand(1, 200, 3, generator=gen) - 0.5) * 0.98
    features = sample_triplane(planes, points, box_warp=1.0)
    assert features.dtype == torch.float32
    torch.testing.assert_close(features, sample_triplane(planes.float(), points, box_warp=1.0), atol=0, rtol=0)


def test_chunked_field_gives_the_same_values_in_calls_of_bounded_size() -> None:
    gen = torch.Generator().manual_seed(4)
    planes = torch.randn(3, 3, 4, 8, 8, generator=gen)
    sizes: list[tuple[int, ...]] = []

    def field(points: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        sizes.append(tuple(points.shape))
        features = sample_triplane(planes, points, box_warp=1.0)  # (B, N, 4)
        return features[..., :1] * 3, torch.sigmoid(features)

    points = torch.rand(3, 1001, 3, generator=gen) - 0.5
    whole = field(points)
    sizes.clear()
    chunked = chunked_field(field, points_per_call=300)(points)  # 100 points of each of 3 batch elements
    assert sizes == [(3, 100, 3)] * 10 + [(3, 1, 3)]
    for a, b in zip(whole, chunked):  # vectorised kernels may round a call's last few values differently
        torch.testing.assert_close(b, a, atol=1e-6, rtol=1e-6)
    sizes.clear()
    chunked_field(field, points_per_call=2)(points[:, :5])  # fewer points per call than the batch: one each
    assert sizes == [(3, 1, 3)] * 5
