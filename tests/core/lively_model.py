"""Helpers for tests that need λ to change the picture of an untrained tiny model."""
import numpy as np
import torch


def lively(model):
    """A fresh model zero-initialises its modulation, so λ would change nothing; random weights make it matter."""
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "adaLN_modulation" in name:
                param.copy_(torch.randn(param.shape, generator=generator) * 0.5)
    return model


def pattern(size=64):
    """A smooth colourful test portrait."""
    yy, xx = np.mgrid[0:size, 0:size] / size
    return (np.stack([xx, yy, 1 - xx * yy], axis=-1) * 230).astype(np.uint8)
