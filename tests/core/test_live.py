"""Live driving with a video file standing in for the webcam: frames render, slow steps drop frames, a take bakes."""
import time

import numpy as np
import pytest

from export3d_core import Export3DError
from export3d_core.drive import DriveSettings, Reading
from export3d_core.export import write_animation
from export3d_core.live import LatestFrameSource, LiveDriver
from export3d_core.project_file import load_project_file, save_animation
from export3d_core.session import PortraitSession

from tests.core.lively_model import lively, pattern

FPS = 20
FRAMES = 30


@pytest.fixture
def clip(tmp_path):
    """A 1.5 s clip whose brightness encodes the frame index (the stand-in 'face' reader reads it)."""
    frames = [np.full((32, 32, 3), 8 * i, np.uint8) for i in range(FRAMES)]
    return write_animation(tmp_path / "cam.mp4", frames, FPS)


def brightness_reader(frame):
    """λ1 follows the brightness; frames darker than 40 have 'no face'."""
    level = float(frame.mean())
    if level < 40:
        return None
    return Reading(np.array([level / 50.0] + [0.0] * 9), yaw_deg=level / 20.0, pitch_deg=0.0)


def test_a_slow_consumer_drops_frames_instead_of_queueing(clip):
    source = LatestFrameSource(clip)
    taken = []
    try:
        while (item := source.latest(timeout=2.0)) is not None:
            taken.append(item[0])
            time.sleep(0.12)  # a renderer slower than the clip's 50 ms per frame
    finally:
        source.close()
    assert source.grabbed == FRAMES
    assert taken == sorted(set(taken)) and len(taken) < FRAMES * 0.7  # newest only, in order, many dropped
    assert taken[-1] >= FRAMES - 3  # it kept up with the source instead of lagging behind


def test_live_driver_renders_and_bakes_the_recorded_take(clip, tiny_model, tmp_path):
    session = PortraitSession(lively(tiny_model))
    session.set_portrait(pattern())
    driver = LiveDriver(brightness_reader, np.zeros(10), DriveSettings(smoothing=0), session=session)
    source = LatestFrameSource(clip)
    shown = []
    try:
        started = time.perf_counter()
        while (item := source.latest(timeout=2.0)) is not None:
            if item[0] == 10:
                driver.start_recording()
            live = driver.step(item[1], time.perf_counter() - started)
            assert live.image.shape == (64, 64, 3)
            if driver.recording:
                shown.append(live)
    finally:
        source.close()
    assert driver.faceless >= 1  # the first frames are too dark: held at the neutral pose
    take = driver.stop_recording(fps=FPS)
    assert len(take.keys) == len(shown) >= 2 and take.keys[0].time == 0.0
    assert [k.lam for k in take.keys] == [s.lam for s in shown]
    assert take.keys[-1].lam[0] > take.keys[0].lam[0]  # the clip brightens: λ1 rises
    path = save_animation(tmp_path / "take.e3d.json", take)
    assert load_project_file(path).animation == take
    with pytest.raises(Export3DError, match="too short"):
        driver.stop_recording()


def test_a_missing_camera_or_file_is_one_clear_error(tmp_path):
    with pytest.raises(Export3DError, match="video not found"):
        LatestFrameSource(tmp_path / "none.mp4")


def test_gain_and_smoothing_change_on_a_running_driver():
    driver = LiveDriver(brightness_reader, np.zeros(10), DriveSettings(smoothing=0))
    dim, bright = np.full((8, 8, 3), 50, np.uint8), np.full((8, 8, 3), 150, np.uint8)
    assert driver.step(dim, 0.0).lam[0] == pytest.approx(1.0)
    driver.set_settings(DriveSettings(gain=2.0, smoothing=0))
    assert driver.step(dim, 0.1).lam[0] == pytest.approx(2.0)  # the next frame already has the gain
    driver.set_settings(DriveSettings(gain=2.0, smoothing=4.0))
    driver.step(dim, 0.2)  # the filter starts from the current reading: no jump
    smoothed = driver.step(bright, 0.25).lam[0]
    assert 2.0 < smoothed < 5.0  # a step to 6.0 is only partly followed within one 50 ms frame
    driver.set_settings(DriveSettings(gain=2.0, smoothing=8.0))  # stronger: the filter keeps its state
    assert smoothed < driver.step(bright, 0.3).lam[0] < 6.0
    driver.set_settings(DriveSettings(gain=0.5, smoothing=0))
    assert driver.step(bright, 0.35).lam[0] == pytest.approx(1.5)  # off: the raw reading at the new gain
