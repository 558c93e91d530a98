"""Exports (frame count, size, cancel, overwrite), project round trip, bad files, explorer, presets."""
from __future__ import annotations

import json

import imageio.v2 as imageio
import numpy as np
import pytest
from PIL import Image
from PySide6.QtWidgets import QPushButton

from export3d_core.data.image_io import load_image
from export3d_core.export import TurntableSettings

from app.backend import NoPortraitFace
from app.state import ViewCamera


def _finish(qtbot, job) -> None:
    qtbot.waitUntil(job.isFinished, timeout=30_000)
    qtbot.wait(20)  # deliver the job's queued signals


def test_gif_export_has_requested_frames_and_size(qtbot, window, tmp_path):
    target = tmp_path / "turn.gif"
    spec = window.controller.export_spec("turntable", target, turntable=TurntableSettings(frames=5, fps=10))
    job = window.run_export(spec)
    _finish(qtbot, job)
    frames = imageio.mimread(target)
    side = window.controller.loaded.model.config.output_size
    assert len(frames) == 5
    assert all(frame.shape[:2] == (side, side) for frame in frames)
    assert not np.array_equal(frames[0], frames[2])  # the camera really moved


def test_cancelled_export_leaves_no_file(qtbot, window, tmp_path):
    target = tmp_path / "long.gif"
    spec = window.controller.export_spec("turntable", target, turntable=TurntableSettings(frames=400))
    job = window.run_export(spec)
    window.export_dialog.findChild(QPushButton).click()  # the progress dialog's Cancel
    _finish(qtbot, job)
    assert not target.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".long")]  # no temp file left
    assert "cancelled" in window.statusBar().currentMessage()


def test_export_refuses_to_overwrite_without_consent(qtbot, window, tmp_path):
    target = tmp_path / "still.png"
    target.write_bytes(b"keep me")
    job = window.run_export(window.controller.export_spec("still", target))
    _finish(qtbot, job)
    assert target.read_bytes() == b"keep me"
    assert "exists" in window.errors[-1]
    job = window.run_export(window.controller.export_spec("still", target, overwrite=True, alpha=True))
    _finish(qtbot, job)
    assert Image.open(target).mode == "RGBA"


def test_project_round_trip_restores_lambda_names_camera_and_image(qtbot, window, tmp_path, idle, make_portrait):
    photo = tmp_path / "photo.png"
    Image.fromarray(make_portrait(160, seed=3)).save(photo)
    c, state = window.controller, window.state
    assert c.open_portrait(photo, crop=((80.0, 80.0), 120.0))
    c.apply_lam([1.5, -2, 0, 0, 25, 0, 0, 0, 0, 3])
    state.set_name(4, "smile")
    state.set_camera(ViewCamera(yaw_deg=12, pitch_deg=-5, radius=2.9))
    c.save_preset("wide grin")
    idle(window)
    saved_image = window.viewport.image().copy()
    project_file = tmp_path / "p.e3d.json"
    assert window.save_project(project_file)
    data = json.loads(project_file.read_text())
    assert data["names"][4] == "smile" and data["lambda"][4] == 25

    c.apply_lam([0] * 10)
    state.set_name(4, "v5")
    state.set_camera(ViewCamera())
    c.delete_preset(c.presets[0])
    idle(window)
    assert window.open_project(project_file)
    idle(window)
    assert state.lam == (1.5, -2, 0, 0, 25, 0, 0, 0, 0, 3)
    assert state.names[4] == "smile" and window.coefficients.rows[4].name_edit.text() == "smile"
    assert state.camera == ViewCamera(yaw_deg=12, pitch_deg=-5, radius=2.9)
    assert [p.name for p in c.project_presets] == ["wide grin"] and c.presets == []
    np.testing.assert_array_equal(window.viewport.image(), saved_image)


def test_bad_files_show_an_error_and_keep_the_app_usable(qtbot, window, tmp_path, idle):
    c = window.controller
    model_before, image_before = c.loaded, c.portrait_image
    not_image = tmp_path / "notes.png"
    not_image.write_text("this is not an image")
    assert not window.open_path(not_image)
    assert window.errors and "notes.png" in window.errors[-1]

    corrupt = tmp_path / "broken.safetensors"
    corrupt.write_bytes(b"\x00\x01garbage" * 10)
    assert not window.open_path(corrupt)
    assert "broken.safetensors" in window.errors[-1]
    assert c.loaded is model_before

    blank = tmp_path / "wall.png"
    Image.fromarray(np.full((200, 200, 3), 128, np.uint8)).save(blank)
    assert not window.open_path(blank)
    assert "no face" in window.errors[-1].lower()
    assert c.portrait_image is image_before
    assert window._error_box is not None and window._error_box.isVisible()  # shown, not blocking
    assert window.crop_dialog.isVisible()  # the manual crop is offered, without blocking
    window.crop_dialog.reject()

    window.coefficients.value_committed.emit(0, 2.0)  # still usable: edits render
    idle(window)
    assert c.last_frame.request.lam[0] == 2.0
    assert not window.match_button.isEnabled() and "attribute regressor" in window.match_button.toolTip()


def test_explorer_fills_in_and_click_applies(qtbot, window, idle):
    window.explorer.columns.setValue(3)
    window.explorer.request()
    idle(window)
    assert window.explorer.filled() == 3 * window.state.n_basis
    window.explorer.cells[(2, 0)].click()
    idle(window)
    assert window.state.lam[2] == pytest.approx(window.explorer.start.value())
    assert window.controller.undo_stack.count() == 1


def test_preset_gets_thumbnail_and_applies(qtbot, window, idle):
    c = window.controller
    c.apply_lam([4.0] + [0.0] * 9)
    c.save_preset("brow")
    idle(window)
    assert not window.presets_panel.list.item(0).icon().isNull()
    c.apply_lam([0.0] * 10)
    window.presets_panel.apply_requested.emit(c.presets[0])
    assert window.state.lam[0] == 4.0


def test_preset_library_is_readable_json_and_reloads(qtbot, window, tmp_path):
    from PySide6.QtCore import QSettings

    from app.main_window import MainWindow

    window.controller.apply_lam([0, 7.5] + [0.0] * 8)
    window.controller.save_preset("squint")
    data = json.loads(window.presets_file.read_text())
    assert data["presets"][0]["name"] == "squint" and data["presets"][0]["lambda"][1] == 7.5
    other = MainWindow(QSettings(window.settings.fileName(), QSettings.Format.IniFormat), explore_on_load=False)
    qtbot.addWidget(other)
    try:
        assert [p.name for p in other.controller.presets] == ["squint"]
    finally:
        other.controller.shutdown()


def test_manual_crop_of_a_faceless_photo_loads_it(qtbot, window, tmp_path, idle, make_portrait):
    blank = tmp_path / "wall.png"
    Image.fromarray(make_portrait(200, seed=5)[::-1].copy() // 4 + 100).save(blank)
    exc = NoPortraitFace("no face found in wall.png", load_image(blank))
    exc.path = blank
    window.ask_manual_crop(exc)
    window.crop_dialog.canvas.side = 100.0
    window.crop_dialog.accept()
    idle(window)
    assert window.state.portrait_path == blank
    assert window.controller.portrait_crop == ((100.0, 100.0), 100.0)
