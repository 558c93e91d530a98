"""Fit to this portrait: the per-portrait fit as a background job, and where its file lives.

The job fits a copy of the editor's (unfitted) model on its own thread (`export3d_core.fit`), so the
viewport keeps rendering the unfitted model until the fit is done; the controller then swaps the
fitted copy in by rebuilding the render session, which the render service does between frames.
Every `preview_every` steps the job renders the fit so far at the view's camera, for the viewport.

The fit file is written to the settings folder (`fits/`) as soon as the fit is done, named after the
photo crop and the checkpoint: the fit survives even when the project is never saved (autosave
recovery points at it), and fitting the same photo again replaces its own file instead of piling
up copies. Saving the project copies the fit beside the project file, so a project folder keeps
its fit when it moves or is shared (app/editor.py, `save_project`).
"""
from __future__ import annotations

import copy
import dataclasses
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PySide6.QtCore import Signal

from export3d_core import Export3DError, FitCancelled, FitSettings

from app.background_job import CancellableJob

FITS_FOLDER = "fits"  # inside the settings folder
FIT_SUFFIX = ".safetensors"
PREVIEWS = 4  # intermediate previews per fit (each costs one render)


@dataclass
class FittedPortrait:
    """A fitted copy of the model and the file that holds what the fit changed."""

    model: object  # export3d_core.Export3D, eval mode
    path: Path
    upscale_note: str = ""  # whether the fit learnt an upscaler (renders at 2× the model's size), or why not


def fit_file_name(aligned: np.ndarray, checkpoint: Path | None) -> str:
    """One file per photo crop and checkpoint: `<crop hash>-<checkpoint name>.safetensors`."""
    from export3d_core import photo_digest

    model = Path(checkpoint).stem if checkpoint is not None else "random-init"
    return f"{photo_digest(aligned)[:16]}-{model}{FIT_SUFFIX}"


def load_fitted(path: Path, model, checkpoint: Path | None, aligned: np.ndarray) -> FittedPortrait:
    """A copy of `model` with the fit file applied; refused in one line for another photo or checkpoint."""
    from export3d_core import load_fit

    fitted = copy.deepcopy(model).eval()
    meta = load_fit(path, fitted, checkpoint, aligned)
    return FittedPortrait(fitted, Path(path), meta.get("upscale_note", ""))


def copy_atomic(source: Path, target: Path) -> Path:
    """Copy a file so that `target` is either the old file or the whole new one, never half of it."""
    target = Path(target)
    handle, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(handle)
    try:
        shutil.copyfile(source, tmp)
        os.replace(tmp, target)
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        raise Export3DError(f"could not copy the fit to {target}: {exc.strerror or exc}") from None
    return target


@dataclass(frozen=True)
class FitRequest:
    """What one fit needs, captured on the UI thread when the artist asks for it."""

    model: object  # the unfitted model (read only here: the fit tunes a copy)
    checkpoint: Path | None
    aligned: np.ndarray  # the portrait crop every render of it sees
    camera: np.ndarray  # (25,) the photo's estimated camera (frontal when unknown)
    lam: tuple[float, ...]  # the photo's own expression: the pivot
    target: Path  # the fit file to write
    view: object  # OrbitCamera of the previews
    settings: FitSettings = FitSettings()
    native_side: float | None = None  # the photo's own pixels across the crop (None: the crop's side)


class FitJob(CancellableJob):
    progress = Signal(int, int, float)  # step, total (the fit's steps, then the upscaler's), seconds left
    preview = Signal(object, int, int)  # uint8 image, step, total
    succeeded = Signal(object)  # FittedPortrait
    cancelled_error = FitCancelled

    def __init__(self, request: FitRequest) -> None:
        super().__init__()
        self.request = request
        self._preview_model = None

    def _work(self) -> object:
        return self._fit()

    def _fit(self) -> FittedPortrait:
        from export3d_core import fit_portrait, save_fit

        request = self.request
        every = max(1, request.settings.steps // PREVIEWS)
        settings = dataclasses.replace(request.settings, preview_every=every)
        result = fit_portrait(request.model, request.aligned, request.camera, list(request.lam), settings,
                              progress=self._report, cancel=self._cancel.is_set, native_side=request.native_side)
        if self._cancel.is_set():  # cancelled after the last step: still nothing is written
            raise FitCancelled("the fit was cancelled; nothing was written")
        request.target.parent.mkdir(parents=True, exist_ok=True)
        path = save_fit(request.target, result, request.checkpoint, request.aligned)
        return FittedPortrait(result.model, path, result.upscale_note)

    def _report(self, report) -> None:
        self.progress.emit(report.step, report.total, report.eta_s)
        if report.preview is not None and report.step < self.request.settings.steps:  # the final fit follows
            self.preview.emit(self._render_preview(report.preview), report.step, report.total)

    def _render_preview(self, tensors) -> np.ndarray:
        """The fit so far at the view's camera, in a private copy of the model (fast preview quality)."""
        from export3d_core import PortraitSession, apply_tensors

        if self._preview_model is None:
            self._preview_model = copy.deepcopy(self.request.model).eval()
        apply_tensors(self._preview_model, tensors)
        session = PortraitSession(self._preview_model)
        session.set_portrait(self.request.aligned)
        return session.render_image(list(self.request.lam), self.request.view, "final", "preview")
