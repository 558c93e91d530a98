"""The timeline dock over a real window and tiny model: keys, scrubbing, undo, project files, play, export."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from PySide6.QtCore import QSettings

from app.main_window import MainWindow
from app.state import ViewCamera
from export3d_core.project_file import load_project_file


def _pose(window, lam, yaw: float = 0.0) -> None:
    window.state.set_lam(lam)
    window.state.set_camera(ViewCamera(yaw_deg=yaw))


def _finish(qtbot, window, job) -> None:
    """Until the job has ended and its signals reached the window (the controller forgets it then)."""
    assert job is not None
    qtbot.waitUntil(lambda: job not in window.controller.jobs, timeout=60_000)


def _two_keys(window, easing: str = "linear") -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Key 0 s: λ = 0, yaw 0; key 1 s: λ = (2, -1, 0.5, …), yaw 20."""
    timeline = window.timeline
    n = window.state.n_basis
    lam_a = (0.0,) * n
    lam_b = tuple(2.0 if i == 0 else -1.0 if i == 1 else 0.5 for i in range(n))
    timeline.scrub(0.0)
    _pose(window, lam_a)
    timeline.add_key(easing)
    timeline.scrub(1.0)
    _pose(window, lam_b, yaw=20.0)
    timeline.add_key(easing)
    return lam_a, lam_b


def test_added_keys_and_scrubbing_set_lambda_to_the_curve(window, idle):
    timeline = window.timeline
    lam_a, lam_b = _two_keys(window, "linear")
    animation = window.state.animation
    assert animation.times == (0.0, 1.0) and [k.easing for k in animation.keys] == ["linear", "linear"]
    frames_before = window.controller.service.full_frames
    timeline.scrub(0.25)
    assert window.state.lam == pytest.approx([a + 0.25 * (b - a) for a, b in zip(lam_a, lam_b)])
    assert window.state.camera.yaw_deg == pytest.approx(5.0)
    timeline.set_easing("smooth-step", 0)  # the segment leaving key 0
    timeline.scrub(0.25)
    w = 0.25 * 0.25 * (3 - 2 * 0.25)
    assert window.state.lam[0] == pytest.approx(lam_a[0] + w * (lam_b[0] - lam_a[0]))
    assert window.state.lam == window.state.animation.sample(0.25)[0]
    idle(window)
    assert window.controller.service.full_frames > frames_before  # the scrubbed pose was rendered
    # the dock draws one curve per coefficient, through the keys
    x, y = window.timeline_panel.curves[0].getData()
    assert y[0] == pytest.approx(lam_a[0]) and y[-1] == pytest.approx(lam_b[0])
    assert len(window.timeline_panel.key_lines) == 2


def test_moving_and_deleting_keys_are_undoable(window):
    timeline, stack = window.timeline, window.controller.undo_stack
    _two_keys(window)
    original = window.state.animation
    timeline.move_key(1, 2.0)
    assert window.state.animation.times == (0.0, 2.0)
    assert window.timeline_panel.key_lines[1].value() == pytest.approx(2.0)
    stack.undo()
    assert window.state.animation == original
    stack.redo()
    assert window.state.animation.times == (0.0, 2.0)
    timeline.delete_key(0)
    assert window.state.animation.times == (2.0,)
    timeline.delete_key(0)
    assert window.state.animation is None
    stack.undo()
    stack.undo()
    assert window.state.animation.times == (0.0, 2.0)
    assert window.has_unsaved_changes()


def test_copy_paste_puts_the_key_at_the_playhead(window):
    timeline = window.timeline
    _lam_a, lam_b = _two_keys(window, "catmull-rom")
    assert timeline.copy_key(1)
    timeline.scrub(2.5)
    index = timeline.paste_key()
    keys = window.state.animation.keys
    assert index == 2 and keys[2].time == 2.5 and keys[2].lam == lam_b and keys[2].easing == "catmull-rom"
    assert window.state.animation.duration == pytest.approx(3.0)  # the default length holds it
    window.controller.undo_stack.undo()
    assert window.state.animation.times == (0.0, 1.0)


def test_keys_round_trip_through_the_project_file(qtbot, window, tmp_path, checkpoint, monkeypatch):
    _two_keys(window, "ease-in-out")
    window.timeline.set_easing("hold", 1)
    saved = window.state.animation
    path = tmp_path / "anim.e3d.json"
    assert window.save_project(path)
    # the same JSON the core reads (`export3d animate`)
    assert load_project_file(path).animation == saved
    from PySide6.QtWidgets import QMessageBox

    monkeypatch.setattr(QMessageBox, "exec", lambda self: QMessageBox.StandardButton.Ok)
    other = MainWindow(settings=QSettings(str(tmp_path / "other.ini"), QSettings.Format.IniFormat),
                       rest_ms=30, explore_on_load=False)
    qtbot.addWidget(other)
    try:
        assert other.controller.load_model(checkpoint)
        assert other.open_project(path), other.errors
        assert other.state.animation == saved
        assert len(other.timeline_panel.key_lines) == 2
        # a project without the key has no keys
        window.timeline.delete_key(1)
        window.timeline.delete_key(0)
        assert window.save_project(path)
        assert "animation" not in path.read_text(encoding="utf-8")
        assert other.open_project(path) and other.state.animation is None
    finally:
        other.controller.shutdown()


def test_a_bad_animation_in_a_project_is_one_error_and_changes_nothing(window, tmp_path):
    _two_keys(window)
    path = tmp_path / "bad.e3d.json"
    assert window.save_project(path)
    text = path.read_text(encoding="utf-8").replace('"linear"', '"bouncy"', 1)
    path.write_text(text, encoding="utf-8")
    before = window.state.animation
    assert not window.open_project(path)
    assert "bad.e3d.json has an invalid animation: unknown easing 'bouncy'" in window.errors[-1]
    assert window.state.animation == before


def test_play_advances_frames_and_stops_at_the_end(qtbot, window, idle):
    timeline = window.timeline
    _lam_a, lam_b = _two_keys(window)
    timeline.set_timing(10.0, 1.0)
    timeline.loop = False
    timeline.scrub(0.0)
    idle(window)
    shown: list[float] = []
    window.controller.frame_shown.connect(lambda result: shown.append(result.request.quality))
    full_before = window.controller.service.full_frames
    timeline.play()
    assert timeline.playing and window.timeline_panel.play_button.text() == "Stop"
    qtbot.waitUntil(lambda: not timeline.playing, timeout=10_000)
    assert timeline.time == pytest.approx(1.0)
    assert window.state.lam == pytest.approx(lam_b)
    assert 2 <= timeline.frames_played <= 11  # 10 fps over one second: the wall clock drops late frames
    assert "preview" in shown
    idle(window)
    assert window.controller.service.full_frames > full_before  # stopped: the full frame follows


def test_loop_keeps_playing_until_stopped(qtbot, window):
    timeline = window.timeline
    _two_keys(window)
    timeline.set_timing(20.0, 1.0)
    timeline.loop = True
    timeline.play()
    times: list[float] = []
    timeline.time_changed.connect(times.append)
    qtbot.waitUntil(lambda: any(b < a for a, b in zip(times, times[1:])), timeout=10_000)  # wrapped around
    assert timeline.playing
    timeline.stop()
    assert not timeline.playing


def test_export_job_writes_the_requested_frames(qtbot, window, tmp_path):
    from export3d_core import AnimationExportSettings

    _two_keys(window)
    folder = tmp_path / "frames"
    settings = AnimationExportSettings(fps=4, start=0.0, end=1.0, size=32)
    spec = window.controller.export_spec("animation", folder, animation=window.state.animation,
                                         animation_settings=settings)
    assert spec.total == 5
    job = window.run_export(spec)
    _finish(qtbot, window, job)
    files = sorted(folder.iterdir())
    assert [f.name for f in files] == [f"frame_{i:05d}.png" for i in range(5)]
    assert Image.open(files[0]).size == (32, 32)
    assert not np.array_equal(np.asarray(Image.open(files[0])), np.asarray(Image.open(files[-1])))
    gif = tmp_path / "anim.gif"
    job = window.run_export(window.controller.export_spec("animation", gif, animation=window.state.animation,
                                                          animation_settings=settings))
    _finish(qtbot, window, job)
    assert Image.open(gif).n_frames == 5


def test_cancelled_animation_export_leaves_no_file(qtbot, window, tmp_path):
    _two_keys(window)
    target = tmp_path / "anim.gif"
    spec = window.controller.export_spec("animation", target, animation=window.state.animation)
    job = window.controller.start_export(spec)
    job.progress.connect(lambda done, total: job.cancel())
    with qtbot.waitSignal(job.cancelled, timeout=60_000):
        pass
    job.wait(10_000)
    assert not target.exists()
    assert list(tmp_path.glob("*anim*")) == []
    assert "nothing was written" in window.statusBar().currentMessage()


def test_export_without_keys_is_one_error(qtbot, window, tmp_path):
    spec = window.controller.export_spec("animation", tmp_path / "a.mp4", animation=None)
    job = window.run_export(spec)
    _finish(qtbot, window, job)
    assert window.errors[-1] == "export failed: the timeline has no keys: add a key first"
    assert not Path(tmp_path / "a.mp4").exists()


def test_the_menus_list_the_export_and_the_dock(window):
    file_menu, _edit, view = (a.menu() for a in window.menuBar().actions()[:3])
    assert "Export animation…" in [a.text() for a in file_menu.actions()]
    assert "Timeline" in [a.text() for a in view.actions()]
    add = next(a for a in _edit.actions() if a.text() == "Add key at playhead")
    assert add.shortcut().toString() == "K"
    add.trigger()
    assert window.state.animation.keys[0].lam == window.state.lam


def test_the_dock_buttons_and_lines_edit_the_keys(qtbot, window):
    from PySide6.QtCore import Qt

    panel, timeline = window.timeline_panel, window.timeline
    timeline.scrub(0.0)
    qtbot.mouseClick(panel.add_button, Qt.MouseButton.LeftButton)
    timeline.scrub(1.0)
    window.state.set_coefficient(0, 3.0)
    qtbot.mouseClick(panel.add_button, Qt.MouseButton.LeftButton)
    assert window.state.animation.times == (0.0, 1.0) and timeline.selected == 1
    panel.easing.setCurrentIndex(panel.easing.findData("hold"))
    panel.easing.activated.emit(panel.easing.currentIndex())
    assert window.state.animation.keys[1].easing == "hold"
    panel.playhead.setValue(0.5)  # dragging the playhead scrubs
    panel.playhead.sigDragged.emit(panel.playhead)
    assert timeline.time == pytest.approx(0.5) and window.state.lam[0] == pytest.approx(1.5)  # smooth-step midpoint
    line = panel.key_lines[1]
    line.setValue(1.52)  # a key dragged in time lands on a frame (30 fps)
    line.sigPositionChangeFinished.emit(line)
    qtbot.waitUntil(lambda: window.state.animation.times[1] != 1.0)
    assert window.state.animation.times == (0.0, pytest.approx(46 / 30))
    qtbot.mouseClick(panel.delete_button, Qt.MouseButton.LeftButton)
    assert window.state.animation.times == (0.0,) and not panel.delete_button.isEnabled()


def test_playing_previews_take_the_reference_renderer_and_the_rest_frame_the_accelerated(qtbot, window, idle,
                                                                                          monkeypatch):
    from export3d_core.session import PortraitSession

    calls: list[tuple[str, str]] = []
    original = PortraitSession.render_image

    def logged(self, lam, camera, mode="final", quality="full"):
        calls.append((quality, self.renderer))
        return original(self, lam, camera, mode, quality)

    monkeypatch.setattr(PortraitSession, "render_image", logged)
    timeline = window.timeline
    _two_keys(window)
    timeline.set_timing(10.0, 1.0)
    timeline.loop = False
    timeline.scrub(0.0)
    idle(window)
    calls.clear()
    timeline.play()
    qtbot.waitUntil(lambda: not timeline.playing, timeout=10_000)
    idle(window)
    previews = [renderer for quality, renderer in calls if quality == "preview"]
    assert previews and set(previews[1:]) == {"reference"}  # λ moves every frame: no grid per λ
    assert calls[-1] == ("full", "accelerated")


def test_the_export_menu_asks_then_writes_and_never_replaces_unasked(qtbot, window, tmp_path, monkeypatch):
    from PySide6.QtWidgets import QDialog, QFileDialog, QMessageBox

    from app.widgets.export_dialogs import AnimationDialog

    window.export_animation_dialog()
    assert window.errors[-1] == "nothing to export: the timeline has no keys (add a key first)"
    _two_keys(window)
    target = tmp_path / "anim.gif"
    target.write_bytes(b"keep me")

    def accept(dialog):
        dialog.fps.setValue(3)
        dialog.size.setValue(24)
        return QDialog.DialogCode.Accepted

    monkeypatch.setattr(AnimationDialog, "exec", accept)
    monkeypatch.setattr(QFileDialog, "getSaveFileName", lambda *a, **k: (str(target), ""))
    monkeypatch.setattr(QMessageBox, "question", lambda *a, **k: QMessageBox.StandardButton.No)
    window.export_animation_dialog()  # "Replace it?" No: nothing runs
    assert not window.controller.jobs and target.read_bytes() == b"keep me"
    monkeypatch.setattr(QMessageBox, "question", lambda *a, **k: QMessageBox.StandardButton.Yes)
    window.export_animation_dialog()
    _finish(qtbot, window, window.controller.jobs[0])
    gif = Image.open(target)
    assert gif.n_frames == 10 and gif.size == (24, 24)  # the default 3 s length at 3 fps, both ends


def test_the_camera_curves_show_on_request(window):
    panel = window.timeline_panel
    _two_keys(window, "linear")  # yaw 0 -> 20 over the first second
    assert panel.camera_curves == [] and not panel.camera_box.isChecked()  # λ alone by default
    panel.camera_box.setChecked(True)
    yaw, pitch, radius, fov = panel.camera_curves
    items = panel.plot.getPlotItem().items
    assert all(curve in items for curve in panel.camera_curves)
    x, y = yaw.getData()
    assert y[0] == pytest.approx(0.0) and y[-1] == pytest.approx(20.0)  # the keys' yaw, in degrees
    middle = int(np.searchsorted(x, 0.5))
    assert y[middle] == pytest.approx(20.0 * x[middle], abs=1e-6)  # linear between the keys
    camera = window.state.camera
    assert radius.getData()[1] == pytest.approx(np.full(len(x), camera.radius))
    assert fov.getData()[1] == pytest.approx(np.full(len(x), camera.fov_deg))
    assert pitch.getData()[1] == pytest.approx(np.zeros(len(x)))
    assert panel.plot.getPlotItem().vb.viewRange()[1][1] >= 20.0  # the axis takes the camera in
    window.timeline.move_key(1, 2.0)  # an edit redraws them
    x, y = panel.camera_curves[0].getData()
    assert y[int(np.searchsorted(x, 1.0))] == pytest.approx(10.0, abs=0.2)
    panel.camera_box.setChecked(False)
    assert panel.camera_curves == [] and yaw not in panel.plot.getPlotItem().items
