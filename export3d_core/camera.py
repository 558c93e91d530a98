"""Cameras in EG3D's FFHQ convention (docs/architecture.md, "EG3D conventions"): intrinsics,
look-at, OrbitCamera <-> 25-vector.

The 25 numbers are a flattened 4x4 cam2world matrix (OpenCV camera axes: x right, y down,
z forward) followed by a flattened 3x3 *normalized* intrinsics matrix (image side = 1, so
cx = cy = 0.5). The world is EG3D's: y up, the face looks toward +z, the frontal camera sits at
pivot + (0, 0, radius). Positive yaw moves the camera toward +x (around the world y axis through
the pivot); positive pitch moves it up (+y). Angles are in radians everywhere except `fov_deg`.

Field of view: EG3D's `FOV_to_intrinsics` computes focal = 1 / (tan(fov/2) * 1.414), i.e. its
18.837 degrees is the *diagonal* field of view of the unit image, which is what gives the FFHQ
focal 4.2647 that every EG3D camera (and our corpus) carries. The horizontal formula
1 / (2 tan(fov/2)) would give 3.01 for the same angle and silently change every camera, so we
keep EG3D's definition: `focal_from_fov` and `OrbitCamera.fov_deg` are diagonal angles.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, Sequence

import torch
from torch import Tensor

DEFAULT_RADIUS = 2.7  # EG3D FFHQ camera distance from the pivot
DEFAULT_FOV_DEG = 18.837  # EG3D FFHQ (diagonal) field of view, focal 4.2647
DEFAULT_PIVOT = (0.0, 0.0, 0.2)  # EG3D FFHQ look-at point (roughly the head centre)
ORBIT_YAW_AMPLITUDE = 0.35  # EG3D gen_videos yaw range, radians
ORBIT_PITCH_AMPLITUDE = 0.25  # EG3D gen_videos pitch range, radians
POSE_DIM = 2  # a head pose as the regressor and evaluation read it: (yaw, pitch) of an OrbitCamera, radians
_DIAGONAL = math.sqrt(2.0)  # diagonal of the unit image: the fov is measured along it
_POLE_MARGIN = 1e-5  # keeps |pitch| away from pi/2, where the look-at up vector degenerates
_WORLD_UP = (0.0, 1.0, 0.0)


def focal_from_fov(fov_deg: float) -> float:
    """Normalized focal length for a diagonal field of view (EG3D's FOV_to_intrinsics)."""
    _check_fov(fov_deg)
    return 1.0 / (_DIAGONAL * math.tan(math.radians(fov_deg) / 2.0))


def fov_from_focal(focal: float) -> float:
    """Inverse of `focal_from_fov`: the diagonal field of view in degrees."""
    if not math.isfinite(focal) or focal <= 0:
        raise ValueError(f"focal length must be a positive finite number, got {focal}")
    return math.degrees(2.0 * math.atan(1.0 / (_DIAGONAL * focal)))


def intrinsics(fov_deg: float = DEFAULT_FOV_DEG) -> Tensor:
    """Normalized 3x3 intrinsics (principal point at the image centre), float32 (3, 3)."""
    f = focal_from_fov(fov_deg)
    return torch.tensor([[f, 0.0, 0.5], [0.0, f, 0.5], [0.0, 0.0, 1.0]], dtype=torch.float32)


def look_at(origin: Sequence[float] | Tensor, target: Sequence[float] | Tensor) -> Tensor:
    """cam2world (4, 4) float64 of a camera at `origin` looking at `target`, OpenCV axes, world up +y."""
    origin_t = torch.as_tensor(origin, dtype=torch.float64).reshape(3)
    target_t = torch.as_tensor(target, dtype=torch.float64).reshape(3)
    forward = target_t - origin_t  # camera +z
    norm = forward.norm()
    if not torch.isfinite(norm) or norm <= 0:
        raise ValueError("look_at needs distinct, finite origin and target")
    forward = forward / norm
    up = torch.tensor(_WORLD_UP, dtype=torch.float64)
    right = torch.linalg.cross(forward, up)  # camera +x
    if right.norm() < 1e-12:
        raise ValueError("look_at: the view direction is parallel to world up (+y)")
    right = right / right.norm()
    down = torch.linalg.cross(forward, right)  # camera +y: x × y = z for a right-handed frame
    pose = torch.eye(4, dtype=torch.float64)
    pose[:3, 0], pose[:3, 1], pose[:3, 2], pose[:3, 3] = right, down, forward, origin_t
    return pose


@dataclass(frozen=True)
class OrbitCamera:
    """A camera orbiting `pivot` at `radius`; yaw and pitch in radians, 0 = frontal."""

    yaw: float = 0.0
    pitch: float = 0.0
    radius: float = DEFAULT_RADIUS
    fov_deg: float = DEFAULT_FOV_DEG
    pivot: tuple = DEFAULT_PIVOT

    def __post_init__(self) -> None:
        for name in ("yaw", "pitch", "radius", "fov_deg"):
            value = getattr(self, name)
            try:
                number = float(value)  # accepts numpy / 0-d tensor scalars too
            except (TypeError, ValueError):
                raise ValueError(f"camera {name} must be a finite number, got {value!r}") from None
            if not math.isfinite(number):
                raise ValueError(f"camera {name} must be a finite number, got {value!r}")
            object.__setattr__(self, name, number)
        if self.radius <= 0:
            raise ValueError(f"camera radius must be > 0, got {self.radius}")
        _check_fov(self.fov_deg)
        pivot = tuple(float(v) for v in self.pivot)
        if len(pivot) != 3 or not all(math.isfinite(v) for v in pivot):
            raise ValueError(f"camera pivot must be three finite numbers, got {self.pivot!r}")
        object.__setattr__(self, "pivot", pivot)  # normalise lists/tensors to a float tuple

    def origin(self) -> tuple[float, float, float]:
        """Camera centre in world coordinates."""
        # Clamp the pitch just short of the poles, where "up" is parallel to the view direction.
        limit = math.pi / 2 - _POLE_MARGIN
        pitch = min(max(self.pitch, -limit), limit)
        px, py, pz = self.pivot
        return (
            px + self.radius * math.cos(pitch) * math.sin(self.yaw),
            py + self.radius * math.sin(pitch),
            pz + self.radius * math.cos(pitch) * math.cos(self.yaw),
        )

    def cam2world(self) -> Tensor:
        """(4, 4) float64 cam2world, OpenCV axes."""
        return look_at(self.origin(), self.pivot)

    def params(self, device: torch.device | str | None = None) -> Tensor:
        """The EG3D 25-vector: cam2world (16) + normalized intrinsics (9), float32 (25,)."""
        flat = torch.cat([self.cam2world().reshape(16).float(), intrinsics(self.fov_deg).reshape(9)])
        return flat.to(device) if device is not None else flat

    @classmethod
    def from_params(cls, params: Tensor | Sequence[float], pivot: Sequence[float] = DEFAULT_PIVOT) -> "OrbitCamera":
        """Recover yaw, pitch, radius and fov from a 25-vector, given the pivot it orbits."""
        p = torch.as_tensor(params, dtype=torch.float64, device="cpu").reshape(-1)  # a few numbers: on the CPU
        if p.numel() != 25:
            raise ValueError(f"camera params must have 25 numbers, got {p.numel()}")
        if not torch.isfinite(p).all():
            raise ValueError("camera params must be finite")
        origin = p[:16].reshape(4, 4)[:3, 3]
        offset = origin - torch.as_tensor(pivot, dtype=torch.float64)  # (3,)
        radius = float(offset.norm())
        if radius <= 0:
            raise ValueError("camera params: the camera sits on the pivot")
        pitch = math.asin(max(-1.0, min(1.0, float(offset[1]) / radius)))
        yaw = math.atan2(float(offset[0]), float(offset[2]))
        fov = fov_from_focal(float(p[16]))  # fx of the intrinsics
        return cls(yaw=yaw, pitch=pitch, radius=radius, fov_deg=fov, pivot=tuple(float(v) for v in pivot))

    def replace(self, **changes: Any) -> "OrbitCamera":
        return dataclasses.replace(self, **changes)


def orbit_path(
    t: float, yaw_amp: float = ORBIT_YAW_AMPLITUDE, pitch_amp: float = ORBIT_PITCH_AMPLITUDE
) -> tuple[float, float]:
    """EG3D's orbit video at phase t in [0, 1): (yaw, pitch) = (a sin 2πt, b cos 2πt), radians."""
    phase = 2.0 * math.pi * t
    return yaw_amp * math.sin(phase), pitch_amp * math.cos(phase)


def yaw_sweep(t: float, amplitude: float = ORBIT_YAW_AMPLITUDE) -> tuple[float, float]:
    """A plain, loopable left-right sweep at phase t: (amplitude sin 2πt, 0), radians."""
    return amplitude * math.sin(2.0 * math.pi * t), 0.0


def _check_fov(fov_deg: float) -> None:
    if not math.isfinite(fov_deg) or not 0 < fov_deg < 180:
        raise ValueError(f"field of view must be in (0, 180) degrees, got {fov_deg!r}")


__all__ = [
    "OrbitCamera", "focal_from_fov", "fov_from_focal", "intrinsics", "look_at", "orbit_path", "yaw_sweep",
]
