"""Exports shared by the headless commands and the editor: stills, turntables, basis sweeps.

Frame generators yield one uint8 frame at a time so callers can show progress and cancel;
writers are atomic (a temp file beside the target, renamed at the end), so a cancelled or failed
export never leaves a half-written file, and they refuse to overwrite unless asked.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from export3d_core.atomic import atomic_path
from export3d_core.camera import ORBIT_PITCH_AMPLITUDE, ORBIT_YAW_AMPLITUDE, OrbitCamera, orbit_path, yaw_sweep
from export3d_core.errors import Export3DError
from export3d_core.session import PortraitSession

ANIMATION_SUFFIXES = (".gif", ".mp4")
STILL_SUFFIXES = (".png",)


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
        if self.frames < 2:
            raise Export3DError("a turntable needs at least 2 frames")
        if not 1 <= self.fps <= 120:
            raise Export3DError("fps must be between 1 and 120")
        if self.path not in ("orbit", "yaw"):
            raise Export3DError(f"unknown turntable path {self.path!r}; use 'orbit' or 'yaw'")


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
    if steps < 2:
        raise Export3DError("a sweep needs at least 2 steps")
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
    path = Path(path)
    if path.suffix.lower() not in suffixes:
        raise Export3DError(f"{path.name}: output must end in one of {', '.join(suffixes)}")
    if path.exists() and not overwrite:
        raise Export3DError(f"{path} exists; pass --overwrite (or confirm) to replace it")
    if not path.parent.exists():
        raise Export3DError(f"folder does not exist: {path.parent}")
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
    """GIF or MP4 by suffix, frame by frame; raises ExportCancelled (and writes nothing) on cancel."""
    import imageio.v2 as imageio

    path = check_target(path, ANIMATION_SUFFIXES, overwrite)
    is_gif = path.suffix.lower() == ".gif"

    def write(tmp: str) -> None:
        if is_gif:
            writer = imageio.get_writer(tmp, format="GIF", mode="I", duration=1000 / fps, loop=0 if loop else 1)
        else:
            writer = imageio.get_writer(tmp, format="FFMPEG", mode="I", fps=fps, codec="libx264",
                                        quality=8, macro_block_size=1, pixelformat="yuv420p")
        count = 0
        try:
            for frame in frames:
                if should_cancel is not None and should_cancel():
                    raise ExportCancelled()
                writer.append_data(frame)
                count += 1
                if progress is not None:
                    progress(count, total)
        finally:
            writer.close()
        if count == 0:
            raise Export3DError("nothing to write: no frames")

    return _atomic(path, write)
