"""Face features for the perceptual loss when VGG16 weights are absent.

Owns `FaceFeatures`: the convolution stages of a frozen attribute regressor (the small CNN of
`faces/regressor.py`, trained on synthetic heads to read expression, pose and identity) used as the
feature network of `PerceptualLoss`, as VGG16 is in the paper. Its features were learnt to tell
the small things expressions move (brow edges, furrow lines, mouth corners), which an L2 loss
averages away. It reads an image as the regressor does, built differentiably: the whole image and
the inner-face crop, each resized to the regressor's side, stacked as six channels.

Use a regressor trained on identities other than those of the evaluation regressor (the one
`export3d eval` reads AED with), or the model is trained against its own yardstick:
`python -m export3d_core.train.face_features OUT` trains one with `FACE_NETWORK_SETTINGS`
(about 13 min on 2 CPU cores).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from export3d_core.atomic import check_writable
from export3d_core.errors import EXIT_USER_ERROR, Export3DError

# RegressorConfig overrides of the face-feature network: identities the evaluation regressor
# (0..4099) never saw, another seed; fewer identities and steps than it, since the loss needs its
# features rather than a precise readout (held-out expression MAE 0.117 against its 0.091).
FACE_NETWORK_SETTINGS = {"first_identity": 10_000, "train_identities": 2000, "test_identities": 100,
                         "steps": 8000, "seed": 1}


class FaceFeatures(nn.Module):
    """image (B, 3, H, W) in [-1, 1] -> the output of every conv stage of a frozen regressor."""

    def __init__(self, regressor: nn.Module) -> None:
        super().__init__()
        config = regressor.config
        self.resolution = config.resolution
        self.face_box = tuple(config.face_box)
        # One stage = conv, BN, ReLU, conv, BN, ReLU (see AttributeRegressor): tap each stage's end.
        layers = list(regressor.features)
        per_stage = len(layers) // len(config.widths)
        self.stages = nn.ModuleList(nn.Sequential(*layers[s:s + per_stage]) for s in range(0, len(layers), per_stage))
        self.head = regressor.head  # reads the last stage: standardised (β, pose, identity)
        self.beta_dim = config.beta_dim
        self.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True) -> "FaceFeatures":
        return super().train(False)  # frozen batch-norm statistics, whatever the caller's mode

    def two_views(self, image: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) -> (B, 6, res, res): as `regressor.two_views`, area when shrinking, bilinear when enlarging."""
        h, w = image.shape[-2:]
        x0, y0, x1, y1 = self.face_box
        face = image[..., round(y0 * h):round(y1 * h), round(x0 * w):round(x1 * w)]
        return torch.cat([self._resize(image), self._resize(face)], dim=1)

    def _resize(self, image: torch.Tensor) -> torch.Tensor:
        size = self.resolution
        if image.shape[-1] == size and image.shape[-2] == size:
            return image
        if image.shape[-2] > size:
            return F.adaptive_avg_pool2d(image, size)  # area resampling, as cv2.INTER_AREA
        return F.interpolate(image, size=(size, size), mode="bilinear", align_corners=False)

    def forward(self, image: torch.Tensor) -> list[torch.Tensor]:
        x = self.two_views(image)
        taps = []
        for stage in self.stages:
            x = stage(x)
            taps.append(x)
        return taps


class FaceExpressionLoss(nn.Module):
    """Mean L1 between the expression (standardised β) the face network reads from the prediction
    and from the target: a direct expression term, as reenactment methods add with a 3DMM
    regressor. The target is read without gradient."""

    def __init__(self, features: FaceFeatures, weight: float = 1.0) -> None:
        super().__init__()
        self.features = features
        self.weight = weight

    def expression(self, image: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) in [-1, 1] -> (B, beta_dim) standardised β."""
        return self.features.head(self.features(image)[-1])[:, :self.features.beta_dim]

    def forward(self, prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            wanted = self.expression(target)
        return self.weight * (self.expression(prediction) - wanted).abs().mean()


def load_face_features(path: str | Path, device: str | torch.device = "cpu") -> FaceFeatures:
    """The frozen conv stages of the attribute regressor file at `path`."""
    from export3d_core.faces.regressor import load_regressor  # deferred: only runs that ask for it load it

    if not Path(path).is_file():
        raise Export3DError(f"face-feature network not found at {path} (an attribute regressor .safetensors)")
    return FaceFeatures(load_regressor(path, "cpu")).to(device)


def add_face_features_command(subparsers: argparse._SubParsersAction) -> None:
    """Register `export3d train-face-features OUT`."""
    parser = subparsers.add_parser("train-face-features", help="train the network of `export3d train --face-features`",
                                   description="Train the network of `export3d train --face-features` on synthetic "
                                               "renders and save it to OUT.")
    parser.add_argument("out", help="where to write the regressor (.safetensors); it must not exist yet")
    parser.set_defaults(handler=run_train_face_features)


def run_train_face_features(args: argparse.Namespace) -> int:
    """Train the face-feature network with FACE_NETWORK_SETTINGS and save it to OUT."""
    from export3d_core.faces.regressor import RegressorConfig, save_regressor
    from export3d_core.faces.regressor_training import train_regressor

    if Path(args.out).exists():
        raise Export3DError(f"{args.out} exists; choose another path or remove it")
    check_writable(args.out)  # before 13 minutes of training, not after
    print("training the face-feature network on synthetic renders (about 13 min on 2 CPU cores)", file=sys.stderr)
    save_regressor(train_regressor(RegressorConfig(**FACE_NETWORK_SETTINGS)), args.out)
    print(f"saved {args.out}", file=sys.stderr)
    return 0


def main(argv: list[str] | None = None) -> int:
    """`python -m export3d_core.train.face_features OUT`: the same as `export3d train-face-features OUT`."""
    parser = argparse.ArgumentParser(prog="python -m export3d_core.train.face_features")
    add_face_features_command(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["train-face-features", *(sys.argv[1:] if argv is None else argv)])
    try:
        return run_train_face_features(args)
    except Export3DError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USER_ERROR


if __name__ == "__main__":
    raise SystemExit(main())
