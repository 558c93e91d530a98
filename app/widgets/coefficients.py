"""The coefficients panel: one row per λ_i with an unbounded slider, a spin box, a reset and a name.

λ has no bounds (the paper scales it to −10 and +20), so each slider shows a *soft* range that
grows when the artist drags past an end or types a larger number. A drag is reported as
`edit_started` → live `value_changed` → `edit_finished`, so the undo stack can make the whole
drag one step. Shift while dragging or stepping gives ten times finer steps.
"""
from __future__ import annotations

import math

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QKeyEvent, QMouseEvent
from PySide6.QtWidgets import QHBoxLayout, QLineEdit, QPushButton, QSlider, QToolButton, QVBoxLayout, QWidget

from export3d_core import MAX_ABS_LAMBDA

from app.widgets.number_box import NumberBox

SLIDER_STEPS = 1000  # integer resolution of the slider groove
DEFAULT_SOFT_RANGE = (-10.0, 10.0)  # initial visible range; the paper's scales reach −10 and +20
GROW_MARGIN = 1.25  # when a value leaves the soft range, the range is widened to 125 % of it
SPIN_DECIMALS = 3
SPIN_WIDTH = 110  # fits "-100000.000" with the dark theme's padding
FINE_FACTOR = 0.1
KEY_STEP_FRACTION = 0.01  # arrow keys move 1 % of the soft range


class UnboundedSlider(QSlider):
    """A horizontal slider over a float soft range [lo, hi] that widens instead of clamping."""

    drag_started = Signal()
    value_dragged = Signal(float)
    drag_finished = Signal()
    value_stepped = Signal(float)  # keyboard step: a complete edit on its own

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(Qt.Orientation.Horizontal, parent)
        self.setRange(0, SLIDER_STEPS)
        self.lo, self.hi = DEFAULT_SOFT_RANGE
        self._value = 0.0
        self._drag: tuple[float, float, float] | None = None  # (press x, value at press, units/px)
        self._sync()

    @property
    def soft_range(self) -> tuple[float, float]:
        return self.lo, self.hi

    def float_value(self) -> float:
        return self._value

    def set_float_value(self, value: float) -> None:
        """Show `value`, widening the soft range when it falls outside (never past the model's limit)."""
        value = max(-MAX_ABS_LAMBDA, min(MAX_ABS_LAMBDA, value))
        if value > self.hi:
            self.hi = max(value * GROW_MARGIN, value + 1.0) if value > 0 else value + 1.0
        if value < self.lo:
            self.lo = min(value * GROW_MARGIN, value - 1.0) if value < 0 else value - 1.0
        self._value = float(value)
        self._sync()

    def reset_range(self) -> None:
        self.lo, self.hi = DEFAULT_SOFT_RANGE
        self.set_float_value(self._value)

    def _sync(self) -> None:
        fraction = (self._value - self.lo) / (self.hi - self.lo)
        self.blockSignals(True)
        self.setValue(round(min(1.0, max(0.0, fraction)) * SLIDER_STEPS))
        self.blockSignals(False)
        self.setToolTip(f"{self._value:.3f}  (range {self.lo:g} … {self.hi:g}; drag past the end to extend, "
                        "Shift = fine)")

    def _groove_width(self) -> float:
        return max(1.0, self.width() - 12.0)  # minus the handle, roughly

    def _value_at(self, x: float) -> float:
        return self.lo + (self.hi - self.lo) * min(1.0, max(0.0, (x - 6.0) / self._groove_width()))

    # Mouse handling is ours: QSlider would clamp at its ends, we keep going and widen the range.
    def mousePressEvent(self, event: QMouseEvent) -> None:  # noqa: N802
        if event.button() != Qt.MouseButton.LeftButton:
            return
        x = event.position().x()
        handle_x = 6.0 + self._groove_width() * self.value() / SLIDER_STEPS
        self.drag_started.emit()
        if abs(x - handle_x) > 8:  # clicked the groove: jump there first
            self.set_float_value(self._value_at(x))
            self.value_dragged.emit(self._value)
        units = (self.hi - self.lo) / self._groove_width()
        self._drag = (x, self._value, units)
        self.setSliderDown(True)
        event.accept()

    def mouseMoveEvent(self, event: QMouseEvent) -> None:  # noqa: N802
        if self._drag is None:
            return
        press_x, start, units = self._drag
        fine = FINE_FACTOR if event.modifiers() & Qt.KeyboardModifier.ShiftModifier else 1.0
        value = start + (event.position().x() - press_x) * units * fine
        if value != self._value:
            self.set_float_value(value)
            self.value_dragged.emit(self._value)
        event.accept()

    def mouseReleaseEvent(self, event: QMouseEvent) -> None:  # noqa: N802
        if self._drag is not None and event.button() == Qt.MouseButton.LeftButton:
            self._drag = None
            self.setSliderDown(False)
            self.drag_finished.emit()
        event.accept()

    def keyPressEvent(self, event: QKeyEvent) -> None:  # noqa: N802
        direction = {Qt.Key.Key_Right: 1, Qt.Key.Key_Up: 1, Qt.Key.Key_Left: -1, Qt.Key.Key_Down: -1}
        if event.key() in direction:
            fine = FINE_FACTOR if event.modifiers() & Qt.KeyboardModifier.ShiftModifier else 1.0
            step = (self.hi - self.lo) * KEY_STEP_FRACTION * fine
            self.set_float_value(self._value + direction[event.key()] * step)
            self.value_stepped.emit(self._value)
            event.accept()
        else:
            super().keyPressEvent(event)

    def wheelEvent(self, event) -> None:  # noqa: N802
        event.ignore()  # scrolling the panel must not edit λ by accident


class CoefficientRow(QWidget):
    """Name · slider · spin box · reset for one coefficient."""

    def __init__(self, index: int, name: str, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.index = index
        self.name_edit = QLineEdit(name)
        self.name_edit.setFixedWidth(80)
        self.name_edit.setToolTip(f"Name of basis vector {index + 1} (saved with the project)")
        self.slider = UnboundedSlider()
        self.spin = NumberBox(f"λ{index + 1}")
        self.spin.setRange(-MAX_ABS_LAMBDA, MAX_ABS_LAMBDA)
        self.spin.setDecimals(SPIN_DECIMALS)
        self.spin.setSingleStep(0.1)
        self.spin.setKeyboardTracking(False)  # commit on Enter / focus out, not per keystroke
        self.spin.setMinimumWidth(SPIN_WIDTH)
        self.spin.setToolTip(f"λ{index + 1}: any number within ±{MAX_ABS_LAMBDA:g}, e.g. 25 or 2.5e3 (the "
                             "slider's range grows to fit)")
        self.reset_button = QToolButton()
        self.reset_button.setText("↺")
        self.reset_button.setToolTip(f"Reset λ{index + 1} to the portrait's value")
        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(4)
        for widget in (self.name_edit, self.slider, self.spin, self.reset_button):
            layout.addWidget(widget)
        layout.setStretch(1, 1)

    def set_value(self, value: float) -> None:
        self.slider.set_float_value(value)
        self.spin.blockSignals(True)
        self.spin.setValue(value)
        self.spin.blockSignals(False)

    def value(self) -> float:
        return self.slider.float_value()


class CoefficientsPanel(QWidget):
    """All rows plus the global actions; speaks in (index, value) signals, holds no model."""

    edit_started = Signal(int)  # a drag began: the undo step starts here
    value_changed = Signal(int, float)  # live value while dragging
    edit_finished = Signal(int)  # the drag ended: one undo step
    value_committed = Signal(int, float)  # a complete single edit (typed, stepped)
    row_reset = Signal(int)
    name_edited = Signal(int, str)
    zero_all_requested = Signal()
    reset_portrait_requested = Signal()
    message = Signal(str)  # one line for the status bar (a typed value was clamped)

    def __init__(self, names: tuple[str, ...], parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.rows: list[CoefficientRow] = []
        self._rows_layout = QVBoxLayout()
        self._rows_layout.setSpacing(2)
        buttons = QHBoxLayout()
        self.reset_portrait_button = QPushButton("Reset to portrait")
        self.reset_portrait_button.setToolTip("All λ back to the portrait's own expression (Ctrl+R)")
        self.zero_button = QPushButton("Zero all")
        self.zero_button.setToolTip("All λ to 0: the neutral expression of the basis (Ctrl+0)")
        self.reset_portrait_button.clicked.connect(self.reset_portrait_requested)
        self.zero_button.clicked.connect(self.zero_all_requested)
        buttons.addWidget(self.reset_portrait_button)
        buttons.addWidget(self.zero_button)
        layout = QVBoxLayout(self)
        layout.addLayout(self._rows_layout)
        layout.addLayout(buttons)
        layout.addStretch(1)
        self.set_names(names)

    def set_names(self, names: tuple[str, ...]) -> None:
        if len(names) != len(self.rows):
            self._rebuild(len(names))
        for row, name in zip(self.rows, names):
            if row.name_edit.text() != name:
                row.name_edit.setText(name)

    def set_values(self, lam: tuple[float, ...]) -> None:
        for row, value in zip(self.rows, lam):
            if row.value() != value or row.spin.value() != round(value, SPIN_DECIMALS):
                row.set_value(value)

    def values(self) -> tuple[float, ...]:
        return tuple(row.value() for row in self.rows)

    def _rebuild(self, count: int) -> None:
        for row in self.rows:
            row.setParent(None)
            row.deleteLater()
        self.rows = []
        for index in range(count):
            row = CoefficientRow(index, f"v{index + 1}")
            self._connect(row)
            self._rows_layout.addWidget(row)
            self.rows.append(row)

    def _connect(self, row: CoefficientRow) -> None:
        i = row.index
        row.slider.drag_started.connect(lambda: self.edit_started.emit(i))
        row.slider.value_dragged.connect(lambda v: self._on_drag(row, v))
        row.slider.drag_finished.connect(lambda: self.edit_finished.emit(i))
        row.slider.value_stepped.connect(lambda v: self._commit(row, v))
        row.spin.valueChanged.connect(lambda v: self._on_spin(row, v))
        row.spin.clamped.connect(self.message)
        row.reset_button.clicked.connect(lambda: self.row_reset.emit(i))
        row.name_edit.editingFinished.connect(lambda: self.name_edited.emit(i, row.name_edit.text()))

    def _on_drag(self, row: CoefficientRow, value: float) -> None:
        row.spin.blockSignals(True)
        row.spin.setValue(value)
        row.spin.blockSignals(False)
        self.value_changed.emit(row.index, value)

    def _on_spin(self, row: CoefficientRow, value: float) -> None:
        if math.isfinite(value) and value != row.value():
            row.slider.set_float_value(value)  # widens the soft range for a larger number
            self.value_committed.emit(row.index, value)

    def _commit(self, row: CoefficientRow, value: float) -> None:
        row.spin.blockSignals(True)
        row.spin.setValue(value)
        row.spin.blockSignals(False)
        self.value_committed.emit(row.index, value)
