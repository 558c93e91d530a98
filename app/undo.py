"""Undo/redo: every edit is a snapshot pair (λ, names, camera) on a QUndoStack.

`EditTracker.begin()` remembers the state before an edit; `end(text)` pushes one command if the
state changed. A whole slider or orbit drag therefore becomes one step; a typed value is a
begin/apply/end of its own.
"""
from __future__ import annotations

from PySide6.QtGui import QUndoCommand, QUndoStack

from app.state import EditorState, Snapshot


class SnapshotCommand(QUndoCommand):
    def __init__(self, state: EditorState, before: Snapshot, after: Snapshot, text: str) -> None:
        super().__init__(text)
        self._state, self._before, self._after = state, before, after
        self._applied = True  # the edit already happened when it is pushed

    def redo(self) -> None:
        if self._applied:
            self._applied = False
            return
        self._state.restore(self._after)

    def undo(self) -> None:
        self._state.restore(self._before)


class EditTracker:
    def __init__(self, state: EditorState, stack: QUndoStack) -> None:
        self.state, self.stack = state, stack
        self._before: Snapshot | None = None

    @property
    def active(self) -> bool:
        return self._before is not None

    def begin(self) -> None:
        if self._before is None:
            self._before = self.state.snapshot()

    def end(self, text: str) -> None:
        before, self._before = self._before, None
        after = self.state.snapshot()
        if before is not None and before != after:
            self.stack.push(SnapshotCommand(self.state, before, after, text))

    def edit(self, text: str, apply) -> None:
        """One complete edit: `apply()` changes the state; pushes one step if anything changed."""
        self.begin()
        apply()
        self.end(text)
