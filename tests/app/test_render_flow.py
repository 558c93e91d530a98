"""Slider bursts, unbounded typing, orbit drags, undo, and a UI thread that never blocks."""
from __future__ import annotations

import time

import numpy as np
import pytest
from PySide6.QtCore import QPoint, Qt, QTimer

from export3d_core.session import PortraitSession



@pytest.fixture
def render_log(monkeypatch):
    """Record every (quality, λ) the worker renders, through the real session."""
    calls: list[tuple[str, tuple[float, ...]]] = []
    original = PortraitSession.render_image

    def logged(self, lam, camera, mode="final", quality="full"):
        calls.append((quality, tuple(float(v) for v in lam)))
        return original(self, lam, camera, mode, quality)

    monkeypatch.setattr(PortraitSession, "render_image", logged)
    return calls


def _drag_slider(qtbot, slider, steps: int, dx: int) -> None:
    y = slider.height() // 2
    handle_x = int(6 + (slider.width() - 12) * slider.value() / slider.maximum())
    qtbot.mousePress(slider, Qt.MouseButton.LeftButton, pos=QPoint(handle_x, y))
    for step in range(1, steps + 1):
        qtbot.mouseMove(slider, QPoint(handle_x + step * dx, y))
    qtbot.mouseRelease(slider, Qt.MouseButton.LeftButton, pos=QPoint(handle_x + steps * dx, y))


def test_slider_burst_renders_one_full_frame_for_the_final_value(qtbot, window, render_log, idle):
    before = window.controller.service.full_frames
    row = window.coefficients.rows[2]
    _drag_slider(qtbot, row.slider, steps=12, dx=5)
    idle(window)
    final = window.state.lam
    assert final[2] > 0 and final[2] == pytest.approx(row.value())
    full = [lam for quality, lam in render_log if quality == "full"]
    assert full == [final]  # exactly one full-quality render, for the final value
    assert window.controller.service.full_frames == before + 1
    assert window.controller.last_frame.request.lam == final
    assert window.controller.last_frame.request.quality == "full"
    assert window.controller.undo_stack.count() == 1  # the whole drag is one undo step
    assert not window.errors  # previews and the full frame all rendered


def test_typing_25_extends_the_slider_range_and_renders(qtbot, window, idle):
    row = window.coefficients.rows[0]
    assert row.slider.soft_range[1] < 25
    before = window.controller.last_frame.image.copy()
    row.spin.selectAll()
    qtbot.keyClicks(row.spin, "25")
    qtbot.keyClick(row.spin, Qt.Key.Key_Return)
    idle(window)
    assert window.state.lam[0] == 25.0
    assert row.slider.soft_range[1] >= 25.0
    assert 0 < row.slider.value() < row.slider.maximum()  # handle inside the widened range
    frame = window.controller.last_frame
    assert frame.request.lam[0] == 25.0 and frame.request.quality == "full"
    assert not np.array_equal(frame.image, before)


def test_orbit_drag_changes_yaw_pitch_and_image(qtbot, window, idle):
    view = window.viewport
    before = view.image().copy()
    centre = view.rect().center()
    qtbot.mousePress(view, Qt.MouseButton.LeftButton, pos=centre)
    for step in range(1, 6):
        qtbot.mouseMove(view, centre + QPoint(10 * step, -6 * step))
    qtbot.mouseRelease(view, Qt.MouseButton.LeftButton, pos=centre + QPoint(50, -30))
    idle(window)
    camera = window.state.camera
    assert camera.yaw_deg > 5 and camera.pitch_deg > 5
    assert window.camera_panel.yaw.value() == pytest.approx(camera.yaw_deg, abs=0.01)
    assert not np.array_equal(view.image(), before)
    assert window.controller.undo_stack.count() == 1


def test_undo_restores_previous_lambda_and_image(qtbot, window, idle):
    panel = window.coefficients
    panel.value_committed.emit(1, 4.0)
    idle(window)
    lam_a, image_a = window.state.lam, window.viewport.image().copy()
    panel.value_committed.emit(1, -8.0)
    idle(window)
    assert not np.array_equal(window.viewport.image(), image_a)
    window.undo_action.trigger()
    idle(window)
    assert window.state.lam == lam_a
    assert panel.rows[1].value() == 4.0
    np.testing.assert_array_equal(window.viewport.image(), image_a)
    window.redo_action.trigger()
    idle(window)
    assert window.state.lam[1] == -8.0


def test_ui_thread_keeps_ticking_while_a_frame_renders(qtbot, window, monkeypatch, idle):
    original = PortraitSession.render_image

    def slow(self, *args, **kwargs):
        time.sleep(0.4)  # a frame far slower than the tick interval
        return original(self, *args, **kwargs)

    monkeypatch.setattr(PortraitSession, "render_image", slow)
    ticks = []
    timer = QTimer()
    timer.setInterval(10)
    timer.timeout.connect(lambda: ticks.append(time.monotonic()))
    timer.start()
    window.coefficients.value_committed.emit(0, 3.0)
    idle(window)
    timer.stop()
    assert window.controller.last_frame.request.lam[0] == 3.0
    assert len(ticks) >= 20  # ~0.8 s of rendering: the event loop kept running throughout
    assert max(np.diff(ticks)) < 0.2


def test_model_error_is_shown_in_the_window_not_raised(qtbot, window, monkeypatch, idle):
    def broken(self, *args, **kwargs):
        raise RuntimeError("CUDA out of memory (simulated)")

    with monkeypatch.context() as patch:  # undoes only this patch, not the fixture's dialog patches
        patch.setattr(PortraitSession, "render_image", broken)
        window.coefficients.value_committed.emit(0, 1.0)
        idle(window)
        assert "out of memory" in window.errors[-1]
        assert "out of memory" in window.viewport._message
    window.coefficients.value_committed.emit(0, 2.0)  # recovers with the next edit
    idle(window)
    assert window.controller.last_frame.request.lam[0] == 2.0
    assert window.viewport._message == ""
