"""Learned Basis Scaling (LeBS) and the CLeBS image encoder f_I (supplementary §1.2, Fig. S1).

`LeBS` maps 3DMM expression parameters β to n coefficients λ with two FC layers and owns the
learned orthonormal basis V (n, d), recomputed by QR from a learnable d x n weight on every call
so it stays exactly orthonormal while training; the expression code is e = λ V (with λ in the
units of `ModelConfig.lambda_scale`).
`ResNetSE18` is the image encoder used only by contrastive pre-training (no orthonormal basis).
"""
from __future__ import annotations

import torch
from torch import nn

from ..config import ModelConfig


class LeBS(nn.Module):
    """β (B, beta_dim) -> λ (B, n) -> e = λ V (B, d), with V from the QR of `basis_weight` (d, n)."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        # SiLU between the two FC layers: smooth, so small changes of β give small changes of λ.
        self.mlp = nn.Sequential(
            nn.Linear(cfg.beta_dim, cfg.lebs_hidden),
            nn.SiLU(),
            nn.Linear(cfg.lebs_hidden, cfg.n_basis),
        )
        weight = torch.empty(cfg.expr_dim, cfg.n_basis)
        nn.init.orthogonal_(weight)  # well conditioned from the start: QR is stable
        self.basis_weight = nn.Parameter(weight)  # (d, n)
        self.lambda_scale = cfg.lambda_scale  # the units of λ (config.py); e does not depend on it
        self.expression_gain = cfg.expression_gain  # scale of e itself (config.py)

    def coefficients(self, beta: torch.Tensor) -> torch.Tensor:
        """β (B, beta_dim) -> λ (B, n)."""
        return self.mlp(beta) * self.lambda_scale

    def basis(self) -> torch.Tensor:
        """The orthonormal basis V (n, d); differentiable w.r.t. `basis_weight`.

        QR is unique only up to the sign of each column of Q; multiplying by sign(diag(R))
        picks the factorisation with a positive diagonal, so the same W always gives the same V
        and the meaning of each slider cannot flip between calls or library versions.
        """
        weight = self.basis_weight  # (d, n)
        if weight.dtype not in (torch.float32, torch.float64):
            weight = weight.float()  # QR has no half-precision kernels
        q, r = torch.linalg.qr(weight, mode="reduced")  # (d, n), (n, n)
        signs = torch.sign(torch.diagonal(r))  # (n,)
        signs = torch.where(signs == 0, torch.ones_like(signs), signs)
        return (q * signs).transpose(0, 1)  # (n, d)

    def embed(self, lam: torch.Tensor) -> torch.Tensor:
        """λ (B, n) -> e (B, d) = expression_gain · (λ / lambda_scale) V."""
        return (lam * (self.expression_gain / self.lambda_scale)) @ self.basis().to(lam.dtype)

    def forward(self, beta: torch.Tensor) -> torch.Tensor:
        """β (B, beta_dim) -> e (B, d)."""
        return self.embed(self.coefficients(beta))


class SEBasicBlock(nn.Module):
    """ResNet BasicBlock with squeeze-and-excitation on the residual branch (SENet)."""

    def __init__(self, in_ch: int, out_ch: int, stride: int, reduction: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_ch)
        self.conv2 = nn.Conv2d(out_ch, out_ch, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_ch)
        squeezed = max(1, out_ch // reduction)
        self.se = nn.Sequential(
            nn.AdaptiveAvgPool2d(1),
            nn.Conv2d(out_ch, squeezed, 1),
            nn.ReLU(inplace=True),
            nn.Conv2d(squeezed, out_ch, 1),
            nn.Sigmoid(),
        )
        self.relu = nn.ReLU(inplace=True)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_ch != out_ch:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_ch, out_ch, 1, stride=stride, bias=False), nn.BatchNorm2d(out_ch)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.relu(self.bn1(self.conv1(x)))  # (B, C, H', W')
        h = self.bn2(self.conv2(h))
        h = h * self.se(h)  # channel re-weighting (B, C, 1, 1) broadcast
        return self.relu(h + self.shortcut(x))


class ResNetSE18(nn.Module):
    """f_I: ResNet-18 ([2, 2, 2, 2] SE basic blocks) -> global pool -> one FC to expr_dim."""

    BLOCKS_PER_STAGE = (2, 2, 2, 2)  # ResNet-18

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        widths = cfg.encoder_widths
        if len(widths) != len(self.BLOCKS_PER_STAGE):
            raise ValueError(f"encoder_widths needs {len(self.BLOCKS_PER_STAGE)} stages, got {widths}")
        self.stem = nn.Sequential(
            nn.Conv2d(3, widths[0], 7, stride=2, padding=3, bias=False),
            nn.BatchNorm2d(widths[0]),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(3, stride=2, padding=1),
        )
        blocks: list[nn.Module] = []
        in_ch = widths[0]
        for stage, (width, count) in enumerate(zip(widths, self.BLOCKS_PER_STAGE)):
            for i in range(count):
                stride = 2 if (stage > 0 and i == 0) else 1
                blocks.append(SEBasicBlock(in_ch, width, stride, cfg.se_reduction))
                in_ch = width
        self.blocks = nn.Sequential(*blocks)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(in_ch, cfg.expr_dim)

    def forward(self, img: torch.Tensor) -> torch.Tensor:
        """img (B, 3, H, W) in [-1, 1] -> (B, d)."""
        h = self.blocks(self.stem(img))  # (B, C, H/32, W/32)
        return self.fc(self.pool(h).flatten(1))  # (B, d)
