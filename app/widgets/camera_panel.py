"""The camera panel: numeric yaw / pitch / radius / field-of-view fields and the render-mode choice.

Degrees for angles (what artists read); the state converts to the core's radians. Emits whole
`ViewCamera` values, so the main window can treat a typed number as one undoable edit. The field
of view is EG3D's: measured along the image's diagonal (export3d_core/camera.py), so it is shown
as "diagonal FOV" (EG3D's 18.84° across the corners is 13.4° from top to bottom).
"""
from __future__ import annotations

from PySide6.QtCore import Signal
from PySide6.QtWidgets import QComboBox, QFormLayout, QPushButton, QWidget

from export3d_core import DEFAULT_FOV_DEG, RENDER_MODES

from app.state import ViewCamera
from app.widgets.number_box import NumberBox

MODE_LABELS = {
    "final": "Final (super-resolved)",
    "raw": "Raw neural render",
    "depth": "Depth",
    "opacity": "Opacity",
}


def _spin(name: str, lo: float, hi: float, step: float, suffix: str, tip: str) -> NumberBox:
    """A field over the orbit limits; a typed value past a limit is clamped to it (and said)."""
    spin = NumberBox(name)
    spin.setRange(lo, hi)
    spin.setSingleStep(step)
    spin.setDecimals(2)
    spin.setSuffix(suffix)
    spin.setKeyboardTracking(False)
    spin.setToolTip(f"{tip} ({lo:g} … {hi:g}{suffix})")
    return spin


class CameraPanel(QWidget):
    camera_edited = Signal(object)  # ViewCamera
    mode_selected = Signal(str)
    frontal_requested = Signal()
    message = Signal(str)  # one line for the status bar (a typed value was clamped)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        lim = ViewCamera
        self.yaw = _spin("yaw", -lim.YAW_LIMIT, lim.YAW_LIMIT, 1.0, "°", "Yaw: + moves the camera to the face's left")
        self.pitch = _spin("pitch", -lim.PITCH_LIMIT, lim.PITCH_LIMIT, 1.0, "°", "Pitch: + moves the camera up")
        self.radius = _spin("radius", *lim.RADIUS_RANGE, 0.05, "", "Distance from the head's pivot (wheel zooms)")
        self.fov = _spin("diagonal field of view", *lim.FOV_RANGE, 0.5, "°",
                         f"Diagonal field of view: the angle across the image's corners, as in EG3D "
                         f"(default {DEFAULT_FOV_DEG:.2f}°)")
        self.mode = QComboBox()
        for mode in RENDER_MODES:
            self.mode.addItem(MODE_LABELS[mode], mode)
        self.mode.setToolTip("What the viewport shows (keys 1–4)")
        self.frontal = QPushButton("Frontal view")
        self.frontal.setToolTip("Reset the camera to the frontal view (double-click the viewport, or F)")
        form = QFormLayout(self)
        form.addRow("Yaw", self.yaw)
        form.addRow("Pitch", self.pitch)
        form.addRow("Radius", self.radius)
        form.addRow("Diagonal FOV", self.fov)
        form.addRow("Mode", self.mode)
        form.addRow(self.frontal)
        for spin in (self.yaw, self.pitch, self.radius, self.fov):
            spin.valueChanged.connect(self._emit_camera)
            spin.clamped.connect(self.message)
        self.mode.currentIndexChanged.connect(lambda _: self.mode_selected.emit(self.mode.currentData()))
        self.frontal.clicked.connect(self.frontal_requested)
        self.set_camera(ViewCamera())

    def set_camera(self, camera: ViewCamera) -> None:
        for spin, value in ((self.yaw, camera.yaw_deg), (self.pitch, camera.pitch_deg),
                            (self.radius, camera.radius), (self.fov, camera.fov_deg)):
            spin.blockSignals(True)
            spin.setValue(value)
            spin.blockSignals(False)

    def set_mode(self, mode: str) -> None:
        self.mode.blockSignals(True)
        self.mode.setCurrentIndex(RENDER_MODES.index(mode))
        self.mode.blockSignals(False)

    def _emit_camera(self) -> None:
        self.camera_edited.emit(ViewCamera(self.yaw.value(), self.pitch.value(), self.radius.value(),
                                           self.fov.value()))
