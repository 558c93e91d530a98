"""Manual crop: when no face is found, the artist drags a square over the photo (wheel resizes)."""
from __future__ import annotations

import numpy as np
from PySide6.QtCore import QPointF, QRectF, Qt
from PySide6.QtGui import QColor, QPainter, QPen
from PySide6.QtWidgets import QDialog, QDialogButtonBox, QLabel, QVBoxLayout, QWidget

from app.widgets.viewport import to_qimage

INITIAL_SIDE_FRACTION = 0.6  # the first guess covers 60 % of the shorter side
WHEEL_GROWTH = 1.1
MIN_SIDE = 16


class CropCanvas(QWidget):
    def __init__(self, image: np.ndarray, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.image = image
        self._qimage = to_qimage(image)
        height, width = image.shape[:2]
        self.center = QPointF(width / 2, height / 2)
        self.side = min(width, height) * INITIAL_SIDE_FRACTION
        self.setMinimumSize(480, 480)
        self.setCursor(Qt.CursorShape.SizeAllCursor)

    def _scale(self) -> float:
        height, width = self.image.shape[:2]
        return min(self.width() / width, self.height() / height)

    def paintEvent(self, event) -> None:  # noqa: N802
        painter = QPainter(self)
        s = self._scale()
        height, width = self.image.shape[:2]
        painter.drawImage(QRectF(0, 0, width * s, height * s), self._qimage)
        painter.setPen(QPen(QColor(80, 200, 255), 2))
        half = self.side / 2
        painter.drawRect(QRectF((self.center.x() - half) * s, (self.center.y() - half) * s, self.side * s,
                                self.side * s))
        painter.end()

    def mousePressEvent(self, event) -> None:  # noqa: N802
        self.mouseMoveEvent(event)

    def mouseMoveEvent(self, event) -> None:  # noqa: N802
        s = self._scale()
        self.center = QPointF(event.position().x() / s, event.position().y() / s)
        self.update()

    def wheelEvent(self, event) -> None:  # noqa: N802
        factor = WHEEL_GROWTH if event.angleDelta().y() > 0 else 1 / WHEEL_GROWTH
        self.side = max(MIN_SIDE, min(max(self.image.shape[:2]) * 2, self.side * factor))
        self.update()


class CropDialog(QDialog):
    def __init__(self, image: np.ndarray, message: str, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Place the crop by hand")
        self.canvas = CropCanvas(image)
        box = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel)
        box.accepted.connect(self.accept)
        box.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addWidget(QLabel(message + "\nClick or drag to centre the square on the face; the wheel resizes it."))
        layout.addWidget(self.canvas, 1)
        layout.addWidget(box)

    def crop(self) -> tuple[tuple[float, float], float]:
        return (self.canvas.center.x(), self.canvas.center.y()), self.canvas.side
