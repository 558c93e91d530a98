"""Unsaved changes: the Save / Discard / Cancel question, autosave, recovery after a crash, a clean quit."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from PIL import Image
from PySide6.QtCore import QSettings
from PySide6.QtWidgets import QFileDialog, QMessageBox

from app.autosave import INTERVAL_KEY, Autosaver, orphaned_recoveries
from app.main_window import MainWindow
from app.presets import Preset
from app.project import load_project

N = 10
ROOT = Path(__file__).resolve().parents[2]
Button = QMessageBox.StandardButton


@pytest.fixture
def answer(monkeypatch):
    """`answer(button)`: every question box is answered by clicking `button`; returns the asked texts."""
    def install(button):
        asked: list[str] = []

        def exec_(box):
            asked.append(box.text())
            box.button(button).click()
            return 0

        monkeypatch.setattr(QMessageBox, "exec", exec_)
        return asked

    return install


def _edited(window) -> tuple[float, ...]:
    window.controller.apply_lam([3.0] + [0.0] * (N - 1))
    assert window.has_unsaved_changes()
    return window.state.lam


def _photo(tmp_path, make_portrait) -> Path:
    photo = tmp_path / "other.png"
    Image.fromarray(make_portrait(160, seed=4)).save(photo)
    return photo


def test_quit_with_unsaved_changes_asks_and_cancel_keeps_the_window(qtbot, window, answer):
    lam = _edited(window)
    asked = answer(Button.Cancel)
    assert not window.close()
    assert window.isVisible() and window.state.lam == lam
    assert asked == ["Save the changes to this portrait before quitting?"]


def test_quit_with_save_writes_the_project(qtbot, window, answer, tmp_path):
    lam = _edited(window)
    window.project_path = tmp_path / "work.e3d.json"
    answer(Button.Save)
    assert window.close()
    assert load_project(tmp_path / "work.e3d.json").lam == lam


def test_quit_with_discard_closes_and_leaves_no_recovery_file(qtbot, window, answer, tmp_path):
    _edited(window)
    assert window.autosaver.save_now() and window.autosaver.path.exists()
    answer(Button.Discard)
    assert window.close()
    assert not list(tmp_path.glob("recovery-*"))


def test_opening_another_project_or_portrait_asks_first(qtbot, window, answer, tmp_path, make_portrait,
                                                        monkeypatch):
    project = tmp_path / "saved.e3d.json"
    assert window.save_project(project)
    lam = _edited(window)
    photo = _photo(tmp_path, make_portrait)
    image, steps = window.controller.portrait_image, window.controller.undo_stack.count()
    for chosen, opener in ((project, window.open_project_dialog), (photo, window.open_portrait_dialog)):
        monkeypatch.setattr(QFileDialog, "getOpenFileName", lambda *a, p=chosen, **k: (str(p), ""))
        asked = answer(Button.Cancel)
        opener()
        assert asked == [f"Save the changes to saved.e3d.json before opening {chosen.name}?"]
        assert window.state.lam == lam and window.controller.portrait_image is image
        assert window.controller.undo_stack.count() == steps  # the undo history is still there
    monkeypatch.setattr(QFileDialog, "getOpenFileName", lambda *a, **k: (str(project), ""))
    answer(Button.Discard)
    window.open_project_dialog()
    assert window.state.lam == (0.0,) * N and not window.has_unsaved_changes()


def test_nothing_unsaved_opens_without_a_question(qtbot, window, answer, tmp_path, make_portrait):
    asked = answer(Button.Cancel)
    window.open_portrait_path(_photo(tmp_path, make_portrait))
    assert asked == [] and "no face" in window.errors[-1]  # it went straight to opening the photo


def test_autosave_writes_the_recovery_file_at_the_set_interval(qtbot, tmp_path, checkpoint, make_portrait):
    settings = QSettings(str(tmp_path / "settings.ini"), QSettings.Format.IniFormat)
    settings.setValue(INTERVAL_KEY, 0.2)
    win = MainWindow(settings=settings, explore_on_load=False)
    qtbot.addWidget(win)
    try:
        assert win.controller.load_model(checkpoint)
        win.controller.set_portrait_image(make_portrait(), None)
        assert win.autosaver.timer.interval() == 200
        lam = _edited(win)
        qtbot.waitUntil(win.autosaver.path.exists, timeout=5000)
        assert win.autosaver.path.parent == tmp_path
        assert load_project(win.autosaver.path).lam == lam
        win.controller.undo_stack.setClean()  # saved elsewhere: the recovery file goes away
        qtbot.waitUntil(lambda: not win.autosaver.path.exists(), timeout=5000)
    finally:
        win.controller.shutdown()
        win.autosaver.close()


CRASHING_EDITOR = """
import os, signal, sys
from pathlib import Path
from PySide6.QtCore import QCoreApplication
from app.autosave import Autosaver
from app.project import Project
app = QCoreApplication([])
folder, checkpoint = Path(sys.argv[1]), Path(sys.argv[2])
project = Project(None, checkpoint, (4.5,) + (0.0,) * 9, tuple(f"v{i}" for i in range(10)))
saver = Autosaver(folder, lambda: project, 0)
assert saver.save_now()
os.kill(os.getpid(), signal.SIGKILL)
"""


def test_after_a_crash_the_editor_offers_the_autosave_and_recovers_it(qtbot, window, answer, tmp_path, checkpoint):
    live = Autosaver(tmp_path, lambda: window.controller.project(), 0)  # another editor, running now
    try:
        _edited(window)
        assert live.save_now()
        result = subprocess.run([sys.executable, "-c", textwrap.dedent(CRASHING_EDITOR), str(tmp_path),
                                 str(checkpoint)], cwd=ROOT, capture_output=True, text=True, timeout=120,
                                env={**os.environ, "PYTHONPATH": str(ROOT)})
        assert result.returncode == -signal.SIGKILL, result.stderr
        orphans = orphaned_recoveries(tmp_path)
        assert len(orphans) == 1 and orphans[0] != live.path  # the running editor's file is not offered
        window.controller.undo_stack.setClean()
        asked = answer(Button.Yes)
        assert window.offer_recovery()
        assert "did not close cleanly" in asked[0]
        assert window.state.lam == (4.5,) + (0.0,) * 9
        assert window.has_unsaved_changes() and window.project_path is None
        assert not orphans[0].exists() and orphaned_recoveries(tmp_path) == []
        assert window.autosaver.path.exists()  # the recovered work is autosaved by this editor now
        assert not window.offer_recovery()
    finally:
        live.close()
        answer(Button.Discard)  # the window closes at teardown


def test_declining_recovery_removes_the_file_and_an_unanswered_box_keeps_it(qtbot, window, answer, tmp_path,
                                                                            monkeypatch):
    crashed = tmp_path / "recovery-1-1.e3d.json"
    assert window.save_project(crashed)  # a recovery file nobody holds
    window.project_path = None
    monkeypatch.setattr(QMessageBox, "exec", lambda box: 0)  # the box closed without an answer
    assert not window.offer_recovery()
    assert crashed.exists()
    answer(Button.No)
    assert not window.offer_recovery()
    assert not crashed.exists()


QUIT_AFTER_AN_EDIT = """
import sys, tempfile
from PySide6.QtCore import QSettings, QTimer
from PySide6.QtWidgets import QMessageBox
from app.main_window import MainWindow, application
QMessageBox.exec = lambda box: box.button(QMessageBox.StandardButton.Discard).click()
app = application()
folder = tempfile.mkdtemp()
window = MainWindow(settings=QSettings(folder + "/s.ini", QSettings.Format.IniFormat), explore_on_load=False)
window.show()
def edit_and_quit():
    window.controller.apply_lam([1.0] + [0.0] * 9)
    window.close()
QTimer.singleShot(0, edit_and_quit)
sys.exit(app.exec())
"""


def test_quitting_after_an_edit_prints_nothing_on_stderr(tmp_path):
    result = subprocess.run([sys.executable, "-c", QUIT_AFTER_AN_EDIT], cwd=ROOT, capture_output=True, text=True,
                            timeout=120, env={**os.environ, "PYTHONPATH": str(ROOT), "QT_QPA_PLATFORM": "offscreen"})
    assert result.returncode == 0, result.stderr
    assert "already deleted" not in result.stderr and "Traceback" not in result.stderr, result.stderr


def test_changes_outside_the_undo_stack_are_unsaved_too(qtbot, window, tmp_path):
    project = tmp_path / "p.e3d.json"
    assert window.save_project(project) and not window.has_unsaved_changes()
    window.camera_panel.mode.setCurrentIndex(2)  # the render mode is saved in the project
    assert window.has_unsaved_changes() and window.windowTitle().startswith("Export3D Studio *")
    assert window.save_project(project) and not window.has_unsaved_changes()
    assert json.loads(project.read_text())["mode"] == "depth"
    window.controller.project_presets = [Preset("p", (1.0,) * N)]
    window.controller.delete_preset(window.controller.project_presets[0], from_project=True)
    assert window.has_unsaved_changes()
    assert window.open_project(project) and not window.has_unsaved_changes()
