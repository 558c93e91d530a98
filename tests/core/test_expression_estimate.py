"""Expression estimate: regressor β -> LeBS λ, found beside the checkpoint, clear errors otherwise."""
import numpy as np
import pytest
import torch

from export3d_core import Export3DError, save_checkpoint
from export3d_core.faces.regressor import AttributeRegressor, RegressorConfig, save_regressor
from export3d_core.expression_estimate import ExpressionEstimator


def _regressor(beta_dim: int) -> AttributeRegressor:
    torch.manual_seed(0)
    return AttributeRegressor(RegressorConfig(beta_dim=beta_dim, identity_dim=4, identity_names=("a", "b", "c", "d")))


def test_estimate_is_lebs_of_the_regressed_beta(tmp_path, tiny_model):
    checkpoint = save_checkpoint(tiny_model, tmp_path / "model.safetensors")
    save_regressor(_regressor(tiny_model.config.beta_dim), tmp_path / "attribute_regressor.safetensors")
    estimator = ExpressionEstimator.for_checkpoint(tiny_model, checkpoint)
    image = np.random.default_rng(0).integers(0, 256, (96, 96, 3), dtype=np.uint8)
    estimate = estimator.estimate(image)
    assert len(estimate.lam) == tiny_model.config.n_basis
    expected = tiny_model.coefficients(torch.tensor([estimate.beta]))[0]
    torch.testing.assert_close(torch.tensor(estimate.lam), expected)
    other = estimator.estimate(255 - image)
    assert other.lam != estimate.lam  # the estimate depends on the image


def test_missing_regressor_is_a_clear_error(tmp_path, tiny_model):
    checkpoint = save_checkpoint(tiny_model, tmp_path / "model.safetensors")
    with pytest.raises(Export3DError, match="no attribute regressor"):
        ExpressionEstimator.for_checkpoint(tiny_model, checkpoint)


def test_mismatched_beta_dim_is_refused(tiny_model):
    with pytest.raises(Export3DError, match="expression parameters"):
        ExpressionEstimator(_regressor(tiny_model.config.beta_dim + 1), tiny_model)
