"""Measure the per-portrait fit: unfitted against fitted on real photos and on synthetic portraits.

    python tools/fit_eval.py [PHOTO | lfw:N ...] [--synthetic K] [--json OUT] [--sheets DIR] [--domain]

Real photos (default: the astronaut and LFW faces 0 and 10 of `skimage.data.lfw_subset()`,
25 px greyscale upsampled): frontal PSNR/SSIM at the photo's camera, dlib identity distance of
the renders at the photo's camera, yaw ±20° and pitch ±10° to the aligned photo, the basis
response (mean 68-landmark displacement / inter-ocular distance at λ0 ± 10 e_k, and the identity
distance of those edits), the depth relief over the face at the photo's camera, and the fit time.
Synthetic held-out clips (--synthetic K): the source frame is fitted, then its driving frames are
re-enacted by the unfitted and the fitted model (PSNR and AED with the eval regressor).
--domain prints the unfitted reconstruction PSNR of the shipped portraits and of LFW faces.
Identity uses dlib's descriptor directly (face_recognition_models' files), on a 512 upsampling,
with the face box found on the aligned photo (HOG) for every render of that photo.
"""
from __future__ import annotations

import argparse
import dataclasses
import importlib.util
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
from export3d_core.data.face_pose import frontal_camera  # noqa: E402
from export3d_core.domain import reconstruction_psnr  # noqa: E402
from export3d_core.metrics import psnr, ssim  # noqa: E402
from export3d_core.expression_estimate import ExpressionEstimator  # noqa: E402
from export3d_core.fit import FitSettings, fit_portrait  # noqa: E402
from export3d_core.paste_back import face_region  # noqa: E402
from export3d_core.session import PortraitSession, tensor_to_image  # noqa: E402

UP = 512  # dlib reads the 128 px renders upsampled to this side
VIEWS = {"yaw-20": (-20, 0), "yaw+20": (20, 0), "pitch-10": (0, -10), "pitch+10": (0, 10)}


class Identity:
    """dlib HOG box on the photo, 68 landmarks and the 128-d descriptor on any render of it."""

    def __init__(self) -> None:
        import dlib

        folder = importlib.util.find_spec("face_recognition_models").submodule_search_locations[0] + "/models/"
        self.dlib = dlib
        self.detector = dlib.get_frontal_face_detector()
        self.shape = dlib.shape_predictor(folder + "shape_predictor_68_face_landmarks.dat")
        self.encoder = dlib.face_recognition_model_v1(folder + "dlib_face_recognition_resnet_model_v1.dat")

    def box(self, image: np.ndarray):
        big = cv2.resize(image, (UP, UP), interpolation=cv2.INTER_CUBIC)
        boxes, scores, _ = self.detector.run(big, 1, 0)
        if len(boxes):
            return boxes[int(np.argmax(scores))], True
        return self.dlib.rectangle(int(.22 * UP), int(.28 * UP), int(.78 * UP), int(.84 * UP)), False

    def landmarks(self, image: np.ndarray, box) -> np.ndarray:
        big = cv2.resize(image, (UP, UP), interpolation=cv2.INTER_CUBIC)
        return np.array([[p.x, p.y] for p in self.shape(big, box).parts()], float)

    def descriptor(self, image: np.ndarray, box) -> np.ndarray:
        big = cv2.resize(image, (UP, UP), interpolation=cv2.INTER_CUBIC)
        return np.array(self.encoder.compute_face_descriptor(big, self.shape(big, box)))


def lfw_photo(index: int) -> np.ndarray:
    """LFW face `index` of scikit-image's subset: 25 px greyscale, upsampled and padded by reflection."""
    from skimage.data import lfw_subset

    grey = cv2.resize((lfw_subset()[index] * 255).astype(np.uint8), (160, 160), interpolation=cv2.INTER_CUBIC)
    return np.repeat(cv2.copyMakeBorder(grey, 96, 96, 96, 96, cv2.BORDER_REFLECT)[..., None], 3, axis=2)


def load_photo(spec: str, size: int):
    from export3d_core.data.intake import crop_portrait
    from export3d_core.portrait import load_portrait

    if spec.startswith("lfw:"):
        crop = crop_portrait(lfw_photo(int(spec[4:])), size=size)
        return crop.image, crop.camera
    portrait = load_portrait(spec, size)
    return portrait.image, portrait.camera


def render(session: PortraitSession, lam, camera) -> tuple[np.ndarray, object]:
    cameras = camera if isinstance(camera, OrbitCamera) else torch.as_tensor(np.asarray(camera, np.float32))[None]
    out = session.render(lam, cameras)
    return tensor_to_image(out.image), out


def depth_relief(out, camera: np.ndarray) -> float:
    """Spread (95th - 5th percentile, world units) of the depth over the face at the photo's camera."""
    depth, alpha = out.depth[0, 0].numpy(), out.alpha[0, 0].numpy()
    region = (face_region(camera, depth.shape[0]) > 0.5) & (alpha > 0.5)
    if region.sum() < 10:
        return float("nan")
    values = depth[region]
    return float(np.percentile(values, 95) - np.percentile(values, 5))


def evaluate(model, image: np.ndarray, camera: np.ndarray, lam: list[float], ident: Identity, box,
             reference: np.ndarray) -> tuple[dict, list[np.ndarray]]:
    session = PortraitSession(model)
    session.set_portrait(image)
    frontal, out = render(session, lam, camera)
    row = {"psnr": float(psnr(frontal, image)), "ssim": float(ssim(frontal, image)),
           "id_photo_camera": float(np.linalg.norm(ident.descriptor(frontal, box) - reference)),
           "depth_relief": depth_relief(out, camera)}
    sheet = [image, frontal]
    photo_cam = OrbitCamera.from_params(camera)
    for name, (yaw, pitch) in VIEWS.items():
        view, _ = render(session, lam, photo_cam.replace(yaw=photo_cam.yaw + math.radians(yaw),
                                                         pitch=photo_cam.pitch + math.radians(pitch)))
        row[f"id_{name}"] = float(np.linalg.norm(ident.descriptor(view, box) - reference))
        sheet.append(view)
    for yaw in (-45, 45):
        sheet.append(render(session, lam, photo_cam.replace(yaw=photo_cam.yaw + math.radians(yaw)))[0])
    side = session.render(lam, photo_cam.replace(yaw=photo_cam.yaw + math.radians(60)))
    from export3d_core.session import view_image

    sheet.append(cv2.resize(view_image(side, "depth", 2.25, 3.3), image.shape[1::-1]))
    row["basis"] = basis_response(session, lam, camera, ident, box, reference, frontal)
    return row, sheet


def basis_response(session, lam, camera, ident: Identity, box, reference, frontal) -> dict:
    """Per basis vector: landmark displacement / IOD at λ0 ± 10 e_k (mean of both) and the worst identity."""
    base = ident.landmarks(frontal, box)
    iod = float(np.linalg.norm(base[42:48].mean(0) - base[36:42].mean(0)))
    moves, ids = [], []
    for k in range(len(lam)):
        move, worst = [], 0.0
        for sign in (-10.0, 10.0):
            edited = list(lam)
            edited[k] += sign
            image, _ = render(session, edited, camera)
            move.append(float(np.linalg.norm(ident.landmarks(image, box) - base, axis=1).mean() / iod))
            worst = max(worst, float(np.linalg.norm(ident.descriptor(image, box) - reference)))
        moves.append(float(np.mean(move)))
        ids.append(worst)
    good = sum(m >= 0.03 and i <= 0.6 for m, i in zip(moves, ids))
    return {"move_iod": moves, "id_worst": ids, "vectors_ok": good}


def real_photo(spec: str, model, estimator, ident: Identity, sheets: Path | None) -> dict:
    size = model.config.input_size
    image, camera = load_photo(spec, size)
    camera = frontal_camera() if camera is None else camera
    lam = estimator.estimate(image).lam
    box, found = ident.box(image)
    reference = ident.descriptor(image, box)
    start = time.perf_counter()
    result = fit_portrait(model, image, camera, lam, SETTINGS)
    total = time.perf_counter() - start
    rows, pictures = {}, []
    for name, m in (("unfitted", model), ("fitted", result.model)):
        if SKIP_UNFITTED and name == "unfitted":
            continue
        rows[name], sheet = evaluate(m, image, camera, lam, ident, box, reference)
        pictures.append(np.concatenate(sheet, axis=1))
    rows["fit_seconds"] = round(result.seconds, 1)
    rows["fit_seconds_with_setup"] = round(total, 1)
    rows["face_box_detected"] = found
    rows["settings"] = dataclasses.asdict(SETTINGS)
    if sheets is not None:
        sheets.mkdir(parents=True, exist_ok=True)
        name = spec.replace(":", "_").replace("/", "_")
        cv2.imwrite(str(sheets / f"{Path(name).stem}.png"), cv2.cvtColor(np.concatenate(pictures), cv2.COLOR_RGB2BGR))
    return rows


def synthetic(k: int, model, estimator) -> dict:
    """Fit the source frame of K held-out clips; re-enact their driving frames unfitted and fitted."""
    from export3d_core.eval.clips import generate_heldout
    from export3d_core.faces.regressor import load_regressor
    from export3d_core.eval.runner import ModelRunner

    regressor = load_regressor(DEMO_CHECKPOINT.parent / "attribute_regressor.safetensors")
    clips = generate_heldout(k, 9, model.config.input_size, progress=False)
    out = {"unfitted": {"psnr": [], "aed": []}, "fitted": {"psnr": [], "aed": []}, "depth_relief": []}
    for clip in clips:
        s = clip.source_index()
        source, camera = clip.frames[s], clip.cameras[s]
        lam = estimator.estimate(source).lam
        if TRUE_PIVOT:  # the clip's own λ: what a perfect expression reader would give
            with torch.no_grad():
                lam = model.coefficients(torch.as_tensor(clip.betas[s:s + 1], dtype=torch.float32))[0].tolist()
        result = fit_portrait(model, source, camera, lam, SETTINGS)
        drive = clip.driving_indices(8)
        targets = [clip.frames[d] for d in drive]
        wanted = regressor.predict(targets).expression
        for name, m in (("unfitted", model), ("fitted", result.model)):
            images = ModelRunner(m, progress=False).generate([source] * len(drive), clip.cameras[drive],
                                                             betas=clip.betas[drive])
            out[name]["psnr"] += [float(psnr(a, b)) for a, b in zip(images, targets)]
            found = regressor.predict(images).expression
            out[name]["aed"] += (found - wanted).abs().mean(dim=1).tolist()
        reliefs = []
        for m in (model, result.model):
            session = PortraitSession(m)
            session.set_portrait(source)
            reliefs.append(depth_relief(render(session, lam, camera)[1], camera))
        out["depth_relief"].append(reliefs)
    for name in ("unfitted", "fitted"):
        for metric in ("psnr", "aed"):
            values = np.array(out[name][metric])
            out[name][metric] = {"mean": float(values.mean()), "sem": float(values.std() / math.sqrt(len(values)))}
    return out


def domain(model, estimator) -> dict:
    from export3d_core.portrait import demo_portraits, load_portrait

    values = {}
    for portrait in demo_portraits():
        loaded = load_portrait(portrait.path, model.config.input_size)
        camera = frontal_camera() if loaded.camera is None else loaded.camera
        values[portrait.path.name] = reconstruction_psnr(model, loaded.image, camera, estimator.estimate(loaded.image).lam)
    for index in range(0, 60, 5):
        try:
            image, camera = load_photo(f"lfw:{index}", model.config.input_size)
        except Exception as exc:  # a face the detector misses is simply skipped
            print(f"lfw:{index}: {exc}", file=sys.stderr)
            continue
        camera = frontal_camera() if camera is None else camera
        values[f"lfw:{index}"] = reconstruction_psnr(model, image, camera, estimator.estimate(image).lam)
    return values


SETTINGS = FitSettings()
SKIP_UNFITTED = False
TRUE_PIVOT = False


def parse_settings(items: list[str], kind=FitSettings):
    """`kind()` with fields overridden by FIELD=VALUE items (numbers, true/false), as `--set` gives them."""
    changes = {}
    for item in items:
        name, _, value = item.partition("=")
        default = getattr(kind(), name)
        changes[name] = (value.lower() == "true") if isinstance(default, bool) else type(default)(value)
    return dataclasses.replace(kind(), **changes)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("photos", nargs="*", default=["resources/portraits/astronaut.png", "lfw:0", "lfw:10"])
    parser.add_argument("--synthetic", type=int, default=0, help="held-out synthetic clips to fit and re-enact")
    parser.add_argument("--domain", action="store_true")
    parser.add_argument("--synthetic-only", action="store_true", help="skip the real photos")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--sheets", type=Path)
    parser.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                        help="override a FitSettings field (numbers and true/false), e.g. --set offset_weight=1")
    parser.add_argument("--true-pivot", action="store_true",
                        help="fit the synthetic clips at their true λ instead of the estimator's")
    parser.add_argument("--skip-unfitted", action="store_true", help="measure the fitted model only (faster sweeps)")
    args = parser.parse_args()
    global SETTINGS, SKIP_UNFITTED, TRUE_PIVOT
    SETTINGS = parse_settings(args.set)
    SKIP_UNFITTED = args.skip_unfitted
    TRUE_PIVOT = args.true_pivot
    torch.set_num_threads(1)
    model, _ = load_checkpoint(DEMO_CHECKPOINT)
    estimator = ExpressionEstimator.for_checkpoint(model, DEMO_CHECKPOINT)
    report: dict = {}
    if args.domain:
        report["domain"] = domain(model, estimator)
    elif not args.synthetic_only:
        ident = Identity()
        for spec in args.photos:
            report[spec] = real_photo(spec, model, estimator, ident, args.sheets)
            print(json.dumps({spec: report[spec]}, indent=1), flush=True)
    if args.synthetic:
        report["synthetic"] = synthetic(args.synthetic, model, estimator)
    print(json.dumps(report, indent=1))
    if args.json:
        args.json.write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
