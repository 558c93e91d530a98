"""A fitted portrait's offset follows λ: the flow estimator recovers a known motion of G's planes,
and a fitted model's offset moves with λ but stays put at the photo's own λ."""
from __future__ import annotations

import copy

import numpy as np
import torch
import torch.nn.functional as F

from export3d_core.camera import OrbitCamera
from export3d_core.fit import FitSettings, fit_portrait
from export3d_core.nn.expression_flow import ExpressionFlow, FlowEstimate, estimate_flow_fields, lam_readout, warp_planes


def smooth_planes(channels: int, res: int, seed: int = 0) -> torch.Tensor:
    noise = torch.randn(3, channels, res // 4, res // 4, generator=torch.Generator().manual_seed(seed))
    return F.interpolate(noise, size=(res, res), mode="bicubic", align_corners=False)  # (3, C, R, R)


def test_the_estimator_recovers_a_known_motion_of_the_planes():
    res, step = 32, 10.0
    base = smooth_planes(4, res)
    motion = torch.tensor([0.004, -0.002])  # per unit of λ_0, in normalised plane units (x, y)

    def planes_at(lam: list[float]) -> torch.Tensor:  # only λ_0 moves anything
        disp = (motion * lam[0])[None, None, :, None, None].expand(1, 3, 2, res, res)
        return warp_planes(base[None], disp)[0]

    fields = estimate_flow_fields(planes_at, [0.0, 0.0], FlowEstimate(step=step, iterations=150, lr=2e-3, smoothness=0.01))
    assert fields.shape == (2, 2, 3, 2, res, res)
    inner = (slice(None), slice(4, -4), slice(4, -4))  # away from the border, where the warp clamps
    for sign, expected in ((0, motion), (1, -motion)):  # fields are per unit λ: + and - steps move oppositely
        for axis in range(2):
            found = fields[sign, 0, :, axis][inner].mean()
            assert abs(float(found) - float(expected[axis])) < 0.25 * abs(float(expected[axis]))
    assert fields[:, 1].abs().max() < 0.1 * motion.abs().max()  # λ_1 moves nothing: no flow


def test_the_flow_reads_lam_back_from_the_expression_code(tiny_model):
    cfg = tiny_model.config
    flow = ExpressionFlow(cfg.n_basis, cfg.expr_dim, cfg.plane_channels, cfg.plane_res)
    flow.to_lam.copy_(lam_readout(tiny_model.basis(), cfg.lambda_scale, cfg.expression_gain))
    lam = torch.linspace(-30, 30, cfg.n_basis)[None]
    torch.testing.assert_close(flow.lam(tiny_model.expression(lam=lam)), lam, atol=1e-3, rtol=1e-4)


def test_a_fitted_offset_moves_with_lam_and_holds_at_the_pivot(tiny_model):
    tiny_model = copy.deepcopy(tiny_model)
    with torch.no_grad():  # a trained G responds to λ; the fresh one's EAdaLN modulation starts at zero
        for parameter in tiny_model.generator.eadaln_blocks.parameters():
            parameter.normal_(0, 0.05, generator=torch.Generator().manual_seed(parameter.numel()))
    cfg = tiny_model.config
    photo = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    pivot = [0.5] * cfg.n_basis
    fast = FitSettings(steps=3, side_views=1, side_size=8, samples=4)
    result = fit_portrait(tiny_model, photo, OrbitCamera().params().numpy(), pivot, fast)
    flow = result.model.generator.expression_flow
    assert flow is not None and flow.fields.abs().max() > 0
    assert torch.count_nonzero(flow.offset) > 0

    def offset_at(lam: list[float]) -> torch.Tensor:
        e = result.model.expression(lam=torch.tensor([lam]))
        return flow(e, torch.float32)[0]

    torch.testing.assert_close(offset_at(pivot), flow.offset.float(), atol=1e-3, rtol=0)  # the fitted render stays
    moved = list(pivot)
    moved[0] += 10
    assert (offset_at(moved) - flow.offset.float()).abs().max() > 1e-3  # it follows λ
    held = fit_portrait(tiny_model, photo, OrbitCamera().params().numpy(), pivot,
                        FitSettings(steps=3, side_views=1, side_size=8, samples=4, follow_expression=False))
    assert held.model.generator.expression_flow.fields.abs().max() == 0  # the option holds it still
