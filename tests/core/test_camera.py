"""OrbitCamera and the EG3D 25-vector convention (docs/architecture.md, "EG3D conventions")."""
from __future__ import annotations

import math

import pytest
import torch

from export3d_core.camera import (
    OrbitCamera, focal_from_fov, fov_from_focal, intrinsics, look_at, orbit_path, yaw_sweep,
)


def project(params: torch.Tensor, point: torch.Tensor) -> torch.Tensor:
    """Normalized image coordinates (u, v) of a world point seen by a 25-vector camera."""
    cam2world = params[:16].reshape(4, 4).double()
    intr = params[16:].reshape(3, 3).double()
    world2cam = torch.linalg.inv(cam2world)
    p_cam = world2cam @ torch.cat([point.double(), torch.ones(1, dtype=torch.float64)])
    uvw = intr @ p_cam[:3]
    return uvw[:2] / uvw[2]


def test_ffhq_focal_matches_eg3d() -> None:
    assert focal_from_fov(18.837) == pytest.approx(4.2647, abs=2e-3)
    assert fov_from_focal(focal_from_fov(30.0)) == pytest.approx(30.0)
    k = intrinsics(18.837)
    assert k[0, 2] == 0.5 and k[1, 2] == 0.5 and k[2, 2] == 1.0 and k[0, 0] == k[1, 1]


def test_frontal_camera_looks_at_pivot_from_plus_z() -> None:
    cam = OrbitCamera()
    pivot = torch.tensor(cam.pivot, dtype=torch.float64)
    pose = cam.cam2world()
    origin, right, down, forward = pose[:3, 3], pose[:3, 0], pose[:3, 1], pose[:3, 2]
    torch.testing.assert_close(origin, pivot + torch.tensor([0.0, 0.0, 2.7], dtype=torch.float64))
    torch.testing.assert_close(forward, torch.tensor([0.0, 0.0, -1.0], dtype=torch.float64))
    torch.testing.assert_close(right, torch.tensor([1.0, 0.0, 0.0], dtype=torch.float64))
    torch.testing.assert_close(down, torch.tensor([0.0, -1.0, 0.0], dtype=torch.float64))
    uv = project(cam.params(), pivot)
    torch.testing.assert_close(uv, torch.tensor([0.5, 0.5], dtype=torch.float64), atol=1e-6, rtol=0)


def test_pivot_projects_to_centre_from_any_orbit() -> None:
    cam = OrbitCamera(yaw=0.7, pitch=-0.4, radius=3.1, fov_deg=25.0, pivot=(0.1, -0.2, 0.3))
    uv = project(cam.params(), torch.tensor(cam.pivot))
    torch.testing.assert_close(uv, torch.tensor([0.5, 0.5], dtype=torch.float64), atol=1e-5, rtol=0)
    pose = cam.cam2world()
    torch.testing.assert_close(pose[:3, :3].T @ pose[:3, :3], torch.eye(3, dtype=torch.float64))
    assert torch.linalg.det(pose[:3, :3]) == pytest.approx(1.0)  # right-handed, no mirror


def test_yaw_moves_camera_to_plus_x_and_pitch_up() -> None:
    base = OrbitCamera()
    assert base.replace(yaw=0.3).origin()[0] > base.origin()[0] + 0.5
    assert base.replace(pitch=0.3).origin()[1] > base.origin()[1] + 0.5
    # A point to the camera's right (+x in the world for the frontal camera) lands right of centre.
    u, v = project(base.params(), torch.tensor([0.1, 0.0, 0.2]))
    assert u > 0.5 and v == pytest.approx(0.5)
    u, v = project(base.params(), torch.tensor([0.0, 0.1, 0.2]))  # world up -> image up (v smaller)
    assert v < 0.5


@pytest.mark.parametrize("yaw,pitch,radius,fov", [(0.0, 0.0, 2.7, 18.837), (-1.2, 0.5, 1.9, 40.0), (2.5, -1.0, 4.0, 12.0)])
def test_params_round_trip(yaw: float, pitch: float, radius: float, fov: float) -> None:
    cam = OrbitCamera(yaw=yaw, pitch=pitch, radius=radius, fov_deg=fov)
    params = cam.params()
    assert params.shape == (25,) and params.dtype == torch.float32
    back = OrbitCamera.from_params(params)
    for name, expected in (("yaw", yaw), ("pitch", pitch), ("radius", radius), ("fov_deg", fov)):
        assert getattr(back, name) == pytest.approx(expected, abs=1e-4), name
    torch.testing.assert_close(back.params(), params)


def test_look_at_matches_orbit() -> None:
    cam = OrbitCamera(yaw=0.2, pitch=0.1)
    torch.testing.assert_close(look_at(cam.origin(), cam.pivot), cam.cam2world())


@pytest.mark.parametrize(
    "kwargs", [{"radius": 0.0}, {"radius": -1.0}, {"fov_deg": 0.0}, {"fov_deg": 180.0}, {"yaw": math.nan},
               {"pitch": math.inf}, {"yaw": "left"}, {"pivot": (0.0, 1.0)}],
)
def test_bad_values_raise(kwargs: dict) -> None:
    with pytest.raises(ValueError):
        OrbitCamera(**kwargs)


def test_bad_params_raise() -> None:
    with pytest.raises(ValueError):
        OrbitCamera.from_params(torch.zeros(24))
    with pytest.raises(ValueError):
        look_at((0.0, 0.0, 0.0), (0.0, 0.0, 0.0))


def test_orbit_path_and_sweep() -> None:
    assert orbit_path(0.0) == pytest.approx((0.0, 0.25))
    assert orbit_path(0.25) == pytest.approx((0.35, 0.0), abs=1e-12)
    assert orbit_path(0.5, yaw_amp=1.0, pitch_amp=2.0) == pytest.approx((0.0, -2.0), abs=1e-12)
    assert yaw_sweep(0.25, 0.6) == pytest.approx((0.6, 0.0))
    assert yaw_sweep(0.75, 0.6) == pytest.approx((-0.6, 0.0))
