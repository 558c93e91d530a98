"""The accelerated renderer reproduces the reference image while evaluating far fewer samples."""
from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from export3d_core.camera import OrbitCamera
from export3d_core.config import RenderConfig
from export3d_core.render.accelerated import AcceleratedRenderer, OccupancyGrid
from export3d_core.render.renderer import FieldFn, VolumeImages, VolumeRenderer
from export3d_core.render.triplane import sample_triplane

CFG = RenderConfig()  # EG3D FFHQ sampling: 48 + 48 samples over 2.25..3.3
PIVOT = torch.tensor(OrbitCamera().pivot)
RES = 24


class CountingField:
    """Wraps a field and counts the points it is asked about."""

    def __init__(self, field: FieldFn) -> None:
        self.field, self.points = field, 0

    def __call__(self, points: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        self.points += points.shape[0] * points.shape[1]
        return self.field(points)


def sphere_field(points: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Opaque sphere of radius 0.25 at the pivot, colour varying over its surface."""
    inside = (points - PIVOT).norm(dim=-1, keepdim=True) < 0.25  # (B, N, 1)
    raw = torch.where(inside, 1e3, -1e3).to(points.dtype)
    colour = torch.cat([points.sigmoid(), (points[..., :1] * 7).sin() * 0.5 + 0.5], dim=-1)  # (B, N, 4)
    return raw, colour


def triplane_field(batch: int = 1, seed: int = 0) -> tuple[FieldFn, torch.Tensor]:
    """Random tri-plane + small MLP decoder, with a head-sized opaque blob as a trained model has."""
    gen = torch.Generator().manual_seed(seed)
    planes = (torch.randn(batch, 3, 8, 32, 32, generator=gen) * 0.5).requires_grad_(True)
    torch.manual_seed(seed)
    density = nn.Sequential(nn.Linear(8, 16), nn.Softplus(), nn.Linear(16, 1))
    colour = nn.Sequential(nn.Linear(8, 16), nn.Softplus(), nn.Linear(16, 6))
    axes = torch.tensor([0.22, 0.3, 0.25])  # ellipsoid semi-axes, world units

    def field(points: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        feats = sample_triplane(planes, points, CFG.box_warp)  # (B, N, 8)
        blob = 1 - ((points - PIVOT) / axes).norm(dim=-1, keepdim=True)  # > 0 inside
        raw = 300 * torch.tanh(20 * blob) + 3 * density(feats)  # (B, N, 1), noisy surface
        return raw, torch.sigmoid(colour(feats))

    return field, planes


def psnr(a: torch.Tensor, b: torch.Tensor, peak: float) -> float:
    mse = ((a - b) ** 2).mean().item()
    return math.inf if mse == 0 else 10 * math.log10(peak**2 / mse)


def agreement(ref: VolumeImages, fast: VolumeImages) -> tuple[float, float]:
    """PSNR of the feature image ([-1, 1], peak 2) and of the opacity-weighted depth image."""
    depth_peak = CFG.ray_end
    return (psnr(ref.features, fast.features, 2.0),
            psnr(ref.depth * ref.alpha, fast.depth * fast.alpha, depth_peak))


def cameras(*views: tuple[float, float]) -> torch.Tensor:
    return torch.stack([OrbitCamera(yaw=y, pitch=p).params() for y, p in views])  # (B, 25)


def test_grid_marks_the_sphere_and_nothing_else() -> None:
    renderer = AcceleratedRenderer(CFG)
    grid = renderer.build_grid(sphere_field, resolution=32)
    assert isinstance(grid, OccupancyGrid) and grid.occupied.shape == (1, 32, 32, 32)
    probes = torch.tensor([[[0.0, 0.0, 0.2], [0.0, 0.24, 0.2], [0.5, 0.5, -0.5], [0.0, 0.0, -0.2]]])
    torch.testing.assert_close(grid.lookup(probes), torch.tensor([[True, True, False, False]]))
    assert grid.lookup(torch.tensor([[[5.0, 0.0, 0.0]]])).item()  # outside the grid: evaluate
    sphere_share = (4 / 3 * math.pi * 0.25**3) / (2 * grid.bound) ** 3
    assert sphere_share < grid.occupied_fraction() < 3 * sphere_share


def test_sphere_matches_reference_with_few_evaluations() -> None:
    cams = cameras((0.0, 0.0), (0.5, -0.2))
    reference, fast = CountingField(sphere_field), CountingField(sphere_field)
    ref = VolumeRenderer(CFG).render(reference, cams, RES)
    renderer = AcceleratedRenderer(CFG)
    grid = renderer.build_grid(sphere_field, batch=2, resolution=48)
    out = renderer.render(fast, cams, RES, grid=grid)
    feature_psnr, depth_psnr = agreement(ref, out)
    assert feature_psnr >= 40 and depth_psnr >= 40, (feature_psnr, depth_psnr)
    assert (ref.alpha - out.alpha).abs().max() < 1e-3
    assert fast.points < 0.3 * reference.points, (fast.points, reference.points)


def test_triplane_field_matches_reference_with_few_evaluations() -> None:
    field, _ = triplane_field()
    reference, fast = CountingField(field), CountingField(field)
    cams = cameras((0.3, 0.1))
    with torch.no_grad():
        ref = VolumeRenderer(CFG).render(reference, cams, RES)
        renderer = AcceleratedRenderer(CFG)
        out = renderer.render(fast, cams, RES, grid=renderer.build_grid(field, resolution=64))
    feature_psnr, depth_psnr = agreement(ref, out)
    assert feature_psnr >= 40 and depth_psnr >= 40, (feature_psnr, depth_psnr)
    assert ref.alpha.mean() > 0.2  # the view really shows the blob
    assert fast.points < 0.5 * reference.points, (fast.points, reference.points)


def test_batches_pack_points_per_triplane() -> None:
    field, _ = triplane_field(batch=2, seed=3)
    cams = cameras((0.0, 0.0), (-0.4, 0.2))
    with torch.no_grad():
        ref = VolumeRenderer(CFG).render(field, cams, 12)
        renderer = AcceleratedRenderer(CFG)
        grid = renderer.build_grid(field, batch=2, resolution=32)
        out = renderer.render(field, cams, 12, grid=grid, chunk=50)
    assert out.features.shape == ref.features.shape == (2, 6, 12, 12)
    for b in range(2):
        feature_psnr, _ = agreement(VolumeImages(ref.features[b], ref.depth[b], ref.alpha[b]),
                                    VolumeImages(out.features[b], out.depth[b], out.alpha[b]))
        assert feature_psnr >= 40, (b, feature_psnr)
    with pytest.raises(ValueError):
        renderer.render(field, cams[:1], 12, grid=grid)


def test_early_termination_alone_is_exact_enough() -> None:
    reference, fast = CountingField(sphere_field), CountingField(sphere_field)
    cams = cameras((0.0, 0.0))
    ref = VolumeRenderer(CFG).render(reference, cams, 16)
    out = AcceleratedRenderer(CFG).render(fast, cams, 16)  # no grid: only opaque rays are cut short
    assert min(agreement(ref, out)) >= 40
    assert fast.points < reference.points


def test_empty_field_evaluates_nothing() -> None:
    def empty(points: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return torch.full_like(points[..., :1], -1e3), torch.ones_like(points)

    renderer, counted = AcceleratedRenderer(CFG), CountingField(empty)
    grid = renderer.build_grid(empty, resolution=16)
    assert grid.occupied_fraction() == 0
    out = renderer.render(counted, cameras((0.0, 0.0)), 8, grid=grid)
    assert counted.points == 1  # only the probe that learns the feature width
    torch.testing.assert_close(out.features, -torch.ones(1, 3, 8, 8))
    assert out.alpha.abs().max() == 0 and (out.depth == CFG.ray_end).all()


def test_gradients_flow_through_the_accelerated_renderer() -> None:
    field, planes = triplane_field(seed=5)
    renderer = AcceleratedRenderer(RenderConfig(num_coarse=16, num_fine=16))
    grid = renderer.build_grid(field, resolution=24)
    out = renderer.render(field, cameras((0.0, 0.0)), 8, grid=grid)
    out.features.sum().backward()
    assert planes.grad is not None and torch.isfinite(planes.grad).all() and planes.grad.abs().sum() > 0


def test_thin_shell_is_not_lost() -> None:
    """A shell 0.01 thick, under half a grid cell: only the dilation keeps every hole closed."""

    def shell(points: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        distance = (points - PIVOT).norm(dim=-1, keepdim=True)  # (B, N, 1)
        raw = torch.where((distance - 0.25).abs() < 0.005, 1e3, -1e3).to(points.dtype)
        return raw, torch.full_like(points, 0.7)

    cams = cameras((0.0, 0.0))
    ref = VolumeRenderer(CFG).render(shell, cams, 20)
    renderer = AcceleratedRenderer(CFG)
    grid = renderer.build_grid(shell, resolution=48)
    cell = 2 * grid.bound / grid.resolution
    assert cell > 0.02  # the shell really is thinner than a cell
    out = renderer.render(shell, cams, 20, grid=grid)
    assert min(agreement(ref, out)) >= 40
    holes = renderer.build_grid(shell, resolution=48, dilation=0)  # without dilation rays slip through
    assert min(agreement(ref, renderer.render(shell, cams, 20, grid=holes))) < 40


def test_alpha_threshold_is_the_density_that_makes_a_ray_that_opaque() -> None:
    renderer = AcceleratedRenderer(CFG)
    path = CFG.ray_end - CFG.ray_start
    alpha = 0.05
    by_alpha = renderer.build_grid(triplane_field()[0], resolution=16, alpha_threshold=alpha)
    by_density = renderer.build_grid(triplane_field()[0], resolution=16, threshold=-math.log1p(-alpha) / path)
    assert torch.equal(by_alpha.occupied, by_density.occupied)
    assert by_alpha.threshold == pytest.approx(-math.log1p(-alpha) / path)


def test_fewer_fine_samples_and_fine_skip_keep_a_surface_at_40_db() -> None:
    cams = cameras((0.2, 0.1))
    field, _ = triplane_field(seed=1)
    exact, fast = CountingField(field), CountingField(field)
    with torch.no_grad():
        ref = VolumeRenderer(CFG).render(field, cams, RES)
        renderer = AcceleratedRenderer(CFG)
        grid = renderer.build_grid(field, resolution=48)
        renderer.render(exact, cams, RES, grid=grid)
        quick = AcceleratedRenderer(CFG, fine_samples=CFG.num_fine // 4, fine_skip_alpha=1e-2, early_stop=1e-3)
        out = quick.render(fast, cams, RES, grid=grid)
    assert quick.cfg.num_fine == CFG.num_fine // 4
    assert min(agreement(ref, out)) >= 40, agreement(ref, out)
    assert fast.points < 0.8 * exact.points, (fast.points, exact.points)


def test_grid_densities_stand_in_for_the_field_at_its_corners() -> None:
    field, _ = triplane_field(seed=2)
    renderer = AcceleratedRenderer(CFG)
    with torch.no_grad():
        grid = renderer.build_grid(field, resolution=16)
        axis = torch.linspace(-grid.bound, grid.bound, 17)
        corners = torch.stack([axis[[3, 8, 15]], axis[[0, 9, 4]], axis[[16, 2, 7]]], dim=-1)[None]  # (1, 3, 3)
        torch.testing.assert_close(grid.raw_at(corners), field(corners)[0], rtol=1e-4, atol=1e-3)
        between = (corners[:, :1] + corners[:, 1:2]) / 2  # inside a cell: trilinear, finite
        assert torch.isfinite(grid.raw_at(between)).all()


def test_proposal_mode_places_few_samples_from_the_grid_at_40_db() -> None:
    field, _ = triplane_field(seed=4)
    reference, fast = CountingField(field), CountingField(field)
    cams = cameras((0.25, -0.1))
    with torch.no_grad():
        ref = VolumeRenderer(CFG).render(reference, cams, RES)
        proposed = AcceleratedRenderer(CFG, proposal_samples=24)
        grid = proposed.build_grid(field, resolution=48)
        out = proposed.render(fast, cams, RES, grid=grid)
        without_grid = proposed.render(field, cams, RES)  # no grid: the reference's own samples
    assert min(agreement(ref, out)) >= 40, agreement(ref, out)
    assert fast.points <= RES * RES * 24 + 1 < 0.3 * reference.points, (fast.points, reference.points)
    assert min(agreement(ref, without_grid)) >= 40
    with pytest.raises(ValueError):
        AcceleratedRenderer(CFG, proposal_samples=1)


def test_proposal_mode_renders_a_fog_filled_field_in_one_dense_call() -> None:
    """A soft field with density everywhere (as a briefly trained model has): the grid is full, so
    the renderer evaluates its placed samples densely, still at 40 dB from the reference."""
    planes_field, _ = triplane_field(seed=6)

    def fog(points: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        raw, colour = planes_field(points)
        return 0.01 * raw + 1.5, colour  # ~softplus(0.5) per unit everywhere, the blob a little denser

    counted = CountingField(fog)
    cams = cameras((-0.2, 0.1))
    with torch.no_grad():
        ref = VolumeRenderer(CFG).render(fog, cams, RES)
        renderer = AcceleratedRenderer(CFG, proposal_samples=48)
        grid = renderer.build_grid(fog, resolution=32)
        out = renderer.render(counted, cams, RES, grid=grid)
    assert grid.full
    assert counted.points == RES * RES * 48 + 1  # every placed sample once, plus the feature probe
    assert min(agreement(ref, out)) >= 40, agreement(ref, out)


def test_proposal_uniform_samples_join_the_placed_ones() -> None:
    field, _ = triplane_field(seed=7)
    reference = VolumeRenderer(CFG)
    counted = CountingField(field)
    cams = cameras((0.1, 0.2))
    with torch.no_grad():
        ref = reference.render(field, cams, RES)
        mixed = AcceleratedRenderer(CFG, proposal_samples=32, proposal_uniform=24)  # the session's share
        grid = mixed.build_grid(field, resolution=48)
        out = mixed.render(counted, cams, RES, grid=grid)
    assert 1 < counted.points <= RES * RES * 56 + 1  # at most the 32 + 24 placed samples of each ray
    assert min(agreement(ref, out)) >= 40, agreement(ref, out)
    for bad in (-1, 1):
        with pytest.raises(ValueError, match="proposal_uniform"):
            AcceleratedRenderer(CFG, proposal_samples=16, proposal_uniform=bad)


def test_proposal_mode_evaluates_a_large_soft_body_ray_by_ray() -> None:
    """Soft matter filling most of the grid but not all: rays that meet it are evaluated densely,
    the others stay empty."""
    from export3d_core.render.proposals import SPARSE_BELOW

    planes_field, _ = triplane_field(seed=8)

    def cloud(points: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        _, colour = planes_field(points)
        inside = points[..., :1] < 0.05  # a half-space: over half the grid, missed by one side of the image
        return torch.where(inside, 2.0, -1e3).to(points.dtype), colour

    counted = CountingField(cloud)
    cams = cameras((0.0, 0.0))
    with torch.no_grad():
        ref = VolumeRenderer(CFG).render(cloud, cams, RES)
        renderer = AcceleratedRenderer(CFG, proposal_samples=32, proposal_uniform=24)
        grid = renderer.build_grid(cloud, resolution=32)
        out = renderer.render(counted, cams, RES, grid=grid)
    assert SPARSE_BELOW <= grid.occupied_share < 1 and not grid.full
    live_rays = (counted.points - 1) / 56
    assert live_rays == int(live_rays) and 0 < live_rays < RES * RES  # whole rays, not all of them
    assert min(agreement(ref, out)) >= 40, agreement(ref, out)


def test_weight_spread_counts_the_intervals_that_hold_the_weight() -> None:
    from export3d_core.render.proposals import weight_spread

    weights = torch.zeros(1, 3, 20, 1)
    weights[0, 0, 7] = 0.9  # a surface: one interval
    weights[0, 1, 2:12] = 0.08  # a medium: ten intervals
    # ray 2 is empty
    assert weight_spread(weights).tolist() == [[1, 10, 1]]


def test_soft_rays_take_the_reference_samples_and_sharp_ones_the_proposals() -> None:
    planes_field, _ = triplane_field(batch=2, seed=6)

    def fog(points: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:  # soft everywhere: every ray is spread
        raw, colour = planes_field(points)
        return 0.01 * raw + 1.5, colour

    cams = cameras((-0.2, 0.1), (0.3, 0.0))  # a batch of two: points go to their own tri-plane
    renderer = AcceleratedRenderer(CFG, proposal_samples=8, proposal_uniform=4, soft_spread=3)
    with torch.no_grad():
        ref = VolumeRenderer(CFG).render(fog, cams, RES)
        grid = renderer.build_grid(fog, resolution=32, batch=2)
        out = renderer.render(fog, cams, RES, grid=grid)
    assert min(agreement(ref, out)) >= 80, agreement(ref, out)  # the reference's own samples

    surface, _ = triplane_field(batch=2, seed=4)  # a head-sized opaque blob: few rays are soft
    counted, reference = CountingField(surface), CountingField(surface)
    mixed = AcceleratedRenderer(CFG, proposal_samples=24, proposal_uniform=8, soft_spread=3)
    with torch.no_grad():
        surface_ref = VolumeRenderer(CFG).render(reference, cams, RES)
        surface_grid = mixed.build_grid(surface, resolution=48, batch=2)
        sharp = mixed.render(counted, cams, RES, grid=surface_grid)
    assert counted.points < 0.5 * reference.points, (counted.points, reference.points)
    assert min(agreement(surface_ref, sharp)) >= 40, agreement(surface_ref, sharp)
    with pytest.raises(ValueError, match="soft_spread"):
        AcceleratedRenderer(CFG, proposal_samples=8, soft_spread=0)
