"""Training objectives of supplementary §1.3: reconstruction (Eq. 3) and the adversarial terms of Eq. 4.

Owns the multi-scale LPIPS-style perceptual distance on VGG16 features (or on another feature
network: see face_features.py), the reconstruction loss on the raw and final images, the
non-saturating (softplus) GAN losses and the R1 penalty. Pure functions of tensors; the feature
network is passed in (or None: MSE only).
"""
from __future__ import annotations

from typing import Any, Mapping

import torch
import torch.nn.functional as F
from torch import nn

PERCEPTUAL_SCALES = 2  # the image scale and half of it ("multi-scale", supplementary §1.3)
NORM_EPS = 1e-10  # as LPIPS' normalize_tensor


def normalize_channels(features: torch.Tensor) -> torch.Tensor:
    """Unit length along channels at every pixel (LPIPS): (B, C, H, W) -> (B, C, H, W)."""
    return features / (features.pow(2).sum(dim=1, keepdim=True).sqrt() + NORM_EPS)


class PerceptualLoss(torch.nn.Module):
    """LPIPS-style distance with uniform layer weights (LPIPS' "baseline" variant, no learned
    linear heads: those weights would need another download). Per tap: channel-normalised
    features, squared difference summed over channels, mean over pixels; summed over the taps
    (VGG16's five), averaged over the scales. `network` maps an image (B, 3, H, W) in [-1, 1]
    to a list of feature maps; `weight` scales the whole distance."""

    def __init__(self, network: nn.Module, scales: int = PERCEPTUAL_SCALES, weight: float = 1.0) -> None:
        super().__init__()
        self.network = network
        self.scales = scales
        self.weight = weight

    def forward(self, prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        total = prediction.new_zeros(())
        for scale in range(self.scales):
            if scale:
                prediction = F.avg_pool2d(prediction, 2)  # (B, 3, H/2, W/2)
                target = F.avg_pool2d(target, 2)
            with torch.no_grad():
                target_taps = self.network(target)
            for pred, ref in zip(self.network(prediction), target_taps):
                diff = (normalize_channels(pred) - normalize_channels(ref)).pow(2).sum(dim=1)  # (B, h, w)
                total = total + diff.mean()
        return self.weight * total / self.scales


def reconstruction_loss(out: Any, batch: Mapping[str, torch.Tensor], perceptual: PerceptualLoss | None = None,
                        expression: nn.Module | None = None) -> tuple[torch.Tensor, dict[str, float]]:
    """Eq. (3): L2(raw) + L2(final) + LPIPS(raw) + LPIPS(final); the LPIPS terms only with a
    perceptual network. `expression(prediction, target)`, when given, adds an expression term on
    both images (not in the paper; see face_features.py).

    `out` has `.image` (B, 3, out, out) and `.image_raw` (B, 3, n, n); `batch` has `driving` and
    `driving_raw` of the same sides, and optionally `weight` (B, 1, out, out): then both L2 terms
    are weighted means (the raw term with the weight area-resampled to its side). Returns the
    total and the float value of each part.
    """
    weight = batch.get("weight")
    parts: dict[str, torch.Tensor] = {
        "l2_raw": weighted_mse(out.image_raw, batch["driving_raw"], weight),
        "l2": weighted_mse(out.image, batch["driving"], weight),
    }
    if perceptual is not None:
        parts["lpips_raw"] = perceptual(out.image_raw, batch["driving_raw"])
        parts["lpips"] = perceptual(out.image, batch["driving"])
    if expression is not None:
        parts["expr_raw"] = expression(out.image_raw, batch["driving_raw"])
        parts["expr"] = expression(out.image, batch["driving"])
    total = torch.stack(list(parts.values())).sum()
    return total, {name: float(value.detach()) for name, value in parts.items()}


def weighted_mse(output: torch.Tensor, target: torch.Tensor, weight: torch.Tensor | None) -> torch.Tensor:
    """Mean squared error, weighted per pixel by weight (B, 1, H', W') resampled to the images' side."""
    if weight is None:
        return F.mse_loss(output, target)
    if weight.shape[-2:] != output.shape[-2:]:
        weight = F.interpolate(weight, size=output.shape[-2:], mode="area")
    weight = weight.to(output.dtype)
    return (weight * (output - target).square()).mean() / weight.mean()


def generator_adv_loss(fake_logits: torch.Tensor) -> torch.Tensor:
    """Non-saturating GAN loss (binary cross-entropy with "real" labels): mean softplus(-D(G))."""
    return F.softplus(-fake_logits).mean()


def discriminator_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """Binary cross-entropy of D: mean softplus(-D(x)) + mean softplus(D(G))."""
    return F.softplus(-real_logits).mean() + F.softplus(fake_logits).mean()


def r1_penalty(real_logits: torch.Tensor, real_inputs: list[torch.Tensor]) -> torch.Tensor:
    """R1 (Mescheder et al. 2018): mean over the batch of |∇_x D(x)|² on real inputs.

    `real_inputs` must require grad and be what produced `real_logits`; the graph is kept so the
    penalty can be backpropagated into D.
    """
    grads = torch.autograd.grad(real_logits.sum(), real_inputs, create_graph=True)
    return sum(g.pow(2).flatten(1).sum(dim=1) for g in grads).mean()
