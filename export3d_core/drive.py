"""Driving a portrait from a video of a face: per frame λ (and head pose), smoothed, baked into keys.

Per frame: detect and align the face (intake), read λ with the expression estimator (β → LeBS),
and read the head pose from the crop's PnP camera. Frames without a face hold the last reading and
are counted. The readings are smoothed with a One Euro filter (causal, so a live source can use it
too), scaled by a gain and baked into an `Animation`: a key every frame, or only the keys that
linear interpolation needs to stay within a tolerance (Ramer–Douglas–Peucker), so an artist can
edit the performance afterwards on the timeline. Rendering is `animation_export`'s.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np

from export3d_core.animation import Animation, CameraPose, Key
from export3d_core.errors import Export3DError

# One Euro's cutoff at rest for smoothing strength 1, and its speed coefficient (how fast it lets
# quick motion through). Measured on 48-frame synthetic performances of three identities read by
# the demo model's estimator at 24 fps: these cut λ jitter to 0.29x for 1.07x the error against
# the true λ (smoothing cannot remove the estimator's slow errors, only its frame-to-frame noise);
# (1.0 Hz, 0.2): 0.39x for 1.03x; (0.5 Hz, 0): 0.08x for 1.28x, visibly lagging.
DEFAULT_MIN_CUTOFF_HZ = 1.5
DEFAULT_BETA = 0.05


# -- One Euro filter (Casiez, Roussel, Vogel, CHI 2012) ------------------------------------------------

def neutral_lambda(model) -> np.ndarray:
    """λ of the neutral expression (β = 0): the centre the gain scales around."""
    import torch  # deferred: reading a performance needs no torch

    with torch.no_grad():
        beta = torch.zeros(1, model.config.beta_dim, device=next(model.parameters()).device)
        return model.coefficients(beta)[0].double().cpu().numpy()

@dataclass(frozen=True)
class OneEuroSettings:
    min_cutoff: float = DEFAULT_MIN_CUTOFF_HZ  # Hz; lower = smoother at rest, more lag
    beta: float = DEFAULT_BETA  # per (unit/s); higher = less lag on fast motion
    d_cutoff: float = 1.0  # Hz, for the speed estimate

    @staticmethod
    def from_strength(strength: float) -> "OneEuroSettings | None":
        """Strength 0 turns smoothing off; 1 is the default; 2 halves the cutoff, and so on."""
        if not math.isfinite(strength) or strength < 0:
            raise Export3DError(f"smoothing strength must be a number ≥ 0, got {strength}")
        return None if strength == 0 else OneEuroSettings(min_cutoff=DEFAULT_MIN_CUTOFF_HZ / strength)


def _alpha(cutoff: float, dt: float) -> float:
    tau = 1.0 / (2 * math.pi * cutoff)
    return 1.0 / (1.0 + tau / dt)


class OneEuroFilter:
    """A low-pass filter whose cutoff rises with speed: steady poses stop jittering, motion stays crisp."""

    def __init__(self, settings: OneEuroSettings) -> None:
        self.settings = settings
        self._x: np.ndarray | None = None
        self._dx: np.ndarray | None = None
        self._t: float | None = None

    def __call__(self, x, t: float) -> np.ndarray:
        x = np.asarray(x, dtype=np.float64)
        if self._x is None:
            self._x, self._dx, self._t = x.copy(), np.zeros_like(x), t
            return x.copy()
        dt = t - self._t
        if dt <= 0:
            return self._x.copy()
        s = self.settings
        dx = (x - self._x) / dt
        self._dx = self._dx + _alpha(s.d_cutoff, dt) * (dx - self._dx)
        cutoff = s.min_cutoff + s.beta * np.abs(self._dx)  # per channel
        a = 1.0 / (1.0 + 1.0 / (2 * math.pi * cutoff * dt))
        self._x = self._x + a * (x - self._x)
        self._t = t
        return self._x.copy()


def smooth(values: np.ndarray, fps: float, settings: OneEuroSettings | None) -> np.ndarray:
    """(T, C) values sampled at `fps`, filtered frame by frame (None: unchanged)."""
    if settings is None:
        return np.array(values, dtype=np.float64)
    one_euro = OneEuroFilter(settings)
    return np.stack([one_euro(row, index / fps) for index, row in enumerate(values)])


def jitter(values: np.ndarray) -> float:
    """Mean absolute second difference per frame: what shakes, independent of a steady trend."""
    values = np.asarray(values, dtype=np.float64)
    return float(np.abs(np.diff(values, n=2, axis=0)).mean()) if len(values) > 2 else 0.0


# -- curve simplification -----------------------------------------------------------------------------
def simplify(times: np.ndarray, values: np.ndarray, tolerance: np.ndarray) -> list[int]:
    """Indices of the samples to keep so that linear interpolation between them stays within
    `tolerance` (per channel) of every sample (Ramer–Douglas–Peucker, iterative)."""
    count = len(times)
    if count <= 2:
        return list(range(count))
    keep = {0, count - 1}
    stack = [(0, count - 1)]
    while stack:
        first, last = stack.pop()
        if last - first < 2:
            continue
        inner = np.arange(first + 1, last)
        u = (times[inner] - times[first]) / (times[last] - times[first])
        line = values[first] + u[:, None] * (values[last] - values[first])
        excess = (np.abs(values[inner] - line) / tolerance).max(axis=1)  # > 1 means out of tolerance
        worst = int(np.argmax(excess))
        if excess[worst] > 1.0:
            split = int(inner[worst])
            keep.add(split)
            stack += [(first, split), (split, last)]
    return sorted(keep)


# -- reading a performance ----------------------------------------------------------------------------
@dataclass
class Reading:
    lam: np.ndarray  # (n,)
    yaw_deg: float  # the camera's direction around the head, as the crop's PnP camera says
    pitch_deg: float
    beta: np.ndarray | None = None  # the expression parameters λ was read from, when known


@dataclass
class Performance:
    """Per-frame readings at `fps`; frames without a face hold the previous reading."""

    fps: float
    lam: np.ndarray  # (T, n)
    pose: np.ndarray  # (T, 2) yaw, pitch in degrees
    found: np.ndarray  # (T,) bool
    beta: np.ndarray | None = None  # (T, beta_dim) when the reader gives β

    @property
    def held(self) -> int:
        return int((~self.found).sum())


Reader = Callable[[np.ndarray], "Reading | None"]


def read_performance(frames: Iterable[np.ndarray], reader: Reader, fps: float, *,
                     progress: Callable[[int], None] | None = None,
                     should_cancel: Callable[[], bool] | None = None) -> Performance:
    """Run `reader` on every frame; a frame without a face (None) holds the last reading."""
    readings: list[Reading | None] = []
    for frame in frames:
        if should_cancel is not None and should_cancel():
            from export3d_core.export import ExportCancelled

            raise ExportCancelled()
        readings.append(reader(frame))
        if progress is not None:
            progress(len(readings))
    found = np.array([r is not None for r in readings], dtype=bool)
    if len(readings) < 2:
        raise Export3DError(f"the video needs at least 2 frames, it has {len(readings)}")
    if not found.any():
        raise Export3DError(f"no face found in any of the {len(readings)} frames")
    last = next(r for r in readings if r is not None)  # frames before the first face take its reading
    lam, pose, beta = [], [], []
    for reading in readings:
        last = reading or last
        lam.append(last.lam)
        pose.append((last.yaw_deg, last.pitch_deg))
        beta.append(last.beta)
    betas = None if any(b is None for b in beta) else np.asarray(beta, dtype=np.float64)
    return Performance(fps, np.asarray(lam, dtype=np.float64), np.asarray(pose, dtype=np.float64), found, betas)


# -- baking keys --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class DriveSettings:
    gain: float = 1.0  # scales the performance around `lam_origin` (0: neutral, >1 exaggerates)
    smoothing: float = 1.0  # One Euro strength (0: off)
    head_pose: bool = True  # move the camera with the head, relative to the first frame
    tolerance: float | None = None  # None: a key every frame; else λ tolerance of the simplified curve
    camera_tolerance_deg: float = 0.5  # the camera's tolerance when simplifying

    def __post_init__(self) -> None:
        if not math.isfinite(self.gain):
            raise Export3DError(f"gain must be a finite number, got {self.gain}")
        OneEuroSettings.from_strength(self.smoothing)
        for name in ("tolerance", "camera_tolerance_deg"):
            value = getattr(self, name)
            if value is not None and (not math.isfinite(value) or value <= 0):
                raise Export3DError(f"{name.replace('_', ' ')} must be a number > 0, got {value}")


def performance_curves(performance: Performance, settings: DriveSettings, lam_origin: np.ndarray,
                       lam_offset: np.ndarray | None = None) -> np.ndarray:
    """(T, n + 2): λ (gain around `lam_origin`, plus `lam_offset`) and the head's yaw/pitch change
    since the first frame, smoothed."""
    lam = lam_origin + settings.gain * (performance.lam - lam_origin)
    if lam_offset is not None:
        lam = lam + lam_offset
    pose = performance.pose - performance.pose[0] if settings.head_pose else np.zeros_like(performance.pose)
    curves = np.concatenate([lam, pose], axis=1)
    return smooth(curves, performance.fps, OneEuroSettings.from_strength(settings.smoothing))


def bake(performance: Performance, settings: DriveSettings, lam_origin: np.ndarray,
         base_camera: CameraPose = CameraPose(), lam_offset: np.ndarray | None = None) -> Animation:
    """The performance as keys (linear between them), every frame or simplified within tolerance."""
    curves = performance_curves(performance, settings, lam_origin, lam_offset)
    times = np.arange(len(curves)) / performance.fps
    return keys_from_curves(times, curves, settings, base_camera, performance.fps)


def keys_from_curves(times: np.ndarray, curves: np.ndarray, settings: DriveSettings, base_camera: CameraPose,
                     fps: float) -> Animation:
    """(T, n + 2) curves (λ, then yaw/pitch offsets in degrees) at `times` as linear keys."""
    n = curves.shape[1] - 2
    if settings.tolerance is None:
        indices = list(range(len(curves)))
    else:
        tolerance = np.array([settings.tolerance] * n + [settings.camera_tolerance_deg] * 2)
        indices = simplify(times, curves, tolerance)
    keys = []
    for index in indices:
        row = curves[index]
        camera = CameraPose(yaw_deg=base_camera.yaw_deg + row[n], pitch_deg=base_camera.pitch_deg + row[n + 1],
                            radius=base_camera.radius, fov_deg=base_camera.fov_deg)
        keys.append(Key(float(times[index]), tuple(float(v) for v in row[:n]), camera, "linear"))
    return Animation(tuple(keys), fps=fps, duration=float(times[-1]) if times[-1] > 0 else None)


class FaceReader:
    """A `Reader`: intake (detect, align, PnP camera) then the expression estimator.

    `source` picks the estimator's β reader: "landmarks" (its default where it ships; suits any
    face) or "image". `aligned=True` takes frames that are already crops at the model's framing (no
    detection, a frontal head). Detection runs on a copy at most `max_side` pixels wide, because
    HOG time grows with the pixel count and a face that fills a video frame needs no more.
    """

    def __init__(self, estimator, size: int, *, aligned: bool = False, max_side: int = 640,
                 source: str | None = None) -> None:
        self.estimator = estimator
        self.source = source  # the estimator's β reader: None (its default), "landmarks" or "image"
        self.size = size
        self.aligned = aligned
        self.max_side = max_side

    def __call__(self, frame: np.ndarray) -> Reading | None:
        from export3d_core.camera import OrbitCamera
        from export3d_core.data.intake import NoFaceFoundError, crop_portrait

        if self.aligned:
            from export3d_core.animation_export import resize_frame

            return self._read(resize_frame(frame, self.size), 0.0, 0.0)
        try:
            crop = crop_portrait(self._shrunk(frame), size=self.size)
        except NoFaceFoundError:
            return None
        yaw = pitch = 0.0
        if crop.landmarks is not None and crop.camera is not None:
            orbit = OrbitCamera.from_params(crop.camera)
            yaw, pitch = math.degrees(orbit.yaw), math.degrees(orbit.pitch)
        return self._read(crop.image, yaw, pitch)

    def _read(self, aligned: np.ndarray, yaw: float, pitch: float) -> Reading:
        estimate = self.estimator.estimate(aligned, self.source)
        return Reading(np.asarray(estimate.lam, dtype=np.float64), yaw, pitch,
                       np.asarray(estimate.beta, dtype=np.float64))

    def _shrunk(self, frame: np.ndarray) -> np.ndarray:
        side = max(frame.shape[:2])
        if side <= self.max_side:
            return frame
        from PIL import Image

        scale = self.max_side / side
        size = (max(1, round(frame.shape[1] * scale)), max(1, round(frame.shape[0] * scale)))
        return np.asarray(Image.fromarray(frame).resize(size, Image.Resampling.BILINEAR))
