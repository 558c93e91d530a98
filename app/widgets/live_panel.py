"""The Live dialog: pick a camera index or a video file, start/stop driving, record/stop a take,
and the gain on λ and the smoothing strength (both take effect on the running session).

Non-modal: the viewport shows the live pose while it is open. Everything a source or a take can get
wrong is one line in the dialog; closing it stops the capture.
"""
from __future__ import annotations

from PySide6.QtWidgets import (QButtonGroup, QDialog, QDoubleSpinBox, QFileDialog, QGridLayout, QHBoxLayout,
                               QLabel, QLineEdit, QPushButton, QRadioButton, QSpinBox, QWidget)

from export3d_core import Export3DError

from app.live_session import LiveSession

VIDEO_FILTER = "Videos (*.mp4 *.mov *.avi *.mkv *.webm);;All files (*)"
MAX_GAIN = 10.0
MAX_SMOOTHING = 10.0
GAIN_TIP = ("Scales the performance's expression around the neutral one: 0 holds it neutral, "
            "above 1 exaggerates (as `export3d drive --gain`)")
SMOOTHING_TIP = ("Strength of the One Euro filter on λ and the head pose: 0 off, 1 the default, "
                 "2 halves its cutoff (steadier, more lag; as `export3d drive --smoothing`)")


def _spin(value: float, maximum: float, step: float, tip: str) -> QDoubleSpinBox:
    spin = QDoubleSpinBox()
    spin.setRange(0.0, maximum)
    spin.setSingleStep(step)
    spin.setDecimals(2)
    spin.setValue(value)
    spin.setToolTip(tip)
    return spin


class LivePanel(QDialog):
    def __init__(self, session: LiveSession, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Live from webcam")
        self.setModal(False)
        self.session = session
        self.camera_choice = QRadioButton("Camera")
        self.file_choice = QRadioButton("Video file")
        self.camera_choice.setChecked(True)
        group = QButtonGroup(self)
        group.addButton(self.camera_choice)
        group.addButton(self.file_choice)
        self.camera_index = QSpinBox()
        self.camera_index.setRange(0, 99)
        self.camera_index.setToolTip("OpenCV capture device index")
        self.video_path = QLineEdit()
        self.video_path.setPlaceholderText("a video file standing in for the camera")
        self.video_path.textEdited.connect(lambda _text: self.file_choice.setChecked(True))
        browse = QPushButton("Browse…")
        browse.clicked.connect(self._browse)
        self.start_button = QPushButton("Start")
        self.start_button.clicked.connect(self.toggle_live)
        self.record_button = QPushButton("Record")
        self.record_button.setToolTip("Record the take; Stop bakes it into keys that replace the timeline's")
        self.record_button.clicked.connect(self.toggle_record)
        self.gain = _spin(session.settings.gain, MAX_GAIN, 0.1, GAIN_TIP)
        self.gain.valueChanged.connect(session.set_gain)
        self.smoothing = _spin(session.settings.smoothing, MAX_SMOOTHING, 0.25, SMOOTHING_TIP)
        self.smoothing.valueChanged.connect(session.set_smoothing)
        self.status = QLabel("")
        self.status.setWordWrap(True)
        layout = QGridLayout(self)
        layout.addWidget(self.camera_choice, 0, 0)
        layout.addWidget(self.camera_index, 0, 1)
        layout.addWidget(self.file_choice, 1, 0)
        layout.addWidget(self.video_path, 1, 1)
        layout.addWidget(browse, 1, 2)
        layout.addWidget(QLabel("Gain"), 2, 0)
        layout.addWidget(self.gain, 2, 1)
        layout.addWidget(QLabel("Smoothing"), 3, 0)
        layout.addWidget(self.smoothing, 3, 1)
        buttons = QHBoxLayout()
        buttons.addWidget(self.start_button)
        buttons.addWidget(self.record_button)
        layout.addLayout(buttons, 4, 0, 1, 3)
        layout.addWidget(self.status, 5, 0, 1, 3)
        session.ended.connect(self._on_ended)
        # λ and the reader belong to one model and portrait: a new one ends the live run
        session.controller.model_changed.connect(lambda _loaded: self.stop())
        session.controller.portrait_loaded.connect(lambda _path: self.stop())
        self._update_buttons()

    def source(self) -> int | str:
        return self.video_path.text().strip() if self.file_choice.isChecked() else self.camera_index.value()

    def _browse(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Video for live", "", VIDEO_FILTER)
        if path:
            self.video_path.setText(path)
            self.file_choice.setChecked(True)

    def toggle_live(self) -> None:
        if self.session.running:
            self.stop()
            return
        try:
            self.session.start(self.source())
        except Export3DError as exc:
            self.status.setText(str(exc))
        else:
            self.status.setText("live")
        self._update_buttons()

    def toggle_record(self) -> None:
        if not self.session.recording:
            self.session.start_recording()
            self.status.setText("recording")
        else:
            self._bake()
        self._update_buttons()

    def _bake(self) -> None:
        try:
            keys = self.session.stop_recording()
        except Export3DError as exc:
            self.status.setText(str(exc))
        else:
            self.status.setText(f"the take is on the timeline: {keys} keys (undo removes it)")

    def stop(self) -> None:
        """Stop driving; a take being recorded is baked first, so Stop never loses a performance."""
        if self.session.recording:
            self._bake()
        self.session.stop()
        self._update_buttons()

    def _on_ended(self, why: str) -> None:
        if self.session.running:
            self.stop()
            self.status.setText(f"{why}; {self.status.text()}" if self.status.text() else why)

    def _update_buttons(self) -> None:
        self.start_button.setText("Stop" if self.session.running else "Start")
        self.record_button.setEnabled(self.session.running)
        self.record_button.setText("Stop recording" if self.session.recording else "Record")

    def closeEvent(self, event) -> None:  # noqa: N802
        self.stop()
        super().closeEvent(event)
