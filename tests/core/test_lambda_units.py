"""λ units: rescaling λ changes the numbers on the sliders, never the model's output."""
from __future__ import annotations

import pytest
import torch

from export3d_core.config import ModelConfig
from export3d_core.errors import Export3DError
from export3d_core.lambda_units import LAMBDA_SPAN, SPAN_QUANTILE, calibrated_scale, with_lambda_scale
from export3d_core.model import Export3D

CFG = ModelConfig.preset("tiny")


def test_rescaled_model_gives_the_same_expression_code_in_new_units() -> None:
    torch.manual_seed(0)
    model = Export3D(CFG).eval()
    rescaled = with_lambda_scale(model, 25.0)
    beta = torch.rand(3, CFG.beta_dim)
    with torch.no_grad():
        torch.testing.assert_close(rescaled.coefficients(beta), 25.0 * model.coefficients(beta))
        torch.testing.assert_close(rescaled.expression(beta=beta), model.expression(beta=beta))
        lam = torch.randn(2, CFG.n_basis)
        torch.testing.assert_close(rescaled.expression(lam=25.0 * lam), model.expression(lam=lam))
    assert rescaled.config.lambda_scale == 25.0 and not rescaled.training


def test_calibration_maps_strong_training_expressions_to_the_slider_scale() -> None:
    torch.manual_seed(1)
    model = Export3D(CFG)
    betas = torch.rand(500, CFG.beta_dim)
    calibrated = with_lambda_scale(model, calibrated_scale(model, betas))
    with torch.no_grad():
        lam = calibrated.coefficients(betas).abs().flatten()
    assert torch.quantile(lam, SPAN_QUANTILE).item() == pytest.approx(LAMBDA_SPAN, rel=1e-4)
    assert calibrated_scale(calibrated, betas) == pytest.approx(calibrated.config.lambda_scale)  # idempotent


def test_calibration_and_config_reject_bad_input() -> None:
    model = Export3D(CFG)
    with pytest.raises(Export3DError, match="expression parameters"):
        calibrated_scale(model, torch.rand(10, CFG.beta_dim + 1))
    with pytest.raises(ValueError, match="lambda_scale"):
        CFG.replace(lambda_scale=0.0)
    with pytest.raises(ValueError, match="lambda_scale"):
        CFG.replace(lambda_scale=float("nan"))
