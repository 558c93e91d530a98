"""Conversion between model tensors and displayable uint8 images (the editor, exports, eval).

Model images are (B, 3, H, W) floats in [-1, 1]; pictures are uint8 (H, W, 3) RGB.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

RENDER_MODES = ("final", "raw", "depth", "opacity")  # what a view can show: see `view_image`


def image_to_tensor(image: np.ndarray, size: int) -> Tensor:
    """uint8 (H, W, 3) RGB -> (1, 3, size, size) float in [-1, 1] (area resampling)."""
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"expected a uint8 (H, W, 3) image, got {image.dtype} {image.shape}")
    tensor = torch.from_numpy(np.array(image, copy=True)).permute(2, 0, 1)[None].float() / 127.5 - 1.0  # copy: inputs may be read-only
    if tensor.shape[-2:] != (size, size):
        tensor = F.interpolate(tensor, size=(size, size), mode="area")
    return tensor


def tensor_to_image(tensor: Tensor) -> np.ndarray:
    """(3, H, W) or (1, 3, H, W) in [-1, 1] -> uint8 (H, W, 3)."""
    if tensor.dim() == 4:
        tensor = tensor[0]
    array = ((tensor.detach().float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    return array.permute(1, 2, 0).cpu().numpy()


def opacity_to_alpha(alpha: Tensor) -> np.ndarray:
    """Accumulated opacity (B, 1, H, W) in [0, 1] -> the first item's uint8 (H, W) alpha channel."""
    return (alpha[0, 0].clamp(0, 1) * 255).round().byte().cpu().numpy()


def view_image(output, mode: str, ray_start: float, ray_end: float) -> np.ndarray:
    """One render mode of the first item of a batch (a `RenderOutput`) as uint8 RGB (H, W, 3)."""
    if mode == "final":
        return tensor_to_image(output.image)
    if mode == "raw":
        return tensor_to_image(output.image_raw)
    if mode == "opacity":
        return tensor_to_image(output.alpha[:, :1].repeat(1, 3, 1, 1) * 2 - 1)
    if mode == "depth":
        # Near is bright; rays that hit nothing are black.
        near = 1 - (output.depth - ray_start) / (ray_end - ray_start)
        shade = (near.clamp(0, 1) * output.alpha.clamp(0, 1)).repeat(1, 3, 1, 1)
        return tensor_to_image(shade * 2 - 1)
    raise ValueError(f"unknown render mode {mode!r}; choose one of {RENDER_MODES}")


__all__ = ["RENDER_MODES", "image_to_tensor", "opacity_to_alpha", "tensor_to_image", "view_image"]
