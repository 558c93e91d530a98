"""The editor's controller: connects the state, the undo stack, the render service and the files.

It owns no widgets. The main window forwards user intents here (open a portrait, load a
checkpoint, apply a λ) and shows what comes back through signals (frames, status, errors). A
failed load leaves everything as it was, so the app stays usable after any bad file.
"""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from PySide6.QtCore import QObject, Signal
from PySide6.QtGui import QUndoStack

from export3d_core import Export3DError, FitSettings, OrbitCamera

from app import backend
from app.export_jobs import ExportJob, ExportSpec, PhotoSource
from app.fit_job import FitJob, FitRequest, FittedPortrait, copy_atomic, fit_file_name, load_fitted
from app.presets import Preset, PresetLibrary
from app.project import Project, load_project, save_project
from app.render_service import REST_MS, FrameResult, RenderService
from app.state import EditorState, ViewCamera, check_lambda
from app.undo import EditTracker

PORTRAIT_MIN_SIDE = 256  # portraits are kept at least this large; the session resamples to the model


class EditorController(QObject):
    frame_shown = Signal(object)  # FrameResult
    status = Signal(str)
    error = Signal(str)
    model_changed = Signal(object)  # backend.LoadedModel
    portrait_loaded = Signal(object)  # Path | None
    no_face = Signal(object)  # backend.NoPortraitFace: the window offers the manual crop
    presets_changed = Signal(object, object)  # library presets, the open project's own presets
    job_ready = Signal(str, object, object)  # tag, key, image
    unsaved_changed = Signal()  # whether there is unsaved work may have changed
    domain_checked = Signal(bool, float)  # outside the model's domain, reconstruction PSNR (dB)
    fit_changed = Signal(object)  # the fit file in use, or None

    def __init__(self, rest_ms: int = REST_MS, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.state = EditorState()
        self.undo_stack = QUndoStack(self)
        self.tracker = EditTracker(self.state, self.undo_stack)
        self.service = RenderService(rest_ms, self)
        self.loaded: backend.LoadedModel | None = None
        self.portrait_image: np.ndarray | None = None
        self.portrait_crop: tuple[tuple[float, float], float] | None = None
        self.portrait_camera: np.ndarray | None = None  # (25,) the photo's estimated camera, when known
        self.portrait_native_side: float | None = None  # the photo's own pixels across the crop, when known
        self.fit: FittedPortrait | None = None  # the portrait's fit: renders and exports use its model
        self.fit_folder: Path | None = None  # where new fits are written (the window: settings folder/fits)
        self.fit_settings = FitSettings()
        self.expression_source: str | None = None  # what the last expression estimate read: "landmarks" | "image"
        self.library: PresetLibrary | None = None  # the shared preset library file; None: none attached
        self.project_presets: list[Preset] = []  # the open project's presets, apart from the library
        self.last_frame: FrameResult | None = None
        self.jobs: list[ExportJob] = []
        self._held_renders = 0  # inside `one_render()`: requests wait for its end
        self._render_wanted = False
        self._changed = False  # unsaved changes the undo stack does not hold (mode, project presets, recovery)
        self.state.mode_changed.connect(lambda _mode: self.mark_changed())
        self.undo_stack.cleanChanged.connect(self.unsaved_changed)
        for signal in (self.state.lam_changed, self.state.camera_changed, self.state.mode_changed):
            signal.connect(self.request_render)
        self.service.frame_ready.connect(self._on_frame)
        self.service.render_failed.connect(lambda msg: self.error.emit(f"render failed: {msg}"))
        self.service.session_failed.connect(lambda msg: self.error.emit(f"model failed: {msg}"))
        self.service.job_ready.connect(self.job_ready)
        self.service.job_ready.connect(self._on_domain)

    # -- unsaved work --------------------------------------------------------------------------------
    def has_unsaved_changes(self) -> bool:
        return self._changed or not self.undo_stack.isClean()

    def mark_changed(self) -> None:
        if not self._changed:
            self._changed = True
            self.unsaved_changed.emit()

    def mark_saved(self) -> None:
        """Saved, or deliberately started afresh (a new portrait, an opened project)."""
        self._changed = False
        self.undo_stack.setClean()
        self.unsaved_changed.emit()

    # -- rendering ---------------------------------------------------------------------------------
    def request_render(self, *_args) -> None:
        if self._held_renders:
            self._render_wanted = True
            return
        if self.portrait_image is None or self.loaded is None:
            return
        self.service.request(self.state.lam, self.state.camera, self.state.mode, rest=True)

    @contextmanager
    def one_render(self) -> Iterator[None]:
        """Several state changes, one render request: a scrubbed pose moves λ and the camera at once,
        and two requests would render a preview of a pose that is never shown."""
        self._held_renders += 1
        try:
            yield
        finally:
            self._held_renders -= 1
            if not self._held_renders and self._render_wanted:
                self._render_wanted = False
                self.request_render()

    def _on_frame(self, result: FrameResult) -> None:
        self.last_frame = result
        self.frame_shown.emit(result)

    def render_jobs(self, tag: str, items: list[tuple[object, tuple[float, ...]]],
                    camera: ViewCamera | None = None) -> None:
        """Background thumbnails: each (key, λ) rendered at full quality, delivered via `job_ready`."""
        self.service.cancel_jobs(tag)
        camera = (camera or self.state.camera).to_orbit()
        mode = self.state.mode
        for key, lam in items:
            self.service.submit_job(tag, key, lambda s, lam=lam: s.render_image(lam, camera, mode, "full"))

    # -- model -------------------------------------------------------------------------------------
    @staticmethod
    def read_model(path: str | Path | None) -> backend.LoadedModel:
        """A checkpoint read but not applied; Export3DError with one line for any bad file."""
        try:
            return backend.load_model(path)
        except Export3DError:
            raise
        except Exception as exc:  # anything else a strange file can raise; never crash the editor
            raise Export3DError(f"could not load {path}: {type(exc).__name__}: {exc}") from None

    def load_model(self, path: str | Path | None) -> bool:
        """Load a checkpoint (None: the demo model or the visible random fallback); keep the old on failure."""
        try:
            loaded = self.read_model(path)
        except Export3DError as exc:
            self.error.emit(str(exc))
            return False
        self._apply_model(loaded)
        return True

    def _apply_model(self, loaded: backend.LoadedModel) -> None:
        self.loaded = loaded
        self._set_fit(None)  # a fit belongs to one checkpoint
        self.state.checkpoint_path = loaded.path
        self.state.resize_basis(loaded.model.config.n_basis)
        self.model_changed.emit(loaded)
        self._rebuild_session()

    @property
    def render_model(self):
        """What renders and exports use: the portrait's fitted copy, else the loaded model."""
        return self.fit.model if self.fit is not None else self.loaded.model

    def _rebuild_session(self) -> None:
        if self.loaded is None or self.portrait_image is None:
            return
        model, image = self.render_model, self.portrait_image

        def build(_old):
            from export3d_core import PortraitSession, pick_device

            session = PortraitSession(model, device=pick_device())
            session.set_portrait(image)
            return session

        self.service.load(build)  # runs on the worker between frames: a fitted model is swapped in safely
        self.request_render()
        self.check_domain()

    # -- portrait ----------------------------------------------------------------------------------
    def portrait_size(self, loaded: backend.LoadedModel | None = None) -> int:
        loaded = loaded or self.loaded
        size = loaded.model.config.input_size if loaded else PORTRAIT_MIN_SIDE
        return max(size, PORTRAIT_MIN_SIDE)

    @staticmethod
    def read_portrait(path: Path, crop: tuple | None,
                      size: int) -> tuple[np.ndarray, str, np.ndarray | None, float | None]:
        """(aligned image, method, camera or None, the photo's own pixels across the crop), not applied;
        Export3DError (or NoPortraitFace) in one line."""
        try:
            if crop is not None:
                from export3d_core import load_image

                (center, side) = crop
                image = backend.crop_by_hand(load_image(path), tuple(center), float(side), size)
                return image, "manual", None, float(side)
            return backend.load_portrait_image(path, size)
        except Export3DError:
            raise
        except Exception as exc:
            raise Export3DError(f"could not open {path.name}: {type(exc).__name__}: {exc}") from None

    def open_portrait(self, path: str | Path, crop: tuple | None = None) -> bool:
        """Intake a photo (detect, align, crop). No face -> `no_face` (the window offers a manual crop)."""
        path = Path(path)
        try:
            image, method, camera, native_side = self.read_portrait(path, crop, self.portrait_size())
        except backend.NoPortraitFace as exc:
            exc.path = path
            self.no_face.emit(exc)
            return False
        except Export3DError as exc:
            self.error.emit(str(exc))
            return False
        self.portrait_crop = tuple(crop) if crop is not None else None
        self.set_portrait_image(image, path, camera, native_side=native_side)
        read = f"; expression read from its {self.expression_source}" if self.expression_source else ""
        self.status.emit(f"portrait {path.name} ({method}){read}")
        return True

    def set_portrait_image(self, image: np.ndarray, path: Path | None, camera: np.ndarray | None = None,
                           fit: FittedPortrait | None = None, native_side: float | None = None) -> None:
        self.portrait_image = image
        self.portrait_camera = camera
        # the photo's own pixels across the crop: a fit learns an upscaler only when they hold the detail
        self.portrait_native_side = native_side
        self._set_fit(fit)
        self.state.portrait_path = path
        self.state.set_portrait_lam(self.estimate_lam(image, path))
        self.state.reset_to_portrait_expression()
        self.undo_stack.clear()
        self.mark_saved()
        self._rebuild_session()  # first: a new session drops queued work of the old one
        self.portrait_loaded.emit(path)

    def estimate_lam(self, image: np.ndarray, path: Path | None = None) -> list[float] | None:
        """The portrait's own λ when the model ships an expression estimator, else None (sliders at 0).

        β comes from the face's landmarks, or from the image for a shipped synthetic demo portrait
        (`ExpressionEstimator.source_for`); `expression_source` says which ("landmarks" | "image").
        """
        self.expression_source = None
        estimator = self.loaded.estimator if self.loaded else None
        if estimator is None:
            return None
        try:
            estimate = estimator.estimate(image, source=estimator.source_for(path))
            self.expression_source = estimate.source
            return estimate.lam
        except Exception as exc:  # an estimate is a convenience: report it, never lose the portrait
            self.error.emit(f"expression estimate failed: {type(exc).__name__}: {exc}")
            return None

    def match_expression(self, path: str | Path) -> bool:
        """Set λ from a reference photo's expression (one undo step)."""
        if self.loaded is None or self.loaded.estimator is None:
            self.error.emit(self.loaded.estimator_note if self.loaded else "no model loaded")
            return False
        path = Path(path)
        try:
            image, _method, _camera, _native = backend.load_portrait_image(path, self.portrait_size())
        except Export3DError as exc:
            self.error.emit(str(exc))
            return False
        lam = self.estimate_lam(image, path)
        if lam is None:
            return False
        self.apply_lam(lam, f"Match expression of {path.name}")
        self.status.emit(f"λ matched to the expression of {path.name} (read from its {self.expression_source})")
        return True

    def apply_manual_crop(self, path: Path, center: tuple[float, float], side: float) -> bool:
        return self.open_portrait(path, crop=(tuple(center), float(side)))

    # -- the portrait's fit and whether it needs one ---------------------------------------------------
    def _set_fit(self, fit: FittedPortrait | None) -> None:
        if fit is not self.fit:
            self.fit = fit
            self.fit_changed.emit(fit.path if fit else None)

    def photo_camera(self) -> np.ndarray:
        """The photo's estimated camera (25,), frontal when intake found no landmarks."""
        if self.portrait_camera is not None:
            return np.asarray(self.portrait_camera, np.float32)
        return OrbitCamera().params().numpy().astype(np.float32)

    def check_domain(self) -> None:
        """Off the UI thread (a render-service job): is this unfitted photo unlike the training faces?
        Measured by `out_of_domain` (the unfitted model's reconstruction at the photo's camera)."""
        if self.loaded is None or self.portrait_image is None or self.state.portrait_path is None or self.fit:
            return
        from export3d_core import out_of_domain

        model, image, camera = self.loaded.model, self.portrait_image, self.photo_camera()
        lam = list(self.state.portrait_lam) if self.state.portrait_lam else None
        self.service.submit_job("domain", self.state.portrait_path,
                                lambda _session: out_of_domain(model, image, camera, lam))

    def _on_domain(self, tag: str, key: object, result) -> None:
        if tag == "domain" and key == self.state.portrait_path and self.fit is None:
            outside, psnr = result
            self.domain_checked.emit(bool(outside), float(psnr))

    def start_fit(self) -> FitJob | None:
        """Fit a copy of the model to this portrait in the background; `apply_fit` when it succeeds."""
        if self.loaded is None or self.portrait_image is None:
            self.error.emit("nothing to fit yet: open a portrait first")
            return None
        folder = self.fit_folder or Path.home() / ".export3d" / "fits"
        lam = tuple(self.state.portrait_lam) if self.state.portrait_lam else (0.0,) * self.state.n_basis
        request = FitRequest(self.loaded.model, self.loaded.path, self.portrait_image, self.photo_camera(), lam,
                             folder / fit_file_name(self.portrait_image, self.loaded.path),
                             self.state.camera.to_orbit(), self.fit_settings, self.portrait_native_side)
        job = FitJob(request)
        image, model = self.portrait_image, self.loaded.model
        # Applied only when the portrait and the model are still the ones the fit was made for.
        job.succeeded.connect(lambda fitted: self.apply_fit(fitted) if self.portrait_image is image
                              and self.loaded is not None and self.loaded.model is model else None)
        return self._start_job(job, "fit")

    def apply_fit(self, fitted: FittedPortrait, note: str = "portrait fitted; fit saved as") -> None:
        """Renders and exports of this portrait use the fitted model from now on (an unsaved change)."""
        self.fit = fitted
        self.mark_changed()
        self._rebuild_session()
        self.fit_changed.emit(fitted.path)  # after the rebuild: thumbnails asked for now render the fit
        self.status.emit(f"{note} {fitted.path}" + (f"; {fitted.upscale_note}" if fitted.upscale_note else ""))

    def open_fit(self, path: Path) -> bool:
        """Use a fit file made earlier (by `export3d fit` or another project) for this portrait;
        one that belongs to another photo or checkpoint is refused in one line and changes nothing."""
        if self.loaded is None or self.portrait_image is None:
            self.error.emit("open a portrait first: a fit belongs to one portrait")
            return False
        try:
            fitted = load_fitted(Path(path), self.loaded.model, self.loaded.path, self.portrait_image)
        except Export3DError as exc:
            self.error.emit(str(exc))
            return False
        except OSError as exc:
            self.error.emit(f"could not read {Path(path).name}: {exc.strerror or exc}")
            return False
        self.apply_fit(fitted, "fit opened:")
        return True

    def _fit_beside(self, project_path: Path) -> Path | None:
        """The fit file beside the project (copied there when it lives elsewhere), for a relative path."""
        if self.fit is None:
            return None
        name = project_path.name
        stem = name[:-len(".e3d.json")] if name.endswith(".e3d.json") else project_path.stem
        target = project_path.parent / f"{stem}.fit.safetensors"
        if self.fit.path.resolve() != target.resolve():
            copy_atomic(self.fit.path, target)
            self.fit.path = target
        return target

    # -- edits (each one undo step) ----------------------------------------------------------------
    def apply_lam(self, lam, text: str = "Set λ") -> bool:
        """One undo step; a λ beyond the limit (an explorer range, an estimate) is refused in one line."""
        try:
            lam = check_lambda(float(v) for v in lam)
        except (TypeError, ValueError) as exc:
            self.error.emit(f"{text}: {exc}")
            return False
        self.tracker.edit(text, lambda: self.state.set_lam(lam))
        return True

    def apply_preset(self, preset: Preset) -> None:
        if len(preset.lam) != self.state.n_basis or len(preset.names) not in (0, self.state.n_basis):
            self.error.emit(f"preset {preset.name!r} has {len(preset.lam)} coefficients and {len(preset.names)} "
                            f"names; this model has {self.state.n_basis}")
            return

        def apply() -> None:
            if preset.names:
                self.state.set_names(preset.names)
            self.state.set_lam(preset.lam)
            if preset.camera is not None:
                self.state.set_camera(preset.camera)

        self.tracker.edit(f"Apply preset {preset.name}", apply)

    # -- presets: the shared library and the open project's own --------------------------------------
    @property
    def presets(self) -> list[Preset]:
        return list(self.library.presets) if self.library else []

    def attach_library(self, library: PresetLibrary) -> None:
        """Read the library file; a broken one is kept aside (the error says where) and it starts empty."""
        self.library = library
        try:
            notice = library.load()
        except Export3DError as exc:
            notice = str(exc)
        if notice:
            self.error.emit(notice)
        self.refresh_presets()

    def _library_change(self, change) -> bool:
        if self.library is None:
            self.error.emit("no preset library is open")
            return False
        try:
            notice = change(self.library)
        except Export3DError as exc:
            self.error.emit(str(exc))
            return False
        if isinstance(notice, str):
            self.error.emit(notice)
        self.refresh_presets()
        return True

    def save_preset(self, name: str, with_camera: bool = True) -> Preset | None:
        """The current λ (and camera) as a preset in the library, merged with what is on disk."""
        preset = Preset(name, self.state.lam, self.state.names, self.state.camera if with_camera else None)
        return preset if self._library_change(lambda lib: lib.add(preset)) else None

    def delete_preset(self, preset: Preset, from_project: bool = False) -> None:
        if from_project:
            self.project_presets = [p for p in self.project_presets if p != preset]
            self.mark_changed()
            self.refresh_presets()
        else:
            self._library_change(lambda lib: lib.remove(preset))

    def import_project_presets(self) -> int:
        """Add the open project's presets to the library (an explicit act; equal presets are not doubled)."""
        count: list[int] = []
        if self._library_change(lambda lib: count.append(lib.import_presets(self.project_presets))):
            self.status.emit(f"imported {count[0]} project preset(s) into the library")
            return count[0]
        return 0

    def refresh_presets(self) -> None:
        """Tell the panel: the library, then the project's presets that the library lacks."""
        library = self.presets
        self.presets_changed.emit(library, [p for p in self.project_presets if p not in library])

    # -- project -----------------------------------------------------------------------------------
    def project(self) -> Project:
        """The editor state as a project; it carries its own presets and the library's at hand."""
        state = self.state
        presets = self.project_presets + [p for p in self.presets if p not in self.project_presets]
        return Project(state.portrait_path, state.checkpoint_path, state.lam, state.names, state.camera,
                       state.mode, presets, self.portrait_crop, self.fit.path if self.fit else None,
                       state.animation)

    def save_project(self, path: str | Path) -> bool:
        try:
            self._fit_beside(Path(path))  # the project names its fit relative to itself
            save_project(path, self.project())
        except Export3DError as exc:
            self.error.emit(str(exc))
            return False
        self.status.emit(f"saved {Path(path).name}")
        return True

    def open_project(self, path: str | Path) -> bool:
        """Read and check everything (file, checkpoint, portrait, λ count) first; change nothing on failure."""
        try:
            project = load_project(path)
            loaded = self._project_model(project)
            model = loaded or self.loaded
            n_basis = model.model.config.n_basis if model else self.state.n_basis
            if len(project.lam) != n_basis:
                raise Export3DError(f"{Path(path).name} has {len(project.lam)} λ coefficients; the model has "
                                    f"{n_basis}")
            portrait = None
            if project.portrait is not None:
                portrait = self.read_portrait(project.portrait, project.crop, self.portrait_size(model))
        except Export3DError as exc:  # NoPortraitFace included: the project's portrait must open as saved
            self.error.emit(str(exc))
            return False
        self._apply_project(project, loaded, portrait, self._project_fit(project, model, portrait))
        self.status.emit(f"opened {Path(path).name}")
        return True

    def _project_model(self, project: Project) -> backend.LoadedModel | None:
        """The project's checkpoint read (not applied) when it is not the one in use, else None."""
        current = self.loaded.path if self.loaded else None
        if project.checkpoint is not None and (self.loaded is None or project.checkpoint != current):
            return self.read_model(project.checkpoint)
        return None

    def _project_fit(self, project: Project, model: backend.LoadedModel | None, portrait) -> FittedPortrait | None:
        """The project's fit applied to a copy of its model; one line and no fit when it belongs elsewhere."""
        if project.fit is None or portrait is None or model is None:
            return None
        try:
            return load_fitted(project.fit, model.model, model.path, portrait[0])
        except Export3DError as exc:  # the project opens unfitted; the artist can fit again
            self.error.emit(f"{exc} (opened without it)")
            return None

    def _apply_project(self, project: Project, loaded, portrait, fit: FittedPortrait | None = None) -> None:
        if loaded is not None:
            self._apply_model(loaded)
        if portrait is not None:
            self.portrait_crop = project.crop
            self.set_portrait_image(portrait[0], project.portrait, portrait[2], fit, native_side=portrait[3])
        self.state.set_names(project.names)
        self.state.set_lam(project.lam)
        self.state.set_camera(project.camera)
        self.state.set_mode(project.mode)
        self.state.set_animation(project.animation)
        self.project_presets = list(project.presets)
        self.refresh_presets()
        self.undo_stack.clear()
        self.mark_saved()

    # -- exports -----------------------------------------------------------------------------------
    def paste_back_problem(self, turntable=None) -> str:
        """Why paste-back into the original photo cannot be offered ("" when it can): no photo, a hand-placed
        crop, a mode other than final, or the view (every camera of `turntable`, a TurntableSettings, when
        given) beyond the measured pose limit."""
        from export3d_core import pose_supported, turntable_cameras

        problem = self._paste_back_photo_problem()
        if problem:
            return problem
        photo = OrbitCamera.from_params(self.photo_camera())
        view = self.paste_back_camera()
        for camera in turntable_cameras(view, turntable) if turntable is not None else [view]:
            ok, why = pose_supported(camera, photo)
            if not ok:
                return why[0].upper() + why[1:]
        return ""

    def animation_paste_back_problem(self, settings) -> str:
        """Why the timeline's animation cannot be pasted into the photo with these AnimationExportSettings
        ("" when it can): as `paste_back_problem`, with every frame's camera the photo's own pose turned by
        the keys' yaw and pitch (`export3d_core.animation_export`), within the measured limit."""
        from export3d_core import animation_paste_back_problem

        problem = self._paste_back_photo_problem()
        animation = self.state.animation
        if problem or animation is None:
            return problem or "the timeline has no keys"
        times = animation.frame_times(settings.fps, settings.start, settings.end)
        problem = animation_paste_back_problem(animation, times, OrbitCamera.from_params(self.photo_camera()))
        return problem[0].upper() + problem[1:] if problem else ""

    def _paste_back_photo_problem(self) -> str:
        if self.state.portrait_path is None or self.portrait_image is None:
            return "there is no original photo to paste into"
        if self.portrait_crop is not None:
            return "the crop was placed by hand, so the photo's alignment is not known"
        if self.state.mode != "final":
            return "paste-back composites the final image; switch the view to Final"
        return ""

    def paste_back_camera(self) -> OrbitCamera:
        """The photo's own pose turned by the view's yaw and pitch, in the photo's framing (its distance,
        field of view and pivot), so the render lines up with the photo it is pasted into. The same
        rule as `--paste-back` and a pasted animation's keys: yaw 0, pitch 0 is the photo's pose."""
        from export3d_core import turned_camera

        view = self.state.camera.to_orbit()
        return turned_camera(OrbitCamera.from_params(self.photo_camera()), view.yaw, view.pitch)

    def export_spec(self, kind: str, path: Path, paste_back: bool = False, **settings) -> ExportSpec:
        if paste_back:
            settings["paste_back"] = PhotoSource(Path(self.state.portrait_path), self.portrait_image.shape[0],
                                                 self.paste_back_camera())
        return ExportSpec(kind, Path(path), self.state.lam, self.state.camera, self.state.mode, **settings)

    def start_export(self, spec: ExportSpec) -> ExportJob | None:
        if self.loaded is None or self.portrait_image is None:
            self.error.emit("nothing to export yet: open a portrait first")
            return None
        job = ExportJob(self.render_model, self.portrait_image, spec)
        job.succeeded.connect(lambda p: self.status.emit(f"wrote {p}"))
        return self._start_job(job, "export")

    def _start_job(self, job, what: str):
        """Run a background job (export or fit): its failure and cancel reach the status line; the
        editor keeps it until it finishes, so quitting can cancel and wait for it."""
        job.failed.connect(lambda msg: self.error.emit(f"{what} failed: {msg}"))
        job.cancelled.connect(lambda: self.status.emit(f"{what} cancelled; nothing was written"))
        job.finished.connect(lambda: self.jobs.remove(job) if job in self.jobs else None)
        self.jobs.append(job)
        job.start()
        return job

    def shutdown(self) -> None:
        for job in list(self.jobs):
            job.cancel()
            job.wait(30_000)
        self.service.shutdown()
