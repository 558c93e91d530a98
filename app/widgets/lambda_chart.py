"""The λ profile chart beside the sliders: one bar per coefficient (pyqtgraph), live while dragging."""
from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtWidgets import QVBoxLayout, QWidget

BAR_WIDTH = 0.7
POSITIVE = (90, 170, 255)
NEGATIVE = (255, 140, 90)
MIN_HALF_RANGE = 1.0  # the y axis never collapses below ±1



def follow_theme(plot: pg.PlotWidget) -> None:
    """Give `plot` pyqtgraph's current background and foreground (after a theme change)."""
    plot.setBackground(pg.getConfigOption("background"))
    for name in ("left", "bottom"):
        axis = plot.getAxis(name)
        axis.setPen(pg.getConfigOption("foreground"))
        axis.setTextPen(pg.getConfigOption("foreground"))

class LambdaChart(QWidget):
    def __init__(self, n_basis: int, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.plot = pg.PlotWidget()
        self.plot.setMenuEnabled(False)
        self.plot.setMouseEnabled(x=False, y=False)
        self.plot.hideButtons()
        self.plot.showGrid(y=True, alpha=0.25)
        self.plot.setLabel("left", "λ")
        self.plot.setToolTip("λ profile: the current coefficients")
        self.bars = pg.BarGraphItem(x=np.arange(n_basis), height=np.zeros(n_basis), width=BAR_WIDTH)
        self.plot.addItem(self.bars)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.plot)
        self.setMinimumHeight(120)
        self._names: tuple[str, ...] = ()
        self._values = np.zeros(n_basis)

    def refresh_colours(self) -> None:
        follow_theme(self.plot)

    def set_names(self, names: tuple[str, ...]) -> None:
        self._names = names
        self.plot.getAxis("bottom").setTicks([list(enumerate(names))])
        self.set_values(self._values if len(self._values) == len(names) else np.zeros(len(names)))

    def set_values(self, lam) -> None:
        values = np.asarray(lam, dtype=np.float64)
        self._values = values
        brushes = [pg.mkBrush(*(POSITIVE if v >= 0 else NEGATIVE)) for v in values]
        self.bars.setOpts(x=np.arange(len(values)), height=values, width=BAR_WIDTH, brushes=brushes)
        half = max(MIN_HALF_RANGE, float(np.abs(values).max(initial=0.0)) * 1.1)
        self.plot.setYRange(-half, half, padding=0)
        self.plot.setXRange(-0.6, len(values) - 0.4, padding=0)

    def values(self) -> np.ndarray:
        return self._values
