"""Export3D Studio, the desktop editor (PySide6) over the Qt-free core `export3d_core`."""

APP_NAME = "Export3D Studio"  # window titles and message boxes

from app.refcounts import pin_singletons  # noqa: E402 - before any Qt object exists (app/refcounts.py says why)

pin_singletons()
