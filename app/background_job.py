"""A job on its own thread that the artist can cancel: the result, a cancel, or a one-line failure
come back as Qt signals (never an exception in the UI thread). Exports and fits are such jobs."""
from __future__ import annotations

import threading

from PySide6.QtCore import QThread, Signal

from export3d_core import Export3DError


class CancellableJob(QThread):
    failed = Signal(str)
    cancelled = Signal()
    cancelled_error: type[BaseException] = Export3DError  # what the work raises when cancelled (subclasses narrow it)

    def __init__(self) -> None:
        super().__init__()
        self._cancel = threading.Event()

    def cancel(self) -> None:
        self._cancel.set()

    def _work(self) -> object:
        raise NotImplementedError

    def run(self) -> None:  # noqa: D401 - Qt override
        try:
            result = self._work()
        except self.cancelled_error:
            self.cancelled.emit()
        except Export3DError as exc:
            self.failed.emit(str(exc))
        except Exception as exc:  # shown in the window, never a crash
            self.failed.emit(f"{type(exc).__name__}: {exc}")
        else:
            self.succeeded.emit(result)  # each job declares its own `succeeded` signal
