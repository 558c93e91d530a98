"""The basis explorer: a grid of renders, rows = basis vectors, columns = scales of λ_i.

The grid asks for its cells (`cells_requested`), the window renders them in the background and
hands each back with `set_cell` as it finishes, so the grid fills in. Clicking a cell emits the
λ it shows (the current λ with coefficient i set to that column's scale).
"""
from __future__ import annotations

import numpy as np
from PySide6.QtCore import QSize, Qt, Signal
from PySide6.QtGui import QIcon, QPixmap
from PySide6.QtWidgets import (QDoubleSpinBox, QGridLayout, QHBoxLayout, QLabel, QPushButton, QScrollArea,
                               QSpinBox, QToolButton, QVBoxLayout, QWidget)

from app.widgets.viewport import to_qimage

CELL_SIZE = 72  # thumbnail side in logical pixels
DEFAULT_SCALES = (-10.0, 20.0, 5)  # from, to, columns: the paper's range


class ExplorerPanel(QWidget):
    cells_requested = Signal(object)  # list[((row, col), lam tuple)]
    lam_selected = Signal(object)  # tuple[float, ...]

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.start = QDoubleSpinBox()
        self.stop = QDoubleSpinBox()
        for spin, value in ((self.start, DEFAULT_SCALES[0]), (self.stop, DEFAULT_SCALES[1])):
            spin.setRange(-1e6, 1e6)
            spin.setDecimals(1)
            spin.setValue(value)
        self.columns = QSpinBox()
        self.columns.setRange(2, 15)
        self.columns.setValue(DEFAULT_SCALES[2])
        self.render_button = QPushButton("Render grid")
        self.render_button.setToolTip("Render every basis vector at every scale, in the background")
        self.render_button.clicked.connect(self.request)
        controls = QHBoxLayout()
        for label, widget in (("λ from", self.start), ("to", self.stop), ("columns", self.columns)):
            controls.addWidget(QLabel(label))
            controls.addWidget(widget)
        controls.addWidget(self.render_button)
        controls.addStretch(1)
        self._grid_host = QWidget()
        self._grid = QGridLayout(self._grid_host)
        self._grid.setSpacing(2)
        self._grid.setAlignment(Qt.AlignmentFlag.AlignTop | Qt.AlignmentFlag.AlignLeft)
        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setWidget(self._grid_host)
        layout = QVBoxLayout(self)
        layout.addLayout(controls)
        layout.addWidget(scroll)
        self.cells: dict[tuple[int, int], QToolButton] = {}
        self.cell_lams: dict[tuple[int, int], tuple[float, ...]] = {}
        self._base: tuple[float, ...] = ()
        self._names: tuple[str, ...] = ()

    def set_context(self, lam: tuple[float, ...], names: tuple[str, ...]) -> None:
        """The λ the grid varies around and the row labels (used at the next `request`)."""
        self._base, self._names = tuple(lam), tuple(names)

    def scales(self) -> np.ndarray:
        return np.linspace(self.start.value(), self.stop.value(), self.columns.value())

    def request(self) -> None:
        self._clear()
        scales = self.scales()
        requests = []
        for col, scale in enumerate(scales):
            label = QLabel(f"{scale:g}")
            label.setAlignment(Qt.AlignmentFlag.AlignCenter)
            self._grid.addWidget(label, 0, col + 1)
        for row, name in enumerate(self._names):
            self._grid.addWidget(QLabel(name), row + 1, 0)
            for col, scale in enumerate(scales):
                lam = list(self._base)
                lam[row] = float(scale)
                key = (row, col)
                button = QToolButton()
                button.setFixedSize(CELL_SIZE + 6, CELL_SIZE + 6)
                button.setIconSize(QSize(CELL_SIZE, CELL_SIZE))
                button.setText("…")
                button.setToolTip(f"{name} = {scale:g}: click to apply")
                button.clicked.connect(lambda _=False, k=key: self.lam_selected.emit(self.cell_lams[k]))
                self._grid.addWidget(button, row + 1, col + 1)
                self.cells[key] = button
                self.cell_lams[key] = tuple(lam)
                requests.append((key, tuple(lam)))
        self.cells_requested.emit(requests)

    def set_cell(self, key: tuple[int, int], image: np.ndarray) -> None:
        button = self.cells.get(key)
        if button is None:
            return
        pixmap = QPixmap.fromImage(to_qimage(image)).scaled(
            CELL_SIZE * 2, CELL_SIZE * 2, Qt.AspectRatioMode.KeepAspectRatio, Qt.TransformationMode.SmoothTransformation)
        button.setIcon(QIcon(pixmap))
        button.setText("")

    def filled(self) -> int:
        return sum(1 for b in self.cells.values() if not b.icon().isNull())

    def _clear(self) -> None:
        while self._grid.count():
            item = self._grid.takeAt(0)
            if item.widget() is not None:
                item.widget().deleteLater()
        self.cells.clear()
        self.cell_lams.clear()
