"""Export animation… pasted into the original photo: the dialog's option follows the photo and the
pose limit over the chosen range, the export writes frames at the photo's size, a cancelled pasted
export writes nothing. Real photo (the public-domain astronaut, framed by dlib), real tiny model."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QDialog, QFileDialog
from skimage.data import astronaut

from export3d_core import AnimationExportSettings, OrbitCamera

from app.state import ViewCamera
from app.widgets.export_dialogs import PASTE_TEXT, AnimationDialog

pytestmark = pytest.mark.usefixtures("offline_hub")  # no face-alignment weights: dlib is the landmarker


@pytest.fixture
def photo(tmp_path):
    path = tmp_path / "astronaut.png"
    Image.fromarray(astronaut()).save(path)
    return path


def _keys(window) -> None:
    """Key 0 s: λ = 0 at the photo's own pose (yaw 0); key 1 s: v1 = 3, turned 20° to the side."""
    timeline, n = window.timeline, window.state.n_basis
    timeline.scrub(0.0)
    window.state.set_lam((0.0,) * n)
    window.state.set_camera(ViewCamera(yaw_deg=0.0))
    timeline.add_key("linear")
    timeline.scrub(1.0)
    window.state.set_lam((3.0,) + (0.0,) * (n - 1))
    window.state.set_camera(ViewCamera(yaw_deg=20.0))
    timeline.add_key("linear")


def _dialog(window) -> AnimationDialog:
    return AnimationDialog(window.state.animation, window, window.controller.animation_paste_back_problem,
                           window.state.mode)


def _finish(qtbot, window, job) -> None:
    assert job is not None
    qtbot.waitUntil(lambda: job not in window.controller.jobs, timeout=60_000)


def test_the_option_follows_the_photo_and_the_pose_limit_over_the_range(window, photo, idle):
    _keys(window)
    dialog = _dialog(window)
    assert dialog.paste_back.text() == PASTE_TEXT
    assert not dialog.paste_back.isEnabled()  # the fixture's portrait has no photo behind it
    assert "no original photo" in dialog.paste_back.toolTip()

    assert window.controller.open_portrait(photo)
    idle(window)
    _keys(window)  # opening a portrait starts a fresh undo history: key again
    dialog = _dialog(window)
    dialog.fps.setValue(4)
    dialog.end.setValue(1.0)  # 0°, 5°, 10°, 15°, 20° from the photo's pose
    assert not dialog.paste_back.isEnabled()
    assert "only right within 10° yaw" in dialog.paste_back.toolTip()
    assert "2 of 5 frames are beyond it" in dialog.paste_back.toolTip()
    dialog.end.setValue(0.5)  # up to 10°: within
    assert dialog.paste_back.isEnabled() and not dialog.paste_back.isChecked()
    dialog.size.setValue(48)
    dialog.paste_back.setChecked(True)
    assert not dialog.size.isEnabled() and "photo's own size" in dialog.size.toolTip()
    assert dialog.pasted() and dialog.settings().size is None
    window.state.set_mode("depth")
    dialog = _dialog(window)
    assert not dialog.paste_back.isEnabled() and "switch the view to Final" in dialog.paste_back.toolTip()


def test_the_menu_writes_a_pasted_animation_at_the_photos_size(qtbot, window, photo, idle, tmp_path, monkeypatch):
    assert window.controller.open_portrait(photo)
    idle(window)
    _keys(window)

    def accept(dialog):
        dialog.fps.setValue(4)
        dialog.end.setValue(0.5)
        dialog.paste_back.setChecked(True)
        return QDialog.DialogCode.Accepted

    target = tmp_path / "pasted"
    monkeypatch.setattr(AnimationDialog, "exec", accept)
    monkeypatch.setattr(QFileDialog, "getSaveFileName", lambda *a, **k: (str(target), ""))
    window.export_animation_dialog()
    _finish(qtbot, window, window.controller.jobs[-1])
    frames = [np.asarray(Image.open(f)) for f in sorted(target.iterdir())]
    assert len(frames) == 3 and {f.shape for f in frames} == {astronaut().shape}  # 0, 0.25, 0.5 s
    for frame in frames:
        same = np.all(frame == astronaut(), axis=-1).mean()
        assert 0.5 < same < 1.0  # the photo around the face, pixel for pixel; the face pasted in
    assert not np.array_equal(frames[0], frames[-1])  # λ and the view moved

    # One rule for stills and animations: yaw and pitch turn the head from the photo's own pose.
    window.timeline.scrub(0.0)  # the first key's pose: λ = 0, yaw 0
    photo = OrbitCamera.from_params(window.controller.photo_camera())
    view = window.controller.paste_back_camera()
    assert (view.yaw, view.pitch, view.radius) == pytest.approx((photo.yaw, photo.pitch, photo.radius))
    assert max(abs(photo.yaw), abs(photo.pitch)) > np.radians(1)  # not the frontal view: the rule shows
    still = tmp_path / "still.png"
    _finish(qtbot, window, window.run_export(window.controller.export_spec("still", still, paste_back=True)))
    assert np.array_equal(np.asarray(Image.open(still)), frames[0])


def test_a_cancelled_pasted_export_leaves_no_file(qtbot, window, photo, idle, tmp_path, monkeypatch):
    assert window.controller.open_portrait(photo)
    idle(window)
    _keys(window)
    out = tmp_path / "out"
    out.mkdir()
    settings = AnimationExportSettings(fps=8, start=0.0, end=0.5)
    spec = window.controller.export_spec("animation", out / "pasted.gif", paste_back=True,
                                         animation=window.state.animation, animation_settings=settings)
    done = []
    original = window.controller._start_job

    def start_cancelling_after_the_first_frame(job, what):
        # Direct: the worker itself cancels after its first frame, so the test cannot race it.
        job.progress.connect(lambda n, total: (done.append(n), job.cancel()), Qt.ConnectionType.DirectConnection)
        return original(job, what)

    monkeypatch.setattr(window.controller, "_start_job", start_cancelling_after_the_first_frame)
    job = window.controller.start_export(spec)
    cancelled = []
    job.cancelled.connect(lambda: cancelled.append(True))
    _finish(qtbot, window, job)
    assert cancelled and done == [1] and spec.total == 5
    assert list(out.iterdir()) == []
