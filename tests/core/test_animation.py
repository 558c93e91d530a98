"""Keyframe animation: easings through their keys with their defined shapes, validation, JSON."""
import json
import math

import numpy as np
import pytest

from export3d_core import Export3DError
from export3d_core.animation import EASINGS, Animation, CameraPose, Key, ease, two_key_animation

N = 10


def lam(*head):
    return tuple(head) + (0.0,) * (N - len(head))


def three_keys(easing):
    return Animation((Key(0.0, lam(0.0, 5.0), CameraPose(yaw_deg=-20), easing),
                      Key(1.0, lam(4.0, -1.0), CameraPose(yaw_deg=10, radius=3.0), easing),
                      Key(2.5, lam(-2.0, 3.0), CameraPose(yaw_deg=0, fov_deg=25), easing)))


@pytest.mark.parametrize("easing", EASINGS)
def test_every_easing_passes_exactly_through_its_keys(easing):
    animation = three_keys(easing)
    for key in animation.keys:
        got_lam, got_camera = animation.sample(key.time)
        assert got_lam == key.lam
        assert got_camera == key.camera


@pytest.mark.parametrize("easing", EASINGS)
def test_before_the_first_and_after_the_last_key_the_pose_holds(easing):
    animation = three_keys(easing)
    assert animation.sample(-1.0) == animation.sample(0.0)
    assert animation.sample(10.0) == animation.sample(2.5)


def test_hold_keeps_the_left_value_until_the_next_key():
    animation = three_keys("hold")
    for t in (0.0, 0.3, 0.999999):
        assert animation.sample(t)[0][:2] == (0.0, 5.0)
    assert animation.sample(1.0)[0][:2] == (4.0, -1.0)


def test_linear_moves_at_constant_speed():
    animation = three_keys("linear")
    for t in np.linspace(1.0, 2.5, 7):
        u = (t - 1.0) / 1.5
        assert animation.sample(t)[0][0] == pytest.approx(4.0 + (-2.0 - 4.0) * u, abs=1e-12)
        assert animation.sample(t)[1].yaw_deg == pytest.approx(10.0 * (1 - u), abs=1e-12)


def test_smooth_step_is_3u2_minus_2u3():
    animation = two_key_animation(lam(0.0), lam(1.0), 2.0, "smooth-step")
    for u in np.linspace(0, 1, 11):
        assert animation.sample(2.0 * u)[0][0] == pytest.approx(3 * u ** 2 - 2 * u ** 3, abs=1e-12)


def test_ease_in_out_is_the_symmetric_cubic():
    for u in np.linspace(0, 1, 21):
        assert ease("ease-in-out", u) + ease("ease-in-out", 1 - u) == pytest.approx(1.0, abs=1e-12)
    assert ease("ease-in-out", 0.25) == pytest.approx(4 * 0.25 ** 3)
    assert ease("ease-in-out", 0.5) == pytest.approx(0.5)
    # slower than smooth-step at the start, faster through the middle
    assert ease("ease-in-out", 0.1) < ease("smooth-step", 0.1)


def test_catmull_rom_does_not_stop_at_an_inner_key():
    """Smooth-step stops (zero slope) at every key; the spline keeps its neighbours' slope."""
    animation = Animation((Key(0.0, lam(0.0), easing="catmull-rom"), Key(1.0, lam(1.0), easing="catmull-rom"),
                           Key(2.0, lam(2.0), easing="catmull-rom")))
    h = 1e-4
    slope = (animation.sample(1.0 + h)[0][0] - animation.sample(1.0 - h)[0][0]) / (2 * h)
    assert slope == pytest.approx(1.0, abs=1e-3)
    # keys on a line: the spline is that line
    assert animation.sample(0.37)[0][0] == pytest.approx(0.37, abs=1e-12)


def test_catmull_rom_is_continuous_in_slope_with_uneven_spacing():
    animation = three_keys("catmull-rom")
    h = 1e-5
    left = (animation.sample(1.0)[0][0] - animation.sample(1.0 - h)[0][0]) / h
    right = (animation.sample(1.0 + h)[0][0] - animation.sample(1.0)[0][0]) / h
    assert left == pytest.approx(right, rel=1e-3)


def test_the_easing_of_the_left_key_shapes_the_segment():
    animation = Animation((Key(0.0, lam(0.0), easing="hold"), Key(1.0, lam(1.0), easing="linear"),
                           Key(2.0, lam(3.0), easing="hold")))
    assert animation.sample(0.5)[0][0] == 0.0
    assert animation.sample(1.5)[0][0] == pytest.approx(2.0)


def test_frame_times_include_both_ends():
    animation = two_key_animation(lam(), lam(1.0), 2.0, fps=10)
    times = animation.frame_times()
    assert len(times) == 21 and times[0] == 0.0 and times[-1] == pytest.approx(2.0)
    assert len(animation.frame_times(fps=5, start=0.5, end=1.5)) == 6


def test_json_round_trip_is_exact_and_readable():
    animation = three_keys("catmull-rom")
    text = json.dumps(animation.to_dict(), indent=2)
    assert '"easing": "catmull-rom"' in text and '"yaw_deg": -20.0' in text
    assert Animation.from_dict(json.loads(text)) == animation


@pytest.mark.parametrize("mutate, message", [
    (lambda d: d["keys"][1].update(easing="bounce"), "unknown easing 'bounce'"),
    (lambda d: d["keys"][1].update(time=0.0), "increasing time"),
    (lambda d: d["keys"][2].update(time=0.5), "increasing time"),
    (lambda d: d["keys"][1]["lambda"].append(1.0), "key 2 has 11 λ values"),
    (lambda d: d["keys"][0]["lambda"].__setitem__(0, float("nan")), "finite"),
    (lambda d: d["keys"][0]["camera"].update(yaw_deg=float("inf")), "finite"),
    (lambda d: d["keys"][0]["lambda"].__setitem__(0, "big"), "λ v1: 'big' is not a number"),
    (lambda d: d["keys"][0]["lambda"].__setitem__(2, 3e6), "λ v3 = 3e[+]06 is beyond"),
    (lambda d: d.update(fps=0), "fps"),
    (lambda d: d.update(duration=1.0), "cover the last key"),
    (lambda d: d.update(keys=[]), "non-empty list of keys"),
    (lambda d: d["keys"][0]["camera"].update(zoom=2), "unknown camera field 'zoom'"),
    (lambda d: d.update(speed=2), "unknown animation field 'speed'"),
    (lambda d: d["keys"][0].pop("time"), "needs a time"),
])
def test_bad_data_is_one_clear_error(mutate, message):
    data = three_keys("linear").to_dict()
    mutate(data)
    with pytest.raises(Export3DError, match=message) as info:
        Animation.from_dict(data)
    assert "\n" not in str(info.value)


def test_lambda_count_must_match_the_model():
    with pytest.raises(Export3DError, match="the model has 8"):
        Animation.from_dict(three_keys("linear").to_dict(), n_basis=8)


def test_editing_returns_new_animations_in_time_order():
    animation = three_keys("linear")
    added = animation.with_key(Key(0.5, lam(9.0)))
    assert added.times == (0.0, 0.5, 1.0, 2.5) and animation.times == (0.0, 1.0, 2.5)
    moved = added.moved_key(1, 3.0)
    assert moved.times == (0.0, 1.0, 2.5, 3.0) and moved.keys[-1].lam[0] == 9.0 and moved.duration == 3.0
    assert moved.without_key(0).times == (1.0, 2.5, 3.0)
    with pytest.raises(Export3DError, match="at least one key"):
        Animation((Key(0.0, lam()),)).without_key(0)


def test_camera_pose_converts_to_radians():
    orbit = CameraPose(yaw_deg=30, pitch_deg=-10, radius=3, fov_deg=20).to_orbit()
    assert orbit.yaw == pytest.approx(math.radians(30)) and orbit.pitch == pytest.approx(math.radians(-10))
