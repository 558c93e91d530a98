"""The questions behind the File menu: which file to open, where to save or export. Each returns the
answer (None when the artist cancels) and does nothing else; the window acts on it."""
from __future__ import annotations

from pathlib import Path

from PySide6.QtWidgets import QDialog, QFileDialog, QMessageBox, QWidget

from app.project import PROJECT_SUFFIX

IMAGE_FILTER = "Images (*.png *.jpg *.jpeg *.webp *.bmp *.tif *.tiff *.gif)"
CHECKPOINT_FILTER = "Checkpoints (*.safetensors)"
FIT_FILTER = "Fits (*.safetensors)"
PROJECT_FILTER = f"Projects (*{PROJECT_SUFFIX} *.json)"
# export kind -> the save dialog's title, default name and filters
EXPORT_TARGETS = {
    "still": ("Export still", "portrait.png", "PNG (*.png)"),
    "turntable": ("Export turntable", "turntable.gif", "GIF (*.gif);;MP4 (*.mp4)"),
    "sweep": ("Export basis sweep", "sweep.gif", "GIF (*.gif);;MP4 (*.mp4)"),
    "mesh": ("Export mesh", "head.glb", "glTF with morph targets (*.glb);;PLY (*.ply);;OBJ (*.obj)"),
    "animation": ("Export animation", "animation.mp4",
                  "MP4 (*.mp4);;GIF (*.gif);;PNG sequence: a folder name without an extension (*)"),
}
GLB_FACES = 60_000  # on the demo model: a 9 MB GLB, its ten morph targets projected in about a minute on 2 cores


def ask_open(parent: QWidget, title: str, filters: str) -> Path | None:
    path, _ = QFileDialog.getOpenFileName(parent, title, "", filters)
    return Path(path) if path else None


def ask_project_target(parent: QWidget) -> Path | None:
    """Where to save a project; the project suffix is added unless the name ends in .json."""
    chosen, _ = QFileDialog.getSaveFileName(parent, "Save project", "portrait" + PROJECT_SUFFIX,
                                            f"Projects (*{PROJECT_SUFFIX})")
    if not chosen:
        return None
    return Path(chosen if chosen.endswith(".json") else chosen + PROJECT_SUFFIX)


def ask_target(parent: QWidget, title: str, default: str, filters: str) -> tuple[Path, bool] | None:
    """A save path and whether the artist agreed to replace an existing file."""
    chosen, _ = QFileDialog.getSaveFileName(parent, title, default, filters,
                                            options=QFileDialog.Option.DontConfirmOverwrite)
    if not chosen:
        return None
    path = Path(chosen)
    if path.exists():
        answer = QMessageBox.question(parent, title, f"{path.name} exists. Replace it?")
        if answer != QMessageBox.StandardButton.Yes:
            return None
        return path, True
    return path, False


def ask_export(parent: QWidget, kind: str, names: tuple[str, ...],
               paste_problem=None) -> tuple[Path, bool, dict] | None:
    """The export's settings dialog, then its target: (path, overwrite, `export_spec` keywords).

    `paste_problem(turntable settings or nothing)` says why "Paste into the original photo" cannot be offered
    ("" when it can; `EditorController.paste_back_problem`); None: the option is not offered."""
    if kind == "mesh":
        return ask_mesh_export(parent, names)
    from app.widgets.export_dialogs import StillDialog, SweepDialog, TurntableDialog

    dialog = {"still": lambda: StillDialog(parent, paste_problem),
              "turntable": lambda: TurntableDialog(parent, paste_problem),
              "sweep": lambda: SweepDialog(names, parent, paste_problem)}[kind]()
    if dialog.exec() != QDialog.DialogCode.Accepted:
        return None
    options = {"alpha": dialog.alpha.isChecked()} if kind == "still" else {kind: dialog.settings()}
    options["paste_back"] = dialog.paste_back.isEnabled() and dialog.paste_back.isChecked()
    target = ask_target(parent, *EXPORT_TARGETS[kind])
    return None if target is None else (*target, options)


def ask_mesh_export(parent: QWidget, names: tuple[str, ...]) -> tuple[Path, bool, dict] | None:
    """PLY/OBJ: the head at the current λ; GLB: decimated, with one morph target per slider (+10)."""
    from export3d_core import MeshSettings

    target = ask_target(parent, *EXPORT_TARGETS["mesh"])
    if target is None:
        return None
    path, overwrite = target
    glb = path.suffix.lower() == ".glb"
    settings = MeshSettings(morph_targets=glb, faces=GLB_FACES if glb else None)
    return path, overwrite, {"mesh": settings, "names": names}


def ask_animation_export(parent: QWidget, animation, mode: str,
                         paste_problem=None) -> tuple[Path, bool, dict] | None:
    """The timeline's export: range, fps, size and paste-back, then an .mp4, a .gif or a folder for PNGs.
    Export3DError with one line when there are no keys or the range is refused (before asking where).
    `paste_problem(settings)`: as in `AnimationDialog`; None: paste-back is not offered."""
    from export3d_core import Export3DError

    from app.widgets.export_dialogs import AnimationDialog

    if animation is None:
        raise Export3DError("nothing to export: the timeline has no keys (add a key first)")
    dialog = AnimationDialog(animation, parent, paste_problem, mode)
    if dialog.exec() != QDialog.DialogCode.Accepted:
        return None
    settings = dialog.settings()
    animation.frame_times(settings.fps, settings.start, settings.end)
    target = ask_target(parent, *EXPORT_TARGETS["animation"])
    options = {"animation": animation, "animation_settings": settings, "paste_back": dialog.pasted()}
    return None if target is None else (*target, options)
