"""Camera-conditioned dual discriminator (EG3D on StyleGAN2-ADA), used in training phase 2.

The raw render is upsampled to the final size and stacked with the super-resolved image, so D
judges both and their consistency (6 channels). A residual StyleGAN2 trunk downsamples to a small
grid, a minibatch-stddev channel lets D see batch statistics, and the logits are the projection
of the image features onto an embedding of the 25-d camera (StyleGAN2-ADA's cmap).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..config import ModelConfig

LRELU_SLOPE = 0.2
MBSTD_GROUP = 4  # StyleGAN2 minibatch-stddev group size
MBSTD_CHANNELS = 1
EPS = 1e-8


class DiscBlock(nn.Module):
    """Residual downsampling block: conv3x3 -> LReLU -> avgpool x1/2 -> conv3x3 -> LReLU, skip 1x1."""

    def __init__(self, in_ch: int, out_ch: int) -> None:
        super().__init__()
        self.conv0 = nn.Conv2d(in_ch, in_ch, 3, padding=1)
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, padding=1)
        self.skip = nn.Conv2d(in_ch, out_ch, 1, bias=False)
        self.act = nn.LeakyReLU(LRELU_SLOPE)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.skip(F.avg_pool2d(x, 2))  # (B, Co, H/2, W/2)
        h = self.act(self.conv0(x))
        h = self.act(self.conv1(F.avg_pool2d(h, 2)))  # (B, Co, H/2, W/2)
        return (y + h) * math.sqrt(0.5)  # keep the variance of the sum at that of one branch


def minibatch_stddev(x: torch.Tensor, group: int = MBSTD_GROUP) -> torch.Tensor:
    """Append the mean std over groups of samples as an extra channel: (B, C, H, W) -> (B, C+1, H, W)."""
    b, c, h, w = x.shape
    g = min(group, b)
    while b % g:  # the largest group size that divides the batch
        g -= 1
    y = x.float().view(g, b // g, MBSTD_CHANNELS, c // MBSTD_CHANNELS, h, w)
    y = (y - y.mean(dim=0)).square().mean(dim=0)  # variance over the group
    y = (y + EPS).sqrt().mean(dim=(2, 3, 4))  # (B/g, 1)
    y = y.view(-1, MBSTD_CHANNELS, 1, 1).repeat(g, 1, h, w).to(x.dtype)  # (B, 1, H, W)
    return torch.cat([x, y], dim=1)


class CameraMapping(nn.Module):
    """25-d camera -> embedding (B, cmap_dim): StyleGAN2-ADA's conditioning mapping network."""

    def __init__(self, camera_dim: int, cmap_dim: int) -> None:
        super().__init__()
        self.embed = nn.Linear(camera_dim, cmap_dim)
        self.mlp = nn.Sequential(
            nn.Linear(cmap_dim, cmap_dim), nn.LeakyReLU(LRELU_SLOPE),
            nn.Linear(cmap_dim, cmap_dim),
        )

    def forward(self, cameras: torch.Tensor) -> torch.Tensor:
        c = self.embed(cameras)  # (B, M)
        c = c * (c.square().mean(dim=1, keepdim=True) + EPS).rsqrt()  # normalise the 2nd moment
        return self.mlp(c)  # (B, M)


class DualDiscriminator(nn.Module):
    """image (B, 3, out, out), image_raw (B, 3, n, n), cameras (B, 25) -> logits (B,)."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        widths = cfg.disc_widths
        self.output_size = cfg.output_size
        final_res = cfg.output_size // 2 ** len(widths)
        if final_res < 1 or final_res * 2 ** len(widths) != cfg.output_size:
            raise ValueError(f"disc_widths has too many stages for output_size {cfg.output_size}")
        self.from_rgb = nn.Sequential(nn.Conv2d(6, widths[0], 1), nn.LeakyReLU(LRELU_SLOPE))
        blocks, in_ch = [], widths[0]
        for width in widths:
            blocks.append(DiscBlock(in_ch, width))
            in_ch = width
        self.blocks = nn.Sequential(*blocks)
        self.epilogue_conv = nn.Sequential(
            nn.Conv2d(in_ch + MBSTD_CHANNELS, in_ch, 3, padding=1), nn.LeakyReLU(LRELU_SLOPE)
        )
        self.fc = nn.Sequential(nn.Linear(in_ch * final_res ** 2, in_ch), nn.LeakyReLU(LRELU_SLOPE))
        self.cmap_dim = in_ch
        self.out = nn.Linear(in_ch, self.cmap_dim)
        self.mapping = CameraMapping(cfg.camera_dim, self.cmap_dim)

    def forward(self, image: torch.Tensor, image_raw: torch.Tensor, cameras: torch.Tensor) -> torch.Tensor:
        size = self.output_size
        raw_up = F.interpolate(image_raw, size=(size, size), mode="bilinear", align_corners=False)
        x = self.from_rgb(torch.cat([image, raw_up], dim=1))  # (B, W0, out, out)
        x = self.blocks(x)  # (B, Wk, r, r)
        x = self.epilogue_conv(minibatch_stddev(x))  # (B, Wk, r, r)
        h = self.out(self.fc(x.flatten(1)))  # (B, M)
        cmap = self.mapping(cameras)  # (B, M)
        return (h * cmap).sum(dim=1) / math.sqrt(self.cmap_dim)  # (B,)
