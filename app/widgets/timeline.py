"""The timeline dock: transport and key buttons above the λ curves (pyqtgraph), keys as draggable lines.
With "Camera" on, the keys' camera is drawn too: yaw, pitch and field of view in degrees and the
radius, as thin dashed curves on the same axis (dimmed, so λ stays the plot's subject).

Everything it does goes through `app.timeline_state.Timeline`; it only draws what the model says.
Click the plot to scrub, drag the red playhead to scrub continuously, click a key's line to select
it (the playhead jumps there), drag it to move the key in time.
"""
from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt, QTimer
from PySide6.QtWidgets import (QCheckBox, QComboBox, QDoubleSpinBox, QHBoxLayout, QLabel, QPushButton,
                               QVBoxLayout, QWidget)

from export3d_core import EASINGS

from app.timeline_state import EASING_LABELS, Timeline
from app.widgets.lambda_chart import follow_theme

CURVE_SAMPLES = 240  # points per λ curve across the timeline
KEY_PEN = pg.mkPen((170, 170, 170), width=2)
SELECTED_PEN = pg.mkPen((255, 210, 60), width=3)
PLAYHEAD_PEN = pg.mkPen((230, 60, 60), width=2)
MAX_LENGTH_S = 600.0
MIN_HALF_RANGE = 1.0  # the λ axis never collapses below ±1
CAMERA_CURVES = (("yaw °", (255, 140, 90)), ("pitch °", (120, 200, 255)), ("radius", (200, 200, 120)),
                 ("fov °", (190, 150, 230)))  # after λ in `Animation.sample_values`
CAMERA_ALPHA = 150


def curve_colour(index: int, count: int) -> tuple[int, int, int]:
    return pg.intColor(index, hues=max(count, 1)).getRgb()[:3]


class TimelinePanel(QWidget):
    def __init__(self, timeline: Timeline, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.timeline = timeline
        self._build_controls()
        self._build_plot()
        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.addLayout(self.controls)
        layout.addWidget(self.plot, 1)
        self.key_lines: list[pg.InfiniteLine] = []
        self.curves: list[pg.PlotDataItem] = []
        self.camera_curves: list[pg.PlotCurveItem] = []  # drawn only while "Camera" is on
        # What is drawn, so nothing is redrawn unchanged: with PySide6 6.12 and pyqtgraph 0.14 every
        # graphics update drops a reference to True and None, and enough of them abort the interpreter.
        self._drawn: tuple | None = None  # (animation, names, camera shown)
        self._x_range: float | None = None
        # Bound methods, not lambdas: Qt drops them with this panel, so the state (which outlives the
        # window) never calls into a deleted panel, and the interpreter's exit does not crash.
        timeline.state.animation_changed.connect(self._on_animation)
        timeline.state.names_changed.connect(self._on_names)
        timeline.time_changed.connect(self._on_time)
        timeline.selection_changed.connect(self._on_selection)
        timeline.playing_changed.connect(self._on_playing)
        self.refresh()

    # -- composition -------------------------------------------------------------------------------
    def _build_controls(self) -> None:
        t = self.timeline
        self.play_button = QPushButton("Play")
        self.play_button.setCheckable(True)
        self.play_button.setToolTip("Play from the playhead at the timeline's fps (preview quality) · Space")
        self.play_button.clicked.connect(lambda: t.toggle_play())
        self.loop_box = QCheckBox("Loop")
        self.loop_box.setChecked(t.loop)
        self.loop_box.toggled.connect(lambda on: setattr(t, "loop", on))
        self.time_label = QLabel()
        self.time_label.setMinimumWidth(110)
        self.add_button = self._button("Add key", "A key at the playhead with the current λ and camera", t.add_key)
        self.delete_button = self._button("Delete", "Delete the selected key", t.delete_key)
        self.copy_button = self._button("Copy", "Copy the selected key", t.copy_key)
        self.paste_button = self._button("Paste", "Paste the copied key at the playhead", t.paste_key)
        self.easing = QComboBox()
        for name in EASINGS:
            self.easing.addItem(EASING_LABELS[name], name)
        self.easing.setToolTip("How the segment after the selected key moves to the next key")
        self.easing.activated.connect(lambda i: t.set_easing(self.easing.itemData(i)))
        self.camera_box = QCheckBox("Camera")
        self.camera_box.setToolTip("Also draw the keys' camera: yaw, pitch and field of view (degrees) and the "
                                   "radius, dashed")
        self.camera_box.toggled.connect(lambda _on: self.refresh())
        self.fps_box = self._spin(1, 120, 0, " fps", "Frames per second of play and export")
        self.length_box = self._spin(0.1, MAX_LENGTH_S, 2, " s", "Length of the animation")
        self.controls = QHBoxLayout()
        for widget in (self.play_button, self.loop_box, self.time_label, self.add_button, self.delete_button,
                       self.copy_button, self.paste_button, QLabel("Easing"), self.easing, self.camera_box,
                       self.fps_box, self.length_box):
            self.controls.addWidget(widget)
        self.controls.addStretch(1)

    def _button(self, text: str, tip: str, slot) -> QPushButton:
        button = QPushButton(text)
        button.setToolTip(tip)
        button.clicked.connect(lambda: slot())
        return button

    def _spin(self, low: float, high: float, decimals: int, suffix: str, tip: str) -> QDoubleSpinBox:
        box = QDoubleSpinBox()
        box.setRange(low, high)
        box.setDecimals(decimals)
        box.setSuffix(suffix)
        box.setToolTip(tip)
        box.setKeyboardTracking(False)  # one edit per typed value, not per digit
        box.valueChanged.connect(lambda _v: self.timeline.set_timing(self.fps_box.value(), self.length_box.value()))
        return box

    def _build_plot(self) -> None:
        self.plot = pg.PlotWidget()
        self.plot.setMenuEnabled(False)
        self.plot.setMouseEnabled(x=False, y=False)
        self.plot.disableAutoRange()  # ranges set once per redraw: far fewer graphics updates
        self.plot.hideButtons()
        self.plot.showGrid(x=True, y=True, alpha=0.2)
        self.plot.setLabel("bottom", "time (s)")
        self.plot.setLabel("left", "λ")
        self.plot.addLegend(offset=(4, 4), labelTextSize="7pt", colCount=5)
        self.plot.setMinimumHeight(140)
        self.playhead = pg.InfiniteLine(0.0, movable=True, pen=PLAYHEAD_PEN)
        self.playhead.setZValue(10)
        self.playhead.sigDragged.connect(lambda line: self.timeline.scrub(line.value()))
        self.plot.addItem(self.playhead)
        self.plot.scene().sigMouseClicked.connect(self._on_plot_click)

    def refresh_colours(self) -> None:
        follow_theme(self.plot)

    # -- drawing what the model says --------------------------------------------------------------
    def refresh(self, rebuild: bool = False) -> None:
        """Curves, key lines and controls from the animation (after any edit, undo or project load)."""
        t = self.timeline
        if rebuild:  # other names: new legend entries
            for curve in self.curves:
                self.plot.removeItem(curve)
            self.curves, self._drawn = [], None
        animation = t.animation
        for box, value in ((self.fps_box, t.fps), (self.length_box, t.duration)):
            box.blockSignals(True)
            box.setValue(value)
            box.blockSignals(False)
        drawn = (animation, t.state.names, self.camera_box.isChecked())
        if self._drawn != drawn:
            self._drawn = drawn
            self._draw_curves(animation)
            for line in self.key_lines:
                self.plot.removeItem(line)
            self.key_lines = [self._key_line(index, key.time) for index, key in
                              enumerate(animation.keys if animation else ())]
        if self._x_range != t.duration:
            self._x_range = t.duration
            self.plot.setXRange(0.0, t.duration, padding=0.02)
        self._on_selection()
        self._on_time(t.time)

    def _draw_curves(self, animation) -> None:
        names = self.timeline.state.names
        if animation is None and not self.curves:
            return  # made with the first keys: an editor that never animates draws nothing here
        if len(self.curves) != len(names):
            for curve in self.curves:
                self.plot.removeItem(curve)
            self.curves = [pg.PlotCurveItem(pen=pg.mkPen(curve_colour(i, len(names)), width=2), name=name)
                           for i, name in enumerate(names)]
            for curve in self.curves:
                self.plot.addItem(curve)
        if animation is None:
            for curve in self.curves:
                if curve.xData is not None and len(curve.xData):
                    curve.setData([], [])
            self._camera_curves(False)
            return
        times = np.linspace(0.0, animation.duration, CURVE_SAMPLES)
        values = np.array([animation.sample_values(x) for x in times])
        n = animation.n_basis
        for index, curve in enumerate(self.curves):
            curve.setData(times, values[:, index])
        camera = self._camera_curves(self.camera_box.isChecked())
        for index, curve in enumerate(camera):
            curve.setData(times, values[:, n + index])
        shown = values[:, :n + len(camera)]
        half = max(MIN_HALF_RANGE, float(np.abs(shown).max(initial=0.0)) * 1.1)
        self.plot.setYRange(-half, half, padding=0)

    def _camera_curves(self, show: bool) -> list[pg.PlotCurveItem]:
        """The camera's curves, added to the plot (and its legend) when shown, removed when not."""
        if show and not self.camera_curves:
            for name, colour in CAMERA_CURVES:
                pen = pg.mkPen((*colour, CAMERA_ALPHA), width=1, style=Qt.PenStyle.DashLine)
                curve = pg.PlotCurveItem(pen=pen, name=name)
                curve.setZValue(-1)  # under the λ curves
                self.plot.addItem(curve)
                self.camera_curves.append(curve)
        elif not show and self.camera_curves:
            for curve in self.camera_curves:
                self.plot.removeItem(curve)
            self.camera_curves = []
        return self.camera_curves

    def _key_line(self, index: int, time: float) -> pg.InfiniteLine:
        line = pg.InfiniteLine(time, movable=True, pen=KEY_PEN, hoverPen=SELECTED_PEN)
        line.setZValue(5)
        line.sigClicked.connect(lambda _line, _ev, i=index: self._on_key_clicked(i))
        # Deferred: the move rebuilds the lines, and this one is still inside its own mouse event.
        line.sigPositionChangeFinished.connect(
            lambda l, i=index: QTimer.singleShot(0, lambda: self.timeline.move_key(i, l.value())))
        self.plot.addItem(line)
        return line

    def _on_key_clicked(self, index: int) -> None:
        self.timeline.select(index)
        self.timeline.scrub(self.timeline.animation.keys[index].time)

    def _on_plot_click(self, event) -> None:
        if event.button() != Qt.MouseButton.LeftButton or event.isAccepted():
            return
        point = self.plot.getPlotItem().vb.mapSceneToView(event.scenePos())
        self.timeline.scrub(point.x())

    def _on_animation(self, _animation) -> None:
        self.refresh()

    def _on_names(self, _names) -> None:
        self.refresh(rebuild=True)

    def _on_time(self, time: float) -> None:
        self.playhead.blockSignals(True)
        self.playhead.setValue(time)
        self.playhead.blockSignals(False)
        frame = round(time * self.timeline.fps)
        self.time_label.setText(f"{time:6.2f} s · frame {frame}")

    def _on_selection(self, _index=None) -> None:
        t = self.timeline
        selected = t.selected
        for index, line in enumerate(self.key_lines):
            line.setPen(SELECTED_PEN if index == selected else KEY_PEN)
        has_key = selected is not None and t.animation is not None
        for widget in (self.delete_button, self.copy_button, self.easing):
            widget.setEnabled(has_key)
        if has_key:
            self.easing.setCurrentIndex(EASINGS.index(t.animation.keys[selected].easing))

    def _on_playing(self, playing: bool) -> None:
        self.play_button.setChecked(playing)
        self.play_button.setText("Stop" if playing else "Play")
