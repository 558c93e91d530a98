"""`export3d fit PHOTO -o FIT`: fit the model to one portrait photo and write the fit file.

The photo goes through the same intake as `render --portrait` (so the crop, and with it the fit
file's photo hash, is the one every later `--fit` render sees), λ starts at the photo's own
expression estimate and the camera at its estimated pose.
"""
from __future__ import annotations

import argparse
import math
from pathlib import Path

import numpy as np
import torch

from export3d_core.checkpoint import DEMO_CHECKPOINT
from export3d_core.errors import Export3DError
from export3d_core.export import check_target
from export3d_core.fit import FitSettings, fit_crop_size, fit_portrait, with_upscale_steps
from export3d_core.fit_file import save_fit
from export3d_core.model import Export3D


def photo_pivot(model: Export3D, image: np.ndarray, camera: np.ndarray | None,
                checkpoint: Path | None) -> tuple[list[float], np.ndarray]:
    """The photo's own λ (the expression estimator; zeros without one) and camera (frontal without landmarks)."""
    from export3d_core.data.face_pose import frontal_camera
    from export3d_core.expression_estimate import ExpressionEstimator

    camera = frontal_camera() if camera is None else camera
    if checkpoint is None:
        return [0.0] * model.config.n_basis, camera
    return ExpressionEstimator.for_checkpoint(model, checkpoint).estimate(image).lam, camera


@torch.no_grad()
def photo_psnr(model: Export3D, image: np.ndarray, camera: np.ndarray, lam: list[float]) -> float:
    """PSNR (dB) of the model's render at the photo's own camera and λ against the aligned photo."""
    from export3d_core.session import PortraitSession, tensor_to_image

    session = PortraitSession(model)
    session.set_portrait(image)
    rendered = tensor_to_image(session.render(lam, torch.as_tensor(camera, dtype=torch.float32)[None]).image)
    target = np.asarray(_resize(image, rendered.shape[0]), dtype=np.float64)
    mse = float(((rendered.astype(np.float64) - target) ** 2).mean())
    return 10 * math.log10(255.0 ** 2 / max(mse, 1e-12))


def _resize(image: np.ndarray, size: int) -> np.ndarray:
    from export3d_core.session import image_to_tensor, tensor_to_image

    return image if image.shape[0] == size else tensor_to_image(image_to_tensor(image, size))


def run_fit(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from export3d_core.portrait import load_portrait
    from export3d_core.view_commands import load_model

    if args.steps < 1:
        raise Export3DError(f"--steps must be at least 1, got {args.steps}")
    output = check_target(args.output, (".safetensors",), args.overwrite)
    model = load_model(args)
    checkpoint = None if args.random_init else (args.checkpoint or DEMO_CHECKPOINT)
    settings = with_upscale_steps(FitSettings(steps=args.steps), args.upscale_steps)
    # cropped large enough for the upscaler: the fit file's thumbnail accepts any size of this crop
    portrait = load_portrait(args.photo, fit_crop_size(model.config, settings), face_index=args.face_index)
    lam, camera = photo_pivot(model, portrait.image, portrait.camera, checkpoint)
    before = photo_psnr(model, portrait.image, camera, lam)
    with tqdm(total=settings.steps, desc="fit", unit="step") as bar:
        def progress(report) -> None:
            bar.total, bar.n = report.total, report.step
            bar.set_description(report.stage)
            bar.set_postfix(loss=f"{report.loss:.4f}", left=f"{report.eta_s:.0f}s")

        result = fit_portrait(model, portrait.image, camera, lam, settings, progress=progress,
                              native_side=portrait.native_side)
    path = save_fit(output, result, checkpoint, portrait.image)
    after = photo_psnr(result.model, portrait.image, camera, lam)
    size_kb = path.stat().st_size / 1024
    side = model.config.output_size
    after_side = side * (result.model.upscaler.factor if result.upscaled else 1)
    steps = f"{settings.steps} steps" + (f" + {len(result.upscale_losses)} upscaler steps" if result.upscaled else "")
    print(f"wrote {path} ({size_kb:.0f} KB, {steps} in {result.seconds:.1f} s); "
          f"PSNR at the photo's camera {before:.2f} dB ({side}²) -> {after:.2f} dB ({after_side}²)")
    print(result.upscale_note)
    return 0


def add_fit_command(subparsers) -> argparse.ArgumentParser:
    from export3d_core.view_commands import add_model_arguments

    parser = subparsers.add_parser("fit", help="fit the model to one portrait photo (writes a fit file for --fit)")
    parser.add_argument("photo", type=Path, help="the portrait photo")
    parser.add_argument("-o", "--output", type=Path, required=True, help="the fit file to write (.safetensors)")
    add_model_arguments(parser)
    parser.add_argument("--steps", type=int, default=FitSettings.steps, help="optimisation steps")
    parser.add_argument("--upscale-steps", type=int, default=None,
                        help="training steps of the 2x upscaler (0: none; it needs a photo crop of 2x the output size)")
    parser.add_argument("--face-index", type=int, default=None, help="which face when the photo has several")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing fit file")
    parser.set_defaults(handler=run_fit)
    return parser
