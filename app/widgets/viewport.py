"""The viewport: paints the current render crisply and turns mouse gestures into camera intents.

Left-drag orbits (signals in degrees), the wheel zooms, a double-click asks for the frontal view.
It knows nothing of the model; the main window wires its signals to the editor state. The image
is drawn into a device-pixel-sized target so it stays sharp on high-DPI screens.
"""
from __future__ import annotations

import numpy as np
from PySide6.QtCore import QPointF, QRectF, QSize, Qt, Signal
from PySide6.QtGui import QColor, QFont, QImage, QMouseEvent, QPainter, QPaintEvent, QWheelEvent
from PySide6.QtWidgets import QSizePolicy, QWidget

DEGREES_PER_PIXEL = 0.4  # orbit speed: a 225-pixel drag turns the head by 90 degrees
FINE_FACTOR = 0.1  # Shift held: ten times finer
WHEEL_STEP = 120  # one notch of a standard mouse wheel (Qt's angleDelta unit)


def to_qimage(image: np.ndarray) -> QImage:
    """uint8 (H, W, 3) RGB -> a QImage that owns a copy of the pixels."""
    image = np.ascontiguousarray(image)
    height, width = image.shape[:2]
    return QImage(image.data, width, height, 3 * width, QImage.Format.Format_RGB888).copy()


class Viewport(QWidget):
    orbit_started = Signal()
    orbit_moved = Signal(float, float)  # total Δyaw, Δpitch (degrees) since the press
    orbit_finished = Signal()
    zoom_requested = Signal(float)  # wheel notches; + = closer
    reset_requested = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setMinimumSize(256, 256)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
        self.setFocusPolicy(Qt.FocusPolicy.StrongFocus)
        self.setCursor(Qt.CursorShape.OpenHandCursor)
        self.setToolTip("Drag to orbit (Shift: fine) · wheel to zoom · double-click for the frontal view")
        self._image: QImage | None = None
        self._array: np.ndarray | None = None
        self._overlay = ""
        self._message = "Loading model…"
        self._press: QPointF | None = None

    # -- content ---------------------------------------------------------------------------------
    def set_image(self, image: np.ndarray, overlay: str = "") -> None:
        self._array = image
        self._image = to_qimage(image)
        self._overlay = overlay
        self._message = ""
        self.update()

    def image(self) -> np.ndarray | None:
        """The pixels now shown (tests compare these)."""
        return self._array

    def set_message(self, text: str) -> None:
        """A centred message (loading, or an error) shown over the last image."""
        self._message = text
        self.update()

    def sizeHint(self) -> QSize:  # noqa: N802 - Qt override
        return QSize(640, 640)

    def image_rect(self) -> QRectF:
        side = min(self.width(), self.height())
        return QRectF((self.width() - side) / 2, (self.height() - side) / 2, side, side)

    def paintEvent(self, event: QPaintEvent) -> None:  # noqa: N802 - Qt override
        painter = QPainter(self)
        painter.fillRect(self.rect(), QColor(24, 24, 28))
        if self._image is not None:
            target = self.image_rect()
            ratio = self.devicePixelRatioF()
            # Resample once to the device-pixel size of the target so high-DPI screens get a sharp,
            # smooth image instead of Qt's logical-pixel scaling.
            device_side = max(1, round(target.width() * ratio))
            scaled = self._image.scaled(device_side, device_side, Qt.AspectRatioMode.IgnoreAspectRatio,
                                        Qt.TransformationMode.SmoothTransformation)
            scaled.setDevicePixelRatio(ratio)
            painter.drawImage(target.topLeft(), scaled)
        painter.setPen(QColor(235, 235, 235))
        if self._overlay:
            painter.setFont(QFont(self.font().family(), 9))
            painter.drawText(self.rect().adjusted(8, 6, -8, -6),
                             Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignTop, self._overlay)
        if self._message:
            painter.fillRect(self.rect(), QColor(0, 0, 0, 120))
            painter.drawText(self.rect().adjusted(20, 20, -20, -20),
                             Qt.AlignmentFlag.AlignCenter | Qt.TextFlag.TextWordWrap, self._message)
        painter.end()

    # -- gestures ----------------------------------------------------------------------------------
    def mousePressEvent(self, event: QMouseEvent) -> None:  # noqa: N802
        if event.button() == Qt.MouseButton.LeftButton:
            self._press = event.position()
            self._fine = bool(event.modifiers() & Qt.KeyboardModifier.ShiftModifier)
            self.setCursor(Qt.CursorShape.ClosedHandCursor)
            self.orbit_started.emit()
        super().mousePressEvent(event)

    def mouseMoveEvent(self, event: QMouseEvent) -> None:  # noqa: N802
        if self._press is not None:
            delta = event.position() - self._press
            speed = DEGREES_PER_PIXEL * (FINE_FACTOR if self._fine else 1.0)
            # Dragging right shows the face's left side: the camera moves right (+yaw). Dragging
            # up raises the camera (+pitch), as in EG3D's visualizer.
            self.orbit_moved.emit(delta.x() * speed, -delta.y() * speed)
        super().mouseMoveEvent(event)

    def mouseReleaseEvent(self, event: QMouseEvent) -> None:  # noqa: N802
        if event.button() == Qt.MouseButton.LeftButton and self._press is not None:
            self._press = None
            self.setCursor(Qt.CursorShape.OpenHandCursor)
            self.orbit_finished.emit()
        super().mouseReleaseEvent(event)

    def mouseDoubleClickEvent(self, event: QMouseEvent) -> None:  # noqa: N802
        if event.button() == Qt.MouseButton.LeftButton:
            self.reset_requested.emit()

    def wheelEvent(self, event: QWheelEvent) -> None:  # noqa: N802
        notches = event.angleDelta().y() / WHEEL_STEP
        if notches:
            self.zoom_requested.emit(notches)
        event.accept()
