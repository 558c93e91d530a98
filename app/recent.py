"""Recent portraits: a list in the settings (newest first) shown as a sub-menu."""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from PySide6.QtCore import QSettings
from PySide6.QtWidgets import QMenu

RECENT_KEY = "recent_portraits"
MAX_RECENT = 8


class RecentFiles:
    def __init__(self, settings: QSettings, menu: QMenu, open_path: Callable[[Path], object]) -> None:
        self.settings, self.menu, self.open_path = settings, menu, open_path
        self.refresh()

    def paths(self) -> list[str]:
        value = self.settings.value(RECENT_KEY, [])
        return [value] if isinstance(value, str) else list(value or [])  # QSettings reads one item as a str

    def add(self, path: Path) -> None:
        text = str(Path(path).resolve())
        items = [text] + [p for p in self.paths() if p != text]
        self.settings.setValue(RECENT_KEY, items[:MAX_RECENT])
        self.refresh()

    def refresh(self) -> None:
        self.menu.clear()
        items = self.paths()
        for text in items:
            action = self.menu.addAction(Path(text).name)
            action.setToolTip(text)
            action.triggered.connect(lambda _=False, p=text: self.open_path(Path(p)))
        self.menu.setEnabled(bool(items))
