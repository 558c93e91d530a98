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
