"""The light-weight tri-plane decoder (supplementary §1.2 "MLP"): sampled plane features -> density and colour.

Two separate FC stacks with softplus activations, one for density and one for colour features,
as the supplementary prescribes (EG3D uses one shared stack). The renderer receives this module
as a callback and knows nothing else of the model. Density stays raw: the renderer applies
softplus(raw + RenderConfig.density_shift).
"""
from __future__ import annotations

import torch
from torch import nn

from ..config import ModelConfig

# EG3D widens the sigmoid slightly so colour features can reach exactly 0 and 1.
COLOUR_MARGIN = 0.001


def _fc_stack(in_dim: int, hidden: int, out_dim: int, layers: int) -> nn.Sequential:
    """`layers` Linear layers with softplus between them (none after the last)."""
    dims = [in_dim] + [hidden] * (layers - 1) + [out_dim]
    modules: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(dims[:-1], dims[1:])):
        modules.append(nn.Linear(a, b))
        if i < layers - 1:
            modules.append(nn.Softplus())
    return nn.Sequential(*modules)


class TriplaneDecoder(nn.Module):
    """features (B, N, C) -> (density_raw (B, N, 1), colour (B, N, F)), colour in [-0.001, 1.001]."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        if cfg.decoder_layers < 1:
            raise ValueError("decoder_layers must be >= 1")
        c, h = cfg.plane_channels, cfg.decoder_hidden
        self.density = _fc_stack(c, h, 1, cfg.decoder_layers)
        self.colour = _fc_stack(c, h, cfg.feature_channels, cfg.decoder_layers)

    def forward(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        density_raw = self.density(features)  # (B, N, 1)
        colour = torch.sigmoid(self.colour(features)) * (1 + 2 * COLOUR_MARGIN) - COLOUR_MARGIN  # (B, N, F)
        return density_raw, colour
