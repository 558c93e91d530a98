"""A numeric field that takes what an artist types: scientific notation, and any number, clamped.

QDoubleSpinBox's own validator rejects a keystroke that would leave its range or that is not a
plain decimal, so typing `1e6` gave 16 and `180` in a ±89 field gave 18. This box accepts any
finite number as typed, clamps it to the range on commit and reports the clamp in one line.
"""
from __future__ import annotations

import math

from PySide6.QtCore import Signal
from PySide6.QtGui import QValidator
from PySide6.QtWidgets import QDoubleSpinBox

PLAIN_LIMIT = 1e6  # beyond this magnitude the box shows scientific notation (stays narrow)
INTERMEDIATE = ("", "-", "+", ".", "-.", "+.")


class NumberBox(QDoubleSpinBox):
    clamped = Signal(str)  # one line: a typed value was outside the range and was clamped

    def __init__(self, what: str = "the value", parent=None) -> None:
        super().__init__(parent)
        self.what = what
        self._warned = ""

    def _number(self, text: str) -> str:
        text = text.strip()
        if self.prefix() and text.startswith(self.prefix()):
            text = text[len(self.prefix()):]
        if self.suffix() and text.endswith(self.suffix()):
            text = text[:-len(self.suffix())]
        return text.strip().replace(",", ".") if self.locale().decimalPoint() == "," else text.strip()

    def validate(self, text: str, pos: int):  # noqa: D102
        number = self._number(text)
        if number in INTERMEDIATE or number.lower().endswith(("e", "e-", "e+")):
            return QValidator.State.Intermediate, text, pos
        try:
            value = float(number)
        except ValueError:
            return QValidator.State.Invalid, text, pos
        state = QValidator.State.Acceptable if math.isfinite(value) else QValidator.State.Intermediate
        return state, text, pos

    def valueFromText(self, text: str) -> float:  # noqa: N802
        try:
            value = float(self._number(text))
        except ValueError:
            return self.value()
        if not math.isfinite(value):
            return self.value()
        bounded = min(self.maximum(), max(self.minimum(), value))
        if bounded != value and text != self._warned:
            self._warned = text  # valueFromText runs more than once per commit: say it once
            self.clamped.emit(f"{self.what} {value:g} is outside {self.minimum():g} … {self.maximum():g}; "
                              f"set to {bounded:g}")
        return bounded

    def textFromValue(self, value: float) -> str:  # noqa: N802
        if value != 0 and abs(value) >= PLAIN_LIMIT:
            return f"{value:.6g}"
        return f"{value:.{self.decimals()}f}"

    def fixup(self, text: str) -> str:
        return self.textFromValue(self.value())
