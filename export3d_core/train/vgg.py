"""VGG16 feature extractor written in-house, in torchvision's layer layout.

Owns the network (`VGG16Features`, whose `features.N.weight/bias` keys match torchvision's
`vgg16-397923af.pth`) and finding and loading those weights without downloading or unpickling:
a path from the user, else the torch hub cache. Absent weights are not an error: the caller is
told once and trains with MSE only.
"""
from __future__ import annotations

import warnings
from pathlib import Path

import torch
from torch import nn

from export3d_core.errors import Export3DError

VGG16_FILE = "vgg16-397923af.pth"
# torchvision's configuration "D": channels per conv, "M" = 2x2 max-pool.
VGG16_LAYOUT: tuple[int | str, ...] = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M",
                                       512, 512, 512, "M", 512, 512, 512, "M")
# Indices in `features` of relu1_2, relu2_2, relu3_3, relu4_3, relu5_3 (the LPIPS taps).
VGG16_TAPS: tuple[int, ...] = (3, 8, 15, 22, 29)
# ImageNet statistics the weights were trained with, for images in [0, 1].
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

_warned: set[str] = set()


class VGG16Features(nn.Module):
    """`features` of torchvision's VGG16 up to relu5_3; returns the five LPIPS taps."""

    def __init__(self) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        channels = 3
        for item in VGG16_LAYOUT:
            if item == "M":
                layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
            else:
                layers += [nn.Conv2d(channels, int(item), kernel_size=3, padding=1), nn.ReLU(inplace=True)]
                channels = int(item)
        # The last max-pool is never reached (relu5_3 is the deepest tap); keep it so indices match.
        self.features = nn.Sequential(*layers)
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def forward(self, image: torch.Tensor) -> list[torch.Tensor]:
        """image (B, 3, H, W) in [-1, 1] -> five feature maps."""
        x = ((image + 1.0) * 0.5 - self.mean) / self.std  # (B, 3, H, W), ImageNet-normalised
        taps: list[torch.Tensor] = []
        for index, layer in enumerate(self.features):
            x = layer(x)
            if index in VGG16_TAPS:
                taps.append(x)
                if index == VGG16_TAPS[-1]:
                    break
        return taps


def default_vgg16_path() -> Path:
    """Where torchvision would have cached the weights: <torch hub dir>/checkpoints/vgg16-397923af.pth."""
    return Path(torch.hub.get_dir()) / "checkpoints" / VGG16_FILE


def warn_once(message: str) -> None:
    """Say `message` once per process (a UserWarning), however often it is reached."""
    if message in _warned:
        return
    _warned.add(message)
    warnings.warn(message, stacklevel=3)


def load_vgg16(path: str | Path | None = None, device: str | torch.device = "cpu") -> VGG16Features | None:
    """A frozen VGG16 from `path` (or the hub cache), or None after one clear warning when absent.

    A path the user named that does not exist is an error; a missing hub cache is not.
    """
    if path is not None and not Path(path).is_file():
        raise Export3DError(f"VGG16 weights not found at {path}")
    weights = Path(path) if path is not None else default_vgg16_path()
    if not weights.is_file():
        warn_once(f"VGG16 weights not found at {weights}; perceptual loss disabled, training with MSE only")
        return None
    try:
        state = torch.load(weights, map_location="cpu", weights_only=True)
    except Exception as exc:  # a corrupt or non-tensor file: say which and why, in one line
        raise Export3DError(f"cannot read VGG16 weights {weights}: {exc}") from None
    if isinstance(state, dict) and "state_dict" in state:
        state = state["state_dict"]
    features = {k: v for k, v in state.items() if k.startswith("features.")}
    net = VGG16Features()
    expected = set(net.state_dict())
    if set(features) != expected:
        missing = sorted(expected - set(features))[:3]
        raise Export3DError(f"{weights} is not a torchvision VGG16 state dict (missing {missing})")
    net.load_state_dict(features)
    net.requires_grad_(False)
    return net.eval().to(device)
