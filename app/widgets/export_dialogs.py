"""Settings dialogs for the exports; each returns plain settings, the window runs the job.

Each offers "Paste into the original photo" when the portrait came from a photo with a known
alignment; it is disabled, with the reason as its tooltip, without one or beyond the measured pose
limit (the turntable re-checks its own path whenever its settings change)."""
from __future__ import annotations

import math

from PySide6.QtWidgets import (QCheckBox, QComboBox, QDialog, QDialogButtonBox, QDoubleSpinBox, QFormLayout,
                               QSpinBox, QWidget)

from export3d_core import AnimationExportSettings, TurntableSettings

from app.export_jobs import SweepSettings

MAX_FRAMES = 1000
MAX_FPS = 120
DEFAULT_TURNTABLE = TurntableSettings()


PASTE_TEXT = "Paste into the original photo"
PASTE_TIP = "Composite the rendered face into the original photo at the photo's own resolution"
SIZE_TIP = "Side of the square frames; the model's output size when left at its minimum"
PASTED_SIZE_TIP = "Frames pasted into the photo have the photo's own size"


def _paste_option(form: QFormLayout, paste_problem) -> QCheckBox:
    """The paste-back check box, enabled only when `paste_problem()` finds nothing against it."""
    box = QCheckBox(PASTE_TEXT)
    _update_paste(box, paste_problem() if paste_problem is not None else "there is no original photo to paste into")
    form.addRow(box)
    return box


def _update_paste(box: QCheckBox, problem: str) -> None:
    box.setEnabled(not problem)
    if problem:
        box.setChecked(False)
    box.setToolTip(f"Disabled: {problem}" if problem else PASTE_TIP)


def _buttons(dialog: QDialog, form: QFormLayout) -> None:
    box = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel)
    box.accepted.connect(dialog.accept)
    box.rejected.connect(dialog.reject)
    form.addRow(box)


class StillDialog(QDialog):
    def __init__(self, parent: QWidget | None = None, paste_problem=None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Export still PNG")
        form = QFormLayout(self)
        self.alpha = QCheckBox("Use the rendered opacity as alpha")
        self.alpha.setToolTip("Transparent background where the rays hit nothing")
        form.addRow(self.alpha)
        self.paste_back = _paste_option(form, paste_problem)
        self.paste_back.toggled.connect(self._paste_toggled)
        _buttons(self, form)

    def _paste_toggled(self, on: bool) -> None:
        """The composite is opaque: alpha and paste-back exclude each other."""
        if on:
            self.alpha.setChecked(False)
        self.alpha.setEnabled(not on)


class TurntableDialog(QDialog):
    def __init__(self, parent: QWidget | None = None, paste_problem=None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Export turntable")
        form = QFormLayout(self)
        self.frames = QSpinBox()
        self.frames.setRange(2, MAX_FRAMES)
        self.frames.setValue(DEFAULT_TURNTABLE.frames)
        self.fps = QSpinBox()
        self.fps.setRange(1, MAX_FPS)
        self.fps.setValue(DEFAULT_TURNTABLE.fps)
        self.amplitude = QDoubleSpinBox()
        self.amplitude.setRange(1.0, 89.0)
        self.amplitude.setSuffix("°")
        self.amplitude.setValue(math.degrees(DEFAULT_TURNTABLE.yaw_amplitude))
        self.amplitude.setToolTip("Yaw amplitude; the orbit path uses 5/7 of it for pitch, as EG3D")
        self.path = QComboBox()
        self.path.addItem("EG3D orbit (yaw + pitch ellipse)", "orbit")
        self.path.addItem("Yaw sweep", "yaw")
        self.loop = QCheckBox("Loop forever (GIF)")
        self.loop.setChecked(True)
        form.addRow("Frames", self.frames)
        form.addRow("FPS", self.fps)
        form.addRow("Amplitude", self.amplitude)
        form.addRow("Path", self.path)
        form.addRow(self.loop)
        self.paste_back = _paste_option(form, paste_problem)
        if paste_problem is not None:
            self._paste_problem = paste_problem
            for signal in (self.amplitude.valueChanged, self.path.currentIndexChanged, self.frames.valueChanged):
                signal.connect(self._check_paste)
            self._check_paste()
        _buttons(self, form)

    def _check_paste(self, *_args) -> None:
        """Every camera of the turntable's path must be within the paste-back pose limit."""
        _update_paste(self.paste_back, self._paste_problem(self.settings()))

    def settings(self) -> TurntableSettings:
        yaw = math.radians(self.amplitude.value())
        ratio = DEFAULT_TURNTABLE.pitch_amplitude / DEFAULT_TURNTABLE.yaw_amplitude
        return TurntableSettings(frames=self.frames.value(), fps=self.fps.value(), path=self.path.currentData(),
                                 yaw_amplitude=yaw, pitch_amplitude=yaw * ratio, loop=self.loop.isChecked())


class SweepDialog(QDialog):
    def __init__(self, names: tuple[str, ...], parent: QWidget | None = None, paste_problem=None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Export basis sweep")
        form = QFormLayout(self)
        self.basis = QComboBox()
        for index, name in enumerate(names):
            self.basis.addItem(f"{index + 1}: {name}", index)
        self.start = QDoubleSpinBox()
        self.stop = QDoubleSpinBox()
        for spin, value in ((self.start, -10.0), (self.stop, 20.0)):
            spin.setRange(-1e6, 1e6)
            spin.setValue(value)
        self.steps = QSpinBox()
        self.steps.setRange(2, MAX_FRAMES)
        self.steps.setValue(24)
        self.fps = QSpinBox()
        self.fps.setRange(1, MAX_FPS)
        self.fps.setValue(12)
        form.addRow("Basis vector", self.basis)
        form.addRow("From λ", self.start)
        form.addRow("To λ", self.stop)
        form.addRow("Steps", self.steps)
        form.addRow("FPS", self.fps)
        self.paste_back = _paste_option(form, paste_problem)
        _buttons(self, form)

    def settings(self) -> SweepSettings:
        return SweepSettings(self.basis.currentData(), self.start.value(), self.stop.value(), self.steps.value(),
                             self.fps.value())


class AnimationDialog(QDialog):
    """Frames per second, the time range and the output size of an animation export, and whether to
    paste it into the original photo. `paste_problem(settings)` says why a pasted export cannot be
    offered for these settings ("" when it can; `EditorController.animation_paste_back_problem`),
    re-checked whenever the range changes; pasted frames have the photo's size."""

    def __init__(self, animation, parent: QWidget | None = None, paste_problem=None, mode: str = "final") -> None:
        super().__init__(parent)
        self.setWindowTitle("Export animation")
        self.mode = mode
        form = QFormLayout(self)
        self.fps = QSpinBox()
        self.fps.setRange(1, MAX_FPS)
        self.fps.setValue(round(animation.fps))
        self.start, self.end = QDoubleSpinBox(), QDoubleSpinBox()
        for spin, value in ((self.start, 0.0), (self.end, animation.duration)):
            spin.setRange(0.0, animation.duration)
            spin.setDecimals(2)
            spin.setSuffix(" s")
            spin.setValue(value)
        self.size = QSpinBox()
        self.size.setRange(0, 4096)
        self.size.setSpecialValueText("the model's output")
        self.size.setSuffix(" px")
        self.size.setToolTip(SIZE_TIP)
        form.addRow("FPS", self.fps)
        form.addRow("From", self.start)
        form.addRow("To (inclusive)", self.end)
        form.addRow("Size", self.size)
        self._paste_problem = paste_problem
        self.paste_back = _paste_option(form, None if paste_problem is None else self._problem)
        self.paste_back.toggled.connect(self._paste_toggled)
        if paste_problem is not None:
            for signal in (self.fps.valueChanged, self.start.valueChanged, self.end.valueChanged):
                signal.connect(self._check_paste)
        _buttons(self, form)

    def _problem(self) -> str:
        from export3d_core import Export3DError

        try:
            return self._paste_problem(self._range_settings())
        except Export3DError as exc:  # a range the core refuses: it is refused again on OK
            return str(exc)

    def _check_paste(self, *_args) -> None:
        """Every frame in the range must be within the paste-back pose limit."""
        _update_paste(self.paste_back, self._problem())

    def _paste_toggled(self, on: bool) -> None:
        """Pasted frames have the photo's own size."""
        self.size.setEnabled(not on)
        self.size.setToolTip(PASTED_SIZE_TIP if on else SIZE_TIP)

    def pasted(self) -> bool:
        return self.paste_back.isEnabled() and self.paste_back.isChecked()

    def _range_settings(self) -> AnimationExportSettings:
        return AnimationExportSettings(fps=self.fps.value(), start=self.start.value(), end=self.end.value(),
                                       mode=self.mode)

    def settings(self, mode: str | None = None) -> AnimationExportSettings:
        """Export3DError with one line for a range or size the core refuses."""
        size = None if self.pasted() else self.size.value() or None
        return AnimationExportSettings(fps=self.fps.value(), start=self.start.value(), end=self.end.value(),
                                       size=size, mode=mode or self.mode)
