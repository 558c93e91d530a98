"""A fitted portrait's tri-plane offset that follows the expression (docs/fitting.md).

A per-portrait fit paints the photo into a tri-plane offset at the photo's own λ (the pivot). Added
as it is, the offset holds the photo's eyes and mouth still while λ moves the model's own features
under them: the basis barely moves a fitted face. `ExpressionFlow` instead warps the offset along
the flow that the generator's own planes undergo when λ leaves the pivot:

    T(λ) = T_G(λ) + warp(offset, D(λ)),   D(λ) = Σ_k max(Δ_k, 0) D⁺_k + max(-Δ_k, 0) D⁻_k,   Δ = λ - pivot

where D±_k is a displacement field over each plane per unit of λ_k, one per sign (a jaw opens one
way only), estimated by `estimate_flow_fields` from G's planes at the pivot and at pivot ± 10 e_k.
At the pivot D = 0, so the render the fit optimised is unchanged. λ is read back from the
expression code e (e = gain (λ / scale) V with V orthonormal, so λ = e Vᵀ scale / gain), which
keeps `triplane(appearance, e)` the generator's only entry point.

The fields are kept, not recomputed per λ: the warp costs one `grid_sample` over the planes.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn



@dataclass(frozen=True)
class FlowEstimate:
    """How the displacement fields are estimated (measured on the demo model, docs/fitting.md)."""

    step: float = 10.0  # λ offset of G's planes the flow is measured at (the sliders' strong ±10)
    iterations: int = 100  # Adam steps of the registration (the fit explains as much of the change at 100 as at 200)
    lr: float = 2e-3  # Adam rate, in normalised plane units (a texel is 2 / R)
    smoothness: float = 0.03  # weight of the squared-gradient penalty (0.1 at 32² texels moved features less)


class ExpressionFlow(nn.Module):
    """offset (3, C, R, R), fields (2, n, 3, 2, R, R) per unit λ (sign, basis vector, plane, xy),
    pivot (n,), to_lam (d, n) — all buffers, so they travel in a fit file's state-dict names."""

    def __init__(self, n_basis: int, expr_dim: int, channels: int, res: int) -> None:
        super().__init__()
        self.register_buffer("offset", torch.zeros(3, channels, res, res))
        self.register_buffer("fields", torch.zeros(2, n_basis, 3, 2, res, res))
        self.register_buffer("pivot", torch.zeros(n_basis))
        self.register_buffer("to_lam", torch.zeros(expr_dim, n_basis))

    def lam(self, e: Tensor) -> Tensor:
        """The λ (B, n) an expression code e (B, d) was made from."""
        return e.float() @ self.to_lam.float()

    def displacement(self, lam: Tensor) -> Tensor:
        """D(λ): (B, 3, 2, R, R) in normalised plane units."""
        delta = lam - self.pivot.float()
        fields = self.fields.float().flatten(2)  # (2, n, 3·2·R·R)
        moved = delta.clamp(min=0) @ fields[0] + (-delta).clamp(min=0) @ fields[1]
        return moved.view(lam.shape[0], *self.fields.shape[2:])

    def forward(self, e: Tensor, dtype: torch.dtype) -> Tensor:
        """The warped offset (B, 3, C, R, R) for expression codes e (B, d)."""
        disp = self.displacement(self.lam(e))
        offset = self.offset.float().expand(e.shape[0], *self.offset.shape)
        return warp_planes(offset, disp).to(dtype)


def warp_planes(planes: Tensor, disp: Tensor) -> Tensor:
    """Backward-warp planes (B, 3, C, R, R) by displacements (B, 3, 2, R, R): out(x) = planes(x + d(x))."""
    b, _, c, r, _ = planes.shape
    grid = _identity_grid(r, planes.device) + disp.reshape(b * 3, 2, r, r).permute(0, 2, 3, 1)
    warped = F.grid_sample(planes.reshape(b * 3, c, r, r), grid, mode="bilinear", padding_mode="border",
                           align_corners=False)
    return warped.view(b, 3, c, r, r)


def _identity_grid(res: int, device: torch.device) -> Tensor:
    """(1, R, R, 2): every texel's own centre in grid_sample's normalised coordinates."""
    eye = torch.eye(2, 3, device=device)[None]
    return F.affine_grid(eye, [1, 1, res, res], align_corners=False)


def estimate_flow_fields(planes_at: Callable[[list[float]], Tensor], pivot: list[float],
                         settings: FlowEstimate = FlowEstimate(),
                         check: Callable[[], None] | None = None) -> Tensor:
    """D±_k per unit λ, (2, n, 3, 2, R, R): the smooth displacement of each plane that best turns G's
    planes at the pivot into its planes at pivot ± step e_k (least squares, optical-flow style).

    `planes_at(λ)` gives the unfitted model's tri-plane (3, C, R, R) for one λ. `check()` is called
    every ten iterations; it may raise to stop (a cancelled fit).
    """
    n = len(pivot)
    with torch.no_grad():
        start = planes_at(list(pivot))
        targets = []
        for sign in (1.0, -1.0):
            for k in range(n):
                moved = list(pivot)
                moved[k] += sign * settings.step
                targets.append(planes_at(moved))
        targets = torch.stack(targets).float()  # (2n, 3, C, R, R)
    source = start.float().expand_as(targets)
    fields = torch.zeros(2 * n, 3, 2, *start.shape[-2:], device=start.device, requires_grad=True)
    optimizer = torch.optim.Adam([fields], lr=settings.lr)
    for iteration in range(settings.iterations):
        if check is not None and iteration % 10 == 0:
            check()
        warped = warp_planes(source, fields)
        roughness = (fields.diff(dim=-1).pow(2).mean() + fields.diff(dim=-2).pow(2).mean())
        loss = F.mse_loss(warped, targets) + settings.smoothness * roughness
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return (fields.detach() / settings.step).view(2, n, *fields.shape[1:])


def lam_readout(basis: Tensor, lambda_scale: float, expression_gain: float) -> Tensor:
    """(d, n): e @ this = λ, for e = gain (λ / scale) V with V (n, d) orthonormal rows (LeBS.embed)."""
    return basis.detach().float().transpose(0, 1) * (lambda_scale / expression_gain)
