"""Runs the model on evaluation items: uint8 frames in, uint8 images at the output side out.

Owns how evaluation images are resized, in one place so every metric sees the same pixels:
corpus frames (any side R) go through the training data set's resampling (`resize_rgb`: area
when shrinking, bilinear when enlarging): sources to the model's `input_size`, targets and
baselines to its `output_size`. Model outputs are quantised to uint8 as a saved PNG would be,
and every metric is computed at `output_size`.
"""
from __future__ import annotations

import sys
from typing import Sequence

import numpy as np
import torch

from export3d_core.data.dataset import resize_rgb, to_tensor
from export3d_core.model import Export3D
from export3d_core.display import tensor_to_image


class ModelRunner:
    """Batched, gradient-free `Export3D.generate_triplane -> Export3D.render` for evaluation."""

    def __init__(self, model: Export3D, device: str | torch.device = "cpu", batch_size: int = 4,
                 progress: bool = True) -> None:
        self.model = model.to(device).eval()
        self.config = model.config
        self.device = torch.device(device)
        self.batch_size = batch_size
        self.progress = progress

    def target(self, frame: np.ndarray) -> np.ndarray:
        """A corpus frame as the metrics see it: uint8 (out, out, 3)."""
        return resize_rgb(frame, self.config.output_size)

    @torch.no_grad()
    def generate(self, sources: Sequence[np.ndarray], cameras: np.ndarray, *, betas: np.ndarray | None = None,
                 lams: np.ndarray | None = None, desc: str = "rendering") -> list[np.ndarray]:
        """One image per item: source frame i re-enacted with betas[i] (or lams[i]) from cameras[i]."""
        from tqdm import tqdm

        if (betas is None) == (lams is None):
            raise ValueError("give exactly one of betas= or lams=")
        drive = np.asarray(betas if betas is not None else lams, dtype=np.float32)  # (N, beta_dim | n)
        cameras = np.asarray(cameras, dtype=np.float32)  # (N, 25)
        if not (len(sources) == len(drive) == len(cameras)):
            raise ValueError("sources, expressions and cameras must have the same length")
        images: list[np.ndarray] = []
        size = self.config.input_size
        for start in tqdm(range(0, len(sources), self.batch_size), desc=desc, disable=not self.progress,
                          leave=False, file=sys.stderr):
            stop = start + self.batch_size
            source = torch.stack([to_tensor(resize_rgb(s, size)) for s in sources[start:stop]]).to(self.device)
            signal = torch.from_numpy(drive[start:stop]).to(self.device)  # (b, beta_dim | n)
            drive_kw = {"beta": signal} if betas is not None else {"lam": signal}
            planes = self.model.generate_triplane(source, **drive_kw)  # (b, 3, C, R, R)
            output = self.model.render(planes, torch.from_numpy(cameras[start:stop]).to(self.device))
            images.extend(tensor_to_image(image) for image in output.image)  # (out, out, 3) each
        return images


__all__ = ["ModelRunner"]
