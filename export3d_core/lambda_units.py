"""The units of λ: calibrate `ModelConfig.lambda_scale` so the sliders mean something.

CLeBS is trained with a cosine-similarity InfoNCE loss, which fixes the directions of the
expression codes but not their length, so the raw LeBS output of a trained model can live
anywhere: the demo model's training expressions gave |λ| <= 0.3, while the editor's sliders and
the paper's basis sweeps (Fig. S3) work on a scale of about -10 .. 20. Calibration rescales λ
(the model's output is unchanged, see config.py) so that the training expressions reach
±`LAMBDA_SPAN` at the `SPAN_QUANTILE` of |λ|: a slider at 10 is then an expression as strong as
the strongest ones in the data, and the paper's sweep to 20 goes twice as far.
"""
from __future__ import annotations

import numpy as np
import torch

from export3d_core.errors import Export3DError

LAMBDA_SPAN = 10.0  # |λ| of a strong training expression after calibration (the paper's slider scale)
SPAN_QUANTILE = 0.99  # which |λ| of the training expressions is mapped to LAMBDA_SPAN

# The largest |λ| any λ input accepts (sliders, --lam, presets, projects, sweeps); beyond it the
# input is refused in one line. Measured on the demo model, one coefficient at a time
# (`python -m export3d_core.eval.lambda_range`): the head is exaggerated at 100, dissolves by
# 1,000-3,000 and the image is a flat colour from about 10,000 on. The arithmetic breaks near
# 1e11: each EAdaLN block scales and shifts its tokens by terms linear in e, so its output grows
# as |λ|², and the next block's LayerNorm squares that again (its variance), which overflows fp32
# (and bf16, which has fp32's range) at ~3e38; NaN follows and the image is black. 1e6 is the
# editor's spin-box range: it keeps every image there is to see (in calibrated units, so for any
# model) and stays five orders of magnitude below the overflow.
MAX_ABS_LAMBDA = 1e6


def check_lambda(values, what: str = "λ") -> list[float]:
    """`values` as floats, or an `Export3DError` naming the first one that is not finite or exceeds
    ±MAX_ABS_LAMBDA (1-based, v1..vn, the names the user sees)."""
    out = []
    for index, value in enumerate(values):
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise Export3DError(f"{what} v{index + 1}: {value!r} is not a number") from None
        if not np.isfinite(number):
            raise Export3DError(f"{what} v{index + 1} must be a finite number, got {number}")
        if abs(number) > MAX_ABS_LAMBDA:
            raise Export3DError(f"{what} v{index + 1} = {number:g} is beyond ±{MAX_ABS_LAMBDA:g}, the largest λ "
                                "this build renders (far past it the model's arithmetic overflows)")
        out.append(number)
    return out


@torch.no_grad()
def calibrated_scale(model, betas: np.ndarray | torch.Tensor, span: float = LAMBDA_SPAN,
                     quantile: float = SPAN_QUANTILE) -> float:
    """The `lambda_scale` that maps the `quantile` of |λ| over `betas` (N, beta_dim) to `span`.

    `model` is an Export3D or its LeBS; only the raw LeBS output counts, so the answer does not
    depend on the scale the model already has.
    """
    lebs = getattr(model, "lebs", model)
    beta_dim = lebs.mlp[0].in_features
    betas = torch.as_tensor(np.asarray(betas), dtype=torch.float32)
    if betas.dim() != 2 or betas.shape[0] < 2 or betas.shape[1] != beta_dim:
        raise Export3DError(f"calibrating λ needs (N >= 2, {beta_dim}) expression parameters, "
                            f"got {tuple(betas.shape)}")
    device = next(lebs.parameters()).device
    raw = lebs.mlp(betas.to(device))  # (N, n): λ before any scaling
    reach = float(torch.quantile(raw.abs().flatten().double().cpu(), quantile))
    if not np.isfinite(reach) or reach <= 0:
        raise Export3DError("the expression parameters give no λ at all (LeBS outputs zeros); cannot calibrate")
    return span / reach


def with_lambda_scale(model, scale: float):
    """The same weights in a model whose config has `lambda_scale = scale` (λ in new units)."""
    from export3d_core.model import Export3D

    rescaled = Export3D(model.config.replace(lambda_scale=float(scale)))
    rescaled.load_state_dict(model.state_dict())
    parameter = next(model.parameters())
    return rescaled.to(device=parameter.device, dtype=parameter.dtype).train(model.training)


__all__ = ["LAMBDA_SPAN", "MAX_ABS_LAMBDA", "SPAN_QUANTILE", "calibrated_scale", "check_lambda", "with_lambda_scale"]
