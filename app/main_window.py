"""The main window: composes the viewport, the docks, the menus and the status bar; no model logic.

User intents go to `EditorController`; what comes back (frames, status, errors) is shown here.
Errors never block: they go to the status bar, the viewport and a non-modal message box, and are
kept in `errors` (tests read them).
"""
from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QSettings, Qt
from PySide6.QtGui import QCloseEvent, QDragEnterEvent, QDropEvent, QIcon, QKeySequence
from PySide6.QtWidgets import (QApplication, QDockWidget, QLabel, QMainWindow, QMessageBox, QProgressDialog,
                               QPushButton, QSplitter, QVBoxLayout, QWidget)

from export3d_core import RENDER_MODES, Export3DError

from app import APP_NAME, file_dialogs, unsaved
from app.autosave import DEFAULT_INTERVAL_S, INTERVAL_KEY, Autosaver
from app.editor import EditorController
from app.export_jobs import ExportJob, ExportSpec
from app.fit_job import FITS_FOLDER
from app.menus import SEPARATOR, Entry, Item, Submenu, build_menu_bar
from app.presets import PresetLibrary
from app.recent import RecentFiles
from app.render_service import REST_MS, FrameResult
from app.state import ViewCamera
from app.theme import apply_theme
from app.timeline_state import Timeline
from app.widgets.camera_panel import MODE_LABELS, CameraPanel
from app.widgets.coefficients import CoefficientsPanel
from app.widgets.domain_banner import DomainBanner
from app.widgets.explorer import ExplorerPanel
from app.widgets.lambda_chart import LambdaChart
from app.widgets.presets_panel import PresetsPanel
from app.widgets.timeline import TimelinePanel
from app.widgets.viewport import Viewport

ZOOM_PER_NOTCH = 0.95  # wheel notch -> radius factor
STATUS_MS = 6000
BOTTOM_DOCK_HEIGHT = 300  # basis explorer / presets: about three rows of thumbnails
ICON_PATH = Path(__file__).resolve().parent.parent / "resources" / "icons" / "export3d.png"
PRESETS_FILENAME = "presets.json"  # the preset library, beside the settings file
MATCH_TOOLTIP = ("Set λ to the expression read from a reference photo (β from its face landmarks, or from the "
                 "image for a synthetic demo portrait → LeBS λ)")
SHORTCUTS_HELP = """<table>
<tr><td>Ctrl+O</td><td>Open portrait</td></tr><tr><td>Ctrl+Shift+O</td><td>Open checkpoint</td></tr>
<tr><td>Ctrl+S / Ctrl+Shift+S</td><td>Save project / as</td></tr><tr><td>Ctrl+P</td><td>Open project</td></tr>
<tr><td>Ctrl+E / Ctrl+T / Ctrl+B / Ctrl+M</td><td>Export still / turntable / basis sweep / mesh</td></tr>
<tr><td>Ctrl+Z / Ctrl+Shift+Z</td><td>Undo / redo</td></tr><tr><td>Ctrl+0 / Ctrl+R</td><td>Zero all / reset to portrait</td></tr>
<tr><td>K / Space / Ctrl+Shift+E</td><td>Add key / play or stop / export animation</td></tr>
<tr><td>1–4</td><td>Final / raw / depth / opacity</td></tr><tr><td>F</td><td>Frontal view</td></tr>
<tr><td>Drag / wheel / double-click</td><td>Orbit / zoom / frontal (Shift: fine)</td></tr></table>"""


class MainWindow(QMainWindow):
    def __init__(self, settings: QSettings | None = None, rest_ms: int = REST_MS,
                 theme: str = "dark", explore_on_load: bool = True) -> None:
        super().__init__()
        self.settings = settings or QSettings("Export3D", "Export3D Studio")
        self.theme = theme
        self.explore_on_load = explore_on_load  # fill the basis explorer for every new portrait
        self.controller = EditorController(rest_ms, self)
        self.state = self.controller.state
        self.errors: list[str] = []
        self.project_path: Path | None = None
        self._orbit_base: ViewCamera | None = None
        self._error_box: QMessageBox | None = None
        self.setAcceptDrops(True)
        self.resize(1500, 940)
        self._build_widgets()
        self._build_menus()
        self._wire()
        self._load_preset_library()
        self.autosaver = Autosaver(self.settings_folder, self._unsaved_project, self._autosave_interval(), self)
        self.autosaver.failed.connect(lambda msg: self.statusBar().showMessage(msg, STATUS_MS))
        if self.autosaver.problem:
            self.show_error(self.autosaver.problem)
        self._update_title()

    # -- composition -------------------------------------------------------------------------------
    def _build_widgets(self) -> None:
        self.viewport = Viewport()
        self.domain_banner = DomainBanner()
        centre = QWidget()
        centre_layout = QVBoxLayout(centre)
        centre_layout.setContentsMargins(0, 0, 0, 0)
        centre_layout.addWidget(self.domain_banner)
        centre_layout.addWidget(self.viewport, 1)
        self.setCentralWidget(centre)
        self.camera_panel = CameraPanel()
        self.model_info = QLabel("no model")
        self.model_info.setWordWrap(True)
        self.portrait_info = QLabel("no portrait")
        self.portrait_info.setWordWrap(True)
        left = QWidget()
        left_layout = QVBoxLayout(left)
        left_layout.addWidget(self.camera_panel)
        left_layout.addWidget(QLabel("<b>Model</b>"))
        left_layout.addWidget(self.model_info)
        left_layout.addWidget(QLabel("<b>Portrait</b>"))
        left_layout.addWidget(self.portrait_info)
        left_layout.addStretch(1)
        self._dock("View", left, Qt.DockWidgetArea.LeftDockWidgetArea)

        self.chart = LambdaChart(self.state.n_basis)
        self.coefficients = CoefficientsPanel(self.state.names)
        self.match_button = QPushButton("Match expression from photo…")
        self.match_button.setEnabled(False)
        self.match_button.setToolTip(MATCH_TOOLTIP)
        right = QSplitter(Qt.Orientation.Vertical)
        right.addWidget(self.chart)
        holder = QWidget()
        holder_layout = QVBoxLayout(holder)
        holder_layout.setContentsMargins(0, 0, 0, 0)
        holder_layout.addWidget(self.coefficients)
        holder_layout.addWidget(self.match_button)
        right.addWidget(holder)
        right.setSizes([180, 520])
        self._dock("Expression λ", right, Qt.DockWidgetArea.RightDockWidgetArea).setMinimumWidth(440)

        self.explorer = ExplorerPanel()
        self.presets_panel = PresetsPanel()
        explorer_dock = self._dock("Basis explorer", self.explorer, Qt.DockWidgetArea.BottomDockWidgetArea)
        presets_dock = self._dock("Presets", self.presets_panel, Qt.DockWidgetArea.BottomDockWidgetArea)
        self.tabifyDockWidget(explorer_dock, presets_dock)
        self.timeline = Timeline(self.controller, self)
        self.live_panel = None  # the Live dialog, made when first asked for
        self.timeline.message.connect(lambda msg: self.statusBar().showMessage(msg, STATUS_MS))
        self.timeline_panel = TimelinePanel(self.timeline)
        self.tabifyDockWidget(presets_dock, self._dock("Timeline", self.timeline_panel,
                                                       Qt.DockWidgetArea.BottomDockWidgetArea))
        explorer_dock.raise_()
        self._bottom_dock, self._sized = explorer_dock, False
        self.frame_label = QLabel("—")
        self.frame_label.setToolTip("Last frame: quality, render time and device")
        self.statusBar().addPermanentWidget(self.frame_label)

    def _dock(self, title: str, widget: QWidget, area: Qt.DockWidgetArea) -> QDockWidget:
        dock = QDockWidget(title, self)
        dock.setObjectName(title)
        dock.setWidget(widget)
        self.addDockWidget(area, dock)
        return dock

    def _wire(self) -> None:
        c, state = self.controller, self.state
        self.match_button.clicked.connect(self.match_expression_dialog)
        c.frame_shown.connect(self._show_frame)
        c.status.connect(lambda msg: self.statusBar().showMessage(msg, STATUS_MS))
        c.error.connect(self.show_error)
        for panel in (self.coefficients, self.camera_panel):
            panel.message.connect(lambda msg: self.statusBar().showMessage(msg, STATUS_MS))
        c.model_changed.connect(self._on_model)
        c.portrait_loaded.connect(self._on_portrait)
        c.no_face.connect(lambda exc: self.ask_manual_crop(exc))
        c.presets_changed.connect(self.presets_panel.set_presets)
        c.job_ready.connect(self._on_job)
        c.fit_folder = self.settings_folder / FITS_FOLDER
        c.domain_checked.connect(self.domain_banner.show_measure)
        c.fit_changed.connect(self._on_fit)
        self.domain_banner.fit_requested.connect(self.fit_portrait)
        # A bound method, not a lambda: Qt drops it with the window, so the undo stack's last signal
        # while it is destroyed after the window cannot reach a deleted MainWindow.
        c.unsaved_changed.connect(self._update_title)

        state.lam_changed.connect(self.coefficients.set_values)
        state.lam_changed.connect(self.chart.set_values)
        state.lam_changed.connect(lambda lam: self.explorer.set_context(lam, state.names))
        state.names_changed.connect(self.coefficients.set_names)
        state.names_changed.connect(self.chart.set_names)
        state.camera_changed.connect(self.camera_panel.set_camera)
        state.mode_changed.connect(self.camera_panel.set_mode)
        self.chart.set_names(state.names)
        self.explorer.set_context(state.lam, state.names)

        panel = self.coefficients
        panel.edit_started.connect(lambda i: c.tracker.begin())
        panel.value_changed.connect(state.set_coefficient)
        panel.edit_finished.connect(lambda i: c.tracker.end(f"Drag {state.names[i]}"))
        panel.value_committed.connect(
            lambda i, v: c.tracker.edit(f"Set {state.names[i]}", lambda: state.set_coefficient(i, v)))
        panel.row_reset.connect(self.reset_row)
        panel.name_edited.connect(lambda i, name: c.tracker.edit("Rename", lambda: state.set_name(i, name)))
        panel.zero_all_requested.connect(lambda: c.tracker.edit("Zero all", state.zero_all))
        panel.reset_portrait_requested.connect(
            lambda: c.tracker.edit("Reset to portrait", state.reset_to_portrait_expression))

        self.camera_panel.camera_edited.connect(lambda cam: c.tracker.edit("Camera", lambda: state.set_camera(cam)))
        self.camera_panel.mode_selected.connect(state.set_mode)
        self.camera_panel.frontal_requested.connect(self.reset_camera)
        self.viewport.orbit_started.connect(self._orbit_start)
        self.viewport.orbit_moved.connect(self._orbit_move)
        self.viewport.orbit_finished.connect(lambda: c.tracker.end("Orbit"))
        self.viewport.zoom_requested.connect(self.zoom)
        self.viewport.reset_requested.connect(self.reset_camera)

        self.explorer.cells_requested.connect(lambda items: c.render_jobs("explorer", items))
        self.explorer.lam_selected.connect(lambda lam: c.apply_lam(lam, "Apply explorer cell"))
        self.presets_panel.apply_requested.connect(c.apply_preset)
        self.presets_panel.save_requested.connect(c.save_preset)
        self.presets_panel.delete_requested.connect(c.delete_preset)
        self.presets_panel.thumbnails_requested.connect(
            lambda items: c.render_jobs("presets", [(i, p.lam) for i, p in items if len(p.lam) == state.n_basis]))

    # -- menus -------------------------------------------------------------------------------------
    def _build_menus(self) -> None:
        """The menu bar from `_menu_table`; keeps the actions it updates later."""
        stack = self.controller.undo_stack
        self.undo_action = stack.createUndoAction(self, "Undo")
        self.undo_action.setShortcut(QKeySequence.StandardKey.Undo)
        self.redo_action = stack.createRedoAction(self, "Redo")
        self.redo_action.setShortcuts([QKeySequence("Ctrl+Shift+Z"), QKeySequence("Ctrl+Y")])
        built = build_menu_bar(self.menuBar(), self, self._menu_table())
        self.match_action = built["match"]
        self.import_presets_action = built["import_presets"]
        self.live_action = built["live"]
        for mode in RENDER_MODES:  # the View menu follows a mode chosen elsewhere (panel, project, undo)
            self.state.mode_changed.connect(lambda m, a=built[f"mode:{mode}"], mm=mode: a.setChecked(m == mm))
        self.recent = RecentFiles(self.settings, built["recent"], self.open_portrait_path)

    def _menu_table(self) -> dict[str, list[Item]]:
        """Every menu entry, top to bottom. To add one: an `Entry(key, text, callback, shortcut, tip)`
        where it belongs (app/menus.py); a dock made in `_build_widgets` is listed in View by itself."""
        return {"&File": self._file_entries(), "&Edit": self._edit_entries(), "&View": self._view_entries(),
                "&Help": [Entry("shortcuts", "Keyboard shortcuts", self.show_shortcuts, "F1")]}

    def _file_entries(self) -> list[Item]:
        return [
            Entry("open_portrait", "Open portrait…", self.open_portrait_dialog, "Ctrl+O",
                  "Open a photo; it is cropped and aligned to the model's framing"),
            Submenu("recent", "Recent portraits"),
            Entry("open_checkpoint", "Open checkpoint…", self.open_checkpoint_dialog, "Ctrl+Shift+O",
                  "Load another model checkpoint (.safetensors)"),
            SEPARATOR,
            Entry("open_project", "Open project…", self.open_project_dialog, "Ctrl+P"),
            Entry("save_project", "Save project", lambda: self.save_project_dialog(False), "Ctrl+S"),
            Entry("save_project_as", "Save project as…", lambda: self.save_project_dialog(True), "Ctrl+Shift+S"),
            Entry("import_presets", "Import project presets into library", self.controller.import_project_presets,
                  tip="Add the open project's presets to the preset library shared by all projects"),
            SEPARATOR,
            Entry("export_still", "Export still PNG…", lambda: self.export_dialog("still"), "Ctrl+E",
                  "The current view at final resolution"),
            Entry("export_turntable", "Export turntable…", lambda: self.export_dialog("turntable"), "Ctrl+T",
                  "GIF or MP4 orbit around the head"),
            Entry("export_sweep", "Export basis sweep…", lambda: self.export_dialog("sweep"), "Ctrl+B",
                  "GIF of one coefficient swept over a range"),
            Entry("export_mesh", "Export mesh…", lambda: self.export_dialog("mesh"), "Ctrl+M",
                  "The head as a coloured mesh; a .glb also gets one morph target per slider"),
            Entry("export_animation", "Export animation…", self.export_animation_dialog, "Ctrl+Shift+E",
                  "The timeline's keys rendered to MP4, GIF or a folder of PNGs"),
            SEPARATOR,
            Entry("quit", "Quit", self.close, "Ctrl+Q"),
        ]

    def _edit_entries(self) -> list[Item]:
        return [
            self.undo_action, self.redo_action, SEPARATOR,
            Entry("zero_all", "Zero all λ", self.coefficients.zero_all_requested.emit, "Ctrl+0"),
            Entry("reset_lambda", "Reset λ to portrait", self.coefficients.reset_portrait_requested.emit, "Ctrl+R"),
            Entry("match", "Match expression from photo…", self.match_expression_dialog,
                  tip="Set λ to the expression of a reference photo", enabled=False),  # until a model has an estimator
            SEPARATOR,
            Entry("fit", "Fit to this portrait", self.fit_portrait,
                  tip="Tune a copy of the model to this photo (background job); saved with the project"),
            Entry("open_fit", "Use fit file…", self.open_fit_dialog,
                  tip="A fit made earlier for this photo and model (export3d fit, another project)"),
            SEPARATOR,
            Entry("add_key", "Add key at playhead", self.timeline.add_key, "K", "Timeline: the current λ and camera"),
            Entry("play", "Play / stop timeline", self.timeline.toggle_play, "Space"),
            Entry("live", "Live from webcam…", self.show_live_panel,
                  tip="A camera (or a video file) drives the portrait; a recorded take becomes the timeline's keys"),
        ]

    def _view_entries(self) -> list[Item]:
        modes = [Entry(f"mode:{mode}", MODE_LABELS[mode], lambda m=mode: self.state.set_mode(m), str(index + 1),
                       group="mode", checked=mode == self.state.mode) for index, mode in enumerate(RENDER_MODES)]
        themes = [Entry(f"theme:{name}", f"{name.title()} theme", lambda n=name: self.set_theme(n),
                        group="theme", checked=name == self.theme) for name in ("dark", "light")]
        docks = [dock.toggleViewAction() for dock in self.findChildren(QDockWidget)]
        return [*modes, SEPARATOR, Entry("frontal", "Frontal view", self.reset_camera, "F"), SEPARATOR,
                *themes, SEPARATOR, *docks]

    # -- menu commands: each asks what it needs (app/file_dialogs.py), then acts -------------------
    def open_portrait_dialog(self) -> None:
        path = file_dialogs.ask_open(self, "Open portrait", file_dialogs.IMAGE_FILTER)
        if path:
            self.open_portrait_path(path)

    def open_portrait_path(self, path: Path) -> bool:
        """A new portrait starts a new undo history: unsaved edits are saved or discarded first."""
        return self.confirm_discard(f"opening {path.name}") and self.controller.open_portrait(path)

    def match_expression_dialog(self) -> None:
        path = file_dialogs.ask_open(self, "Match expression from photo", file_dialogs.IMAGE_FILTER)
        if path:
            self.controller.match_expression(path)

    def show_live_panel(self) -> None:
        """The non-modal Live dialog (one per window, kept while the window lives)."""
        if self.live_panel is None:
            from app.live_session import LiveSession
            from app.widgets.live_panel import LivePanel

            self.live_panel = LivePanel(LiveSession(self.controller, self.timeline, self), self)
        self.live_panel.show()
        self.live_panel.raise_()

    def open_checkpoint_dialog(self) -> None:
        path = file_dialogs.ask_open(self, "Open checkpoint", file_dialogs.CHECKPOINT_FILTER)
        if path:
            self.controller.load_model(path)

    def open_project_dialog(self) -> None:
        path = file_dialogs.ask_open(self, "Open project", file_dialogs.PROJECT_FILTER)
        if path and self.confirm_discard(f"opening {path.name}"):
            self.open_project(path)

    def open_fit_dialog(self) -> None:
        path = file_dialogs.ask_open(self, "Use fit file", file_dialogs.FIT_FILTER)
        if path:
            self.controller.open_fit(path)

    def save_project_dialog(self, ask: bool) -> bool:
        """Save (asking where when the project has no file yet, or `ask`); True when it was saved."""
        path = None if ask else self.project_path
        path = path or file_dialogs.ask_project_target(self)
        return path is not None and self.save_project(path)

    def export_dialog(self, kind: str) -> None:
        answer = file_dialogs.ask_export(self, kind, self.state.names, self.controller.paste_back_problem)
        if answer:
            path, overwrite, options = answer
            self.run_export(self.controller.export_spec(kind, path, overwrite=overwrite, **options))

    def export_animation_dialog(self) -> None:
        try:
            answer = file_dialogs.ask_animation_export(self, self.state.animation, self.state.mode,
                                                       self.controller.animation_paste_back_problem)
        except Export3DError as exc:
            self.show_error(str(exc))
            return
        if answer:
            path, overwrite, options = answer
            self.run_export(self.controller.export_spec("animation", path, overwrite=overwrite, **options))

    def set_theme(self, name: str) -> None:
        self.theme = apply_theme(QApplication.instance(), name)
        self.chart.refresh_colours()
        self.timeline_panel.refresh_colours()
        self.settings.setValue("theme", self.theme)

    def show_shortcuts(self) -> None:
        QMessageBox.information(self, "Shortcuts", SHORTCUTS_HELP)

    # -- preset library ----------------------------------------------------------------------------
    @property
    def settings_folder(self) -> Path:
        return Path(self.settings.fileName()).parent

    @property
    def presets_file(self) -> Path:
        return self.settings_folder / PRESETS_FILENAME

    def _load_preset_library(self) -> None:
        self.controller.attach_library(PresetLibrary(self.presets_file))

    # -- camera gestures ---------------------------------------------------------------------------
    def _orbit_start(self) -> None:
        self.controller.tracker.begin()
        self._orbit_base = self.state.camera

    def _orbit_move(self, d_yaw: float, d_pitch: float) -> None:
        base = self._orbit_base or self.state.camera
        self.state.set_camera(base.replace(yaw_deg=base.yaw_deg + d_yaw, pitch_deg=base.pitch_deg + d_pitch))

    def zoom(self, notches: float) -> None:
        camera = self.state.camera
        self.controller.tracker.edit(
            "Zoom", lambda: self.state.set_camera(camera.replace(radius=camera.radius * ZOOM_PER_NOTCH ** notches)))

    def reset_camera(self) -> None:
        frontal = ViewCamera(fov_deg=self.state.camera.fov_deg)
        self.controller.tracker.edit("Frontal view", lambda: self.state.set_camera(frontal))

    def reset_row(self, index: int) -> None:
        target = self.state.portrait_lam[index] if self.state.portrait_lam else 0.0
        self.controller.tracker.edit(f"Reset {self.state.names[index]}",
                                     lambda: self.state.set_coefficient(index, target))

    # -- results -----------------------------------------------------------------------------------
    def _show_frame(self, result: FrameResult) -> None:
        quality = result.request.quality
        notes = ["preview"] if quality == "preview" else []
        if self.controller.loaded is not None and self.controller.loaded.fallback:
            notes.append("UNTRAINED random model")
        self.viewport.set_image(result.image, " · ".join(notes))
        self.frame_label.setText(f"{quality} {result.seconds * 1000:.0f} ms · {result.device}")

    def _on_job(self, tag: str, key: object, image) -> None:
        if tag == "explorer":
            self.explorer.set_cell(key, image)
        elif tag == "presets":
            self.presets_panel.set_thumbnail(key, image)

    def _on_model(self, loaded) -> None:
        self.model_info.setText(loaded.info + ("\n(random weights: images are noise until a model is "
                                               "trained)" if loaded.fallback else f"\n{loaded.path}"))
        self.model_info.setToolTip(loaded.info)
        has_estimator = loaded.estimator is not None
        self.match_button.setEnabled(has_estimator)
        self.match_action.setEnabled(has_estimator)
        tip = MATCH_TOOLTIP if has_estimator else f"Disabled: {loaded.estimator_note}"
        self.match_button.setToolTip(tip)
        self.match_action.setToolTip(tip)
        if loaded.fallback:
            self.statusBar().showMessage("No trained demo model found: running an UNTRAINED random tiny model",
                                         STATUS_MS * 3)
        self._update_title()

    def _on_fit(self, path) -> None:
        """A fit applied (or dropped): no banner; thumbnails show the model that now renders."""
        self.domain_banner.hide()
        if path is not None:
            fit = self.controller.fit
            upscaler = getattr(fit.model, "upscaler", None) if fit is not None else None
            shown = "" if upscaler is None else f" (renders at {fit.model.config.output_size * upscaler.factor}²)"
            note = fit.upscale_note if fit is not None else ""
            self.portrait_info.setText(f"{self.state.portrait_path}\nfitted to it: {Path(path).name}{shown}")
            self.portrait_info.setToolTip(f"{path}\n{note}" if note else str(path))
            self.controller.refresh_presets()
            if self.explore_on_load:
                self.explorer.request()

    def _on_portrait(self, path) -> None:
        self.domain_banner.hide()  # until the new portrait is measured (controller.check_domain)
        self.portrait_info.setText(str(path) if path else "built-in placeholder (no demo portrait shipped)")
        if path:
            self.recent.add(Path(path))
        self.controller.refresh_presets()
        if self.explore_on_load:
            self.explorer.set_context(self.state.lam, self.state.names)
            self.explorer.request()
        self._update_title()

    # -- unsaved changes and autosave ------------------------------------------------------------
    def _autosave_interval(self) -> float:
        try:
            return float(self.settings.value(INTERVAL_KEY, DEFAULT_INTERVAL_S))
        except (TypeError, ValueError):
            return DEFAULT_INTERVAL_S

    def has_unsaved_changes(self) -> bool:
        return self.controller.has_unsaved_changes()

    def _unsaved_project(self):
        return self.controller.project() if self.has_unsaved_changes() else None

    def mark_recovered(self) -> None:
        self.controller.mark_changed()
        self.autosaver.save_now()  # this editor now keeps the recovered work safe

    def confirm_discard(self, doing: str) -> bool:
        """True when it is fine to go on `doing`: nothing unsaved, saved now, or discarded by the artist."""
        name = self.project_path.name if self.project_path else "this portrait"
        return unsaved.confirm_discard(self, self.has_unsaved_changes(), name, doing,
                                       lambda: self.save_project_dialog(False))

    def offer_recovery(self) -> bool:
        return unsaved.offer_recovery(self, self.settings_folder, self._recover)

    def _recover(self, path: Path) -> bool:
        """Open an autosave as unsaved work."""
        if not self.controller.open_project(path):
            return False
        self.project_path = None  # "Save" asks where: the recovery file is not the artist's project
        self.mark_recovered()
        return True

    def _update_title(self, *_args) -> None:
        loaded = self.controller.loaded
        parts = [APP_NAME + (" *" if self.has_unsaved_changes() else "")]
        if self.state.portrait_path:
            parts.append(Path(self.state.portrait_path).name)
        if loaded is not None and loaded.fallback:
            parts.append("UNTRAINED random tiny model (no demo checkpoint)")
        elif loaded is not None and loaded.path is not None:
            parts.append(Path(loaded.path).name)
        self.setWindowTitle(" — ".join(parts))

    def show_error(self, message: str) -> None:
        """Non-blocking: status bar, viewport message and a window-modal box that never waits."""
        self.errors.append(message)
        self.statusBar().showMessage(message, STATUS_MS * 2)
        if message.startswith(("render failed", "model failed")):
            self.viewport.set_message(message)
        if self._error_box is None:
            self._error_box = QMessageBox(QMessageBox.Icon.Warning, APP_NAME, "", QMessageBox.StandardButton.Ok,
                                          self)
        self._error_box.setText(message)
        self._error_box.open()

    # -- files -------------------------------------------------------------------------------------
    def ask_manual_crop(self, exc) -> None:
        """No face found: say so, and open (without blocking) a dialog to place the crop by hand."""
        from app.widgets.crop_dialog import CropDialog

        self.show_error(str(exc))
        dialog = CropDialog(exc.image, str(exc), self)
        dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)

        def accepted() -> None:
            center, side = dialog.crop()
            self.controller.apply_manual_crop(exc.path, center, side)

        dialog.accepted.connect(accepted)
        self.crop_dialog = dialog
        dialog.open()

    def open_path(self, path: Path) -> bool:
        """Whatever was dropped or named: a project, a checkpoint or a portrait."""
        name = path.name.lower()
        if name.endswith(".json"):
            return self.open_project(path)
        if name.endswith(".safetensors") or path.is_dir():
            return self.controller.load_model(path)
        return self.controller.open_portrait(path)

    def open_project(self, path: Path) -> bool:
        ok = self.controller.open_project(path)
        if ok:
            self.project_path = Path(path)
            self._update_title()
        return ok

    def save_project(self, path: Path) -> bool:
        ok = self.controller.save_project(path)
        if ok:
            self.project_path = Path(path)
            self.controller.mark_saved()
            self.autosaver.discard()
        return ok

    def run_export(self, spec: ExportSpec) -> ExportJob | None:
        """Start a background export with a progress dialog whose Cancel stops it (nothing written)."""
        job = self.controller.start_export(spec)
        if job is None:
            return None
        dialog = QProgressDialog(f"Exporting {spec.path.name}…", "Cancel", 0, spec.total, self)
        dialog.setWindowTitle("Export")
        dialog.setWindowModality(Qt.WindowModality.WindowModal)
        dialog.setMinimumDuration(300)
        dialog.canceled.connect(job.cancel)
        job.progress.connect(lambda done, total: dialog.setValue(min(done, total)))
        job.finished.connect(dialog.reset)
        job.finished.connect(dialog.deleteLater)
        self.export_dialog = dialog
        return job

    def fit_portrait(self):
        """Fit to this portrait in the background: progress, time left, previews in the viewport, Cancel."""
        from app.widgets.fit_progress import show_fit_progress

        job = self.controller.start_fit()
        if job is not None:
            self.fit_dialog = show_fit_progress(self, job, self.viewport)
        return job

    # -- Qt events ---------------------------------------------------------------------------------
    def dragEnterEvent(self, event: QDragEnterEvent) -> None:  # noqa: N802
        if event.mimeData().hasUrls():
            event.acceptProposedAction()

    def dropEvent(self, event: QDropEvent) -> None:  # noqa: N802
        for url in event.mimeData().urls():
            if url.isLocalFile():
                path = Path(url.toLocalFile())
                if path.name.lower().endswith(".safetensors") or path.is_dir() or \
                        self.confirm_discard(f"opening {path.name}"):
                    self.open_path(path)
                break

    def showEvent(self, event) -> None:  # noqa: N802
        super().showEvent(event)
        if not self._sized:  # dock sizes only stick once the window has its real size
            self._sized = True
            self.resizeDocks([self._bottom_dock], [BOTTOM_DOCK_HEIGHT], Qt.Orientation.Vertical)

    def closeEvent(self, event: QCloseEvent) -> None:  # noqa: N802
        if not self.confirm_discard("quitting"):
            event.ignore()
            return
        self.autosaver.close()
        if self.live_panel is not None:
            self.live_panel.stop()  # the capture thread ends before the render service does
        self.controller.shutdown()
        super().closeEvent(event)

    def startup(self, portrait: Path | None, checkpoint: Path | None, recover: bool = True) -> None:
        """Load the model (or the visible fallback) and the first portrait; offer a crash's autosave."""
        self._startup(portrait, checkpoint)
        if recover:
            self.offer_recovery()

    def _startup(self, portrait: Path | None, checkpoint: Path | None) -> None:
        from app import backend

        if not self.controller.load_model(checkpoint) and checkpoint is not None:
            self.controller.load_model(None)
        if portrait is not None and self.controller.open_portrait(portrait):
            return
        default = backend.default_portrait_path()
        if default is None or not self.controller.open_portrait(default):
            size = self.controller.portrait_size()
            self.controller.set_portrait_image(backend.placeholder_portrait(size), None)


def application() -> QApplication:
    app = QApplication.instance() or QApplication([])
    app.setApplicationName(APP_NAME)
    app.setOrganizationName("Export3D")
    if ICON_PATH.is_file():
        app.setWindowIcon(QIcon(str(ICON_PATH)))
    return app
