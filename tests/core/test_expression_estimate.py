"""Expression estimate: β from landmarks (reader) or the image (regressor) -> LeBS λ; clear errors otherwise."""
import shutil

import numpy as np
import pytest
import torch

from export3d_core import Export3DError, save_checkpoint
from export3d_core.faces.regressor import AttributeRegressor, RegressorConfig, save_regressor
from export3d_core.data.head_landmarks import BETA_NAMES
from export3d_core.data.landmarks_dlib import dlib_available
from export3d_core.expression_estimate import ExpressionEstimator
from export3d_core.data.expression_reader import DEFAULT_READER, READER_FILE, ExpressionReader, ReaderConfig


def _regressor(beta_dim: int) -> AttributeRegressor:
    torch.manual_seed(0)
    return AttributeRegressor(RegressorConfig(beta_dim=beta_dim, identity_dim=4, identity_names=("a", "b", "c", "d")))


def test_estimate_is_lebs_of_the_regressed_beta(tmp_path, tiny_model):
    checkpoint = save_checkpoint(tiny_model, tmp_path / "model.safetensors")
    save_regressor(_regressor(tiny_model.config.beta_dim), tmp_path / "attribute_regressor.safetensors")
    estimator = ExpressionEstimator.for_checkpoint(tiny_model, checkpoint)
    image = np.random.default_rng(0).integers(0, 256, (96, 96, 3), dtype=np.uint8)
    estimate = estimator.estimate(image)  # no reader beside the checkpoint: the image regressor
    assert estimate.source == "image" and len(estimate.lam) == tiny_model.config.n_basis
    expected = tiny_model.coefficients(torch.tensor([estimate.beta]))[0]
    torch.testing.assert_close(torch.tensor(estimate.lam), expected)
    other = estimator.estimate(255 - image)
    assert other.lam != estimate.lam  # the estimate depends on the image


def test_missing_regressor_is_a_clear_error(tmp_path, tiny_model):
    checkpoint = save_checkpoint(tiny_model, tmp_path / "model.safetensors")
    with pytest.raises(Export3DError, match="no expression reader .* and no attribute regressor"):
        ExpressionEstimator.for_checkpoint(tiny_model, checkpoint)


def test_mismatched_beta_dim_is_refused(tiny_model):
    with pytest.raises(Export3DError, match="expression parameters"):
        ExpressionEstimator(_regressor(tiny_model.config.beta_dim + 1), tiny_model)


# -- the landmark reader on real photos -------------------------------------------------------------
def _lfw_face(index: int) -> np.ndarray:
    """One of scikit-image's 25x25 LFW faces, enlarged (bicubic) and padded so dlib's HOG finds it."""
    import cv2
    from skimage import data

    grey = cv2.resize((data.lfw_subset()[index] * 255).astype(np.uint8), (200, 200), interpolation=cv2.INTER_CUBIC)
    return np.dstack([cv2.copyMakeBorder(grey, 60, 60, 60, 60, cv2.BORDER_REPLICATE)] * 3)


NEUTRAL_LFW = (40, 60)  # closed mouths, open eyes (lfw_subset indices)


@pytest.mark.skipif(not dlib_available(), reason="dlib or its 68-point model is not installed")
def test_reader_beside_the_checkpoint_reads_the_astronaut_smile(tmp_path, tiny_model):
    from skimage import data

    from export3d_core.data.intake import crop_portrait

    checkpoint = save_checkpoint(tiny_model, tmp_path / "model.safetensors")
    shutil.copy(DEFAULT_READER, tmp_path / READER_FILE)  # a reader and no regressor
    estimator = ExpressionEstimator.for_checkpoint(tiny_model, checkpoint)
    assert estimator.sources == ["landmarks"]
    smile = BETA_NAMES.index("smile")
    size = 128  # the demo model's portrait side
    astronaut = estimator.estimate(crop_portrait(data.astronaut(), size=size).image)
    assert astronaut.source == "landmarks" and len(astronaut.lam) == tiny_model.config.n_basis
    torch.testing.assert_close(torch.tensor(astronaut.lam), tiny_model.coefficients(torch.tensor([astronaut.beta]))[0])
    neutral = [estimator.estimate(crop_portrait(_lfw_face(i), size=size).image).beta for i in NEUTRAL_LFW]
    # Measured with the shipped reader: astronaut 1.00 (its clip), these neutral faces 0.04 and 0.07.
    assert astronaut.beta[smile] > 0.6 and astronaut.beta[smile] > max(b[smile] for b in neutral) + 0.4
    blinks = [BETA_NAMES.index("blink_left"), BETA_NAMES.index("blink_right")]
    assert max(astronaut.beta[i] for i in blinks) < 0.4  # her eyes are open
    with pytest.raises(Export3DError, match="no 'image' expression reader"):
        estimator.estimate(crop_portrait(data.astronaut(), size=size).image, source="image")


def test_reader_with_the_wrong_beta_size_is_refused(tiny_model):
    reader = ExpressionReader(ReaderConfig(beta_names=BETA_NAMES[:5]))
    with pytest.raises(Export3DError, match="expression reader reads 5"):
        ExpressionEstimator(None, tiny_model, reader=reader)
