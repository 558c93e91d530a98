"""EditorState: everything the artist edits, as plain data plus Qt change signals; no widgets.

Widgets read and write the state; the render service and the undo stack listen to its signals.
Values are immutable snapshots (`ViewCamera`, tuples), so a render request can hold them safely
while the state moves on.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace
from typing import Any

from PySide6.QtCore import QObject, Signal

from export3d_core import DEFAULT_FOV_DEG, DEFAULT_RADIUS, MAX_ABS_LAMBDA, RENDER_MODES

DEFAULT_N_BASIS = 10  # the paper's n; the loaded model's config decides the real count


def check_lambda(values, what: str = "λ") -> tuple[float, ...]:
    """λ as floats; ValueError with one line when a value is not a finite number within ±MAX_ABS_LAMBDA.

    λ is unbounded for the artist, but the model's arithmetic is not: the core's limit applies to
    everything the editor reads (projects, presets) and types (the spin boxes clamp to it).
    """
    lam = []
    for i, value in enumerate(values):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f"{what}{i + 1} is {value!r}, not a number")
        if not math.isfinite(value) or abs(value) > MAX_ABS_LAMBDA:
            raise ValueError(f"{what}{i + 1} = {value:g} is outside ±{MAX_ABS_LAMBDA:g}, the largest λ "
                             "this build renders")
        lam.append(float(value))
    return tuple(lam)


@dataclass(frozen=True)
class ViewCamera:
    """The orbit camera as the artist sees it: degrees for angles (the numeric fields' unit)."""

    yaw_deg: float = 0.0  # + moves the camera to the right of the face
    pitch_deg: float = 0.0  # + moves the camera up
    radius: float = DEFAULT_RADIUS  # EG3D FFHQ camera distance
    fov_deg: float = DEFAULT_FOV_DEG  # EG3D FFHQ field of view, measured along the image's DIAGONAL

    # Orbit limits keep the camera in front of the head, where the model has ever looked.
    YAW_LIMIT = 89.0
    PITCH_LIMIT = 80.0
    RADIUS_RANGE = (1.5, 6.0)
    FOV_RANGE = (5.0, 60.0)

    def clamped(self) -> "ViewCamera":
        lo_r, hi_r = self.RADIUS_RANGE
        lo_f, hi_f = self.FOV_RANGE
        return ViewCamera(
            max(-self.YAW_LIMIT, min(self.YAW_LIMIT, self.yaw_deg)),
            max(-self.PITCH_LIMIT, min(self.PITCH_LIMIT, self.pitch_deg)),
            max(lo_r, min(hi_r, self.radius)),
            max(lo_f, min(hi_f, self.fov_deg)),
        )

    def replace(self, **changes: float) -> "ViewCamera":
        return replace(self, **changes).clamped()

    def to_orbit(self):
        """The core's OrbitCamera (radians)."""
        from export3d_core import OrbitCamera

        return OrbitCamera(yaw=math.radians(self.yaw_deg), pitch=math.radians(self.pitch_deg),
                           radius=self.radius, fov_deg=self.fov_deg)

    def to_dict(self) -> dict[str, float]:
        return asdict(self)

    @staticmethod
    def from_dict(data: dict[str, Any]) -> "ViewCamera":
        values = {k: float(data[k]) for k in ("yaw_deg", "pitch_deg", "radius", "fov_deg") if k in data}
        if not all(math.isfinite(v) for v in values.values()):
            raise ValueError("camera values must be finite")
        return ViewCamera(**values).clamped()


@dataclass(frozen=True)
class Snapshot:
    """What one undo step restores."""

    lam: tuple[float, ...]
    names: tuple[str, ...]
    camera: ViewCamera
    animation: object = None  # export3d_core Animation (immutable) or None: no keys


def default_names(n: int) -> tuple[str, ...]:
    return tuple(f"v{i + 1}" for i in range(n))


class EditorState(QObject):
    """λ, coefficient names, camera, render mode, and which portrait/checkpoint are open."""

    lam_changed = Signal(object)  # tuple[float, ...]
    names_changed = Signal(object)  # tuple[str, ...]
    camera_changed = Signal(object)  # ViewCamera
    mode_changed = Signal(str)
    portrait_changed = Signal(object)  # Path | None
    checkpoint_changed = Signal(object)  # Path | None
    portrait_lam_changed = Signal(object)  # tuple | None: the portrait's own expression, if estimated
    animation_changed = Signal(object)  # Animation | None

    def __init__(self, n_basis: int = DEFAULT_N_BASIS, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._lam: tuple[float, ...] = (0.0,) * n_basis
        self._names: tuple[str, ...] = default_names(n_basis)
        self._camera = ViewCamera()
        self._mode = "final"
        self._animation = None  # the timeline's keys: an immutable export3d_core Animation, or None
        self.portrait_path = None
        self.checkpoint_path = None
        # λ estimated from the portrait itself; None until an expression estimator exists.
        self.portrait_lam: tuple[float, ...] | None = None

    # -- λ ---------------------------------------------------------------------------------------
    @property
    def n_basis(self) -> int:
        return len(self._lam)

    @property
    def lam(self) -> tuple[float, ...]:
        return self._lam

    def set_lam(self, lam) -> None:
        lam = check_lambda(float(v) for v in lam)
        if len(lam) != self.n_basis:
            raise ValueError(f"λ needs {self.n_basis} values, got {len(lam)}")
        if lam != self._lam:
            self._lam = lam
            self.lam_changed.emit(lam)

    def set_coefficient(self, index: int, value: float) -> None:
        lam = list(self._lam)
        lam[index] = float(value)
        self.set_lam(lam)

    def resize_basis(self, n_basis: int) -> None:
        """A checkpoint with another n: keep what fits, pad with zeros and default names."""
        if n_basis == self.n_basis:
            return
        lam = (self._lam + (0.0,) * n_basis)[:n_basis]
        names = (self._names + default_names(n_basis)[len(self._names):])[:n_basis]
        self._lam, self._names = lam, names
        self.names_changed.emit(names)
        self.lam_changed.emit(lam)
        self.set_animation(None)  # keys of another basis mean nothing to this one

    def zero_all(self) -> None:
        self.set_lam((0.0,) * self.n_basis)

    def reset_to_portrait_expression(self) -> None:
        """λ of the portrait's own expression when an estimate exists, else zeros (the neutral)."""
        if self.portrait_lam is not None and len(self.portrait_lam) == self.n_basis:
            self.set_lam(self.portrait_lam)
        else:
            self.zero_all()

    def set_portrait_lam(self, lam) -> None:
        self.portrait_lam = None if lam is None else tuple(float(v) for v in lam)
        self.portrait_lam_changed.emit(self.portrait_lam)

    # -- names -----------------------------------------------------------------------------------
    @property
    def names(self) -> tuple[str, ...]:
        return self._names

    def set_names(self, names) -> None:
        names = tuple(str(n) for n in names)
        if len(names) != self.n_basis:
            raise ValueError(f"need {self.n_basis} names, got {len(names)}")
        if names != self._names:
            self._names = names
            self.names_changed.emit(names)

    def set_name(self, index: int, name: str) -> None:
        names = list(self._names)
        names[index] = name.strip() or f"v{index + 1}"
        self.set_names(names)

    # -- camera and mode ---------------------------------------------------------------------------
    @property
    def camera(self) -> ViewCamera:
        return self._camera

    def set_camera(self, camera: ViewCamera) -> None:
        camera = camera.clamped()
        if camera != self._camera:
            self._camera = camera
            self.camera_changed.emit(camera)

    @property
    def mode(self) -> str:
        return self._mode

    def set_mode(self, mode: str) -> None:
        if mode not in RENDER_MODES:
            raise ValueError(f"unknown render mode {mode!r}")
        if mode != self._mode:
            self._mode = mode
            self.mode_changed.emit(mode)

    # -- animation keys ----------------------------------------------------------------------------
    @property
    def animation(self):
        return self._animation

    def set_animation(self, animation) -> None:
        """The timeline's keys (None: none); their λ count must be this basis's."""
        if animation is not None and animation.n_basis != self.n_basis:
            raise ValueError(f"the keys have {animation.n_basis} λ values; the model has {self.n_basis}")
        if animation != self._animation:
            self._animation = animation
            self.animation_changed.emit(animation)

    # -- snapshots (undo) --------------------------------------------------------------------------
    def snapshot(self) -> Snapshot:
        return Snapshot(self._lam, self._names, self._camera, self._animation)

    def restore(self, snap: Snapshot) -> None:
        if len(snap.lam) != self.n_basis:
            return  # a step from another checkpoint's basis; nothing sensible to restore
        self.set_names(snap.names)
        self.set_lam(snap.lam)
        self.set_camera(snap.camera)
        self.set_animation(snap.animation)
