"""The render service: one worker thread owns the model session; the UI thread never renders.

Requests are immutable. Interactive frames go through one slot where the newest request wins (a
request waiting there is replaced, never queued behind); results come back on the main thread
through signals, and a result that a newer request or a newer portrait/model has made stale is
dropped there. While the input changes the service renders a fast preview at once and, when the
input has rested for `rest_ms`, one full-quality frame. Frames go through the core's
`PoseRenderer`: a preview whose λ differs from the previous frame's (a slider drag, a playing
timeline) takes the reference renderer, which builds no occupancy grid per λ (about 28 against
77 ms a demo preview frame, docs/animation.md); full frames and camera-only changes keep the
accelerated path. Background jobs (explorer cells, preset thumbnails) run only when no
interactive frame is waiting. `wait_until_idle()` is for tests.
"""
from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
from PySide6.QtCore import QCoreApplication, QEventLoop, QObject, QThread, QTimer, Signal

from app.state import ViewCamera

REST_MS = 150  # input quiet this long -> render the full-quality frame


@dataclass(frozen=True)
class RenderRequest:
    lam: tuple[float, ...]
    camera: ViewCamera
    mode: str
    quality: str  # "preview" | "full"
    serial: int = 0  # increases with every submission; newer wins
    generation: int = 0  # increases with every new model or portrait


@dataclass(frozen=True)
class FrameResult:
    """One frame for the viewport: the request it answers, the picture, and how long it took where."""

    request: RenderRequest
    image: np.ndarray | None  # uint8 (H, W, 3), None on error
    seconds: float
    device: str
    error: str | None = None


@dataclass
class _Job:
    tag: str
    key: object
    fn: Callable  # fn(session) -> object, run on the worker
    generation: int


@dataclass
class _Queues:
    setup: Callable | None = None  # builds the session (new model and/or portrait)
    interactive: RenderRequest | None = None
    background: deque = field(default_factory=deque)
    stopping: bool = False
    busy: bool = False
    emitted: int = 0  # results posted to the main thread


class _Worker(QThread):
    """Runs setup, then the newest interactive request, then background jobs, one at a time."""

    frame_done = Signal(object)  # FrameResult
    job_done = Signal(str, object, object, int, object)  # tag, key, result, generation, error
    setup_done = Signal(int, object)  # generation, error message or None

    def __init__(self, queues: _Queues, cond: threading.Condition) -> None:
        super().__init__()
        self._q, self._cond = queues, cond
        self.session = None
        self.poses = None  # export3d_core.PoseRenderer over `session`: picks the renderer per frame
        self.generation = 0

    def run(self) -> None:  # noqa: D401 - Qt override
        while True:
            with self._cond:
                while not (self._q.stopping or self._q.setup or self._q.interactive or self._q.background):
                    self._cond.wait()
                if self._q.stopping:
                    return
                setup, request, job = self._q.setup, None, None
                if setup is not None:
                    self._q.setup = None
                elif self._q.interactive is not None:
                    request, self._q.interactive = self._q.interactive, None
                else:
                    job = self._q.background.popleft()
                self._q.busy = True
            try:
                if setup is not None:
                    self._run_setup(setup)
                elif request is not None:
                    self._render(request)
                else:
                    self._run_job(job)
            finally:
                with self._cond:
                    self._q.busy = False
                    self._q.emitted += 1

    def _run_setup(self, setup: Callable) -> None:
        generation, build = setup
        try:
            from export3d_core import PoseRenderer

            self.session = build(self.session)
            self.poses = PoseRenderer(self.session)
            self.generation = generation
            self.setup_done.emit(generation, None)
        except Exception as exc:  # the model or portrait failed: say so in the window, keep the old one
            self.setup_done.emit(generation, _message(exc))

    def _render(self, request: RenderRequest) -> None:
        device = str(getattr(self.session, "device", "?"))
        start = time.perf_counter()
        try:
            if self.session is None or request.generation != self.generation:
                raise RuntimeError("no portrait loaded yet")
            image = self.poses.render(request.lam, request.camera, request.mode, request.quality)
            self.frame_done.emit(FrameResult(request, image, time.perf_counter() - start, device))
        except Exception as exc:
            self.frame_done.emit(FrameResult(request, None, time.perf_counter() - start, device, _message(exc)))

    def _run_job(self, job: _Job) -> None:
        try:
            if job.generation != self.generation or self.session is None:
                raise RuntimeError("stale job")
            self.job_done.emit(job.tag, job.key, job.fn(self.session), job.generation, None)
        except Exception as exc:
            self.job_done.emit(job.tag, job.key, None, job.generation, _message(exc))


def _message(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}".rstrip(": ")


class RenderService(QObject):
    """Main-thread face of the worker: submit requests, receive fresh results as signals."""

    frame_ready = Signal(object)  # FrameResult, fresh only
    render_failed = Signal(str)
    job_ready = Signal(str, object, object)  # tag, key, result
    session_ready = Signal()
    session_failed = Signal(str)

    def __init__(self, rest_ms: int = REST_MS, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._cond = threading.Condition()
        self._q = _Queues()
        self._worker = _Worker(self._q, self._cond)
        self._worker.frame_done.connect(self._on_frame)
        self._worker.job_done.connect(self._on_job)
        self._worker.setup_done.connect(self._on_setup)
        self._handled = 0
        self._serial = 0
        self._generation = 0
        self._ready_generation = -1
        self._shown_serial = -1
        self._rest = QTimer(self)
        self._rest.setSingleShot(True)
        self._rest.setInterval(rest_ms)
        self._rest.timeout.connect(self._submit_full)
        self._latest: tuple | None = None  # (lam, camera, mode) of the newest request
        self.full_frames = 0  # full-quality frames delivered (for tests and the status bar)
        self._worker.start()

    # -- session ---------------------------------------------------------------------------------
    def load(self, build: Callable) -> int:
        """Replace the worker's session: `build(old_session) -> new_session` runs on the worker."""
        self._generation += 1
        with self._cond:
            self._q.setup = (self._generation, build)
            self._q.interactive = None
            self._q.background.clear()
            self._cond.notify()
        return self._generation

    @property
    def ready(self) -> bool:
        return self._ready_generation == self._generation

    # -- interactive frames ------------------------------------------------------------------------
    def request(self, lam, camera: ViewCamera, mode: str, *, rest: bool = True) -> None:
        """Input changed: a preview now, the full frame once the input rests (or now if rest=False)."""
        self._latest = (tuple(lam), camera, mode)
        if rest:
            self._submit("preview")
            self._rest.start()
        else:
            self._rest.stop()
            self._submit("full")

    def _submit_full(self) -> None:
        self._submit("full")

    def _submit(self, quality: str) -> None:
        if self._latest is None:
            return
        lam, camera, mode = self._latest
        self._serial += 1
        request = RenderRequest(lam, camera, mode, quality, self._serial, self._generation)
        with self._cond:
            self._q.interactive = request  # newest wins: an unstarted request is simply replaced
            self._cond.notify()

    def _on_frame(self, result: FrameResult) -> None:
        self._handled += 1
        request = result.request
        if request.generation != self._generation:
            return  # from an older model or portrait
        if result.error is not None:
            self.render_failed.emit(result.error)
            return
        if request.quality == "full" and request.serial != self._serial:
            return  # a newer request is on its way
        if request.serial < self._shown_serial:
            return
        self._shown_serial = request.serial
        if request.quality == "full":
            self.full_frames += 1
        self.frame_ready.emit(result)

    # -- background jobs ---------------------------------------------------------------------------
    def submit_job(self, tag: str, key: object, fn: Callable) -> None:
        with self._cond:
            self._q.background.append(_Job(tag, key, fn, self._generation))
            self._cond.notify()

    def cancel_jobs(self, tag: str) -> None:
        with self._cond:
            self._q.background = deque(j for j in self._q.background if j.tag != tag)

    def _on_job(self, tag: str, key: object, result: object, generation: int, error: object) -> None:
        self._handled += 1
        if generation == self._generation and error is None:
            self.job_ready.emit(tag, key, result)

    def _on_setup(self, generation: int, error: object) -> None:
        self._handled += 1
        if generation != self._generation:
            return
        if error is None:
            self._ready_generation = generation
            self.session_ready.emit()
        else:
            self.session_failed.emit(str(error))

    # -- lifecycle ---------------------------------------------------------------------------------
    def is_idle(self) -> bool:
        with self._cond:
            queued = self._q.setup or self._q.interactive or self._q.background or self._q.busy
            emitted = self._q.emitted
        return not queued and not self._rest.isActive() and emitted == self._handled

    def wait_until_idle(self, timeout: float = 10.0) -> bool:
        """Process events until nothing is queued, rendering, resting or undelivered (tests)."""
        deadline = time.monotonic() + timeout
        app = QCoreApplication.instance()
        while time.monotonic() < deadline:
            if self.is_idle():
                return True
            app.processEvents(QEventLoop.ProcessEventsFlag.AllEvents, 20)
            time.sleep(0.002)
        return self.is_idle()

    def shutdown(self) -> None:
        self._rest.stop()
        with self._cond:
            self._q.stopping = True
            self._cond.notify()
        self._worker.wait(30_000)
