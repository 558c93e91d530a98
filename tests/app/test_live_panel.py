"""Live mode in the editor: a video file stands in for the webcam; a take becomes undoable keys."""
import time

import pytest
import torch

from export3d_core.faces.regressor import AttributeRegressor, RegressorConfig, save_regressor

VIDEO = "resources/examples/actor_synthetic.mp4"


@pytest.fixture
def live_window(window, checkpoint, idle):
    """The tiny model with an expression estimator beside it (live reads λ from each frame)."""
    torch.manual_seed(0)
    cfg = RegressorConfig(beta_dim=window.controller.loaded.model.config.beta_dim, identity_dim=3,
                          identity_names=("a", "b", "c"))
    save_regressor(AttributeRegressor(cfg), checkpoint.parent / "attribute_regressor.safetensors")
    assert window.controller.load_model(checkpoint)
    idle(window)
    window.live_action.trigger()
    panel = window.live_panel
    assert panel is not None and panel.isVisible()
    yield window
    panel.close()
    assert not panel.session.running


def _wait(qtbot, condition, timeout=30.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not condition():
        qtbot.wait(20)
    assert condition()


def _start_file(panel):
    panel.file_choice.setChecked(True)
    panel.video_path.setText(VIDEO)
    panel.start_button.click()
    assert panel.session.running, panel.status.text()


def test_a_video_source_drives_the_viewport(live_window, qtbot, idle):
    win = live_window
    panel = win.live_panel
    frames, lam_before = [], win.state.lam
    win.controller.frame_shown.connect(frames.append)
    _start_file(panel)
    _wait(qtbot, lambda: panel.session.poses_shown >= 3 and len(frames) >= 3)
    driver = panel.session.driver
    assert driver.frames - driver.faceless >= 1  # the actor's face is read
    assert win.state.lam != lam_before  # and drives λ
    assert panel.start_button.text() == "Stop"
    panel.start_button.click()
    assert not panel.session.running and panel.start_button.text() == "Start"
    assert {f.request.quality for f in frames} >= {"preview"}  # shown as previews while live
    assert win.controller.undo_stack.count() == 0  # driving is not an edit


def test_record_stop_puts_the_take_on_the_timeline_and_undo_removes_it(live_window, qtbot, idle):
    win = live_window
    panel = win.live_panel
    assert win.state.animation is None
    _start_file(panel)
    panel.record_button.click()
    assert panel.session.recording
    start = panel.session.poses_shown
    _wait(qtbot, lambda: panel.session.poses_shown >= start + 3)
    panel.record_button.click()
    animation = win.state.animation
    assert animation is not None and len(animation.keys) >= 2, panel.status.text()
    assert animation.n_basis == win.state.n_basis
    assert f"{len(animation.keys)} keys" in panel.status.text()
    assert win.controller.undo_stack.count() == 1
    panel.start_button.click()
    idle(win)
    win.controller.undo_stack.undo()
    assert win.state.animation is None


def test_a_source_that_cannot_be_opened_is_one_line_and_changes_nothing(live_window, tmp_path, idle):
    win = live_window
    panel = win.live_panel
    lam, camera = win.state.lam, win.state.camera
    bad = tmp_path / "not_a_video.mp4"
    bad.write_bytes(b"this is not a video")
    for source in (str(tmp_path / "missing.mp4"), str(bad)):
        panel.file_choice.setChecked(True)
        panel.video_path.setText(source)
        panel.start_button.click()
        assert not panel.session.running
        assert panel.status.text() and "\n" not in panel.status.text()
        assert panel.start_button.text() == "Start" and not panel.record_button.isEnabled()
    panel.camera_choice.setChecked(True)
    panel.camera_index.setValue(99)  # no such capture device here
    panel.start_button.click()
    assert not panel.session.running and panel.status.text() == "cannot open camera 99"
    idle(win)
    assert win.state.lam == lam and win.state.camera == camera
    assert win.state.animation is None and win.controller.undo_stack.count() == 0


def test_live_without_an_estimator_says_why(window):
    window.show_live_panel()
    panel = window.live_panel
    panel.file_choice.setChecked(True)
    panel.video_path.setText(VIDEO)
    panel.start_button.click()
    assert not panel.session.running
    assert "expression estimator" in panel.status.text()
    panel.close()



def test_a_file_that_ends_while_recording_bakes_the_take_and_stops(live_window, qtbot):
    win = live_window
    panel = win.live_panel
    _start_file(panel)
    panel.record_button.click()
    _wait(qtbot, lambda: not panel.session.running, timeout=30.0)  # the 2 s clip runs out
    assert win.state.animation is not None and len(win.state.animation.keys) >= 2
    assert panel.status.text().startswith("the live source ended")
    assert panel.start_button.text() == "Start" and not panel.record_button.isEnabled()


def test_a_new_portrait_stops_live(live_window, qtbot, make_portrait, idle):
    win = live_window
    panel = win.live_panel
    _start_file(panel)
    win.controller.set_portrait_image(make_portrait(96, 7), None)
    assert not panel.session.running
    idle(win)


def test_gain_and_smoothing_controls_change_the_running_drive(live_window, qtbot):
    from export3d_core import neutral_lambda
    from export3d_core.drive import DEFAULT_MIN_CUTOFF_HZ

    win = live_window
    panel = win.live_panel
    assert panel.gain.value() == 1.0 and panel.smoothing.value() == 1.0  # drive's defaults
    neutral = tuple(float(v) for v in neutral_lambda(win.controller.loaded.model))
    _start_file(panel)
    _wait(qtbot, lambda: panel.session.poses_shown >= 2)
    assert win.state.lam != pytest.approx(neutral)  # the actor drives λ
    panel.smoothing.setValue(0.0)
    panel.gain.setValue(0.0)  # holds the expression neutral: only the head still moves
    driver = panel.session.driver
    assert (driver.settings.gain, driver.settings.smoothing) == (0.0, 0.0)
    # poses read before the change may still be on their way; the next ones hold λ neutral
    _wait(qtbot, lambda: win.state.lam == pytest.approx(neutral), timeout=10.0)
    panel.gain.setValue(2.5)
    panel.smoothing.setValue(3.0)
    assert (driver.settings.gain, driver.settings.smoothing) == (2.5, 3.0)
    assert driver._filter.settings.min_cutoff == pytest.approx(DEFAULT_MIN_CUTOFF_HZ / 3)  # re-armed
    _wait(qtbot, lambda: win.state.lam != pytest.approx(neutral), timeout=10.0)
    panel.start_button.click()
    panel.gain.setValue(1.5)  # a stopped session keeps the setting for the next start
    _start_file(panel)
    assert panel.session.driver.settings.gain == 1.5
