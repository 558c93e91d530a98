"""Live mode in the editor: a camera (or a video file standing in for one) drives the pose.

A plain thread takes the newest captured frame (`LatestFrameSource` drops the rest), reads the face
and smooths it (`LiveDriver.step`), and posts the pose to the main thread, which sets the editor's
λ and camera without an undo step, like scrubbing. The render service then renders the newest pose
as a preview (newest wins), so the machine shows as many frames as it renders and never queues.
A recorded take replaces the timeline's animation in one undoable edit. The gain on λ and the
smoothing strength (`DriveSettings`, as `export3d drive --gain/--smoothing`) can change while it runs.
"""
from __future__ import annotations

import dataclasses
import threading
import time

from PySide6.QtCore import QObject, Signal

from export3d_core import (DriveSettings, Export3DError, FaceReader, LatestFrameSource, LiveDriver,
                           neutral_lambda)

from app.timeline_state import pose_camera, view_camera

READ_TIMEOUT_S = 1.0  # a capture this quiet is asked again (a stop is noticed within this)


class LiveSession(QObject):
    pose = Signal(object, object)  # λ tuple, CameraPose: posted from the live thread
    ended = Signal(str)  # the source ran out (a file ended); emitted from the live thread

    def __init__(self, controller, timeline, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.controller, self.timeline = controller, timeline
        self.driver: LiveDriver | None = None
        self.source: LatestFrameSource | None = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._lock = threading.Lock()  # `step` and the recording calls touch the driver's take
        self.poses_shown = 0
        self.settings = DriveSettings()
        self.pose.connect(self._show)

    @property
    def running(self) -> bool:
        return self._thread is not None

    @property
    def recording(self) -> bool:
        return self.driver is not None and self.driver.recording

    def start(self, source: int | str) -> None:
        """Open `source` (camera index or video path) and drive; Export3DError (one line) changes nothing."""
        if self.running:
            return
        loaded = self.controller.loaded
        if loaded is None or self.controller.portrait_image is None:
            raise Export3DError("live needs a model and a portrait")
        if loaded.estimator is None:
            raise Export3DError(f"live needs an expression estimator: {loaded.estimator_note}")
        model = loaded.model
        reader = FaceReader(loaded.estimator, model.config.input_size)
        driver = LiveDriver(reader, neutral_lambda(model), self.settings,
                            base_camera=pose_camera(self.controller.state.camera))
        self.source = LatestFrameSource(source)  # raises before anything changes
        self.timeline.stop()  # one thing drives the pose at a time
        self.driver, self.poses_shown = driver, 0
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="live-drive", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        started = time.perf_counter()
        while not self._stop.is_set():
            item = self.source.latest(timeout=READ_TIMEOUT_S)
            if item is None:
                if self.source.finished:
                    self.ended.emit("the live source ended")
                    return
                continue
            with self._lock:
                frame = self.driver.step(item[1], time.perf_counter() - started)
            self.pose.emit(frame.lam, frame.camera)

    def _show(self, lam, camera) -> None:
        if not self.running:
            return  # a pose posted just before stop
        with self.controller.one_render():
            self.controller.state.set_lam(lam)
            self.controller.state.set_camera(view_camera(camera))
        self.poses_shown += 1

    def set_gain(self, gain: float) -> None:
        """Scale the performance's λ around the neutral expression, from the next frame on."""
        self._set_settings(dataclasses.replace(self.settings, gain=float(gain)))

    def set_smoothing(self, strength: float) -> None:
        """The One Euro filter's strength (0: off, 1: the default, 2: half the cutoff), from the next frame on."""
        self._set_settings(dataclasses.replace(self.settings, smoothing=float(strength)))

    def _set_settings(self, settings: DriveSettings) -> None:
        self.settings = settings
        with self._lock:
            if self.driver is not None:
                self.driver.set_settings(settings)

    def start_recording(self) -> None:
        if self.running:
            with self._lock:
                self.driver.start_recording()

    def stop_recording(self) -> int:
        """Bake the take into keys that replace the timeline's animation (one undo step); the key count."""
        with self._lock:
            animation = self.driver.stop_recording(fps=self.timeline.fps)
        self.controller.tracker.edit("Live take",
                                     lambda: self.controller.state.set_animation(animation))
        return len(animation.keys)

    def stop(self) -> None:
        """Stop capture and driving; a take still recording is discarded."""
        if self._thread is None:
            return
        self._stop.set()
        self.source.close()
        self._thread.join(timeout=READ_TIMEOUT_S + 5.0)
        self._thread = None
        self.driver = None  # with it any take still recording
