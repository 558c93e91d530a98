"""Never lose an artist's work: the "unsaved changes" question and the offer to recover after a crash.

Both are modal questions asked at the moment a choice is needed (quit, open another project or
portrait, start after an unclean exit). An answer that is not given (the box closed) keeps the
work: it cancels the action, and leaves a recovery file for the next start.
"""
from __future__ import annotations

import time
from typing import TYPE_CHECKING

from PySide6.QtWidgets import QMessageBox

from app.autosave import orphaned_recoveries, remove_recovery

if TYPE_CHECKING:
    from app.main_window import MainWindow

Button = QMessageBox.StandardButton


def ask(window: MainWindow, text: str, buttons, default: Button, labels: dict | None = None) -> Button | None:
    """The button the artist clicked, or None when the box was closed without an answer."""
    from app.main_window import APP_NAME

    box = QMessageBox(QMessageBox.Icon.Question, APP_NAME, text, buttons, window)
    box.setDefaultButton(default)
    for button, label in (labels or {}).items():
        box.button(button).setText(label)
    box.exec()
    clicked = box.clickedButton()
    return None if clicked is None else box.standardButton(clicked)


def confirm_discard(window: MainWindow, doing: str) -> bool:
    """True when it is fine to go on: nothing unsaved, saved now, or the artist discards it."""
    from app import menus

    if not window.has_unsaved_changes():
        return True
    name = window.project_path.name if window.project_path else "this portrait"
    answer = ask(window, f"Save the changes to {name} before {doing}?",
                 Button.Save | Button.Discard | Button.Cancel, Button.Save)
    if answer == Button.Save:
        return menus.save_project(window, False)
    return answer == Button.Discard


def offer_recovery(window: MainWindow) -> bool:
    """After an unclean exit: offer the newest autosave; True when it was recovered."""
    orphans = orphaned_recoveries(window.settings_folder)
    if not orphans:
        return False
    newest = orphans[0]
    when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(newest.stat().st_mtime))
    answer = ask(window, f"Export3D Studio did not close cleanly. Recover the unsaved work autosaved at {when}?",
                 Button.Yes | Button.No, Button.Yes, {Button.Yes: "Recover", Button.No: "Discard"})
    if answer == Button.No:
        remove_recovery(newest)
    if answer != Button.Yes or not window.controller.open_project(newest):
        return False  # not answered, or it could not open (the error says why): the file stays
    window.project_path = None  # "Save" asks where: the recovery file is not the artist's project
    window.mark_recovered()
    remove_recovery(newest)
    return True
