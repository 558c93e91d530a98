"""The hybrid tri-plane generator G (supplementary §1.2, Fig. S2): source image + expression code -> tri-plane.

Split in two stages so the editor pays only for what changed (docs/architecture.md, "The three caches"):
`encode(S)` (conv encoder, patch merging, plain ViT blocks, high-resolution conv skip) gives an
`Appearance` that depends on the source alone; `triplane(app, e)` runs the expression-conditioned
EAdaLN-ViT blocks, pixel-shuffles the tokens to the plane resolution, fuses the skip, removes the
patch-grid artefacts with a fixed Gaussian low-pass and adds the EMA tri-plane of Eq. (2) and, in
a fitted copy, the portrait's offset warped along λ (`expression_flow.py`). All initialisation is in `initialize_weights()`.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..config import ModelConfig
from ..errors import Export3DError
from .expression_flow import ExpressionFlow
from .vit import EAdaLNViTBlock, ViTBlock

# Tokens sit at 1/16 of the input side (main paper, docs/architecture.md, "EG3D conventions").
TOKEN_STRIDE = 16
# Slope of the LeakyReLUs in the conv parts (StyleGAN/EG3D convention).
LRELU_SLOPE = 0.2
# The Gaussian kernel reaches this many sigmas either side of its centre.
LOWPASS_RADIUS_SIGMAS = 3.0


@dataclass
class Appearance:
    """Everything G derives from the source image alone; cached per portrait by the editor."""

    tokens: torch.Tensor  # (B, N, D) visual tokens after the plain ViT blocks
    skip: torch.Tensor | None  # (B, Cs, R, R) high-resolution conv features of S, or None

    def detach(self) -> "Appearance":
        return Appearance(self.tokens.detach(), None if self.skip is None else self.skip.detach())

    def to(self, *args, **kwargs) -> "Appearance":
        skip = None if self.skip is None else self.skip.to(*args, **kwargs)
        return Appearance(self.tokens.to(*args, **kwargs), skip)


def _conv_stage(in_ch: int, out_ch: int, stride: int) -> nn.Sequential:
    """Two 3x3 convs with LeakyReLU; the first one carries the stride."""
    return nn.Sequential(
        nn.Conv2d(in_ch, out_ch, 3, stride=stride, padding=1),
        nn.LeakyReLU(LRELU_SLOPE),
        nn.Conv2d(out_ch, out_ch, 3, padding=1),
        nn.LeakyReLU(LRELU_SLOPE),
    )


def gaussian_kernel1d(sigma: float) -> torch.Tensor:
    """Normalised 1-D Gaussian taps (K,), K = 2 * ceil(3 sigma) + 1."""
    radius = max(1, math.ceil(LOWPASS_RADIUS_SIGMAS * sigma))
    x = torch.arange(-radius, radius + 1, dtype=torch.float32)
    taps = torch.exp(-0.5 * (x / sigma) ** 2)
    return taps / taps.sum()


class HybridTriplaneGenerator(nn.Module):
    """G: conv encoder + ViT (appearance) and EAdaLN-ViT + pixel shuffle + low-pass (tri-plane)."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        d, hw = cfg.expr_dim, cfg.token_grid
        self.grid = hw
        self.channels, self.res, self.factor = cfg.plane_channels, cfg.plane_res, cfg.upsample_factor
        patch = TOKEN_STRIDE // 2 ** len(cfg.conv_widths)
        if patch < 1 or patch * 2 ** len(cfg.conv_widths) != TOKEN_STRIDE:
            raise ValueError(
                f"conv_widths has {len(cfg.conv_widths)} stride-2 stages; at most 4 fit a 1/16 token grid"
            )

        # -- appearance: depends on S alone -------------------------------------------------
        stages, in_ch = [], 3
        for width in cfg.conv_widths:
            stages.append(_conv_stage(in_ch, width, stride=2))
            in_ch = width
        self.conv_encoder = nn.Sequential(*stages)
        # Patch merging (SegFormer's patch embedding): non-overlapping strided conv to width d.
        self.patch_merge = nn.Conv2d(in_ch, d, kernel_size=patch, stride=patch)
        self.patch_norm = nn.LayerNorm(d)
        self.vit_blocks = nn.ModuleList(
            ViTBlock(d, cfg.num_heads, cfg.ffn_hidden, cfg.sr_ratio) for _ in range(cfg.vit_depth)
        )
        # Live 3D Portrait-style high-resolution skip: keeps detail the 1/16 tokens cannot carry.
        self.skip_encoder: nn.Module | None = None
        if cfg.skip_channels > 0:
            self.skip_encoder = _conv_stage(3, cfg.skip_channels, stride=1)

        # -- tri-plane: depends on S and e ----------------------------------------------------
        self.eadaln_blocks = nn.ModuleList(
            EAdaLNViTBlock(d, cfg.num_heads, cfg.ffn_hidden, cfg.sr_ratio, cond_dim=d)
            for _ in range(cfg.eadaln_depth)
        )
        self.out_norm = nn.LayerNorm(d)
        plane_ch = 3 * cfg.plane_channels
        self.to_planes = nn.Linear(d, plane_ch * self.factor ** 2)
        self.fuse: nn.Module | None = None
        self.skip_expression: nn.Linear | None = None
        if cfg.skip_channels > 0:
            if cfg.skip_expression_channels > 0:
                self.skip_expression = nn.Linear(d, cfg.skip_expression_channels)
            self.fuse = nn.Sequential(
                nn.Conv2d(plane_ch + cfg.skip_channels + cfg.skip_expression_channels, plane_ch, 3, padding=1),
                nn.LeakyReLU(LRELU_SLOPE),
                nn.Conv2d(plane_ch, plane_ch, 3, padding=1),
            )
        # Fixed (never trained) low-pass; not persistent: it is rebuilt from the config.
        self.register_buffer("lowpass", gaussian_kernel1d(cfg.lowpass_sigma), persistent=False)
        # EMA tri-plane of Eq. (2): learned state that inference needs, so it is persistent.
        self.register_buffer("triplane_ema", torch.zeros(cfg.triplane_shape))
        self.ema_decay = cfg.ema_decay
        # A fitted portrait's offset that follows λ (nn/expression_flow.py); None in a trained model.
        self.expression_flow: ExpressionFlow | None = None
        self.initialize_weights()

    def initialize_weights(self) -> None:
        """Xavier for every Linear; the whole adaLN modulation Linear zeroed (DiT), see EAdaLNViTBlock."""
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.xavier_uniform_(module.weight)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
        for block in self.eadaln_blocks:
            block.reset_modulation()
        if self.skip_expression is not None:  # zero: the fusion starts as if it had no expression input
            nn.init.zeros_(self.skip_expression.weight)

    # -- stage 1 --------------------------------------------------------------------------------
    def encode(self, source: torch.Tensor) -> Appearance:
        """source (B, 3, H, W) in [-1, 1], H = W = cfg.input_size -> Appearance."""
        size = self.cfg.input_size
        if source.ndim != 4 or tuple(source.shape[1:]) != (3, size, size):
            raise Export3DError(
                f"source image must be (B, 3, {size}, {size}), got {tuple(source.shape)}"
            )
        h = self.conv_encoder(source)  # (B, C, H/2^k, W/2^k)
        h = self.patch_merge(h)  # (B, D, g, g)
        tokens = self.patch_norm(h.flatten(2).transpose(1, 2))  # (B, N, D)
        for block in self.vit_blocks:
            tokens = block(tokens, self.grid)  # (B, N, D)
        skip = None
        if self.skip_encoder is not None:
            small = F.interpolate(
                source, size=(self.res, self.res), mode="bilinear", align_corners=False,
                antialias=self.res < size,
            )  # (B, 3, R, R)
            skip = self.skip_encoder(small)  # (B, Cs, R, R)
        return Appearance(tokens=tokens, skip=skip)

    # -- stage 2 --------------------------------------------------------------------------------
    def low_pass(self, planes: torch.Tensor) -> torch.Tensor:
        """Separable depthwise Gaussian blur with reflect padding: (B, K, R, R) -> same."""
        k = planes.shape[1]
        taps = self.lowpass.to(planes.dtype)  # (T,)
        pad = taps.numel() // 2
        x = F.pad(planes, (pad, pad, pad, pad), mode="reflect")
        x = F.conv2d(x, taps.view(1, 1, 1, -1).expand(k, 1, 1, -1), groups=k)  # blur rows
        return F.conv2d(x, taps.view(1, 1, -1, 1).expand(k, 1, -1, 1), groups=k)  # blur columns

    def triplane(self, app: Appearance, e: torch.Tensor) -> torch.Tensor:
        """Appearance + expression code e (B, d) -> tri-plane (B, 3, C, R, R), EMA added."""
        x = app.tokens  # (B, N, D)
        if e.ndim != 2 or e.shape[0] != x.shape[0] or e.shape[1] != self.cfg.expr_dim:
            raise Export3DError(
                f"expression code must be ({x.shape[0]}, {self.cfg.expr_dim}), got {tuple(e.shape)}"
            )
        e = e.to(x.dtype)  # a cached code may come from another precision than the tokens
        for block in self.eadaln_blocks:
            x = block(x, e, self.grid)  # (B, N, D)
        x = self.to_planes(self.out_norm(x))  # (B, N, 3C f^2)
        b = x.shape[0]
        x = x.transpose(1, 2).reshape(b, -1, self.grid, self.grid)  # (B, 3C f^2, g, g)
        planes = F.pixel_shuffle(x, self.factor)  # (B, 3C, R, R)
        if self.fuse is not None and app.skip is not None:
            fused = [planes, app.skip.to(planes.dtype)]
            if self.skip_expression is not None:
                code = self.skip_expression(e)  # (B, Ce), the same at every texel
                fused.append(code[:, :, None, None].expand(-1, -1, self.res, self.res))
            planes = planes + self.fuse(torch.cat(fused, dim=1))
        planes = self.low_pass(planes)  # (B, 3C, R, R)
        raw = planes.view(b, 3, self.channels, self.res, self.res)  # (B, 3, C, R, R)
        planes = self._apply_ema(raw)
        if self.expression_flow is not None:
            planes = planes + self.expression_flow(e, planes.dtype)
        return planes

    def _apply_ema(self, raw: torch.Tensor) -> torch.Tensor:
        """Eq. (2): T = T_raw + T_EMA^{j-1}; in training, T_EMA^j = δ T_EMA^{j-1} + (1-δ) mean_batch(T_raw)."""
        previous = self.triplane_ema.clone()  # (3, C, R, R); the value before this step
        if self.training and torch.is_grad_enabled():
            batch_mean = raw.detach().float().mean(dim=0)  # (3, C, R, R)
            self.triplane_ema.mul_(self.ema_decay).add_(batch_mean.to(self.triplane_ema.dtype),
                                                        alpha=1 - self.ema_decay)
        return raw + previous.to(raw.dtype)

    def forward(self, source: torch.Tensor, e: torch.Tensor) -> torch.Tensor:
        """Both stages: source (B, 3, H, W), e (B, d) -> (B, 3, C, R, R)."""
        return self.triplane(self.encode(source), e)
