"""Never lose an artist's work: the "unsaved changes" question and the offer to recover after a crash.

Both are modal questions asked at the moment a choice is needed (quit, open another project or
portrait, start after an unclean exit). An answer that is not given (the box closed) keeps the
work: it cancels the action, and leaves a recovery file for the next start.
"""
from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from PySide6.QtWidgets import QMessageBox, QWidget

from app import APP_NAME
from app.autosave import orphaned_recoveries, remove_recovery

Button = QMessageBox.StandardButton


def ask(parent: QWidget, text: str, buttons, default: Button, labels: dict | None = None) -> Button | None:
    """The button the artist clicked, or None when the box was closed without an answer."""
    box = QMessageBox(QMessageBox.Icon.Question, APP_NAME, text, buttons, parent)
    box.setDefaultButton(default)
    for button, label in (labels or {}).items():
        box.button(button).setText(label)
    box.exec()
    clicked = box.clickedButton()
    return None if clicked is None else box.standardButton(clicked)


def confirm_discard(parent: QWidget, unsaved: bool, name: str, doing: str, save: Callable[[], bool]) -> bool:
    """True when it is fine to go on: nothing unsaved, saved now (`save`), or the artist discards it."""
    if not unsaved:
        return True
    answer = ask(parent, f"Save the changes to {name} before {doing}?",
                 Button.Save | Button.Discard | Button.Cancel, Button.Save)
    if answer == Button.Save:
        return save()
    return answer == Button.Discard


def offer_recovery(parent: QWidget, folder: Path, recover: Callable[[Path], bool]) -> bool:
    """After an unclean exit: offer the newest autosave in `folder`; True when `recover` took it."""
    orphans = orphaned_recoveries(folder)
    if not orphans:
        return False
    newest = orphans[0]
    when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(newest.stat().st_mtime))
    answer = ask(parent, f"{APP_NAME} did not close cleanly. Recover the unsaved work autosaved at {when}?",
                 Button.Yes | Button.No, Button.Yes, {Button.Yes: "Recover", Button.No: "Discard"})
    if answer == Button.No:
        remove_recovery(newest)
    if answer != Button.Yes or not recover(newest):
        return False  # not answered, or it could not open (the error says why): the file stays
    remove_recovery(newest)
    return True
