"""Exports as background jobs: a still PNG, a turntable GIF/MP4, a basis-sweep GIF, a mesh, or the
timeline's animation as MP4, GIF or a folder of PNGs.

Each job runs on its own thread with its own `PortraitSession` over the shared (read-only) model,
so the viewport keeps rendering. Writing goes through `export3d_core.export` (the same code as
the headless commands): atomic, and a cancelled job raises `ExportCancelled` and leaves no file.
With `paste_back`, each frame is composited into the original photo at its own resolution
(`export3d_core.Compositor`, as `--paste-back` on the command line); an animation's keys then turn
the head from the photo's own pose, as `export3d animate --paste-back` does.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PySide6.QtCore import Signal

from export3d_core import (Export3DError, ExportCancelled, TurntableSettings, opacity_to_alpha, sweep_frames,
                           turntable_frames, write_animation, write_png)

from app.background_job import CancellableJob
from app.state import ViewCamera


@dataclass(frozen=True)
class SweepSettings:
    basis_index: int  # 0-based
    start: float
    stop: float
    steps: int = 24
    fps: int = 12


@dataclass(frozen=True)
class PhotoSource:
    """The original photo a paste-back export composites into, and the camera it is seen from."""

    path: Path
    crop_size: int  # the side of the editor's aligned crop of it
    camera: object  # OrbitCamera: the photo's pose turned by the view's yaw and pitch (stills, turntables, sweeps)


@dataclass(frozen=True)
class ExportSpec:
    kind: str  # "still" | "turntable" | "sweep"
    path: Path
    lam: tuple[float, ...]
    camera: ViewCamera
    mode: str = "final"
    overwrite: bool = False
    alpha: bool = False  # still only: opacity as the PNG's alpha channel
    turntable: TurntableSettings | None = None
    sweep: SweepSettings | None = None
    mesh: object | None = None  # mesh only: export3d_core.mesh.MeshSettings (None: its defaults)
    names: tuple[str, ...] = ()  # mesh only: the sliders' names, given to the morph targets
    paste_back: PhotoSource | None = None  # composite into the original photo (any kind but mesh)
    animation: object | None = None  # animation only: export3d_core Animation (the timeline's keys)
    animation_settings: object | None = None  # animation only: export3d_core AnimationExportSettings

    @property
    def total(self) -> int:
        if self.kind == "turntable" and self.turntable is not None:
            return self.turntable.frames
        if self.kind == "sweep" and self.sweep is not None:
            return self.sweep.steps
        if self.kind == "mesh":
            from export3d_core import MeshSettings, mesh_progress_total
            return mesh_progress_total(self.mesh or MeshSettings(), len(self.lam))
        if self.kind == "animation" and self.animation is not None:
            settings = self.animation_settings
            return len(self.animation.frame_times(settings.fps, settings.start, settings.end) if settings else
                       self.animation.frame_times())
        return 1


def opacity_alpha(output, size: tuple[int, int]) -> np.ndarray:
    """The rendered opacity as uint8 (H, W), resized to the image."""
    from PIL import Image

    alpha = opacity_to_alpha(output.alpha)
    if alpha.shape != size:
        alpha = np.asarray(Image.fromarray(alpha).resize(size[::-1], Image.Resampling.BILINEAR))
    return alpha


class ExportJob(CancellableJob):
    progress = Signal(int, int)  # done, total
    succeeded = Signal(str)  # path
    cancelled_error = ExportCancelled

    def __init__(self, model, portrait: np.ndarray, spec: ExportSpec) -> None:
        super().__init__()
        self.model, self.portrait, self.spec = model, portrait, spec

    def _work(self) -> str:
        return str(self._export())

    def _report(self, done: int, total: int | None) -> None:
        self.progress.emit(done, total or self.spec.total)

    def _export(self) -> Path:
        from export3d_core import PortraitSession, view_image

        spec = self.spec
        if spec.kind == "mesh":
            return self._export_mesh()
        if spec.kind == "animation":
            return self._export_animation()
        session = PortraitSession(self.model)
        session.set_portrait(self.portrait)
        camera = spec.camera.to_orbit()
        if spec.paste_back is not None:
            return self._export_pasted(session)
        if spec.kind == "still":
            output = session.render(spec.lam, camera, "full")
            cfg = session.config.render
            image = view_image(output, spec.mode, cfg.ray_start, cfg.ray_end)
            alpha = opacity_alpha(output, image.shape[:2]) if spec.alpha else None
            if self._cancel.is_set():
                raise ExportCancelled()
            path = write_png(spec.path, image, alpha, overwrite=spec.overwrite)
            self._report(1, 1)
            return path
        if spec.kind == "turntable":
            settings = spec.turntable or TurntableSettings()
            frames = turntable_frames(session, spec.lam, camera, settings, spec.mode)
            fps, loop = settings.fps, settings.loop
        elif spec.kind == "sweep":
            sweep = spec.sweep
            frames = sweep_frames(session, spec.lam, camera, sweep.basis_index, sweep.start, sweep.stop,
                                  sweep.steps, spec.mode)
            fps, loop = sweep.fps, True
        else:
            raise Export3DError(f"unknown export kind {spec.kind!r}")
        return write_animation(spec.path, frames, fps, loop=loop, overwrite=spec.overwrite, total=spec.total,
                               progress=self._report, should_cancel=self._cancel.is_set)

    def _export_pasted(self, session) -> Path:
        """Still, turntable or sweep composited into the original photo (final image, opaque)."""
        from export3d_core import photo_compositor, sweep_lambdas, turntable_cameras

        spec, source = self.spec, self.spec.paste_back
        compositor = photo_compositor(source.path, source.crop_size)
        if spec.kind == "still":
            image = compositor.frame(session, spec.lam, source.camera)
            if self._cancel.is_set():
                raise ExportCancelled()
            path = write_png(spec.path, image, overwrite=spec.overwrite)
            self._report(1, 1)
            return path
        if spec.kind == "turntable":
            settings = spec.turntable or TurntableSettings()
            views = [(spec.lam, c) for c in turntable_cameras(source.camera, settings)]
            fps, loop = settings.fps, settings.loop
        elif spec.kind == "sweep":
            sweep = spec.sweep
            rows = sweep_lambdas(spec.lam, sweep.basis_index, sweep.start, sweep.stop, sweep.steps)
            views, fps, loop = [(row, source.camera) for row in rows], sweep.fps, True
        else:
            raise Export3DError(f"paste-back is for stills, turntables and sweeps, not {spec.kind}")
        frames = (compositor.frame(session, lam, c) for lam, c in views)
        return write_animation(spec.path, frames, fps, loop=loop, overwrite=spec.overwrite, total=spec.total,
                               progress=self._report, should_cancel=self._cancel.is_set)

    def _export_mesh(self) -> Path:
        """The head as a mesh (export3d_core.mesh_export: the same job as `export3d mesh`)."""
        from export3d_core import MeshSettings, export_head_mesh

        spec = self.spec
        path, _, _ = export_head_mesh(self.model, self.portrait, spec.lam, spec.path, spec.mesh or MeshSettings(),
                                      names=spec.names or None, overwrite=spec.overwrite,
                                      progress=lambda done, total, _stage: self._report(done, total),
                                      should_cancel=self._cancel.is_set)
        return path

    def _export_animation(self) -> Path:
        """The keys through `export3d_core.animation_export` (the same code as `export3d animate`)."""
        from export3d_core import AnimationExportSettings, PortraitSession, export_animation

        spec = self.spec
        if spec.animation is None:
            raise Export3DError("the timeline has no keys: add a key first")
        session = PortraitSession(self.model)
        session.set_portrait(self.portrait)
        settings = spec.animation_settings or AnimationExportSettings(mode=spec.mode)
        compositor = None
        if spec.paste_back is not None:
            from export3d_core import photo_compositor

            compositor = photo_compositor(spec.paste_back.path, spec.paste_back.crop_size)
        return export_animation(session, spec.animation, spec.path, settings, overwrite=spec.overwrite,
                                progress=self._report, should_cancel=self._cancel.is_set, compositor=compositor)
