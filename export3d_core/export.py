"""Exports shared by the headless commands and the editor: stills, turntables, basis sweeps.

Frame generators yield one uint8 frame at a time so callers can show progress and cancel;
writers are atomic (a temp file beside the target, renamed at the end), so a cancelled or failed
export never leaves a half-written file, and they refuse to overwrite unless asked.
"""
from __future__ import annotations

import math
import os
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from export3d_core.atomic import atomic_path, check_writable, resolve_output
from export3d_core.camera import ORBIT_PITCH_AMPLITUDE, ORBIT_YAW_AMPLITUDE, OrbitCamera, orbit_path, yaw_sweep
from export3d_core.errors import Export3DError
from export3d_core.session import PortraitSession

ANIMATION_SUFFIXES = (".gif", ".mp4")
STILL_SUFFIXES = (".png",)
MAX_FPS = 120
# Ten minutes at 30 fps. Frames are streamed, so this bounds time rather than memory: a typo
# like 60000 would render for days before the user saw a file.
MAX_ANIMATION_FRAMES = 18_000


class ExportCancelled(Exception):
    """Raised inside a writer when the caller's `should_cancel` says stop; nothing is written."""


@dataclass(frozen=True)
class TurntableSettings:
    frames: int = 60
    fps: int = 30
    path: str = "orbit"  # "orbit" (EG3D's yaw/pitch ellipse) or "yaw" (a plain yaw sweep)
    yaw_amplitude: float = ORBIT_YAW_AMPLITUDE  # radians
    pitch_amplitude: float = ORBIT_PITCH_AMPLITUDE  # radians, orbit path only
    loop: bool = True  # GIF loops forever

    def __post_init__(self) -> None:
        if not 2 <= self.frames <= MAX_ANIMATION_FRAMES:
            raise Export3DError(f"a turntable needs 2 to {MAX_ANIMATION_FRAMES} frames, got {self.frames}")
        if not 1 <= self.fps <= MAX_FPS:
            raise Export3DError(f"fps must be between 1 and {MAX_FPS}, got {self.fps}")
        if self.path not in ("orbit", "yaw"):
            raise Export3DError(f"unknown turntable path {self.path!r}; use 'orbit' or 'yaw'")
        for name in ("yaw_amplitude", "pitch_amplitude"):
            if not math.isfinite(getattr(self, name)):
                raise Export3DError(f"the turntable's {name.replace('_', ' ')} must be a finite number")


def turntable_cameras(base: OrbitCamera, settings: TurntableSettings) -> list[OrbitCamera]:
    cameras = []
    for index in range(settings.frames):
        t = index / settings.frames
        if settings.path == "orbit":
            yaw, pitch = orbit_path(t, settings.yaw_amplitude, settings.pitch_amplitude)
        else:
            yaw, pitch = yaw_sweep(t, settings.yaw_amplitude)
        cameras.append(base.replace(yaw=base.yaw + yaw, pitch=base.pitch + pitch))
    return cameras


def turntable_frames(session: PortraitSession, lam, base: OrbitCamera, settings: TurntableSettings,
                     mode: str = "final") -> Iterator[np.ndarray]:
    for camera in turntable_cameras(base, settings):
        yield session.render_image(lam, camera, mode)


def sweep_lambdas(lam, basis_index: int, start: float, stop: float, steps: int) -> list[list[float]]:
    """λ with coefficient `basis_index` (0-based) swept linearly from `start` to `stop`."""
    lam = [float(v) for v in lam]
    if not 0 <= basis_index < len(lam):
        raise Export3DError(f"basis index must be 1..{len(lam)}, got {basis_index + 1}")
    if not 2 <= steps <= MAX_ANIMATION_FRAMES:
        raise Export3DError(f"a sweep needs 2 to {MAX_ANIMATION_FRAMES} steps, got {steps}")
    if not (math.isfinite(start) and math.isfinite(stop)):
        raise Export3DError(f"a sweep runs between finite numbers, got {start} to {stop}")
    out = []
    for value in np.linspace(start, stop, steps):
        row = list(lam)
        row[basis_index] = float(value)
        out.append(row)
    return out


def sweep_frames(session: PortraitSession, lam, camera: OrbitCamera, basis_index: int,
                 start: float, stop: float, steps: int, mode: str = "final") -> Iterator[np.ndarray]:
    for row in sweep_lambdas(lam, basis_index, start, stop, steps):
        yield session.render_image(row, camera, mode)


def check_target(path: Path, suffixes: tuple[str, ...], overwrite: bool) -> Path:
    """The file to write for `path`, refused (one line) before any rendering when it cannot be.

    A symlink is followed (the link stays and its target is replaced) unless it leads nowhere:
    a loop or a missing target is refused rather than silently replaced by a plain file.
    """
    path = Path(path)
    if path.suffix.lower() not in suffixes:
        raise Export3DError(f"{path.name}: output must end in one of {', '.join(suffixes)}")
    path = resolve_output(path)
    if path.exists() and not overwrite:
        raise Export3DError(f"{path} exists; pass --overwrite (or confirm) to replace it")
    if not path.parent.exists():
        raise Export3DError(f"folder does not exist: {path.parent}")
    if not path.parent.is_dir():
        raise Export3DError(f"cannot write {path}: {path.parent} is a file, not a folder")
    check_writable(path)  # a read-only folder fails now, not after rendering every frame
    return path


def _atomic(path: Path, write: Callable[[str], None]) -> Path:
    with atomic_path(path) as tmp:
        write(tmp)
    return path


def write_png(path: Path, image: np.ndarray, alpha: np.ndarray | None = None, overwrite: bool = False) -> Path:
    """A still; `alpha` (H, W) uint8 adds an alpha channel (e.g. the rendered opacity)."""
    from PIL import Image

    path = check_target(path, STILL_SUFFIXES, overwrite)
    pixels = image if alpha is None else np.dstack([image, alpha])
    return _atomic(path, lambda tmp: Image.fromarray(pixels).save(tmp, format="PNG"))


def write_animation(path: Path, frames: Iterable[np.ndarray], fps: int, *, loop: bool = True,
                    overwrite: bool = False, total: int | None = None,
                    progress: Callable[[int, int | None], None] | None = None,
                    should_cancel: Callable[[], bool] | None = None) -> Path:
    """GIF or MP4 by suffix, frame by frame; raises ExportCancelled (and writes nothing) on cancel.

    Frames are streamed to the file (memory does not grow with their number). The result is
    checked before it replaces anything: an encoder that failed (a full disk, ffmpeg stopping)
    raises an error naming the file and the reason, and the old file stays as it was.
    """
    path = check_target(path, ANIMATION_SUFFIXES, overwrite)
    if not 1 <= fps <= MAX_FPS:
        raise Export3DError(f"fps must be between 1 and {MAX_FPS}, got {fps}")
    open_writer = _GifWriter if path.suffix.lower() == ".gif" else _Mp4Writer

    def write(tmp: str) -> None:
        writer = open_writer(tmp, fps, loop)
        count = 0
        try:
            for frame in frames:
                if should_cancel is not None and should_cancel():
                    raise ExportCancelled()
                writer.append(frame)
                count += 1
                if progress is not None:
                    progress(count, total)
        except BaseException:
            writer.abort()
            raise
        if count == 0:
            writer.abort()
            raise Export3DError("nothing to write: no frames")
        writer.finish(count, path)

    return _atomic(path, write)


class _GifWriter:
    """A GIF written frame by frame with Pillow's single-frame encoder (its `save_all` holds every
    frame in memory until the end; a long turntable would grow without bound)."""

    def __init__(self, tmp: str, fps: int, loop: bool) -> None:
        self.file = open(tmp, "wb")  # noqa: SIM115 - closed in finish/abort
        self.duration_ms = 1000 / fps
        self.loop = loop
        self.started = False

    def append(self, frame: np.ndarray) -> None:
        from PIL import GifImagePlugin, Image

        image = Image.fromarray(np.ascontiguousarray(frame, dtype=np.uint8)).convert("RGB")
        image = image.convert("P", palette=Image.Palette.ADAPTIVE, colors=256)
        if not self.started:
            # loop 0 = forever; without the NETSCAPE block a GIF plays once
            header, _ = GifImagePlugin.getheader(image, info={"loop": 0} if self.loop else {})
            self.file.write(b"".join(header))
            self.started = True
        chunks = GifImagePlugin.getdata(image, duration=self.duration_ms, include_color_table=True)
        self.file.write(b"".join(chunks))

    def finish(self, count: int, path: Path) -> None:
        self.file.write(b";")  # the GIF trailer
        self.file.flush()
        os.fsync(self.file.fileno())  # a full disk shows up here, not after the rename
        self.file.close()

    def abort(self) -> None:
        self.file.close()


class _Mp4Writer:
    """H.264 through imageio-ffmpeg. ffmpeg runs as a child whose exit status imageio never reads,
    so a failed trailer (a full disk) would pass as success: the finished file is probed instead."""

    def __init__(self, tmp: str, fps: int, loop: bool) -> None:
        import imageio.v2 as imageio

        self.tmp = tmp
        # quiet: a failure is reported once, by `finish`, in one line
        self.writer = imageio.get_writer(tmp, format="FFMPEG", mode="I", fps=fps, codec="libx264", quality=8,
                                         macro_block_size=1, pixelformat="yuv420p", ffmpeg_log_level="quiet")

    def append(self, frame: np.ndarray) -> None:
        try:
            self.writer.append_data(frame)
        except OSError as exc:
            if exc.errno is not None:
                raise
            # imageio's own message is ffmpeg's command line over many lines
            raise Export3DError(f"the video encoder (ffmpeg) stopped while writing "
                                f"({_disk_note(self.tmp) or 'it refused a frame'})") from None

    def finish(self, count: int, path: Path) -> None:
        self.writer.close()
        problem = probe_video(self.tmp, count)
        if problem:
            raise Export3DError(f"cannot write {path}: the video encoder (ffmpeg) failed: "
                                f"{_disk_note(self.tmp) or problem}; nothing was replaced")

    def abort(self) -> None:
        try:
            self.writer.close()
        except Exception:  # noqa: BLE001 - the first error is the one to report
            pass


def probe_video(path: str, expected_frames: int) -> str | None:
    """None when `path` is a complete video of `expected_frames` frames, else what is wrong."""
    import subprocess

    import imageio_ffmpeg

    try:
        frames, _ = imageio_ffmpeg.count_frames_and_secs(path)
    except (RuntimeError, OSError, subprocess.CalledProcessError):
        try:  # ffmpeg's own first error line says why (e.g. "moov atom not found")
            result = subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-i", path],
                                    capture_output=True, text=True, timeout=60)
            lines = [line for line in result.stderr.splitlines() if line.strip()]
        except (OSError, subprocess.SubprocessError):
            lines = []
        reason = re.sub(r"^\[[^]]*\]\s*", "", lines[0].strip()) if lines else "no video stream"
        return f"the file it wrote is unreadable ({reason})"
    if frames != expected_frames:
        return f"the file it wrote holds {frames} of {expected_frames} frames"
    return None


def _disk_note(tmp: str) -> str:
    """'the disk is full' when the folder of `tmp` has (almost) no space left, else ''."""
    import shutil

    try:
        free = shutil.disk_usage(os.path.dirname(os.path.abspath(tmp))).free
    except OSError:
        return ""
    return "the disk is full" if free < DISK_FULL_BYTES else ""


DISK_FULL_BYTES = 1 << 20  # below 1 MiB free a video's trailer cannot be written
