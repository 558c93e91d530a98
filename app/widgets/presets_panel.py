"""The presets panel: saved expressions as thumbnails; apply, save the current one, delete.

It lists the preset library, then the open project's own presets (marked "· project"): the two
are separate, and a project's presets enter the library only through an explicit import.
Thumbnails show each preset on the current portrait; the window renders them in the background
(`thumbnails_requested`) and hands them back with `set_thumbnail`.
"""
from __future__ import annotations

import numpy as np
from PySide6.QtCore import QSize, Qt, Signal
from PySide6.QtGui import QIcon, QPixmap
from PySide6.QtWidgets import (QHBoxLayout, QInputDialog, QListView, QListWidget, QListWidgetItem, QPushButton,
                               QVBoxLayout, QWidget)

from app.presets import Preset
from app.widgets.viewport import to_qimage

THUMB_SIZE = 64


class PresetsPanel(QWidget):
    apply_requested = Signal(object)  # Preset
    save_requested = Signal(str)  # name for the current expression
    delete_requested = Signal(object, bool)  # Preset, whether it is the project's (else the library's)
    thumbnails_requested = Signal(object)  # list[(index, Preset)]

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.list = QListWidget()
        self.list.setViewMode(QListView.ViewMode.IconMode)
        self.list.setIconSize(QSize(THUMB_SIZE, THUMB_SIZE))
        self.list.setResizeMode(QListView.ResizeMode.Adjust)
        self.list.setToolTip("Double-click a preset to apply it to this portrait")
        self.list.itemDoubleClicked.connect(lambda item: self._apply(self.list.row(item)))
        save = QPushButton("Save current…")
        save.setToolTip("Save the current λ (and camera) as a preset")
        save.clicked.connect(self._ask_name)
        apply = QPushButton("Apply")
        apply.clicked.connect(lambda: self._apply(self.list.currentRow()))
        delete = QPushButton("Delete")
        delete.clicked.connect(self._delete)
        buttons = QHBoxLayout()
        for button in (save, apply, delete):
            buttons.addWidget(button)
        layout = QVBoxLayout(self)
        layout.addWidget(self.list)
        layout.addLayout(buttons)
        self.presets: list[Preset] = []  # what the list shows, library first
        self.from_project: list[bool] = []

    def set_presets(self, library: list[Preset], project: list[Preset] = ()) -> None:
        self.presets = list(library) + list(project)
        self.from_project = [False] * len(library) + [True] * len(project)
        self.list.clear()
        for preset, own in zip(self.presets, self.from_project):
            item = QListWidgetItem(f"{preset.name} · project" if own else preset.name)
            where = "this project's preset (File ▸ Import project presets adds it to the library)" if own \
                else "library preset"
            item.setToolTip(f"{where}: " + ", ".join(f"{v:g}" for v in preset.lam))
            item.setTextAlignment(Qt.AlignmentFlag.AlignHCenter)
            self.list.addItem(item)
        self.thumbnails_requested.emit(list(enumerate(self.presets)))

    def set_thumbnail(self, index: int, image: np.ndarray) -> None:
        item = self.list.item(index)
        if item is not None:
            item.setIcon(QIcon(QPixmap.fromImage(to_qimage(image))))

    def _ask_name(self) -> None:
        name, ok = QInputDialog.getText(self, "Save preset", "Name:", text=f"preset {len(self.presets) + 1}")
        if ok and name.strip():
            self.save_requested.emit(name.strip())

    def _apply(self, row: int) -> None:
        if 0 <= row < len(self.presets):
            self.apply_requested.emit(self.presets[row])

    def _delete(self) -> None:
        row = self.list.currentRow()
        if 0 <= row < len(self.presets):
            self.delete_requested.emit(self.presets[row], self.from_project[row])
