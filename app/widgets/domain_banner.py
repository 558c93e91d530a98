"""The banner above the viewport when an unfitted photo is unlike the model's training faces.

Whether it shows is decided by the controller's measured signal (`out_of_domain`: the unfitted
model's reconstruction at the photo's camera), never by the file's name; it hides after a fit.
"""
from __future__ import annotations

from PySide6.QtCore import Signal
from PySide6.QtWidgets import QFrame, QHBoxLayout, QLabel, QPushButton, QWidget

BANNER_TEXT = "This photo is unlike the model's training faces; fit the portrait for a faithful result."


class DomainBanner(QFrame):
    fit_requested = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("domainBanner")
        self.setFrameShape(QFrame.Shape.StyledPanel)
        self.setStyleSheet("#domainBanner { background: #6b5213; border-radius: 4px; }"
                           "#domainBanner QLabel { background: transparent; color: white; }")
        self.label = QLabel(BANNER_TEXT)
        self.label.setWordWrap(True)
        self.fit_button = QPushButton("Fit to this portrait")
        self.fit_button.clicked.connect(self.fit_requested)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(10, 6, 10, 6)
        layout.addWidget(self.label, 1)
        layout.addWidget(self.fit_button)
        self.hide()

    def show_measure(self, outside: bool, psnr_db: float) -> None:
        """Show (or hide) the banner for a measured reconstruction; the number goes in the tooltip."""
        self.setToolTip(f"The unfitted model reconstructs this photo at {psnr_db:.1f} dB at its own camera")
        self.setVisible(outside)
