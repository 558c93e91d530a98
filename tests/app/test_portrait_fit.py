"""Fit to this portrait in the editor: the out-of-domain banner, the fit job (menu, banner button,
cancel), the fit saved with the project and reopened to the same image, and paste-back in exports.

Real photo (the public-domain astronaut, framed by dlib), real tiny model, few fit steps."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image
from PySide6.QtWidgets import QPushButton
from skimage.data import astronaut

from export3d_core.checkpoint import DEMO_CHECKPOINT
from export3d_core.fit import FitSettings
from export3d_core.fit_upscale import UpscaleSettings

from app.export_jobs import SweepSettings
from app.fit_job import FITS_FOLDER
from app.widgets.domain_banner import BANNER_TEXT
from app.widgets.export_dialogs import StillDialog, TurntableDialog

pytestmark = pytest.mark.usefixtures("offline_hub")  # no face-alignment weights: dlib is the landmarker

FEW_STEPS = FitSettings(steps=3, upscale=UpscaleSettings(width=8, layers=2, steps=3, patch=24, batch=2, renders=1))


@pytest.fixture
def photo(tmp_path):
    path = tmp_path / "astronaut.png"
    Image.fromarray(astronaut()).save(path)
    return path


def _menu_action(window, text: str):
    for menu_action in window.menuBar().actions():
        for action in menu_action.menu().actions():
            if action.text() == text:
                return action
    raise AssertionError(f"no menu entry {text!r}")


def _open(window, path, idle) -> None:
    assert window.controller.open_portrait(path)
    idle(window)


def _fit(qtbot, window, idle, start) -> None:
    """Run a fit started by `start()` to its end and wait for the refitted frame."""
    window.controller.fit_settings = FEW_STEPS
    start()
    job = window.controller.jobs[-1]
    previews = []
    job.preview.connect(lambda image, step, total: previews.append(step))
    qtbot.waitUntil(job.isFinished, timeout=30_000)
    qtbot.waitUntil(lambda: window.controller.fit is not None, timeout=5_000)
    assert previews == [1, 2]  # intermediate previews of the fit so far, shown in the viewport
    idle(window)


def _fits(window) -> list:
    folder = window.settings_folder / FITS_FOLDER
    return sorted(folder.glob("*")) if folder.exists() else []


def test_banner_shows_for_an_out_of_domain_photo_and_goes_after_a_fit_from_the_menu(qtbot, window, photo, idle):
    assert not window.domain_banner.isVisible()  # the fixture's portrait has no photo behind it
    _open(window, photo, idle)
    qtbot.waitUntil(window.domain_banner.isVisible, timeout=10_000)
    assert window.domain_banner.label.text() == BANNER_TEXT
    assert "dB" in window.domain_banner.toolTip()  # the measured reconstruction behind it
    before = window.controller.last_frame.image.copy()

    _fit(qtbot, window, idle, _menu_action(window, "Fit to this portrait").trigger)

    assert not window.domain_banner.isVisible()
    assert "fitted to it" in window.portrait_info.text()
    side = window.controller.loaded.model.config.output_size
    assert before.shape == (side, side, 3) and window.controller.last_frame.image.shape == (2 * side, 2 * side, 3)
    assert "upscaled 2×" in window.statusBar().currentMessage()  # the editor's 256 px portrait holds the detail
    assert f"(renders at {2 * side}²)" in window.portrait_info.text()
    assert "upscaled 2×" in window.portrait_info.toolTip()
    assert [p.name for p in _fits(window)] == [window.controller.fit.path.name]
    assert window.controller.render_model is window.controller.fit.model
    assert not np.array_equal(window.controller.last_frame.image, before)  # the viewport shows the fit
    assert window.has_unsaved_changes()


def test_a_photo_with_a_small_face_is_fitted_without_the_upscaler_and_says_so(qtbot, window, idle, tmp_path):
    small = tmp_path / "small.png"
    Image.fromarray(astronaut()).resize((200, 200), Image.Resampling.LANCZOS).save(small)  # the face: ~71 px
    _open(window, small, idle)
    _fit(qtbot, window, idle, window.fit_portrait)
    side = window.controller.loaded.model.config.output_size
    assert window.controller.fit.model.upscaler is None and window.controller.last_frame.image.shape == (side, side, 3)
    assert "not upscaled: the photo holds the face at 71 px" in window.statusBar().currentMessage()
    assert "renders at" not in window.portrait_info.text() and "not upscaled" in window.portrait_info.toolTip()


def test_banner_button_runs_the_fit(qtbot, window, photo, idle):
    _open(window, photo, idle)
    qtbot.waitUntil(window.domain_banner.isVisible, timeout=10_000)
    _fit(qtbot, window, idle, window.domain_banner.fit_button.click)
    assert not window.domain_banner.isVisible()


@pytest.mark.skipif(not DEMO_CHECKPOINT.is_file(), reason="the demo model is not shipped in this checkout")
def test_no_banner_for_a_shipped_synthetic_portrait_on_the_demo_model(qtbot, window, photo, idle):
    from export3d_core.portrait import demo_portraits

    assert window.controller.load_model(DEMO_CHECKPOINT)
    checked = []
    window.controller.domain_checked.connect(lambda outside, psnr: checked.append((outside, psnr)))
    synthetic = next(p.path for p in demo_portraits() if p.in_domain and p.aligned)
    _open(window, synthetic, idle)
    qtbot.waitUntil(lambda: len(checked) == 1, timeout=10_000)
    assert checked[0][0] is False and not window.domain_banner.isVisible()
    _open(window, photo, idle)
    qtbot.waitUntil(lambda: len(checked) == 2, timeout=10_000)
    assert checked[1][0] is True and window.domain_banner.isVisible()


def test_a_cancelled_fit_leaves_no_file_and_the_editor_unchanged(qtbot, window, photo, idle):
    _open(window, photo, idle)
    model = window.controller.loaded.model
    weights = {k: v.clone() for k, v in model.state_dict().items()}
    before = window.controller.last_frame.image.copy()
    window.controller.fit_settings = FitSettings(steps=400)
    job = window.fit_portrait()
    with qtbot.waitSignal(job.progress, timeout=20_000):
        pass
    with qtbot.waitSignal(job.cancelled, timeout=20_000):
        window.fit_dialog.findChild(QPushButton).click()  # the dialog's Cancel button
    qtbot.waitUntil(job.isFinished, timeout=20_000)
    idle(window)

    assert _fits(window) == []
    assert window.controller.fit is None and window.controller.render_model is model
    assert all(torch.equal(weights[k], v) for k, v in model.state_dict().items())
    assert not window.has_unsaved_changes()
    assert "fit cancelled; nothing was written" in window.statusBar().currentMessage()
    window.controller.request_render()
    idle(window)
    assert np.array_equal(window.controller.last_frame.image, before)


def test_a_project_with_a_fit_reopens_to_the_same_image(qtbot, window, photo, idle, tmp_path, make_portrait):
    _open(window, photo, idle)
    unfitted = window.controller.last_frame.image.copy()
    _fit(qtbot, window, idle, window.fit_portrait)
    fitted = window.controller.last_frame.image.copy()
    assert not np.array_equal(fitted, unfitted)
    still = tmp_path / "fitted.png"
    job = window.run_export(window.controller.export_spec("still", still))
    qtbot.waitUntil(job.isFinished, timeout=20_000)
    assert np.array_equal(np.asarray(Image.open(still)), fitted)  # exports render the fitted model too
    project = tmp_path / "me.e3d.json"
    assert window.save_project(project)
    data = json.loads(project.read_text())
    assert data["fit"] == "me.fit.safetensors" and (tmp_path / "me.fit.safetensors").is_file()

    window.controller.set_portrait_image(make_portrait(), None)  # something else in between
    idle(window)
    assert window.controller.fit is None
    assert window.open_project(project)
    idle(window)
    assert window.controller.fit is not None and window.controller.fit.path == tmp_path / "me.fit.safetensors"
    assert np.array_equal(window.controller.last_frame.image, fitted)
    assert not window.domain_banner.isVisible()


def test_a_fit_for_another_photo_is_refused_in_one_line_when_a_project_opens(qtbot, window, photo, idle, tmp_path):
    _open(window, photo, idle)
    _fit(qtbot, window, idle, window.fit_portrait)
    project = tmp_path / "me.e3d.json"
    assert window.save_project(project)
    other = tmp_path / "mirrored.png"
    Image.fromarray(np.ascontiguousarray(astronaut()[:, ::-1])).save(other)
    data = json.loads(project.read_text())
    data["portrait"] = other.name
    moved = tmp_path / "other.e3d.json"
    moved.write_text(json.dumps(data))

    assert window.open_project(moved)  # the project opens, unfitted
    idle(window)
    message = window.errors[-1]
    assert "was made for another photo" in message and "\n" not in message
    assert window.controller.fit is None and window.state.portrait_path == other


def test_paste_back_option_follows_the_photo_and_the_pose_limit(qtbot, window, photo, idle, tmp_path):
    problem = window.controller.paste_back_problem
    assert not StillDialog(window, problem).paste_back.isEnabled()  # the fixture's portrait has no photo
    assert "no original photo" in StillDialog(window, problem).paste_back.toolTip()
    _open(window, photo, idle)
    photo_view = window.controller.paste_back_camera()
    window.state.set_camera(window.state.camera.replace(yaw_deg=np.degrees(photo_view.yaw),
                                                        pitch_deg=np.degrees(photo_view.pitch)))
    dialog = StillDialog(window, problem)
    assert dialog.paste_back.isEnabled()
    dialog.alpha.setChecked(True)
    dialog.paste_back.setChecked(True)  # the composite is opaque
    assert not dialog.alpha.isChecked() and not dialog.alpha.isEnabled()
    turntable = TurntableDialog(window, problem)
    assert not turntable.paste_back.isEnabled()  # the default orbit swings beyond the limit
    assert "only right within" in turntable.paste_back.toolTip()
    turntable.amplitude.setValue(5.0)
    assert turntable.paste_back.isEnabled()

    target = tmp_path / "pasted.png"
    job = window.run_export(window.controller.export_spec("still", target, paste_back=True))
    qtbot.waitUntil(job.isFinished, timeout=20_000)
    assert np.asarray(Image.open(target)).shape == astronaut().shape  # the photo's own resolution

    gif = tmp_path / "pasted_sweep.gif"
    sweep = SweepSettings(basis_index=0, start=-5.0, stop=5.0, steps=2, fps=4)
    job = window.run_export(window.controller.export_spec("sweep", gif, paste_back=True, sweep=sweep))
    qtbot.waitUntil(job.isFinished, timeout=20_000)
    with Image.open(gif) as frames:
        assert frames.n_frames == 2 and frames.size == astronaut().shape[1::-1]

    window.state.set_camera(window.state.camera.replace(yaw_deg=window.state.camera.yaw_deg + 30))
    dialog = StillDialog(window, problem)
    assert not dialog.paste_back.isEnabled() and "only right within" in dialog.paste_back.toolTip()


def test_use_fit_file_applies_a_fit_of_this_photo_and_refuses_another(qtbot, window, photo, idle, tmp_path):
    _open(window, photo, idle)
    _fit(qtbot, window, idle, window.fit_portrait)
    fitted_frame = window.controller.last_frame.image.copy()
    fit_file = window.controller.fit.path
    other = tmp_path / "mirrored.png"
    Image.fromarray(np.ascontiguousarray(astronaut()[:, ::-1])).save(other)

    _open(window, other, idle)
    assert window.controller.fit is None
    assert not window.controller.open_fit(fit_file)
    assert "was made for another photo" in window.errors[-1] and "\n" not in window.errors[-1]
    assert window.controller.fit is None

    _open(window, photo, idle)
    assert window.controller.fit is None
    assert window.controller.open_fit(fit_file)
    idle(window)
    assert window.controller.fit.path == fit_file
    assert np.array_equal(window.controller.last_frame.image, fitted_frame)
    assert not window.controller.open_fit(tmp_path / "missing.safetensors")
    assert "not found" in window.errors[-1]
    assert _menu_action(window, "Use fit file…") is not None
