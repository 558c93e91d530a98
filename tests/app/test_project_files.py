"""Project files: a bad project is refused in one line before it changes anything in the editor."""
from __future__ import annotations

import json

import pytest
from PIL import Image

from app.state import MAX_ABS_LAMBDA

N = 10  # the tiny model's basis size


@pytest.fixture
def saved_project(window, tmp_path, make_portrait):
    """A good project on a real photo, saved; returns (path, its JSON)."""
    photo = tmp_path / "photo.png"
    Image.fromarray(make_portrait(160, seed=3)).save(photo)
    assert window.controller.open_portrait(photo, crop=((80.0, 80.0), 120.0))
    path = tmp_path / "good.e3d.json"
    assert window.save_project(path)
    return path, json.loads(path.read_text())


def _edit(window) -> tuple:
    """Unsaved edits on the current portrait; returns what must survive a failed open."""
    c = window.controller
    c.apply_lam([2.0] + [0.0] * (N - 1))
    c.apply_lam([2.0, 3.0] + [0.0] * (N - 2))
    return c.portrait_image, window.state.portrait_path, window.state.lam, c.undo_stack.count()


def _bad_copy(tmp_path, data: dict, **changes) -> str:
    path = tmp_path / "bad.e3d.json"
    path.write_text(json.dumps({**data, **changes}))
    return path


@pytest.mark.parametrize("changes, message", [
    ({"lambda": [1.0] * 7, "names": [f"v{i}" for i in range(7)]}, "has 7 λ coefficients; the model has 10"),
    ({"portrait": "missing.png"}, "missing.png"),
    ({"portrait": 5}, "portrait is 5, not a file path"),
    ({"checkpoint": 7}, "checkpoint is 7, not a file path"),
    ({"checkpoint": "gone.safetensors"}, "gone.safetensors"),
    ({"names": ["a", "b"]}, "2 names for 10 λ values"),
    ({"lambda": [1e308] + [0.0] * (N - 1)}, "outside"),
    ({"lambda": [1e20] + [0.0] * (N - 1)}, "outside"),
    ({"version": "1"}, 'has "version": "1" (str); this build reads version 1, a whole number'),
    ({"version": 2}, "has project version 2; this build reads version 1"),
])
def test_a_bad_project_changes_nothing_and_says_why_in_one_line(qtbot, window, tmp_path, saved_project, idle,
                                                                changes, message, capfd):
    path, data = saved_project
    image, portrait, lam, steps = _edit(window)
    model = window.controller.loaded
    assert not window.open_project(_bad_copy(tmp_path, data, **changes))
    assert message in window.errors[-1] and "\n" not in window.errors[-1]
    c = window.controller
    assert c.portrait_image is image and window.state.portrait_path == portrait and c.loaded is model
    assert window.state.lam == lam and c.undo_stack.count() == steps  # the unsaved edits are all there
    idle(window)
    assert "Traceback" not in capfd.readouterr().err


def test_lambda_within_the_limit_opens_and_shows_in_the_spin_box(qtbot, window, tmp_path, saved_project, idle):
    path, data = saved_project
    value = MAX_ABS_LAMBDA / 2
    assert window.open_project(_bad_copy(tmp_path, data, **{"lambda": [value] + [0.0] * (N - 1)}))
    assert window.state.lam[0] == value
    assert window.coefficients.rows[0].spin.value() == pytest.approx(value)
    idle(window)
    assert window.controller.last_frame.request.lam[0] == value
