"""Is a portrait outside the model's domain? Decided by how well the unfitted model reconstructs it.

A portrait like the training faces comes back from the model at its own camera and expression
close to itself; a real photo given to the synthetic demo model comes back as a stranger. The
reconstruction PSNR at the photo's camera separates the two (measured with
tools/fit_eval.py --domain: the shipped synthetic portraits against real photos), so a caller can
say "fit this portrait for a faithful result" from a measured signal, never from a file name.
"""
from __future__ import annotations

import math

import numpy as np
import torch

from export3d_core.model import Export3D

# Unfitted reconstruction PSNR (dB, at the output size) below which a portrait counts as outside
# the demo model's domain. Measured with tools/fit_eval.py --domain on the demo model, each at its
# own estimated λ: the eight shipped synthetic portraits 20.3-30.1 dB; the astronaut 11.3 dB and
# twelve LFW faces (25 px greyscale, upsampled; dlib crops) 12.0-16.6 dB. The threshold sits between.
OUT_OF_DOMAIN_PSNR_DB = 19.0

FIT_HINT = ("this photo is unlike the model's training faces, so the render is not a faithful likeness; "
            "fit the portrait (`export3d fit PHOTO -o FIT`, then --fit FIT) for a faithful result")


@torch.no_grad()
def reconstruction_psnr(model: Export3D, aligned: np.ndarray, camera: np.ndarray, lam: list[float]) -> float:
    """PSNR (dB) of the model's render at the photo's camera and λ against the aligned photo."""
    from export3d_core.session import PortraitSession, image_to_tensor

    session = PortraitSession(model)
    session.set_portrait(aligned)
    cameras = torch.as_tensor(np.asarray(camera, np.float32))[None]
    image = session.render(lam, cameras).image.float().clamp(-1, 1).cpu()
    target = image_to_tensor(aligned, model.config.output_size)
    mse = float(((image - target) ** 2).mean()) / 4.0  # [-1, 1] -> [0, 1]
    return 10 * math.log10(1.0 / max(mse, 1e-12))


def out_of_domain(model: Export3D, aligned: np.ndarray, camera: np.ndarray,
                  lam: list[float] | None = None) -> tuple[bool, float]:
    """(True when the portrait lies outside the model's domain, the reconstruction PSNR in dB)."""
    lam = [0.0] * model.config.n_basis if lam is None else lam
    value = reconstruction_psnr(model, aligned, camera, lam)
    return value < OUT_OF_DOMAIN_PSNR_DB, value
