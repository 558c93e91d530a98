"""Typed numbers: scientific notation and large λ, angles past the orbit limit clamped (and said)."""
from __future__ import annotations

import pytest
from PySide6.QtCore import Qt

from export3d_core.camera import DEFAULT_FOV_DEG

from app.state import MAX_ABS_LAMBDA, ViewCamera


def _type(qtbot, spin, text: str) -> None:
    spin.setFocus()
    spin.lineEdit().selectAll()
    qtbot.keyClicks(spin.lineEdit(), text)
    qtbot.keyClick(spin.lineEdit(), Qt.Key.Key_Return)


@pytest.mark.parametrize("text, expected", [("1e6", min(1e6, MAX_ABS_LAMBDA)), ("2.5e3", 2500.0), ("-40", -40.0),
                                            ("123456", min(123456.0, MAX_ABS_LAMBDA))])
def test_typing_scientific_and_large_lambda_sets_it(qtbot, window, text, expected):
    spin = window.coefficients.rows[2].spin
    _type(qtbot, spin, text)
    assert window.state.lam[2] == pytest.approx(expected)
    assert spin.value() == pytest.approx(expected)


def test_lambda_past_the_limit_is_clamped_with_a_one_line_message(qtbot, window):
    _type(qtbot, window.coefficients.rows[0].spin, "1e300")
    assert window.state.lam[0] == MAX_ABS_LAMBDA
    message = window.statusBar().currentMessage()
    assert "λ1 1e+300 is outside" in message and "\n" not in message


def test_a_huge_drag_stops_at_the_limit(qtbot, window):
    slider = window.coefficients.rows[1].slider
    slider.set_float_value(10 * MAX_ABS_LAMBDA)
    assert slider.float_value() == MAX_ABS_LAMBDA


@pytest.mark.parametrize("field, text, expected", [("yaw", "180", ViewCamera.YAW_LIMIT), ("yaw", "-45", -45.0),
                                                   ("pitch", "-100", -ViewCamera.PITCH_LIMIT), ("fov", "2e1", 20.0)])
def test_typing_an_angle_accepts_the_whole_number(qtbot, window, field, text, expected):
    _type(qtbot, getattr(window.camera_panel, field), text)
    camera = window.state.camera
    assert {"yaw": camera.yaw_deg, "pitch": camera.pitch_deg, "fov": camera.fov_deg}[field] == expected
    if abs(float(text)) > 89:
        assert "outside" in window.statusBar().currentMessage()


def test_a_lambda_past_the_limit_from_any_other_source_is_refused_in_one_line(qtbot, window):
    before = window.state.lam
    assert not window.controller.apply_lam([2 * MAX_ABS_LAMBDA] + [0.0] * 9, "Apply explorer cell")
    assert window.state.lam == before
    assert window.errors[-1].startswith(f"Apply explorer cell: λ1 = {2 * MAX_ABS_LAMBDA:g} is outside "
                                        f"±{MAX_ABS_LAMBDA:g}")


def test_the_field_of_view_is_shown_as_the_diagonal_angle_it_is(window):
    # EG3D's 18.837° is measured across the image's corners (export3d_core.camera.focal_from_fov).
    panel = window.camera_panel
    assert panel.layout().labelForField(panel.fov).text() == "Diagonal FOV"
    assert panel.fov.toolTip().startswith("Diagonal field of view")
    assert "vertical" not in panel.fov.toolTip().lower()
    assert panel.fov.value() == pytest.approx(DEFAULT_FOV_DEG, abs=0.01)
