"""Menus, shortcuts and the file dialogs behind them (open, save, export, recent files, theme)."""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from PySide6.QtGui import QAction, QActionGroup, QKeySequence
from PySide6.QtWidgets import QApplication, QDockWidget, QFileDialog, QMessageBox

from app.project import PROJECT_SUFFIX
from app.state import RENDER_MODES
from app.theme import apply_theme
from app.widgets.camera_panel import MODE_LABELS

if TYPE_CHECKING:
    from app.main_window import MainWindow

IMAGE_FILTER = "Images (*.png *.jpg *.jpeg *.webp *.bmp *.tif *.tiff *.gif)"
RECENT_KEY = "recent_portraits"
MAX_RECENT = 8
SHORTCUTS_HELP = """<table>
<tr><td>Ctrl+O</td><td>Open portrait</td></tr><tr><td>Ctrl+Shift+O</td><td>Open checkpoint</td></tr>
<tr><td>Ctrl+S / Ctrl+Shift+S</td><td>Save project / as</td></tr><tr><td>Ctrl+P</td><td>Open project</td></tr>
<tr><td>Ctrl+E / Ctrl+T / Ctrl+B / Ctrl+M</td><td>Export still / turntable / basis sweep / mesh</td></tr>
<tr><td>Ctrl+Z / Ctrl+Shift+Z</td><td>Undo / redo</td></tr><tr><td>Ctrl+0 / Ctrl+R</td><td>Zero all / reset to portrait</td></tr>
<tr><td>1–4</td><td>Final / raw / depth / opacity</td></tr><tr><td>F</td><td>Frontal view</td></tr>
<tr><td>Drag / wheel / double-click</td><td>Orbit / zoom / frontal (Shift: fine)</td></tr></table>"""


def _action(window: MainWindow, menu, text: str, slot, shortcut: str | None = None, tip: str = "") -> QAction:
    action = QAction(text, window)
    if shortcut:
        action.setShortcut(QKeySequence(shortcut))
    if tip:
        action.setStatusTip(tip)
        action.setToolTip(tip)
    action.triggered.connect(lambda _=False: slot())
    menu.addAction(action)
    return action


def _file_menu(window: MainWindow, file_menu) -> None:
    _action(window, file_menu, "Open portrait…", lambda: open_portrait(window), "Ctrl+O",
            "Open a photo; it is cropped and aligned to the model's framing")
    window.recent_menu = file_menu.addMenu("Recent portraits")
    _action(window, file_menu, "Open checkpoint…", lambda: open_checkpoint(window), "Ctrl+Shift+O",
            "Load another model checkpoint (.safetensors)")
    file_menu.addSeparator()
    _action(window, file_menu, "Open project…", lambda: open_project(window), "Ctrl+P")
    _action(window, file_menu, "Save project", lambda: save_project(window, False), "Ctrl+S")
    _action(window, file_menu, "Save project as…", lambda: save_project(window, True), "Ctrl+Shift+S")
    window.import_presets_action = _action(
        window, file_menu, "Import project presets into library", window.controller.import_project_presets,
        tip="Add the open project's presets to the preset library shared by all projects")
    file_menu.addSeparator()
    _action(window, file_menu, "Export still PNG…", lambda: export_still(window), "Ctrl+E",
            "The current view at final resolution")
    _action(window, file_menu, "Export turntable…", lambda: export_turntable(window), "Ctrl+T",
            "GIF or MP4 orbit around the head")
    _action(window, file_menu, "Export basis sweep…", lambda: export_sweep(window), "Ctrl+B",
            "GIF of one coefficient swept over a range")
    _action(window, file_menu, "Export mesh…", lambda: export_mesh(window), "Ctrl+M",
            "The head as a coloured mesh; a .glb also gets one morph target per slider")
    file_menu.addSeparator()
    _action(window, file_menu, "Quit", window.close, "Ctrl+Q")


def build_menus(window: MainWindow) -> None:
    bar = window.menuBar()
    _file_menu(window, bar.addMenu("&File"))

    edit = bar.addMenu("&Edit")
    undo = window.controller.undo_stack.createUndoAction(window, "Undo")
    undo.setShortcut(QKeySequence.StandardKey.Undo)
    redo = window.controller.undo_stack.createRedoAction(window, "Redo")
    redo.setShortcuts([QKeySequence("Ctrl+Shift+Z"), QKeySequence("Ctrl+Y")])
    edit.addAction(undo)
    edit.addAction(redo)
    window.undo_action, window.redo_action = undo, redo
    edit.addSeparator()
    _action(window, edit, "Zero all λ", window.coefficients.zero_all_requested.emit, "Ctrl+0")
    _action(window, edit, "Reset λ to portrait", window.coefficients.reset_portrait_requested.emit, "Ctrl+R")
    match = _action(window, edit, "Match expression from photo…", lambda: match_expression(window),
                    tip="Set λ to the expression of a reference photo")
    match.setEnabled(False)
    window.match_action = match

    view = bar.addMenu("&View")
    modes = QActionGroup(window)
    for index, mode in enumerate(RENDER_MODES):
        action = _action(window, view, MODE_LABELS[mode], lambda m=mode: window.state.set_mode(m), str(index + 1))
        action.setCheckable(True)
        action.setChecked(mode == window.state.mode)
        modes.addAction(action)
        window.state.mode_changed.connect(lambda m, a=action, mm=mode: a.setChecked(m == mm))
    view.addSeparator()
    _action(window, view, "Frontal view", window.reset_camera, "F")
    view.addSeparator()
    themes = QActionGroup(window)
    for name in ("dark", "light"):
        action = _action(window, view, f"{name.title()} theme", lambda n=name: set_theme(window, n))
        action.setCheckable(True)
        action.setChecked(name == window.theme)
        themes.addAction(action)
    view.addSeparator()
    for dock in window.findChildren(QDockWidget):
        view.addAction(dock.toggleViewAction())

    help_menu = bar.addMenu("&Help")
    _action(window, help_menu, "Keyboard shortcuts", lambda: QMessageBox.information(window, "Shortcuts",
                                                                                       SHORTCUTS_HELP), "F1")
    refresh_recent(window)


def set_theme(window: MainWindow, name: str) -> None:
    window.theme = apply_theme(QApplication.instance(), name)
    window.chart.refresh_colours()
    window.settings.setValue("theme", window.theme)


# -- recent files ------------------------------------------------------------------------------------
def recent(window: MainWindow) -> list[str]:
    value = window.settings.value(RECENT_KEY, [])
    return [value] if isinstance(value, str) else list(value or [])


def add_recent(window: MainWindow, path: Path) -> None:
    text = str(Path(path).resolve())
    items = [text] + [p for p in recent(window) if p != text]
    window.settings.setValue(RECENT_KEY, items[:MAX_RECENT])
    refresh_recent(window)


def refresh_recent(window: MainWindow) -> None:
    window.recent_menu.clear()
    items = recent(window)
    for text in items:
        action = window.recent_menu.addAction(Path(text).name)
        action.setToolTip(text)
        action.triggered.connect(lambda _=False, p=text: open_portrait_path(window, Path(p)))
    window.recent_menu.setEnabled(bool(items))


# -- dialogs -----------------------------------------------------------------------------------------
def open_portrait(window: MainWindow) -> None:
    path, _ = QFileDialog.getOpenFileName(window, "Open portrait", "", IMAGE_FILTER)
    if path:
        open_portrait_path(window, Path(path))


def open_portrait_path(window: MainWindow, path: Path) -> bool:
    """A new portrait starts a new undo history: unsaved edits are saved or discarded first."""
    return window.confirm_discard(f"opening {path.name}") and window.controller.open_portrait(path)


def match_expression(window: MainWindow) -> None:
    path, _ = QFileDialog.getOpenFileName(window, "Match expression from photo", "", IMAGE_FILTER)
    if path:
        window.controller.match_expression(Path(path))


def open_checkpoint(window: MainWindow) -> None:
    path, _ = QFileDialog.getOpenFileName(window, "Open checkpoint", "", "Checkpoints (*.safetensors)")
    if path:
        window.controller.load_model(Path(path))


def open_project(window: MainWindow) -> None:
    path, _ = QFileDialog.getOpenFileName(window, "Open project", "", f"Projects (*{PROJECT_SUFFIX} *.json)")
    if path and window.confirm_discard(f"opening {Path(path).name}"):
        window.open_project(Path(path))


def save_project(window: MainWindow, ask: bool) -> bool:
    """Save (asking where when the project has no file yet, or `ask`); True when it was saved."""
    path = window.project_path
    if ask or path is None:
        chosen, _ = QFileDialog.getSaveFileName(window, "Save project", "portrait" + PROJECT_SUFFIX,
                                                f"Projects (*{PROJECT_SUFFIX})")
        if not chosen:
            return False
        path = Path(chosen if chosen.endswith(".json") else chosen + PROJECT_SUFFIX)
    return window.save_project(path)


def ask_target(window: MainWindow, title: str, default: str, filters: str) -> tuple[Path, bool] | None:
    """A save path and whether the artist agreed to replace an existing file."""
    chosen, _ = QFileDialog.getSaveFileName(window, title, default, filters,
                                            options=QFileDialog.Option.DontConfirmOverwrite)
    if not chosen:
        return None
    path = Path(chosen)
    if path.exists():
        answer = QMessageBox.question(window, title, f"{path.name} exists. Replace it?")
        if answer != QMessageBox.StandardButton.Yes:
            return None
        return path, True
    return path, False


def export_still(window: MainWindow) -> None:
    from app.widgets.export_dialogs import StillDialog

    dialog = StillDialog(window)
    if dialog.exec() != StillDialog.DialogCode.Accepted:
        return
    target = ask_target(window, "Export still", "portrait.png", "PNG (*.png)")
    if target:
        path, overwrite = target
        window.run_export(window.controller.export_spec("still", path, overwrite=overwrite,
                                                        alpha=dialog.alpha.isChecked()))


def export_turntable(window: MainWindow) -> None:
    from app.widgets.export_dialogs import TurntableDialog

    dialog = TurntableDialog(window)
    if dialog.exec() != TurntableDialog.DialogCode.Accepted:
        return
    target = ask_target(window, "Export turntable", "turntable.gif", "GIF (*.gif);;MP4 (*.mp4)")
    if target:
        path, overwrite = target
        window.run_export(window.controller.export_spec("turntable", path, overwrite=overwrite,
                                                        turntable=dialog.settings()))


def export_sweep(window: MainWindow) -> None:
    from app.widgets.export_dialogs import SweepDialog

    dialog = SweepDialog(window.state.names, window)
    if dialog.exec() != SweepDialog.DialogCode.Accepted:
        return
    target = ask_target(window, "Export basis sweep", "sweep.gif", "GIF (*.gif);;MP4 (*.mp4)")
    if target:
        path, overwrite = target
        window.run_export(window.controller.export_spec("sweep", path, overwrite=overwrite, sweep=dialog.settings()))


def export_mesh(window: MainWindow) -> None:
    """PLY/OBJ: the head at the current λ; GLB: decimated, with one morph target per slider (+10)."""
    from export3d_core.mesh import MeshSettings

    target = ask_target(window, "Export mesh", "head.glb", "glTF with morph targets (*.glb);;PLY (*.ply);;OBJ (*.obj)")
    if target:
        path, overwrite = target
        glb = path.suffix.lower() == ".glb"
        settings = MeshSettings(morph_targets=glb, faces=GLB_FACES if glb else None)
        window.run_export(window.controller.export_spec("mesh", path, overwrite=overwrite, mesh=settings,
                                                        names=window.state.names))


GLB_FACES = 60_000  # on the demo model: a 9 MB GLB, its ten morph targets projected in about a minute on 2 cores
