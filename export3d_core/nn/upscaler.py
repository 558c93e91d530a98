"""A fitted portrait's 2× (or 4×) upscaler: one more super-resolution stage after the model's SR.

It is learnt per photo by the fit (`export3d_core.fit_upscale`, which says what it does and does
not do) and attached to the fitted copy as `Export3D.upscaler`; a trained model has none, so its
state dict is unchanged. It is a residual over a bicubic upsample of the final image (an
untrained stage is exactly bicubic): a few convolutions at the model's output size over the final
image and, optionally, the hidden features of the model's last SR block, then a pixel shuffle.

Its shape is read back from the tensors a fit file holds (`Upscaler.from_state`), so the file
needs no extra description of it.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

LRELU_SLOPE = 0.2
FACTORS = (2, 4)


class Upscaler(nn.Module):
    """final image (B, 3, n, n) in [-1, 1] [+ SR features (B, C, n, n)] -> image (B, 3, f·n, f·n)."""

    def __init__(self, feature_channels: int, *, factor: int = 2, width: int = 32, layers: int = 3,
                 kernel: int = 3, use_features: bool = True, high_band_only: bool = False, seed: int = 0) -> None:
        super().__init__()
        self.factor = factor
        self.use_features = use_features
        # A buffer, not an attribute, so a fit file carries it with the weights.
        self.register_buffer("high_band", torch.tensor(float(high_band_only)))
        generator = torch.Generator().manual_seed(seed)
        in_ch = 3 + (feature_channels if use_features else 0)
        convs = []
        for _ in range(layers):
            convs.append(nn.Conv2d(in_ch, width, kernel, padding=kernel // 2))
            in_ch = width
        self.convs = nn.ModuleList(convs)
        self.to_rgb = nn.Conv2d(in_ch, 3 * factor ** 2, 3, padding=1)
        with torch.no_grad():
            for conv in self.convs:
                nn.init.kaiming_uniform_(conv.weight, a=LRELU_SLOPE, generator=generator)
                nn.init.zeros_(conv.bias)
            # zero residual at the start: an untrained upscaler is exactly the bicubic upsample
            nn.init.zeros_(self.to_rgb.weight)
            nn.init.zeros_(self.to_rgb.bias)

    @property
    def high_band_only(self) -> bool:
        return bool(self.high_band)

    def forward(self, image: Tensor, features: Tensor | None = None) -> Tensor:
        x = torch.cat([image, features.to(image.dtype)], dim=1) if self.use_features else image
        for conv in self.convs:
            x = F.leaky_relu(conv(x), LRELU_SLOPE)
        detail = F.pixel_shuffle(self.to_rgb(x), self.factor)  # (B, 3, f·n, f·n)
        if self.high_band_only:
            detail = detail - bicubic(F.avg_pool2d(detail, self.factor), self.factor)
        return bicubic(image, self.factor) + detail

    @classmethod
    def from_state(cls, state: dict[str, Tensor], feature_channels: int) -> "Upscaler":
        """An (untrained) upscaler of the shape `state` (names without the prefix) describes.

        Raises ValueError when the tensors describe no upscaler this model can run."""
        layers = 0
        while f"convs.{layers}.weight" in state:
            layers += 1
        if layers == 0 or "to_rgb.weight" not in state:
            raise ValueError("no convolutions")
        width, in_ch, kernel = state["convs.0.weight"].shape[:3]
        out_ch = state["to_rgb.weight"].shape[0]
        factor = next((f for f in FACTORS if 3 * f * f == out_ch), None)
        if factor is None or in_ch not in (3, 3 + feature_channels) or kernel % 2 == 0:
            raise ValueError("unexpected shapes")
        return cls(feature_channels, factor=factor, width=int(width), layers=layers, kernel=int(kernel),
                   use_features=in_ch != 3)


def bicubic(image: Tensor, factor: int) -> Tensor:
    """The baseline the upscaler adds its detail to (and is compared with)."""
    return F.interpolate(image, scale_factor=factor, mode="bicubic", align_corners=False)
