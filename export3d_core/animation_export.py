"""Rendering a keyframe animation to MP4, GIF or a folder of PNGs, through a `PortraitSession`.

Frames come from a generator (one render per frame, so the caller shows progress and cancels
between frames); MP4 and GIF go through `export.write_animation`, a PNG sequence is written into a
hidden folder beside the target and renamed into place at the end. Either way a cancelled or failed
export leaves nothing behind, and an existing target is replaced only with `overwrite`.

With a `paste_back.Compositor` each frame is pasted into the original photo, at the photo's size:
a key's yaw and pitch then turn the head from the photo's own pose (0°, 0° is the photo's pose, as
`--yaw/--pitch` with `render --paste-back`, and as a performance baked by `drive` starts), and its
distance and field of view are the photo's, so every frame lines up with the photo.
"""
from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from export3d_core.animation import Animation, CameraPose
from export3d_core.atomic import check_writable
from export3d_core.camera import OrbitCamera
from export3d_core.errors import Export3DError
from export3d_core.export import ANIMATION_SUFFIXES, ExportCancelled, check_target, write_animation
from export3d_core.display import RENDER_MODES
from export3d_core.paste_back import Compositor, limit_problem, turned_camera
from export3d_core.session import QUALITIES, PortraitSession

Progress = Callable[[int, int | None], None]
MIN_SIZE, MAX_SIZE = 16, 4096


@dataclass(frozen=True)
class AnimationExportSettings:
    fps: float | None = None  # None: the animation's own
    start: float = 0.0  # seconds
    end: float | None = None  # seconds, inclusive; None: the animation's duration
    size: int | None = None  # output side in pixels; None: the model's output size
    mode: str = "final"
    quality: str = "full"  # "preview" renders the fast path (what a playing timeline shows)

    def __post_init__(self) -> None:
        if self.mode not in RENDER_MODES:
            raise Export3DError(f"unknown render mode {self.mode!r}; use one of {', '.join(RENDER_MODES)}")
        if self.quality not in QUALITIES:
            raise Export3DError(f"unknown quality {self.quality!r}; use one of {', '.join(QUALITIES)}")
        if self.size is not None and not MIN_SIZE <= self.size <= MAX_SIZE:
            raise Export3DError(f"size must be between {MIN_SIZE} and {MAX_SIZE} pixels, got {self.size}")


def frame_times(animation: Animation, settings: AnimationExportSettings) -> list[float]:
    return animation.frame_times(settings.fps, settings.start, settings.end)


def resize_frame(frame: np.ndarray, size: int | None) -> np.ndarray:
    if size is None or frame.shape[:2] == (size, size):
        return frame
    from PIL import Image

    return np.asarray(Image.fromarray(frame).resize((size, size), Image.Resampling.LANCZOS))


class PoseRenderer:
    """Renders the poses of an animation through a session, choosing the renderer per frame.

    The accelerated renderer pays for an occupancy grid per λ, which a playing timeline uses for
    one frame only: a preview frame whose λ differs from the previous frame's goes through a twin
    session with the reference renderer (same model and portrait). Measured as CPU time on one
    thread (demo model, a moving λ every frame): preview 76-78 ms accelerated against 27-29 ms
    reference; full frames 152-158 ms against 154-166 ms, so full frames keep the accelerated
    path, and so do frames that only move the camera (its grid is reused). Under CUDA graphs the
    session decides alone.
    """

    def __init__(self, session: PortraitSession) -> None:
        self.session = session
        self._reference: PortraitSession | None = None
        self._reference_source = None
        self._last_lam: tuple[float, ...] | None = None

    def render(self, lam, camera: CameraPose, mode: str = "final", quality: str = "full") -> np.ndarray:
        lam = tuple(float(v) for v in lam)
        session = self.session
        if quality == "preview" and self._last_lam is not None and lam != self._last_lam and self._wants_reference():
            session = self._reference_session()
        self._last_lam = lam
        return session.render_image(lam, camera.to_orbit(), mode, quality)

    def _wants_reference(self) -> bool:
        return self.session.renderer == "accelerated" and not self.session.cuda_graphs

    def _reference_session(self) -> PortraitSession:
        main = self.session
        if self._reference is None:
            self._reference = PortraitSession(main.model, device=main.device, preview=main.preview,
                                              renderer="reference", acceleration=main.acceleration)
        if self._reference_source is not main.source:  # the portrait changed: encode it once more
            self._reference.set_portrait(main.source)
            self._reference_source = main.source
        return self._reference


def render_pose(renderer: PoseRenderer, animation: Animation, t: float,
                settings: AnimationExportSettings) -> np.ndarray:
    """One frame of the animation at `t` seconds (what a timeline shows when scrubbing or playing)."""
    lam, camera = animation.sample(t)
    frame = renderer.render(lam, camera, settings.mode, settings.quality)
    return resize_frame(frame, settings.size)


def check_lambda_count(session: PortraitSession, animation: Animation) -> None:
    if animation.n_basis != session.config.n_basis:
        raise Export3DError(f"the animation has {animation.n_basis} λ values; the model has {session.config.n_basis}")


def animation_frames(session: PortraitSession, animation: Animation, settings: AnimationExportSettings,
                     times: list[float] | None = None) -> Iterator[np.ndarray]:
    check_lambda_count(session, animation)
    renderer = PoseRenderer(session)
    for t in frame_times(animation, settings) if times is None else times:
        yield render_pose(renderer, animation, t, settings)


def check_folder_target(path: Path, overwrite: bool) -> Path:
    path = Path(path)
    if not path.parent.is_dir():
        raise Export3DError(f"folder does not exist: {path.parent}")
    if path.exists() and not path.is_dir():
        raise Export3DError(f"{path} is a file; a PNG sequence needs a folder")
    if path.is_dir() and any(path.iterdir()) and not overwrite:
        raise Export3DError(f"{path} exists and is not empty; pass --overwrite (or confirm) to replace it")
    check_writable(path)  # its folder must take the staging folder: fail now, not after rendering
    return path


def write_png_sequence(folder: Path, frames: Iterable[np.ndarray], *, overwrite: bool = False,
                       total: int | None = None, progress: Progress | None = None,
                       should_cancel: Callable[[], bool] | None = None) -> Path:
    """frame_00000.png, … into `folder`, all or nothing: raises ExportCancelled on cancel."""
    from PIL import Image

    folder = check_folder_target(folder, overwrite)
    staging = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{folder.name}."))
    try:
        count = 0
        for frame in frames:
            if should_cancel is not None and should_cancel():
                raise ExportCancelled()
            Image.fromarray(frame).save(staging / f"frame_{count:05d}.png", format="PNG")
            count += 1
            if progress is not None:
                progress(count, total)
        if count == 0:
            raise Export3DError("nothing to write: no frames")
        os.chmod(staging, 0o777 & ~_umask())
        _swap_into_place(staging, folder)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return folder


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _swap_into_place(staging: Path, folder: Path) -> None:
    """Rename `staging` to `folder`; an existing folder is moved aside first and removed after."""
    if not folder.exists():
        os.rename(staging, folder)
        return
    old = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{folder.name}.old."))
    os.rename(folder, old / "replaced")
    try:
        os.rename(staging, folder)
    except OSError:
        os.rename(old / "replaced", folder)  # put the original back: lose nothing
        raise
    finally:
        shutil.rmtree(old, ignore_errors=True)


def output_kind(path: Path) -> str:
    """"mp4", "gif" or "png" (a folder); anything else is an error."""
    suffix = Path(path).suffix.lower()
    if suffix in ANIMATION_SUFFIXES:
        return suffix[1:]
    if suffix == "":
        return "png"
    raise Export3DError(f"{Path(path).name}: output must end in .mp4 or .gif, or be a folder (PNG sequence)")


def check_output(output: str | Path, overwrite: bool) -> str:
    """Refuse a bad or existing target before any rendering; returns its kind."""
    output = Path(output)
    kind = output_kind(output)
    if kind == "png":
        check_folder_target(output, overwrite)
    else:
        check_target(output, ANIMATION_SUFFIXES, overwrite)
    return kind


def export_animation(session: PortraitSession, animation: Animation, output: str | Path,
                     settings: AnimationExportSettings = AnimationExportSettings(), *, overwrite: bool = False,
                     progress: Progress | None = None, should_cancel: Callable[[], bool] | None = None,
                     compositor: Compositor | None = None) -> Path:
    """Render and write the animation; MP4/GIF by suffix, else a folder of PNGs. With `compositor`,
    every frame is pasted into its photo (see the module's note for the camera)."""
    output = Path(output)
    check_output(output, overwrite)
    check_lambda_count(session, animation)
    times = frame_times(animation, settings)
    if compositor is None:
        frames = animation_frames(session, animation, settings, times)
    else:
        check_paste_back_settings(settings)
        frames = pasted_frames(session, animation, times, compositor)
    fps = animation.fps if settings.fps is None else settings.fps
    return write_frames(output, frames, fps, total=len(times), overwrite=overwrite, progress=progress,
                        should_cancel=should_cancel)


def check_paste_back_settings(settings: AnimationExportSettings) -> None:
    """A pasted frame is the final image, rendered in full, at the photo's own size."""
    if settings.mode != "final":
        raise Export3DError(f"paste-back composites the final image, not the {settings.mode} view")
    if settings.size is not None:
        raise Export3DError("paste-back writes frames at the photo's own size; leave the size unset")
    if settings.quality != "full":
        raise Export3DError("paste-back renders full-quality frames; leave the quality at full")


def paste_back_cameras(animation: Animation, times: list[float], photo_camera: OrbitCamera) -> list[OrbitCamera]:
    """The camera of each pasted frame: the photo's pose turned by the sampled key camera's yaw and pitch."""
    cameras = []
    for t in times:
        orbit = animation.sample(t)[1].to_orbit()
        cameras.append(turned_camera(photo_camera, orbit.yaw, orbit.pitch))
    return cameras


def animation_paste_back_problem(animation: Animation, times: list[float], photo_camera: OrbitCamera) -> str:
    """"" when every pasted frame is within the measured pose limit, else why not (`paste_back.limit_problem`)."""
    return limit_problem(paste_back_cameras(animation, times, photo_camera), photo_camera)


def pasted_frames(session: PortraitSession, animation: Animation, times: list[float],
                  compositor: Compositor) -> Iterator[np.ndarray]:
    cameras = paste_back_cameras(animation, times, compositor.photo_camera)
    for t, camera in zip(times, cameras):
        yield compositor.frame(session, animation.sample(t)[0], camera)


def write_frames(output: str | Path, frames: Iterable[np.ndarray], fps: float, *, total: int | None = None,
                 overwrite: bool = False, progress: Progress | None = None,
                 should_cancel: Callable[[], bool] | None = None) -> Path:
    """Any frames to MP4/GIF (by suffix) or a PNG folder, atomically."""
    output = Path(output)
    if output_kind(output) == "png":
        return write_png_sequence(output, frames, overwrite=overwrite, total=total, progress=progress,
                                  should_cancel=should_cancel)
    return write_animation(output, frames, fps, overwrite=overwrite, total=total, progress=progress,
                           should_cancel=should_cancel)


def beside(left: np.ndarray, right: np.ndarray) -> np.ndarray:
    """`left` scaled to `right`'s height (aspect kept), then both side by side."""
    height = right.shape[0]
    width = max(1, round(left.shape[1] * height / left.shape[0]))
    if left.shape[:2] != (height, width):
        from PIL import Image

        left = np.asarray(Image.fromarray(left).resize((width, height), Image.Resampling.LANCZOS))
    return np.concatenate([left, right], axis=1)
