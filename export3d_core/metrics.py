"""Image and vector metrics of the evaluation harness: PSNR, SSIM, L1 distance, cosine similarity.

Image inputs come in either of the two forms the project uses, and are converted to float64 in
[0, 1], shape (B, 3, H, W), before any arithmetic:
- uint8 arrays or tensors, channel-last: (H, W, 3) or (B, H, W, 3) (frames, PNGs);
- floating tensors, channel-first in [-1, 1]: (3, H, W) or (B, 3, H, W) (model outputs).
Every metric returns one value per image, (B,) float64, so callers can average as they like.

SSIM is Wang et al. (2004) with an 11x11 Gaussian window (sigma 1.5), K1 = 0.01, K2 = 0.03,
dynamic range 1, computed on the valid part of the image (no padding) per channel, then averaged
over channels and pixels. This equals scikit-image's
`structural_similarity(gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
data_range=1)`, which the tests check.
"""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

SSIM_WINDOW = 11  # side of the Gaussian window (Wang et al. 2004)
SSIM_SIGMA = 1.5  # std of the Gaussian window, pixels
SSIM_K1 = 0.01  # stabilises the luminance term: C1 = (K1 L)^2
SSIM_K2 = 0.03  # stabilises the contrast-structure term: C2 = (K2 L)^2
PSNR_MIN_MSE = 1e-10  # identical images would give +inf; cap PSNR at 100 dB so means stay finite
_UINT8_MAX = 255.0


def to_unit(images: np.ndarray | Tensor) -> Tensor:
    """uint8 channel-last or float [-1, 1] channel-first images -> float64 (B, 3, H, W) in [0, 1]."""
    if isinstance(images, np.ndarray):
        images = torch.from_numpy(np.ascontiguousarray(images))
    if images.dtype == torch.uint8:
        if images.dim() == 3:
            images = images[None]
        if images.dim() != 4 or images.shape[-1] != 3:
            raise ValueError(f"uint8 images must be (H, W, 3) or (B, H, W, 3), got {tuple(images.shape)}")
        return images.permute(0, 3, 1, 2).to(torch.float64) / _UINT8_MAX  # (B, 3, H, W)
    if not images.is_floating_point():
        raise ValueError(f"images must be uint8 or floating point, got {images.dtype}")
    if images.dim() == 3:
        images = images[None]
    if images.dim() != 4 or images.shape[1] != 3:
        raise ValueError(f"float images must be (3, H, W) or (B, 3, H, W) in [-1, 1], got {tuple(images.shape)}")
    return (images.detach().to("cpu", torch.float64).clamp(-1, 1) + 1.0) / 2.0  # (B, 3, H, W)


def _pair(a: np.ndarray | Tensor, b: np.ndarray | Tensor) -> tuple[Tensor, Tensor]:
    x, y = to_unit(a), to_unit(b)
    if x.shape != y.shape:
        raise ValueError(f"image shapes differ: {tuple(x.shape)} vs {tuple(y.shape)}")
    return x, y


def mse(a: np.ndarray | Tensor, b: np.ndarray | Tensor) -> Tensor:
    """Mean squared error on the [0, 1] scale, (B,)."""
    x, y = _pair(a, b)
    return (x - y).pow(2).flatten(1).mean(dim=1)


def psnr(a: np.ndarray | Tensor, b: np.ndarray | Tensor) -> Tensor:
    """Peak signal-to-noise ratio in dB with peak 1 (i.e. 255 for uint8), (B,); capped at 100 dB."""
    error = mse(a, b).clamp_min(PSNR_MIN_MSE)
    return -10.0 * torch.log10(error)


def psnr_db(a: Tensor, b: Tensor, peak_to_peak: float = 2.0) -> float:
    """PSNR in dB of two whole tensors, unclamped and uncapped (identical tensors: inf): how closely
    two renderings of one frame agree before any display clamp. Model images in [-1, 1] have
    peak-to-peak 2, so this equals `psnr` on images that stay inside that range."""
    error = (a.float() - b.float()).square().mean().item()
    return math.inf if error == 0 else 10 * math.log10(peak_to_peak ** 2 / error)


def gaussian_window(size: int = SSIM_WINDOW, sigma: float = SSIM_SIGMA) -> Tensor:
    """Normalised 2-D Gaussian window, float64 (size, size)."""
    coords = torch.arange(size, dtype=torch.float64) - (size - 1) / 2.0
    g = torch.exp(-coords.pow(2) / (2.0 * sigma**2))
    g = g / g.sum()
    return g[:, None] * g[None, :]


def ssim(a: np.ndarray | Tensor, b: np.ndarray | Tensor) -> Tensor:
    """Structural similarity (Gaussian window, valid region), mean over channels and pixels, (B,)."""
    x, y = _pair(a, b)
    if min(x.shape[-2:]) < SSIM_WINDOW:
        raise ValueError(f"SSIM needs images of at least {SSIM_WINDOW} pixels per side, got {tuple(x.shape[-2:])}")
    channels = x.shape[1]
    window = gaussian_window().expand(channels, 1, SSIM_WINDOW, SSIM_WINDOW)  # (C, 1, k, k)

    def blur(t: Tensor) -> Tensor:
        return F.conv2d(t, window, groups=channels)  # (B, C, H-k+1, W-k+1)

    mu_x, mu_y = blur(x), blur(y)
    var_x = blur(x * x) - mu_x.pow(2)
    var_y = blur(y * y) - mu_y.pow(2)
    cov = blur(x * y) - mu_x * mu_y
    c1, c2 = SSIM_K1**2, SSIM_K2**2  # data range 1
    luminance = (2 * mu_x * mu_y + c1) / (mu_x.pow(2) + mu_y.pow(2) + c1)
    contrast_structure = (2 * cov + c2) / (var_x + var_y + c2)
    return (luminance * contrast_structure).flatten(1).mean(dim=1)


def _vectors(a: np.ndarray | Tensor, b: np.ndarray | Tensor) -> tuple[Tensor, Tensor]:
    x = torch.as_tensor(np.asarray(a) if not isinstance(a, Tensor) else a).detach().to("cpu", torch.float64)
    y = torch.as_tensor(np.asarray(b) if not isinstance(b, Tensor) else b).detach().to("cpu", torch.float64)
    if x.dim() == 1:
        x, y = x[None], y[None]
    if x.shape != y.shape or x.dim() != 2:
        raise ValueError(f"expected two (B, D) batches of vectors, got {tuple(x.shape)} and {tuple(y.shape)}")
    return x, y


def l1_distance(a: np.ndarray | Tensor, b: np.ndarray | Tensor) -> Tensor:
    """Mean absolute difference over the last dimension of (B, D) vectors, (B,) (AED / APD)."""
    x, y = _vectors(a, b)
    return (x - y).abs().mean(dim=1)


def cosine_similarity(a: np.ndarray | Tensor, b: np.ndarray | Tensor, eps: float = 1e-12) -> Tensor:
    """Cosine of the angle between (B, D) vectors, (B,); 0 when either vector is zero."""
    x, y = _vectors(a, b)
    return (x * y).sum(dim=1) / (x.norm(dim=1) * y.norm(dim=1)).clamp_min(eps)


def mean(values: list[float] | Tensor) -> float:
    """Mean of a list or tensor as a plain float (NaN for an empty input, never an exception)."""
    values = torch.as_tensor(values, dtype=torch.float64).reshape(-1)
    return float(values.mean()) if values.numel() else math.nan


def ratio_over_groups(numerators: np.ndarray, denominators: np.ndarray, groups: np.ndarray, *,
                      resamples: int = 2000, seed: int = 0) -> tuple[float, float | None]:
    """sum(numerators) / sum(denominators) of paired items, and its standard error when the groups
    the items come from (identities) are resampled with replacement (a cluster bootstrap; a fixed
    seed keeps it reproducible). Items of one group are not independent draws, so resampling
    items would understate the error. The error is None with fewer than two groups."""
    numerators, denominators = np.asarray(numerators, np.float64), np.asarray(denominators, np.float64)
    labels, group_of_item = np.unique(np.asarray(groups), return_inverse=True)
    ratio = float(numerators.sum() / denominators.sum())
    if len(labels) < 2:
        return ratio, None
    per_group_num = np.bincount(group_of_item, weights=numerators)
    per_group_den = np.bincount(group_of_item, weights=denominators)
    draws = np.random.default_rng(seed).integers(0, len(labels), size=(resamples, len(labels)))
    ratios = per_group_num[draws].sum(axis=1) / per_group_den[draws].sum(axis=1)
    return ratio, float(ratios.std(ddof=1))


__all__ = ["to_unit", "mse", "psnr", "psnr_db", "gaussian_window", "ssim", "l1_distance", "cosine_similarity", "mean",
           "ratio_over_groups"]
