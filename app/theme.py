"""Dark (qdarkstyle, the default) and light themes, plus the matching pyqtgraph colours."""
from __future__ import annotations

import pyqtgraph as pg
from PySide6.QtWidgets import QApplication

THEMES = ("dark", "light")


def apply_theme(app: QApplication, name: str = "dark") -> str:
    """Style the whole application; returns the theme actually applied."""
    if name not in THEMES:
        name = "dark"
    try:
        import qdarkstyle

        palette = qdarkstyle.DarkPalette if name == "dark" else qdarkstyle.LightPalette
        app.setStyleSheet(qdarkstyle.load_stylesheet(qt_api="pyside6", palette=palette))
    except ImportError:  # qdarkstyle is a dependency; without it Qt's own style still works
        app.setStyleSheet("")
    pg.setConfigOptions(background="#19232D" if name == "dark" else "#FAFAFA",
                        foreground="#E0E1E3" if name == "dark" else "#19232D", antialias=True)
    return name
