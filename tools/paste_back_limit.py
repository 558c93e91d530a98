"""Measure the pose limit of paste-back: the colour mismatch in the feather band against the pose offset.

    python tools/paste_back_limit.py FIT.safetensors [--portrait IMG] [--sheet PNG]

Renders the fitted portrait at yaw / pitch offsets from the photo's own camera, pastes each into
the original photo and prints the mean absolute difference (0-255) between the colour-matched
render and the photo in the feather band (where the mask is between 0 and 1, weighted 4m(1-m)).
"""
from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from export3d_core.camera import OrbitCamera  # noqa: E402
from export3d_core.checkpoint import DEMO_CHECKPOINT, load_checkpoint  # noqa: E402
from export3d_core.fit_file import load_fit, read_fit  # noqa: E402
from export3d_core.paste_back import face_region, paste_back, photo_and_transform  # noqa: E402
from export3d_core.portrait import load_portrait  # noqa: E402
from export3d_core.session import PortraitSession, tensor_to_image  # noqa: E402


def band_error(composite_face: np.ndarray, photo: np.ndarray, weight: np.ndarray) -> float:
    band = 4 * weight * (1 - weight)
    diff = np.abs(composite_face - photo).mean(-1)
    return float((diff * band).sum() / max(band.sum(), 1e-6))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("fit", type=Path)
    parser.add_argument("--portrait", type=Path, default=Path("resources/portraits/astronaut.png"))
    parser.add_argument("--sheet", type=Path)
    args = parser.parse_args()
    torch.set_num_threads(1)
    model, _ = load_checkpoint(DEMO_CHECKPOINT)
    size = model.config.input_size
    portrait = load_portrait(args.portrait, size)
    load_fit(args.fit, model, DEMO_CHECKPOINT, portrait.image)
    meta = read_fit(args.fit)[1]
    lam, photo_camera = meta["lam"], OrbitCamera.from_params(meta["camera"])
    original, transform, _ = photo_and_transform(args.portrait, size)
    session = PortraitSession(model)
    session.set_portrait(portrait.image)
    sheet = []
    for axis, offsets in (("yaw", (0, 5, 10, 15, 20, 25, 30)), ("pitch", (5, 10, 15, 20))):
        for offset in offsets:
            camera = photo_camera.replace(**{axis: getattr(photo_camera, axis) + math.radians(offset)})
            out = session.render(lam, camera)
            rendered = tensor_to_image(out.image)
            composite = paste_back(original, transform, size, rendered, out.alpha[0, 0].numpy(),
                                   camera.params().numpy())
            # the same mask and colour offset as paste_back, to read the band's mismatch
            from export3d_core.paste_back import _seam_offset
            import cv2
            s = rendered.shape[0]
            alpha = cv2.resize(out.alpha[0, 0].numpy(), (s, s))
            mask = np.clip(alpha, 0, 1) * face_region(camera.params().numpy(), s)
            crop_photo = np.asarray(portrait.image, np.float32)
            face = rendered.astype(np.float32)
            face = face + _seam_offset(face, crop_photo, mask)
            print(f"{axis} +{offset:2d}°: band mismatch {band_error(face, crop_photo, mask):5.1f}")
            sheet.append(composite)
    if args.sheet:
        from PIL import Image
        small = [np.asarray(Image.fromarray(c).resize((256, 256 * c.shape[0] // c.shape[1]))) for c in sheet]
        Image.fromarray(np.concatenate(small, 1)).save(args.sheet)


if __name__ == "__main__":
    main()
