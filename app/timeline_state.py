"""The timeline's model: the playhead, the selected key, the clipboard and playback; no widgets.

The keys themselves live in `EditorState.animation` (an immutable core `Animation`), so every key
edit is one `tracker.edit(...)` step that undo restores with the rest of the pose. Scrubbing and
playing set the editor's λ and camera to the sampled pose without an undo step: they show the
animation, they do not edit it. Playing advances by the wall clock, snapped to the animation's
frames, so a slow machine shows fewer frames rather than a slower animation; the render service
renders the newest pose as a preview and the full frame once the playhead rests.
"""
from __future__ import annotations

import math
import time
from dataclasses import replace

from PySide6.QtCore import QObject, QTimer, Signal

from export3d_core import DEFAULT_EASING, EASINGS, Animation, AnimationKey, CameraPose, Export3DError

from app.state import ViewCamera

DEFAULT_FPS = 30.0
DEFAULT_DURATION = 3.0  # seconds shown before the first key is added
MIN_DURATION = 0.1
EASING_LABELS = {"hold": "Hold", "linear": "Linear", "ease-in-out": "Ease in/out", "smooth-step": "Smooth step",
                 "catmull-rom": "Catmull-Rom"}
assert set(EASING_LABELS) == set(EASINGS)


def pose_camera(camera: ViewCamera) -> CameraPose:
    return CameraPose(camera.yaw_deg, camera.pitch_deg, camera.radius, camera.fov_deg)


def view_camera(pose: CameraPose) -> ViewCamera:
    return ViewCamera(pose.yaw_deg, pose.pitch_deg, pose.radius, pose.fov_deg)


def snap(t: float, fps: float) -> float:
    """`t` on the nearest frame (keys placed by hand land on frames, as exports sample them)."""
    return round(t * fps) / fps


class Timeline(QObject):
    """Playhead, selection, clipboard and playback over the controller's state and undo tracker."""

    time_changed = Signal(float)
    selection_changed = Signal(object)  # int | None
    playing_changed = Signal(bool)
    message = Signal(str)

    def __init__(self, controller, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.controller, self.state = controller, controller.state
        self.time = 0.0
        self.selected: int | None = None
        self.loop = True
        self.clipboard: list[dict] = []
        self._fps, self._duration = DEFAULT_FPS, DEFAULT_DURATION  # used while there are no keys
        self._timer = QTimer(self)
        self._timer.timeout.connect(self._tick)
        self._play_origin = (0.0, 0.0)  # (wall clock, playhead) when play started
        self.frames_played = 0  # poses set while playing (what the benchmark counts against frames shown)
        self.state.animation_changed.connect(self._on_animation)

    # -- what the dock shows -----------------------------------------------------------------------
    @property
    def animation(self) -> Animation | None:
        return self.state.animation

    @property
    def fps(self) -> float:
        return self.animation.fps if self.animation else self._fps

    @property
    def duration(self) -> float:
        return self.animation.duration if self.animation else self._duration

    @property
    def playing(self) -> bool:
        return self._timer.isActive()

    def key_index_at(self, t: float) -> int | None:
        """The key on the frame of `t`, if any."""
        keys = self.animation.keys if self.animation else ()
        half_frame = 0.5 / self.fps
        return next((i for i, k in enumerate(keys) if abs(k.time - t) < half_frame), None)

    # -- key edits: each one undo step -----------------------------------------------------------------
    def _edit(self, text: str, animation: Animation | None) -> None:
        self.controller.tracker.edit(text, lambda: self.state.set_animation(animation))

    def add_key(self, easing: str | None = None) -> int:
        """A key at the playhead holding the current λ and camera; replaces a key on the same frame."""
        t = snap(self.time, self.fps)
        previous = self.key_index_at(t)
        if easing is None:
            easing = self.animation.keys[previous].easing if previous is not None else DEFAULT_EASING
        key = AnimationKey(t, self.state.lam, pose_camera(self.state.camera), easing)
        if self.animation is None:
            animation = Animation((key,), self._fps, max(self._duration, t))
        else:
            animation = self.animation.with_key(key)
        self._edit(f"Add key at {t:.2f} s", animation)
        self.select(animation.times.index(t))
        return self.selected

    def delete_key(self, index: int | None = None) -> None:
        index = self.selected if index is None else index
        if index is None or self.animation is None:
            return
        animation = None if len(self.animation.keys) == 1 else self.animation.without_key(index)
        self._edit(f"Delete key at {self.animation.keys[index].time:.2f} s", animation)
        self.select(None)

    def move_key(self, index: int, t: float) -> None:
        """Drag in time (snapped to a frame, kept within the timeline); a key on that frame is replaced."""
        t = min(max(0.0, snap(t, self.fps)), self.duration)
        old = self.animation.keys[index]
        if t == old.time:
            return
        animation = self.animation.moved_key(index, t)
        self._edit(f"Move key {old.time:.2f} → {t:.2f} s", animation)
        self.select(animation.times.index(t))

    def set_easing(self, easing: str, index: int | None = None) -> None:
        index = self.selected if index is None else index
        if index is None or self.animation is None or self.animation.keys[index].easing == easing:
            return
        keys = list(self.animation.keys)
        keys[index] = replace(keys[index], easing=easing)
        self._edit(f"Easing {EASING_LABELS[easing]}", replace(self.animation, keys=tuple(keys)))

    def set_timing(self, fps: float, duration: float) -> None:
        """Frames per second and length; the length never cuts off a key."""
        if self.animation is None:
            self._fps, self._duration = fps, max(MIN_DURATION, duration)
            self.time_changed.emit(self.time)  # redraw the empty timeline
            return
        duration = max(duration, self.animation.keys[-1].time, MIN_DURATION)
        if (fps, duration) != (self.animation.fps, self.animation.duration):
            self._edit("Timeline timing", replace(self.animation, fps=fps, duration=duration))

    # -- clipboard ------------------------------------------------------------------------------------
    def copy_key(self, index: int | None = None) -> bool:
        index = self.selected if index is None else index
        if index is None or self.animation is None:
            return False
        self.clipboard = [self.animation.keys[index].to_dict()]
        self.message.emit(f"copied the key at {self.animation.keys[index].time:.2f} s")
        return True

    def paste_key(self) -> int | None:
        """The copied key at the playhead (its pose and easing; a key on that frame is replaced)."""
        if not self.clipboard:
            return None
        try:
            key = AnimationKey.from_dict(dict(self.clipboard[0], time=snap(self.time, self.fps)))
            animation = (self.animation.with_key(key) if self.animation else
                         Animation((key,), self._fps, max(self._duration, key.time)))
            if animation.n_basis != self.state.n_basis:
                raise Export3DError(f"the copied key has {animation.n_basis} λ values; the model has "
                                    f"{self.state.n_basis}")
        except Export3DError as exc:
            self.message.emit(f"paste: {exc}")
            return None
        self._edit(f"Paste key at {key.time:.2f} s", animation)
        self.select(animation.times.index(key.time))
        return self.selected

    # -- playhead -------------------------------------------------------------------------------------
    def select(self, index: int | None) -> None:
        if index != self.selected:
            self.selected = index
            self.selection_changed.emit(index)

    def scrub(self, t: float) -> None:
        """Move the playhead; the editor shows the animation's pose there (no undo step)."""
        self.time = min(max(0.0, float(t)), self.duration)
        if self.animation is not None:
            lam, camera = self.animation.sample(self.time)
            with self.controller.one_render():
                self.state.set_lam(lam)
                self.state.set_camera(view_camera(camera))
        self.time_changed.emit(self.time)

    def play(self) -> None:
        if self.playing or self.animation is None:
            return
        start = 0.0 if self.time >= self.duration else self.time
        self._play_origin = (time.perf_counter(), start)
        self.frames_played = 0
        self._timer.start(max(1, int(1000 / self.fps)))
        self.playing_changed.emit(True)

    def stop(self) -> None:
        if self.playing:
            self._timer.stop()
            self.playing_changed.emit(False)
            self.scrub(self.time)  # the rest timer then brings the full frame

    def toggle_play(self) -> None:
        self.stop() if self.playing else self.play()

    def _tick(self) -> None:
        wall, start = self._play_origin
        t = start + math.floor((time.perf_counter() - wall) * self.fps + 1e-9) / self.fps
        if t >= self.duration and not self.loop:
            self.scrub(self.duration)
            self.frames_played += 1
            self.stop()
            return
        if t >= self.duration:
            t = math.fmod(t, self.duration)
        if snap(t, self.fps) != snap(self.time, self.fps) or self.frames_played == 0:
            self.scrub(t)
            self.frames_played += 1

    def _on_animation(self, animation: Animation | None) -> None:
        if animation is None or (self.selected is not None and self.selected >= len(animation.keys)):
            self.select(None)
        if animation is None and self.playing:
            self.stop()
        self.time = min(self.time, self.duration)
        self.time_changed.emit(self.time)
