"""Super-resolution module (supplementary §1.2): EG3D's SR without style-modulated convolutions.

The volume-rendered feature image (neural_size) is upsampled to output_size in 2x stages; each
stage is bilinear x2 -> two 3x3 convs with LeakyReLU, and a toRGB whose output is added to the
bilinearly upsampled RGB of the previous stage, so the raw render is the skip path and the
convs only learn the residual detail. With output_size == neural_size there is a single
refinement block at the neural resolution.

Inference speed lives here too: `use_channels_last()` stores the weights channels-last (1.3-1.7x
faster convolutions on CPU (oneDNN) and CUDA alike) and `forward(..., bf16=True)` runs the
convolutions under bf16 autocast (worth it only where the device computes bf16 natively, see
`devices.native_bf16`); the image comes back in fp32 either way.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..config import ModelConfig

LRELU_SLOPE = 0.2
# toRGB starts small so the initial output is close to the upsampled raw RGB (a sane start).
TORGB_INIT_GAIN = 0.1


class SRBlock(nn.Module):
    """(optional bilinear x2) -> conv3x3 -> LReLU -> conv3x3 -> LReLU, plus a 1x1 toRGB."""

    def __init__(self, in_ch: int, out_ch: int, upsample: bool) -> None:
        super().__init__()
        self.upsample = upsample
        self.conv0 = nn.Conv2d(in_ch, out_ch, 3, padding=1)
        self.conv1 = nn.Conv2d(out_ch, out_ch, 3, padding=1)
        self.act = nn.LeakyReLU(LRELU_SLOPE)
        self.to_rgb = nn.Conv2d(out_ch, 3, 1)
        nn.init.xavier_uniform_(self.to_rgb.weight, gain=TORGB_INIT_GAIN)
        nn.init.zeros_(self.to_rgb.bias)

    def forward(self, x: torch.Tensor, rgb: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.upsample:
            x = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)  # (B, Ci, 2n, 2n)
            rgb = F.interpolate(rgb, scale_factor=2, mode="bilinear", align_corners=False)  # (B, 3, 2n, 2n)
        x = self.act(self.conv1(self.act(self.conv0(x))))  # (B, Co, n', n')
        return x, rgb + self.to_rgb(x)


class SuperResolution(nn.Module):
    """rgb_raw (B, 3, n, n) in [-1, 1], features (B, F, n, n) -> image (B, 3, out, out)."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.neural_size, self.output_size = cfg.neural_size, cfg.output_size
        stages = cfg.sr_stages
        widths = cfg.sr_channels[:stages] if stages > 0 else cfg.sr_channels[:1]
        in_ch = cfg.feature_channels
        blocks = []
        for width in widths:
            blocks.append(SRBlock(in_ch, width, upsample=stages > 0))
            in_ch = width
        self.blocks = nn.ModuleList(blocks)
        self.channels_last = False  # a runtime layout, not part of the weights

    def use_channels_last(self) -> "SuperResolution":
        """Weights (and from now on inputs) in channels-last memory format; the same values."""
        self.to(memory_format=torch.channels_last)
        self.channels_last = True
        return self

    def forward(self, rgb_raw: torch.Tensor, features: torch.Tensor, *, bf16: bool = False,
                hidden: bool = False) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """The image (B, 3, out, out); with `hidden`, also the last block's features (B, C, out, out),
        which a fitted portrait's upscaler reads (nn/upscaler.py)."""
        if self.channels_last:
            features = features.contiguous(memory_format=torch.channels_last)
        if not bf16:
            x, rgb = self._upsample(rgb_raw, features)
        else:
            with torch.autocast(features.device.type, dtype=torch.bfloat16):
                x, rgb = self._upsample(rgb_raw, features)
            x, rgb = x.float(), rgb.float()
        return (rgb, x) if hidden else rgb

    def _upsample(self, rgb_raw: torch.Tensor, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x, rgb = features, rgb_raw
        for block in self.blocks:
            x, rgb = block(x, rgb)  # (B, C, s, s), (B, 3, s, s)
        return x, rgb  # (B, C, out, out), (B, 3, out, out)
