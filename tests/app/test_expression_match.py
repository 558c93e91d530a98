"""The expression estimator in the editor: sliders start at the portrait's λ; match from a photo."""
import numpy as np
import pytest
import torch
from PIL import Image

from export3d_core.faces.regressor import AttributeRegressor, RegressorConfig, save_regressor


@pytest.fixture
def estimating_window(window, checkpoint):
    torch.manual_seed(0)
    cfg = RegressorConfig(beta_dim=window.controller.loaded.model.config.beta_dim, identity_dim=3,
                          identity_names=("a", "b", "c"))
    save_regressor(AttributeRegressor(cfg), checkpoint.parent / "attribute_regressor.safetensors")
    assert window.controller.load_model(checkpoint)
    return window


def _synthetic_face(path):
    from export3d_core import OrbitCamera
    from export3d_core.data.synthetic import HeadRenderer, sample_expression, sample_identity

    rng = np.random.default_rng(3)
    with HeadRenderer(256) as renderer:
        head = renderer.render(sample_identity(rng), sample_expression(rng), OrbitCamera().params().numpy())
    Image.fromarray(head.image).save(path)
    return path


def test_without_regressor_match_is_disabled_and_says_why(window):
    assert not window.match_button.isEnabled()
    assert "attribute regressor" in window.match_button.toolTip()


def test_portrait_starts_at_its_estimated_expression(estimating_window, make_portrait, idle):
    win = estimating_window
    assert win.match_button.isEnabled()
    image = make_portrait(96, 5)
    win.controller.set_portrait_image(image, None)
    idle(win)
    expected = win.controller.loaded.estimator.estimate(image).lam
    np.testing.assert_allclose(win.state.lam, expected, rtol=1e-6)


def test_match_expression_from_photo_is_one_undo_step(estimating_window, tmp_path, idle):
    win = estimating_window
    before = list(win.state.lam)
    assert win.controller.match_expression(_synthetic_face(tmp_path / "face.png"))
    idle(win)
    assert list(win.state.lam) != before
    win.controller.undo_stack.undo()
    np.testing.assert_allclose(win.state.lam, before)


def test_status_says_which_reader_read_the_expression(estimating_window, tmp_path, idle):
    """A real photo is read from its landmarks (the shipped reader), a synthetic demo portrait from its image."""
    import shutil

    from skimage.data import astronaut

    from export3d_core.data.head_landmarks import BETA_NAMES
    from export3d_core.data.landmarks_dlib import dlib_available
    from export3d_core.data.expression_reader import DEFAULT_READER, READER_FILE
    from export3d_core.portrait import demo_portraits

    if not dlib_available():
        pytest.skip("dlib or its 68-point model is not installed")
    win = estimating_window
    checkpoint = win.controller.loaded.path
    shutil.copy(DEFAULT_READER, checkpoint.parent / READER_FILE)  # reader + regressor beside the weights
    assert win.controller.load_model(checkpoint)
    photo = tmp_path / "astronaut.png"
    Image.fromarray(astronaut()).save(photo)
    assert win.controller.open_portrait(photo)
    idle(win)
    assert "expression read from its landmarks" in win.statusBar().currentMessage()
    estimate = win.controller.loaded.estimator.estimate(win.controller.portrait_image)
    assert estimate.source == "landmarks" and estimate.beta[BETA_NAMES.index("smile")] > 0.6
    np.testing.assert_allclose(win.state.lam, estimate.lam, rtol=1e-5)  # the sliders started at her smile
    synthetic = next(p.path for p in demo_portraits() if p.aligned and p.in_domain)
    assert win.controller.open_portrait(synthetic)
    idle(win)
    assert "expression read from its image" in win.statusBar().currentMessage()
    assert win.controller.match_expression(photo)
    assert "(read from its landmarks)" in win.statusBar().currentMessage()
