"""Live puppeteering: a webcam (or a video file standing in for one) drives the portrait as fast as
the machine renders, and a take can be recorded and baked into keys.

`LatestFrameSource` grabs frames on its own thread and keeps only the newest, so a consumer that is
slower than the camera drops frames instead of falling behind. `LiveDriver.step` reads one frame
(face, λ, head pose), smooths it with the same causal One Euro filter as `drive`, and renders the
preview; between `start_recording` and `stop_recording` it keeps what it showed, at the times it
showed it, and bakes that into an `Animation` the timeline can edit. Qt-free: an editor dock runs
`step` in its render worker and shows the image.
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from export3d_core.animation import Animation, CameraPose
from export3d_core.drive import DriveSettings, OneEuroFilter, OneEuroSettings, Reader, keys_from_curves
from export3d_core.errors import Export3DError

DEFAULT_FILE_FPS = 25.0  # a file that does not say its frame rate is paced at this


class LatestFrameSource:
    """OpenCV capture device N, or a video file paced at its own frame rate, newest frame only."""

    def __init__(self, source: int | str | Path) -> None:
        import cv2

        is_file = not isinstance(source, int)
        if is_file and not Path(source).is_file():
            raise Export3DError(f"video not found: {source}")
        self._capture = cv2.VideoCapture(str(source) if is_file else source)
        if not self._capture.isOpened():
            raise Export3DError(f"cannot open {'video ' + str(source) if is_file else f'camera {source}'}")
        fps = self._capture.get(cv2.CAP_PROP_FPS) or DEFAULT_FILE_FPS
        self._pace = 1.0 / fps if is_file else 0.0  # a device paces itself
        self._lock = threading.Lock()
        self._fresh = threading.Condition(self._lock)
        self._frame: tuple[int, np.ndarray] | None = None
        self.grabbed = 0
        self.finished = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="live-capture", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        import cv2

        next_time = time.perf_counter()
        while not self._stop.is_set():
            ok, bgr = self._capture.read()
            if not ok:
                break
            rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
            with self._fresh:
                self._frame = (self.grabbed, rgb)  # replaces an unread frame: dropped, not queued
                self.grabbed += 1
                self._fresh.notify_all()
            next_time += self._pace
            time.sleep(max(0.0, next_time - time.perf_counter()))
        with self._fresh:
            self.finished = True
            self._fresh.notify_all()

    def latest(self, timeout: float = 1.0) -> tuple[int, np.ndarray] | None:
        """The newest frame not yet taken (its index, RGB); None when the source has ended."""
        with self._fresh:
            self._fresh.wait_for(lambda: self._frame is not None or self.finished, timeout)
            frame, self._frame = self._frame, None
            return frame

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2.0)
        self._capture.release()


@dataclass
class LiveFrame:
    image: np.ndarray | None  # the rendered preview (None when the driver renders nothing)
    lam: tuple[float, ...]
    camera: CameraPose
    face: bool  # False: no face in this frame, the last reading was held


class LiveDriver:
    """One live frame at a time: read → smooth → render; records what it shows while recording."""

    def __init__(self, reader: Reader, lam_origin: np.ndarray, settings: DriveSettings = DriveSettings(),
                 base_camera: CameraPose = CameraPose(), session=None, quality: str = "preview") -> None:
        self.reader = reader
        self.settings = settings
        self.lam_origin = np.asarray(lam_origin, dtype=np.float64)
        self.base_camera = base_camera
        self.session = session
        self._renderer = None
        if session is not None:
            from export3d_core.animation_export import PoseRenderer

            self._renderer = PoseRenderer(session)  # λ changes every frame: skips per-λ occupancy grids
        self.quality = quality
        one_euro = OneEuroSettings.from_strength(settings.smoothing)
        self._filter = OneEuroFilter(one_euro) if one_euro is not None else None
        self._last: tuple[np.ndarray, np.ndarray] | None = None  # raw λ and pose of the last face
        self._first_pose: np.ndarray | None = None
        self._take: list[tuple[float, np.ndarray]] | None = None
        self._take_start = 0.0
        self.frames = self.faceless = 0

    def set_settings(self, settings: DriveSettings) -> None:
        """New gain, smoothing (…) from the next frame on. The filter keeps its state when it only
        changes strength, so turning the knob while live does not make the pose jump."""
        one_euro = OneEuroSettings.from_strength(settings.smoothing)
        if one_euro is None:
            self._filter = None
        elif self._filter is None:
            self._filter = OneEuroFilter(one_euro)  # starts from the next reading: no jump either
        else:
            self._filter.settings = one_euro
        self.settings = settings

    def step(self, frame: np.ndarray, t: float) -> LiveFrame:
        """Drive with `frame`, captured at `t` seconds (any clock, increasing)."""
        reading = self.reader(frame)
        self.frames += 1
        if reading is not None:
            pose = np.array([reading.yaw_deg, reading.pitch_deg])
            self._first_pose = pose if self._first_pose is None else self._first_pose
            self._last = (np.asarray(reading.lam, dtype=np.float64), pose)
        else:
            self.faceless += 1
        if self._last is None:  # no face seen yet: the neutral pose
            values = np.concatenate([self.lam_origin, [0.0, 0.0]])
        else:
            lam, pose = self._last
            pose_change = pose - self._first_pose if self.settings.head_pose else np.zeros(2)
            values = np.concatenate([self.lam_origin + self.settings.gain * (lam - self.lam_origin), pose_change])
            values = self._filter(values, t) if self._filter is not None else values
        if self._take is not None:
            self._take.append((t, values))
        n = len(self.lam_origin)
        base = self.base_camera
        camera = CameraPose(base.yaw_deg + values[n], base.pitch_deg + values[n + 1], base.radius, base.fov_deg)
        lam_out = tuple(float(v) for v in values[:n])
        image = None
        if self._renderer is not None:
            image = self._renderer.render(lam_out, camera, "final", self.quality)
        return LiveFrame(image, lam_out, camera, reading is not None)

    @property
    def recording(self) -> bool:
        return self._take is not None

    def start_recording(self) -> None:
        self._take = []

    def stop_recording(self, fps: float = 30.0) -> Animation:
        """The take as keys at the times its frames were shown (first frame at 0 s)."""
        take, self._take = self._take, None
        if not take or len(take) < 2:
            raise Export3DError("the take is too short: record at least two frames")
        times = np.array([t for t, _ in take]) - take[0][0]
        return keys_from_curves(times, np.stack([v for _, v in take]), self.settings, self.base_camera, fps)
