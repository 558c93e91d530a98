"""Keep True, False and None alive under PySide6 6.12.0 on Python 3.11.

That PySide6 drops one reference too many: to True on every `Signal.emit` (its return value) and
to None on every void call of a QGraphicsItem (`update`, `prepareGeometryChange`, `setFlag`, ...);
measured with `sys.getrefcount` around 100 calls each. An editor session emits enough signals and
redraws enough pyqtgraph items that the count reaches zero and CPython aborts ("Fatal Python
error: bool_dealloc" / "none_dealloc", usually while the interpreter exits). Python 3.12 made
these objects immortal (PEP 683) and ignores their counts; on older versions this adds a large
fixed count once, which is what immortality amounts to. Nothing changes on 3.12 or later.
"""
from __future__ import annotations

import ctypes
import sys

PINNED_REFERENCES = 1 << 40  # far beyond any session's lost references, far below overflow


def pin_singletons() -> None:
    if sys.version_info >= (3, 12) or sys.implementation.name != "cpython" or hasattr(sys, "gettotalrefcount"):
        return  # immortal already, not CPython, or a debug build (whose object header differs)
    for obj in (True, False, None):
        ctypes.c_ssize_t.from_address(id(obj)).value += PINNED_REFERENCES
