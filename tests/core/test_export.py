"""Exports: real files on disk, atomic writes, cancel leaves nothing, no silent overwrite."""
import imageio.v2 as imageio
import numpy as np
import pytest
from PIL import Image

from export3d_core import Export3DError, OrbitCamera
from export3d_core.export import (ExportCancelled, TurntableSettings, sweep_frames, turntable_cameras,
                                  turntable_frames, write_animation, write_png)
from export3d_core.session import PortraitSession


@pytest.fixture
def session(tiny_model):
    session = PortraitSession(tiny_model)
    session.set_portrait(np.full((64, 64, 3), 128, np.uint8))
    return session


def test_gif_has_requested_frames_and_size(tmp_path, session):
    settings = TurntableSettings(frames=5, fps=10)
    path = write_animation(tmp_path / "t.gif", turntable_frames(session, [0.0] * 10, OrbitCamera(), settings), settings.fps)
    frames = imageio.mimread(path)
    assert len(frames) == 5
    assert frames[0].shape[:2] == (session.config.output_size,) * 2


def test_mp4_is_written(tmp_path, session):
    frames = list(sweep_frames(session, [0.0] * 10, OrbitCamera(), 2, -3, 3, 4))
    path = write_animation(tmp_path / "s.mp4", frames, 8)
    reader = imageio.get_reader(path)
    assert reader.count_frames() == 4


def test_cancel_leaves_no_file(tmp_path, session):
    calls = iter(range(100))
    with pytest.raises(ExportCancelled):
        write_animation(tmp_path / "c.gif", (np.zeros((16, 16, 3), np.uint8) for _ in range(10)), 10,
                        should_cancel=lambda: next(calls) >= 3)
    assert list(tmp_path.iterdir()) == []


def test_failure_midway_leaves_no_file(tmp_path):
    def frames():
        yield np.zeros((16, 16, 3), np.uint8)
        raise RuntimeError("model exploded")

    with pytest.raises(RuntimeError):
        write_animation(tmp_path / "f.gif", frames(), 10)
    assert list(tmp_path.iterdir()) == []


def test_no_overwrite_without_asking(tmp_path):
    target = tmp_path / "still.png"
    target.write_bytes(b"precious")
    with pytest.raises(Export3DError, match="exists"):
        write_png(target, np.zeros((8, 8, 3), np.uint8))
    assert target.read_bytes() == b"precious"
    write_png(target, np.zeros((8, 8, 3), np.uint8), overwrite=True)
    assert Image.open(target).size == (8, 8)


def test_png_with_alpha(tmp_path):
    alpha = np.tile(np.arange(8, dtype=np.uint8) * 30, (8, 1))
    path = write_png(tmp_path / "a.png", np.zeros((8, 8, 3), np.uint8), alpha)
    image = np.asarray(Image.open(path))
    assert image.shape == (8, 8, 4) and np.array_equal(image[..., 3], alpha)


def test_wrong_suffix_is_refused(tmp_path):
    with pytest.raises(Export3DError, match="must end in"):
        write_animation(tmp_path / "x.avi", [], 10)


def test_yaw_path_keeps_pitch():
    cams = turntable_cameras(OrbitCamera(pitch=0.1), TurntableSettings(frames=4, path="yaw"))
    assert all(abs(c.pitch - 0.1) < 1e-12 for c in cams)
    assert len({round(c.yaw, 6) for c in cams}) > 1
