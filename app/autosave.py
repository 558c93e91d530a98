"""Autosave of the open project to a recovery file, and finding the ones a crashed editor left.

Each running editor writes its own `recovery-<pid>-<time>.e3d.json` beside the settings while it
has unsaved changes, and holds a lock on it for as long as it runs. The OS drops that lock when
the process dies however it dies, so at start a recovery file whose lock can be taken belongs to
an editor that did not exit cleanly; one whose lock is held belongs to an editor still running.
A clean exit (or a save) removes the file.
"""
from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path

from PySide6.QtCore import QObject, QTimer, Signal

from export3d_core import Export3DError

from app import file_lock
from app.project import PROJECT_SUFFIX, Project, save_project

DEFAULT_INTERVAL_S = 60.0
INTERVAL_KEY = "autosave_interval_s"  # settings key; 0 turns autosave off
RECOVERY_PREFIX = "recovery-"


class Autosaver(QObject):
    saved = Signal(object)  # Path of the recovery file
    failed = Signal(str)  # one line

    def __init__(self, folder: str | Path, snapshot: Callable[[], Project | None], interval_s: float,
                 parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.snapshot = snapshot  # the project to keep, or None when nothing is unsaved
        self.path = Path(folder) / f"{RECOVERY_PREFIX}{os.getpid()}-{time.time_ns()}{PROJECT_SUFFIX}"
        self.problem: str | None = None  # one line when autosave cannot work here
        self.timer = QTimer(self)
        self.timer.timeout.connect(self.save_now)
        try:
            self._lock = file_lock.try_acquire(self.path)  # a fresh name: nobody else holds it
        except Export3DError as exc:
            self._lock, self.problem = None, f"autosave is off: {exc}"
            return
        self.set_interval(interval_s)

    def set_interval(self, seconds: float) -> None:
        self.timer.stop()
        if seconds > 0:
            self.timer.start(max(1, round(seconds * 1000)))

    def save_now(self) -> bool:
        """Write the recovery file when something is unsaved; remove it when nothing is."""
        project = self.snapshot()
        if project is None:
            self.discard()
            return False
        try:
            save_project(self.path, project)
        except Export3DError as exc:
            self.failed.emit(f"autosave failed: {exc}")
            return False
        self.saved.emit(self.path)
        return True

    def discard(self) -> None:
        self.path.unlink(missing_ok=True)

    def close(self) -> None:
        """A clean exit: no recovery file, no lock file."""
        self.timer.stop()
        self.discard()
        if self._lock is not None:
            file_lock.release(self._lock)
            self._lock = None
            file_lock.lock_path(self.path).unlink(missing_ok=True)


def orphaned_recoveries(folder: str | Path) -> list[Path]:
    """Recovery files of editors that did not exit cleanly (their lock is free), newest first."""
    found = []
    for path in Path(folder).glob(f"{RECOVERY_PREFIX}*{PROJECT_SUFFIX}"):
        try:
            held = file_lock.try_acquire(path)
        except Export3DError:
            continue  # a folder this editor cannot lock in cannot be recovered into either
        if held is None:
            continue  # an editor that is running now
        file_lock.release(held)
        found.append(path)
    return sorted(found, key=lambda p: p.stat().st_mtime, reverse=True)


def remove_recovery(path: Path) -> None:
    path.unlink(missing_ok=True)
    file_lock.lock_path(path).unlink(missing_ok=True)
