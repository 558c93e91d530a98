"""Keyframe animation of λ and the camera: keys at times in seconds, one easing per segment.

Each key holds the whole pose (all n coefficients of λ and the orbit camera), so "add a key"
captures what the artist sees. The easing stored on a key shapes the segment that *leaves* it
(the last key's easing is unused). `Animation.sample(t)` is pure and cheap (no model), so a
timeline can scrub and draw curves with it; rendering lives in `animation_export.py`.

Easings (all pass exactly through both keys of their segment):
- hold: the segment keeps the left key's value, jumping at the right key;
- linear: constant speed;
- ease-in-out: cubic, slow at both ends (4u³ in the first half, mirrored in the second);
- smooth-step: 3u² − 2u³ (zero slope at both keys, gentler than the cubic ease);
- catmull-rom: a cubic Hermite spline whose tangent at each key is the slope between its
  neighbours (one-sided at the ends), so a run of catmull-rom segments moves smoothly through
  every key instead of stopping at each.
"""
from __future__ import annotations

import bisect
import math
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from export3d_core.camera import OrbitCamera
from export3d_core.errors import Export3DError
from export3d_core.lambda_units import check_lambda

EASINGS = ("hold", "linear", "ease-in-out", "smooth-step", "catmull-rom")
DEFAULT_EASING = "smooth-step"
DEFAULT_FPS = 30
FPS_RANGE = (1, 120)
CAMERA_FIELDS = ("yaw_deg", "pitch_deg", "radius", "fov_deg")  # the project file's camera keys


def _finite(value: Any, what: str) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise Export3DError(f"{what} must be a number, got {value!r}") from None
    if not math.isfinite(number):
        raise Export3DError(f"{what} must be a finite number, got {value!r}")
    return number


@dataclass(frozen=True)
class CameraPose:
    """The orbit camera as the project file stores it: angles in degrees."""

    yaw_deg: float = 0.0
    pitch_deg: float = 0.0
    radius: float = 2.7
    fov_deg: float = 18.837

    def __post_init__(self) -> None:
        for name in CAMERA_FIELDS:
            object.__setattr__(self, name, _finite(getattr(self, name), f"camera {name}"))
        if self.radius <= 0:
            raise Export3DError(f"camera radius must be > 0, got {self.radius:g}")
        if not 0 < self.fov_deg < 180:
            raise Export3DError(f"camera fov_deg must be in (0, 180), got {self.fov_deg:g}")

    def values(self) -> tuple[float, ...]:
        return tuple(getattr(self, name) for name in CAMERA_FIELDS)

    def to_orbit(self) -> OrbitCamera:
        return OrbitCamera(yaw=math.radians(self.yaw_deg), pitch=math.radians(self.pitch_deg),
                           radius=self.radius, fov_deg=self.fov_deg)

    def to_dict(self) -> dict[str, float]:
        return {name: getattr(self, name) for name in CAMERA_FIELDS}

    @staticmethod
    def from_dict(data: Any, default: "CameraPose | None" = None) -> "CameraPose":
        """Missing fields come from `default` (the frontal camera if none)."""
        if not isinstance(data, dict):
            raise Export3DError(f"a camera must be an object with {', '.join(CAMERA_FIELDS)}")
        unknown = set(data) - set(CAMERA_FIELDS)
        if unknown:
            raise Export3DError(f"unknown camera field {sorted(unknown)[0]!r}; use {', '.join(CAMERA_FIELDS)}")
        base = (default or CameraPose()).to_dict()
        base.update({name: _finite(value, f"camera {name}") for name, value in data.items()})
        return CameraPose(**base)


@dataclass(frozen=True)
class Key:
    """One keyframe: the whole pose at `time` seconds; `easing` shapes the segment after it."""

    time: float
    lam: tuple[float, ...]
    camera: CameraPose = field(default_factory=CameraPose)
    easing: str = DEFAULT_EASING

    def __post_init__(self) -> None:
        object.__setattr__(self, "time", _finite(self.time, "key time"))
        if self.time < 0:
            raise Export3DError(f"key time must be ≥ 0 s, got {self.time:g}")
        object.__setattr__(self, "lam", tuple(check_lambda(self.lam, "a key's λ")))
        if self.easing not in EASINGS:
            raise Export3DError(f"unknown easing {self.easing!r}; use one of {', '.join(EASINGS)}")

    def values(self) -> tuple[float, ...]:
        """λ then the camera, as one vector (what the easings interpolate)."""
        return self.lam + self.camera.values()

    def to_dict(self) -> dict[str, Any]:
        return {"time": self.time, "easing": self.easing, "lambda": list(self.lam), "camera": self.camera.to_dict()}

    @staticmethod
    def from_dict(data: Any, default_camera: CameraPose | None = None) -> "Key":
        if not isinstance(data, dict):
            raise Export3DError("each key must be an object with time, lambda, camera and easing")
        if "time" not in data or "lambda" not in data:
            raise Export3DError("each key needs a time and a lambda list")
        lam = data["lambda"]
        if not isinstance(lam, list):
            raise Export3DError("a key's lambda must be a list of numbers")
        camera = CameraPose.from_dict(data.get("camera", {}), default_camera)
        return Key(data["time"], tuple(lam), camera, data.get("easing", DEFAULT_EASING))


def ease(easing: str, u: float) -> float:
    """The eased fraction of a segment at fraction u ∈ [0, 1] (not used for catmull-rom)."""
    if easing == "hold":
        return 0.0 if u < 1.0 else 1.0
    if easing == "linear":
        return u
    if easing == "ease-in-out":
        return 4 * u ** 3 if u < 0.5 else 1 - (-2 * u + 2) ** 3 / 2
    if easing == "smooth-step":
        return u * u * (3 - 2 * u)
    raise Export3DError(f"unknown easing {easing!r}; use one of {', '.join(EASINGS)}")


def _hermite(p0: float, p1: float, m0: float, m1: float, u: float, span: float) -> float:
    """Cubic Hermite on one segment; tangents m are per second, so they scale with the span."""
    u2, u3 = u * u, u * u * u
    return ((2 * u3 - 3 * u2 + 1) * p0 + (u3 - 2 * u2 + u) * span * m0
            + (-2 * u3 + 3 * u2) * p1 + (u3 - u2) * span * m1)


@dataclass(frozen=True)
class Animation:
    """Keys in strictly increasing time, all with the same λ length; fps and duration in seconds."""

    keys: tuple[Key, ...]
    fps: float = DEFAULT_FPS
    duration: float | None = None  # None: the last key's time (a single key: one second)

    def __post_init__(self) -> None:
        keys = tuple(self.keys)
        object.__setattr__(self, "keys", keys)
        if not keys:
            raise Export3DError("an animation needs at least one key")
        n = len(keys[0].lam)
        for index, key in enumerate(keys):
            if len(key.lam) != n:
                raise Export3DError(f"key {index + 1} has {len(key.lam)} λ values, key 1 has {n}")
            if index and key.time <= keys[index - 1].time:
                raise Export3DError(f"keys must be in increasing time: key {index + 1} at {key.time:g} s "
                                    f"follows {keys[index - 1].time:g} s")
        fps = _finite(self.fps, "fps")
        if not FPS_RANGE[0] <= fps <= FPS_RANGE[1]:
            raise Export3DError(f"fps must be between {FPS_RANGE[0]} and {FPS_RANGE[1]}, got {fps:g}")
        object.__setattr__(self, "fps", fps)
        duration = self.duration
        if duration is None:
            duration = keys[-1].time if keys[-1].time > 0 else 1.0
        duration = _finite(duration, "duration")
        if duration <= 0 or duration < keys[-1].time:
            raise Export3DError(f"duration must be > 0 and cover the last key ({keys[-1].time:g} s), got {duration:g}")
        object.__setattr__(self, "duration", duration)

    @property
    def n_basis(self) -> int:
        return len(self.keys[0].lam)

    @property
    def times(self) -> tuple[float, ...]:
        return tuple(key.time for key in self.keys)

    def sample(self, t: float) -> tuple[tuple[float, ...], CameraPose]:
        """(λ, camera) at `t` seconds; before the first key and after the last, their poses hold."""
        values = self.sample_values(t)
        n = self.n_basis
        return values[:n], CameraPose(*values[n:])

    def sample_values(self, t: float) -> tuple[float, ...]:
        """λ then yaw_deg, pitch_deg, radius, fov_deg at `t` (what a curve view plots)."""
        t = _finite(t, "time")
        keys = self.keys
        if t <= keys[0].time:
            return keys[0].values()
        if t >= keys[-1].time:
            return keys[-1].values()
        right = bisect.bisect_right(self.times, t)  # keys[right - 1].time <= t < keys[right].time
        left = right - 1
        a, b = keys[left], keys[right]
        span = b.time - a.time
        u = (t - a.time) / span
        if a.easing != "catmull-rom":
            w = ease(a.easing, u)
            return tuple(p + (q - p) * w for p, q in zip(a.values(), b.values()))
        m0, m1 = self._tangent(left), self._tangent(right)
        return tuple(_hermite(p, q, s, e, u, span) for p, q, s, e in zip(a.values(), b.values(), m0, m1))

    def _tangent(self, index: int) -> tuple[float, ...]:
        """Catmull-Rom tangent at key `index` (per second): slope between its neighbours."""
        keys = self.keys
        before, after = keys[max(0, index - 1)], keys[min(len(keys) - 1, index + 1)]
        dt = after.time - before.time
        return tuple((q - p) / dt for p, q in zip(before.values(), after.values()))

    def frame_times(self, fps: float | None = None, start: float = 0.0, end: float | None = None) -> list[float]:
        """Times of the frames from `start` to `end` inclusive (when `end` falls on a frame)."""
        fps = self.fps if fps is None else _finite(fps, "fps")
        if not FPS_RANGE[0] <= fps <= FPS_RANGE[1]:
            raise Export3DError(f"fps must be between {FPS_RANGE[0]} and {FPS_RANGE[1]}, got {fps:g}")
        end = self.duration if end is None else _finite(end, "end")
        start = _finite(start, "start")
        if start < 0 or end <= start:
            raise Export3DError(f"the range must satisfy 0 ≤ start < end, got {start:g}..{end:g} s")
        count = int(math.floor((end - start) * fps + 1e-9)) + 1
        return [start + index / fps for index in range(count)]

    # -- editing (each returns a new Animation, so an undo stack can keep the old one) ----------------
    def with_key(self, key: Key) -> "Animation":
        """Adds `key`, replacing any key at the same time."""
        keys = [k for k in self.keys if k.time != key.time] + [key]
        return replace(self, keys=tuple(sorted(keys, key=lambda k: k.time)),
                       duration=max(self.duration, key.time))

    def without_key(self, index: int) -> "Animation":
        if len(self.keys) == 1:
            raise Export3DError("an animation keeps at least one key")
        return replace(self, keys=self.keys[:index] + self.keys[index + 1:])

    def moved_key(self, index: int, time: float) -> "Animation":
        """Key `index` moved to `time` (it may pass its neighbours; a key already there is replaced)."""
        moved = replace(self.keys[index], time=time)
        others = [k for i, k in enumerate(self.keys) if i != index and k.time != moved.time]
        return replace(self, keys=tuple(sorted(others + [moved], key=lambda k: k.time)),
                       duration=max(self.duration, moved.time))

    # -- JSON -------------------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {"fps": self.fps, "duration": self.duration, "keys": [key.to_dict() for key in self.keys]}

    @staticmethod
    def from_dict(data: Any, n_basis: int | None = None, default_camera: CameraPose | None = None) -> "Animation":
        """Validated; `n_basis` (the model's n) makes a λ count mismatch an error."""
        if not isinstance(data, dict):
            raise Export3DError("the animation must be an object with fps, duration and keys")
        unknown = set(data) - {"fps", "duration", "keys"}
        if unknown:
            raise Export3DError(f"unknown animation field {sorted(unknown)[0]!r}; use fps, duration, keys")
        keys = data.get("keys")
        if not isinstance(keys, list) or not keys:
            raise Export3DError("the animation needs a non-empty list of keys")
        animation = Animation(tuple(Key.from_dict(k, default_camera) for k in keys),
                              data.get("fps", DEFAULT_FPS), data.get("duration"))
        if n_basis is not None and animation.n_basis != n_basis:
            raise Export3DError(f"the animation's keys have {animation.n_basis} λ values; the model has {n_basis}")
        return animation


def two_key_animation(lam_from: Sequence[float], lam_to: Sequence[float], seconds: float,
                      easing: str = DEFAULT_EASING, camera: CameraPose = CameraPose(),
                      fps: float = DEFAULT_FPS) -> Animation:
    """The simplest animation: from one pose to another over `seconds`."""
    return Animation((Key(0.0, tuple(lam_from), camera, easing), Key(seconds, tuple(lam_to), camera, easing)), fps)
