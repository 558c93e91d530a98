"""Measure the per-photo upscaler (export3d_core/fit_upscale.py) on fitted real photos.

    python tools/fit_upscale_eval.py [PHOTO | lfw:N ...] [--set FIELD=VALUE ...] [--sheets DIR] [--json OUT]

For each photo (default: the astronaut and LFW faces 0 and 10 of `skimage.data.lfw_subset()`;
the LFW faces are 25 px greyscale upsampled, so they hold little detail beyond what the model
renders): fit the demo model with default FitSettings, train the upscaler on the aligned crop at
twice the model's output size, then compare (a) the fitted render bicubic-upsampled with (b) the
fitted render through the upscaler:
- PSNR and SSIM at the photo's camera against the aligned photo at the upscaled size, and two
  references: the render at the model's own size against the photo at that size (what the fit
  reports) and the photo itself downsampled to the model's size and bicubic-upsampled back (the
  best a perfect 128² render could score with bicubic);
- dlib identity distance to the aligned photo at the photo's camera, yaw ±20° and pitch ±10°;
- sharpness: variance of the Laplacian of the grey image inside the aligned face box, at the
  photo's camera and the side views, and of the photo itself;
- the train time (renders and optimisation, one thread; the machine may be shared);
- with --holdout: an upscaler learnt from the photo's left half only, PSNR on the right half;
- with --basis: under each basis edit (λ_k ± 10), the landmark motion and the worst identity distance.
--sheets writes, per photo, photo | bicubic | upscaled at the photo's view, yaw +20° and yaw +40°,
plus a 2× zoom of the eye region of each.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import math
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from export3d_core.camera import OrbitCamera  # noqa: E402
from export3d_core.checkpoint import DEMO_CHECKPOINT, load_checkpoint  # noqa: E402
from export3d_core.data.face_identity import descriptor_distance, identity_descriptor  # noqa: E402
from export3d_core.data.face_pose import frontal_camera  # noqa: E402
from export3d_core.data.landmarks_dlib import aligned_face_box  # noqa: E402
from export3d_core.expression_estimate import ExpressionEstimator  # noqa: E402
from export3d_core.fit import FitSettings, fit_portrait  # noqa: E402
from export3d_core.fit_upscale import UpscaleSettings, bicubic, train_upscaler, upscale  # noqa: E402
from export3d_core.metrics import psnr, ssim  # noqa: E402
from export3d_core.session import PortraitSession, image_to_tensor, tensor_to_image  # noqa: E402
from fit_eval import parse_settings  # noqa: E402  (tools/ is on sys.path when run as a script)

VIEWS = {"photo": (0, 0), "yaw-20": (-20, 0), "yaw+20": (20, 0), "pitch-10": (0, -10), "pitch+10": (0, 10)}
SHEET_ONLY = {"yaw+40": (40, 0)}  # farther than the table goes: where ghosting of frontal detail would show most


def load_photo(spec: str, size: int) -> tuple[np.ndarray, np.ndarray | None]:
    """The aligned crop at `size` and its camera, through the same intake the fit uses."""
    from export3d_core.data.intake import crop_portrait
    from export3d_core.portrait import load_portrait

    if spec.startswith("lfw:"):
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        from fit_eval import lfw_photo

        crop = crop_portrait(lfw_photo(int(spec[4:])), size=size)
        return crop.image, crop.camera
    portrait = load_portrait(spec, size)
    return portrait.image, portrait.camera


def sharpness(image: np.ndarray) -> float:
    """Variance of the Laplacian of the grey image inside the aligned face box (higher: sharper)."""
    left, top, right, bottom = (int(round(v)) for v in aligned_face_box(image.shape[0]))
    grey = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY).astype(np.float64)[top:bottom, left:right]
    return float(cv2.Laplacian(grey, cv2.CV_64F).var())


def high_band(image: np.ndarray, small: int) -> torch.Tensor:
    """What an image holds above `small`² pixels: itself minus its area-downsample bicubic-upsampled back."""
    full = image_to_tensor(image, image.shape[0])
    return full - bicubic(image_to_tensor(image, small), image.shape[0] // small)


def high_band_error(picture: np.ndarray, photo: np.ndarray, small: int) -> float:
    """MSE of the picture's high band against the photo's, over the photo's high-band energy: 1 for
    no detail (bicubic), below 1 when the added detail is the photo's, above 1 when it is not."""
    wanted = high_band(photo, small)
    return float(((high_band(picture, small) - wanted) ** 2).mean() / (wanted ** 2).mean())


def eye_zoom(image: np.ndarray) -> np.ndarray:
    """The eye band of an aligned crop, enlarged 2× with nearest neighbours (pixels stay visible)."""
    s = image.shape[0]
    band = image[int(.36 * s):int(.56 * s), int(.25 * s):int(.75 * s)]
    return cv2.resize(band, None, fx=2, fy=2, interpolation=cv2.INTER_NEAREST)


def evaluate(spec: str, model, estimator, fit_settings: FitSettings, settings: UpscaleSettings,
             sheets: Path | None, basis: bool = False, held_out: bool = False) -> dict:
    size = model.config.input_size
    big = model.config.output_size * settings.factor
    image, camera = load_photo(spec, size)
    photo, camera_big = load_photo(spec, big)
    camera = frontal_camera() if camera is None else camera
    lam = estimator.estimate(image).lam
    fitted = fit_portrait(model, image, camera, lam, fit_settings)
    start = time.perf_counter()
    result = train_upscaler(fitted.model, image, photo, camera, lam, settings)
    train_seconds = time.perf_counter() - start
    session = PortraitSession(fitted.model)
    session.set_portrait(image)
    reference = identity_descriptor(photo)
    base = OrbitCamera.from_params(np.asarray(camera, dtype=np.float64))
    row: dict = {"camera_shift_at_big_crop": None if camera_big is None else
                 float(np.abs(np.asarray(camera_big) - np.asarray(camera)).max())}
    pictures = {}
    for name, (yaw, pitch) in {**VIEWS, **SHEET_ONLY}.items():
        view = base.replace(yaw=base.yaw + math.radians(yaw), pitch=base.pitch + math.radians(pitch))
        out = session.render(lam, view)
        plain = tensor_to_image(bicubic(out.image, settings.factor).clamp(-1, 1))
        sharp = tensor_to_image(upscale(fitted.model, result.upscaler, out))
        pictures[name] = (plain, sharp)
        if name == "photo":
            row["psnr_128"] = float(psnr(tensor_to_image(out.image), image))  # what the fit reports
            photo_small = image_to_tensor(photo, model.config.output_size)
            row["psnr_photo_bicubic_ceiling"] = float(psnr(tensor_to_image(bicubic(photo_small, settings.factor)), photo))
            for key, picture in (("bicubic", plain), ("upscaled", sharp)):
                row[f"psnr_{key}"] = float(psnr(picture, photo))
                # the same image area-downsampled to the model's size, against the 128² crop: a gain
                # here is a correction of the render's colours and shapes, not added detail
                row[f"psnr_{key}_down"] = float(psnr(tensor_to_image(image_to_tensor(picture, image.shape[0])), image))
                row[f"ssim_{key}"] = float(ssim(picture, photo))
            row["sharpness_photo"] = sharpness(photo)
            for key, picture in (("bicubic", plain), ("upscaled", sharp)):
                row[f"high_band_error_{key}"] = high_band_error(picture, photo, model.config.output_size)
        for key, picture in (("bicubic", plain), ("upscaled", sharp)) if name in VIEWS else ():
            row[f"id_{name}_{key}"] = descriptor_distance(identity_descriptor(picture), reference)
            row[f"sharpness_{name}_{key}"] = sharpness(picture)
    row.update(train_seconds=round(train_seconds, 1), render_seconds=round(result.render_seconds, 1),
               steps_done=len(result.losses), fit_seconds=round(fitted.seconds, 1),
               loss_first=result.losses[0], loss_last=float(np.mean(result.losses[-20:])))
    if held_out:
        row["holdout"] = holdout(fitted.model, image, photo, camera, lam, settings, session, base)
    if basis:
        row["basis"] = basis_check(fitted.model, result.upscaler, session, lam, base, reference, big, settings.factor)
    if sheets is not None:
        write_sheet(sheets / f"{Path(spec.replace(':', '_')).stem}.png", photo, pictures)
    return row


def holdout(model, image: np.ndarray, photo: np.ndarray, camera, lam: list[float], settings: UpscaleSettings,
            session, view: OrbitCamera) -> dict:
    """Learn from the left half of the photo only; PSNR on the right half, bicubic against upscaled."""
    half = dataclasses.replace(settings, columns=(0.0, 0.5))
    result = train_upscaler(model, image, photo, camera, lam, half)
    out = session.render(lam, view)
    side = photo.shape[0]
    right = slice(side // 2, side)
    plain = tensor_to_image(bicubic(out.image, settings.factor).clamp(-1, 1))[:, right]
    sharp = tensor_to_image(upscale(model, result.upscaler, out))[:, right]
    return {"psnr_right_bicubic": float(psnr(plain, photo[:, right])),
            "psnr_right_upscaled": float(psnr(sharp, photo[:, right]))}


def basis_check(model, upscaler, session, lam: list[float], camera: OrbitCamera, reference: np.ndarray,
                big: int, factor: int) -> dict:
    """Under each basis edit (λ_k ± 10 at the photo's camera), for bicubic and upscaled: the mean
    68-landmark motion from the own-λ image over the inter-ocular distance, and the worst identity."""
    from export3d_core.eval.real_photo import basis_lambdas, interocular
    from export3d_core.data.landmarks_dlib import get_dlib_landmarker

    landmarker, box = get_dlib_landmarker(), aligned_face_box(big)

    def pair(row: list[float]) -> tuple[np.ndarray, np.ndarray]:
        out = session.render(row, camera)
        return (tensor_to_image(bicubic(out.image, factor).clamp(-1, 1)),
                tensor_to_image(upscale(model, upscaler, out)))

    own = [landmarker.landmarks_in_box(image, box) for image in pair(lam)]
    iod = [interocular(points) for points in own]
    moves, worst = {"bicubic": [], "upscaled": []}, {"bicubic": 0.0, "upscaled": 0.0}
    for minus, plus in basis_lambdas(lam, 10.0):
        motion = {"bicubic": [], "upscaled": []}
        for row in (minus, plus):
            for i, (key, image) in enumerate(zip(("bicubic", "upscaled"), pair(row))):
                points = landmarker.landmarks_in_box(image, box)
                motion[key].append(float(np.linalg.norm(points - own[i], axis=1).mean() / iod[i]))
                distance = descriptor_distance(identity_descriptor(image), reference)
                worst[key] = max(worst[key], distance)
        for key in moves:
            moves[key].append(float(np.mean(motion[key])))
    return {key: {"motion_iod": moves[key], "mean_motion_iod": float(np.mean(moves[key])),
                  "vectors_over_3pc": int(sum(m >= 0.03 for m in moves[key])), "worst_identity": worst[key]}
            for key in moves}


def write_sheet(path: Path, photo: np.ndarray, pictures: dict) -> None:
    """Rows: the photo's view, yaw +20°, yaw +40°, and the eye band of each; columns: photo | bicubic | upscaled."""
    blank = np.full_like(photo, 255)
    rows = [[photo, *pictures["photo"]], [blank, *pictures["yaw+20"]], [blank, *pictures["yaw+40"]]]
    rows += [[eye_zoom(p) for p in row] for row in rows]
    sheet = np.concatenate([np.concatenate(row, axis=1) for row in rows])
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), cv2.cvtColor(sheet, cv2.COLOR_RGB2BGR))


def print_table(report: dict) -> None:
    print("\n| photo | PSNR 128 | PSNR bicubic / upscaled (ceiling) | the same at 128 | SSIM bicubic / upscaled | "
          "id photo | id yaw −20 | id yaw +20 | id pitch −10 | id pitch +10 | sharpness photo / bicubic / "
          "upscaled (photo view) | sharpness yaw ±20 bicubic / upscaled | high-band error upscaled | train s |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for spec, r in report.items():
        ids = " | ".join(f"{r[f'id_{v}_bicubic']:.3f} / {r[f'id_{v}_upscaled']:.3f}" for v in VIEWS)
        side_plain = np.mean([r["sharpness_yaw-20_bicubic"], r["sharpness_yaw+20_bicubic"]])
        side_sharp = np.mean([r["sharpness_yaw-20_upscaled"], r["sharpness_yaw+20_upscaled"]])
        print(f"| {spec} | {r['psnr_128']:.2f} | {r['psnr_bicubic']:.2f} / **{r['psnr_upscaled']:.2f}** "
              f"({r['psnr_photo_bicubic_ceiling']:.2f}) | {r['psnr_bicubic_down']:.2f} / {r['psnr_upscaled_down']:.2f} | {r['ssim_bicubic']:.3f} / {r['ssim_upscaled']:.3f} | {ids} | "
              f"{r['sharpness_photo']:.0f} / {r['sharpness_photo_bicubic']:.0f} / {r['sharpness_photo_upscaled']:.0f} | "
              f"{side_plain:.0f} / {side_sharp:.0f} | {r['high_band_error_upscaled']:.3f} | {r['train_seconds']:.1f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("photos", nargs="*", default=["resources/portraits/astronaut.png", "lfw:0", "lfw:10"])
    parser.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                        help="override an UpscaleSettings field, e.g. --set use_features=false")
    parser.add_argument("--fit-steps", type=int, default=FitSettings.steps)
    parser.add_argument("--sheets", type=Path)
    parser.add_argument("--holdout", action="store_true",
                        help="also learn from the photo's left half only and measure PSNR on its right half")
    parser.add_argument("--basis", action="store_true",
                        help="also measure landmark motion and identity under each basis edit (λ_k ± 10)")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    torch.set_num_threads(1)
    settings = parse_settings(args.set, UpscaleSettings)
    model, _ = load_checkpoint(DEMO_CHECKPOINT)
    estimator = ExpressionEstimator.for_checkpoint(model, DEMO_CHECKPOINT)
    report = {}
    for spec in args.photos:
        # the fit without its own upscaler: this tool trains and measures the upscaler itself
        fit_settings = FitSettings(steps=args.fit_steps, upscale=None)
        report[spec] = evaluate(spec, model, estimator, fit_settings, settings, args.sheets,
                                args.basis, args.holdout)
        print(json.dumps({spec: report[spec]}, indent=1), flush=True)
    print(f"\nsettings: {dataclasses.asdict(settings)}")
    print_table(report)
    if args.holdout:
        print("\n| photo | right half (never trained on): PSNR bicubic / upscaled |")
        print("|---|---|")
        for spec, r in report.items():
            h = r["holdout"]
            print(f"| {spec} | {h['psnr_right_bicubic']:.2f} / {h['psnr_right_upscaled']:.2f} |")
    if args.basis:
        print("\n| photo | basis: mean landmark motion / IOD, bicubic / upscaled | vectors ≥ 3 % | worst identity |")
        print("|---|---|---|---|")
        for spec, r in report.items():
            b, u = r["basis"]["bicubic"], r["basis"]["upscaled"]
            print(f"| {spec} | {100 * b['mean_motion_iod']:.2f} % / {100 * u['mean_motion_iod']:.2f} % | "
                  f"{b['vectors_over_3pc']} / {u['vectors_over_3pc']} | {b['worst_identity']:.3f} / {u['worst_identity']:.3f} |")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"settings": dataclasses.asdict(settings), "photos": report}, indent=1))


if __name__ == "__main__":
    main()
