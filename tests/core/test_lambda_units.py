"""λ units: rescaling λ changes the numbers on the sliders, never the model's output."""
from __future__ import annotations

import re

import numpy as np
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


# -- the largest λ ----------------------------------------------------------------------------------
def test_check_lambda_refuses_beyond_the_maximum_in_one_line() -> None:
    from export3d_core.lambda_units import MAX_ABS_LAMBDA, check_lambda

    assert check_lambda([MAX_ABS_LAMBDA, -MAX_ABS_LAMBDA, 0]) == [MAX_ABS_LAMBDA, -MAX_ABS_LAMBDA, 0.0]
    for value, message in ((1e15, "v2 = 1e+15 is beyond ±1e+06"), (-1e308, "v2 = -1e+308 is beyond"),
                           (float("nan"), "v2 must be a finite number"), ("ten", "v2: 'ten' is not a number")):
        with pytest.raises(Export3DError, match=re.escape(message)) as info:
            check_lambda([0.0, value])
        assert "\n" not in str(info.value)


@pytest.fixture(scope="module")
def demo_session():
    from export3d_core.checkpoint import DEMO_CHECKPOINT, load_checkpoint
    from export3d_core.portrait import default_portrait, load_portrait
    from export3d_core.session import PortraitSession

    model, _ = load_checkpoint(DEMO_CHECKPOINT)
    session = PortraitSession(model)
    session.set_portrait(load_portrait(default_portrait().path, model.config.input_size).image)
    return session


def test_the_maximum_is_safe_on_the_shipped_model(demo_session) -> None:
    """Every coefficient at ±MAX_ABS_LAMBDA gives a finite tri-plane (the fp32 overflow measured
    by `python -m export3d_core.eval.lambda_range` is near 1e11), and one step past is refused."""
    from export3d_core.lambda_units import MAX_ABS_LAMBDA

    n = demo_session.config.n_basis
    for index in range(n):
        for sign in (1.0, -1.0):
            lam = [0.0] * n
            lam[index] = sign * MAX_ABS_LAMBDA
            assert torch.isfinite(demo_session.planes(lam)).all()
    with pytest.raises(Export3DError, match="beyond"):
        demo_session.planes([1e15] + [0.0] * (n - 1))


def test_a_model_that_overflows_below_the_maximum_says_so(demo_session) -> None:
    """The same demo weights with a 1e6 times larger expression gain overflow at λ = 1e6 (like the
    demo at 1e12): an error naming the cause, never a black image."""
    from export3d_core.session import PortraitSession

    model = demo_session.model
    louder = Export3D(model.config.replace(expression_gain=model.config.expression_gain * 1e6)).eval()
    louder.load_state_dict(model.state_dict())
    session = PortraitSession(louder)
    session.set_portrait(np.full((model.config.input_size,) * 2 + (3,), 128, np.uint8))
    assert torch.isfinite(session.planes([10.0] + [0.0] * 9)).all()
    with pytest.raises(Export3DError, match="overflows this model's arithmetic"):
        session.planes([1e6] + [0.0] * 9)


def test_render_command_refuses_a_huge_lambda(tmp_path, capsys) -> None:
    from export3d_core.cli import main

    out = tmp_path / "big.png"
    assert main(["render", "--lam", "v1=1e15", "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "--lam v1 = 1e+15 is beyond ±1e+06" in err
    assert not out.exists()
