"""PySide6 6.12.0 drops a reference to True per Signal.emit (app/refcounts.py): the editor survives it."""
from __future__ import annotations


from PySide6.QtCore import QObject, Signal

import app  # noqa: F401 - pins True, False and None on import


class _Emitter(QObject):
    changed = Signal(float)


def test_more_emits_than_true_has_references_do_not_abort():
    emitter = _Emitter()
    received: list[float] = []
    emitter.changed.connect(received.append)
    emits = 100_000  # True has some thousands of references in a test session; unpinned, a few hundred left
    for value in range(emits):  # without the pin, CPython aborts in here ("bool_dealloc")
        emitter.changed.emit(float(value))
    assert len(received) == emits and bool(1) is True
