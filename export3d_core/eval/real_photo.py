"""`export3d eval-real`: how a model does on real photos, measured with offline face tools.

For each photo: intake crops it (dlib's 68 landmarks: FFHQ framing and a PnP camera), the
expression estimator reads its own λ, and the model renders it at the photo's camera, at
yaw ±20° and pitch ±10° around it, and with each basis vector at λ_i = own λ_i ± 10. Reported:

- reconstruction: PSNR and SSIM of the render at the photo's camera against the aligned photo
  (cropped at the output size), and the mean distance between their dlib landmarks (/ IOD);
- identity: dlib's descriptor distance of every render to the aligned photo (< 0.6: same person);
- expression response: per basis vector, the mean displacement of the 68 dlib landmarks found on
  the ± render from those on the own-λ render, over the inter-ocular distance (IOD: outer eye
  corners, 300-W's normalisation), the number of vectors whose response reaches 3 % IOD, and
  the identity distance of those vectors' renders;
- depth relief: p95 - p5 of the rendered depth (ray distance, world units) over the face (the
  hull of the jaw and brow landmarks found on the render), where it is opaque: a flat card
  scores near 0; the template head's nose tip stands 0.2 in front of its jaw line.

Landmarks on renders come from dlib's predictor inside the known face box of the aligned framing
(`landmarks_dlib.aligned_face_box`), never from detection: HOG misses soft 128 px renders.
`evaluate_photo` takes whatever renders (a model, or a `PortraitSession` already holding a
fitted portrait), so a fitted model plugs in unchanged.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from export3d_core.errors import Export3DError

IOD_CORNERS = (36, 45)  # outer eye corners (iBUG 68): 300-W's inter-ocular normalisation
FACE_OUTLINE = slice(0, 27)  # jaw and brows (iBUG 68): their hull is the face


@dataclass(frozen=True)
class RealEvalSettings:
    yaw_deg: float = 20.0  # novel views: yaw ± this around the photo's camera
    pitch_deg: float = 10.0  # and pitch ± this
    lam_step: float = 10.0  # each basis vector at own λ_i ± this
    response_threshold: float = 0.03  # a vector "responds" when landmarks move >= this fraction of IOD
    opaque: float = 0.5  # depth relief: pixels whose rendered opacity reaches this
    relief_percentiles: tuple[float, float] = (5.0, 95.0)


@dataclass
class PhotoInput:
    """One photo brought to the model's framing."""

    path: Path
    aligned: np.ndarray  # (input_size, input_size, 3) uint8: what the model encodes
    reference: np.ndarray  # (output_size, output_size, 3) uint8: what renders are compared with
    camera: np.ndarray  # (25,) float32, by PnP on the photo's landmarks
    method: str  # which landmarker framed it
    fit_crop: np.ndarray | None = None  # (fit_size, fit_size, 3) uint8: what a fit learns from, and compares with
    native_side: float | None = None  # pixels of the original photo across the crop


def prepare_photo(path: str | Path, input_size: int, output_size: int, fit_size: int | None = None) -> PhotoInput:
    """Detect, align and crop one photo at the model's input and output sizes, and at `fit_size`
    for a fit (one detection)."""
    from export3d_core.data.image_io import load_image
    from export3d_core.data.intake import NoFaceFoundError, crop_face, detect_faces

    path = Path(path)
    if not path.is_file():
        raise Export3DError(f"photo not found: {path}")
    image = load_image(path)
    faces = detect_faces(image)
    if not faces:
        raise NoFaceFoundError(f"no face found in {path.name}; eval-real needs a photo with a visible, "
                               "frontal-ish face")
    model_crop = crop_face(image, faces[0], input_size)
    reference = crop_face(image, faces[0], output_size).image
    fit_crop = None if fit_size is None else crop_face(image, faces[0], fit_size).image
    zoom = float(np.sqrt(abs(np.linalg.det(model_crop.transform[:, :2]))))  # crop pixels per photo pixel
    return PhotoInput(path, model_crop.image, reference, model_crop.camera, model_crop.method, fit_crop,
                      input_size / zoom)


def _session(renderer, aligned: np.ndarray):
    """A `PortraitSession` for `renderer`: a model gets a new one holding `aligned`."""
    from export3d_core.model import Export3D
    from export3d_core.session import PortraitSession

    if isinstance(renderer, Export3D):
        session = PortraitSession(renderer)
        session.set_portrait(aligned)
        return session
    if renderer.source is None:
        renderer.set_portrait(aligned)
    return renderer


def view_cameras(camera: np.ndarray, settings: RealEvalSettings) -> dict:
    """The photo's camera and the four novel views around it, by name."""
    from export3d_core.camera import OrbitCamera

    base = OrbitCamera.from_params(np.asarray(camera, dtype=np.float64))
    yaw, pitch = math.radians(settings.yaw_deg), math.radians(settings.pitch_deg)
    return {"photo": base,
            f"yaw-{settings.yaw_deg:g}": base.replace(yaw=base.yaw - yaw),
            f"yaw+{settings.yaw_deg:g}": base.replace(yaw=base.yaw + yaw),
            f"pitch-{settings.pitch_deg:g}": base.replace(pitch=base.pitch - pitch),
            f"pitch+{settings.pitch_deg:g}": base.replace(pitch=base.pitch + pitch)}


def basis_lambdas(lam: Sequence[float], step: float) -> list[tuple[list[float], list[float]]]:
    """Per basis vector i: (λ with λ_i - step, λ with λ_i + step)."""
    pairs = []
    for i in range(len(lam)):
        minus, plus = list(map(float, lam)), list(map(float, lam))
        minus[i] -= step
        plus[i] += step
        pairs.append((minus, plus))
    return pairs


def interocular(points: np.ndarray) -> float:
    return float(np.linalg.norm(points[IOD_CORNERS[1]] - points[IOD_CORNERS[0]]))


def face_mask(points: np.ndarray, image_size: int, size: int) -> np.ndarray:
    """(size, size) bool: inside the jaw-and-brows outline of 68 landmarks given in `image_size` pixels.

    Eroded by one pixel, so that at the renderer's low resolution no background pixel beside the
    jaw counts as face.
    """
    import cv2

    outline = np.asarray(points, dtype=np.float64)[FACE_OUTLINE] * (size / image_size) - 0.5  # cv2: centres at integers
    hull = cv2.convexHull(np.round(outline * 16).astype(np.int32))
    mask = np.zeros((size, size), np.uint8)
    cv2.fillConvexPoly(mask, hull, 1, lineType=cv2.LINE_8, shift=4)
    return cv2.erode(mask, np.ones((3, 3), np.uint8)).astype(bool)


def depth_relief(depth: np.ndarray, alpha: np.ndarray, mask: np.ndarray, settings: RealEvalSettings) -> float | None:
    """Spread (p95 - p5) of the rendered depth over the opaque face pixels; None if there are none."""
    values = depth[mask & (alpha >= settings.opaque)]
    if values.size == 0:
        return None
    low, high = np.percentile(values, settings.relief_percentiles)
    return float(high - low)


def _landmarker():
    from export3d_core.data.landmarks_dlib import get_dlib_landmarker, missing_files

    landmarker = get_dlib_landmarker()
    if landmarker is None:
        raise Export3DError(f"eval-real needs dlib's 68-point model; missing: {', '.join(missing_files())}")
    return landmarker


def evaluate_photo(renderer, aligned: np.ndarray, camera: np.ndarray, lam: Sequence[float], *,
                   reference: np.ndarray | None = None, settings: RealEvalSettings = RealEvalSettings(),
                   renders: dict | None = None, step: Callable[[], None] | None = None) -> dict:
    """Every eval-real metric of one aligned photo for `renderer` (an Export3D or a PortraitSession).

    `reference` is the photo cropped at the renders' size (default: `aligned`; either is resized
    to the size the full-quality renders have, which a fitted upscaler doubles); `renders`,
    when given, receives the rendered images by name (for the contact sheet); `step` is called
    after each render (progress).
    """
    from export3d_core.data import face_identity
    from export3d_core.data.landmarks_dlib import aligned_face_box
    from export3d_core.metrics import psnr, ssim
    from export3d_core.display import tensor_to_image

    session = _session(renderer, aligned)
    images = renders if renders is not None else {}
    tick = step or (lambda: None)
    own = [float(v) for v in lam]
    cameras = view_cameras(camera, settings)
    for name, view in cameras.items():
        output = session.render(own, view)
        images[name] = tensor_to_image(output.image)
        if name == "photo":
            depth = output.depth[0, 0].float().cpu().numpy()
            alpha = output.alpha[0, 0].float().cpu().numpy()
        tick()
    for i, pair in enumerate(basis_lambdas(own, settings.lam_step)):
        for sign, row in zip("-+", pair):
            images[f"v{i + 1}{sign}"] = tensor_to_image(session.render(row, cameras["photo"]).image)
            tick()
    out_size = images["photo"].shape[0]  # the model's output size, or the upscaler's
    reference = np.array(_resized(aligned if reference is None else reference, out_size))  # writable copy for torch
    photo_id = face_identity.identity_descriptor(reference)
    identity = {name: face_identity.descriptor_distance(face_identity.identity_descriptor(image), photo_id)
                for name, image in images.items()}
    landmarker, box = _landmarker(), aligned_face_box(out_size)
    photo_points = landmarker.landmarks_in_box(reference, box)
    own_points = landmarker.landmarks_in_box(images["photo"], box)
    iod = interocular(own_points)
    frontal = images["photo"]
    return {
        "camera": {"yaw_deg": math.degrees(cameras["photo"].yaw), "pitch_deg": math.degrees(cameras["photo"].pitch)},
        "lam": own,
        "reconstruction": {"psnr": float(psnr(frontal, reference)[0]), "ssim": float(ssim(frontal, reference)[0]),
                           "landmark_error_iod": float(np.linalg.norm(own_points - photo_points, axis=1).mean() / iod)},
        "identity": {"photo": identity["photo"], "views": {k: identity[k] for k in cameras if k != "photo"}},
        "expression_response": _response(images, identity, own_points, iod, len(own), landmarker, box, settings),
        "depth_relief": depth_relief(depth, alpha, face_mask(own_points, out_size, depth.shape[0]), settings),
        "iod_px": iod,
    }


def _resized(image: np.ndarray, size: int) -> np.ndarray:
    if image.shape[:2] == (size, size):
        return image
    from PIL import Image

    return np.asarray(Image.fromarray(image).resize((size, size), Image.Resampling.LANCZOS))


def _response(images: dict, identity: dict, own_points: np.ndarray, iod: float, n_basis: int, landmarker,
              box: np.ndarray, settings: RealEvalSettings) -> dict:
    """Landmark displacement per basis vector (/ IOD), the responding count and their identity distance."""
    minus, plus, id_minus, id_plus = [], [], [], []
    for i in range(n_basis):
        for sign, moves, ids in (("-", minus, id_minus), ("+", plus, id_plus)):
            points = landmarker.landmarks_in_box(images[f"v{i + 1}{sign}"], box)
            moves.append(float(np.linalg.norm(points - own_points, axis=1).mean() / iod))
            ids.append(identity[f"v{i + 1}{sign}"])
    per_vector = [(a + b) / 2 for a, b in zip(minus, plus)]
    responding = [i for i, value in enumerate(per_vector) if value >= settings.response_threshold]
    responding_ids = [d for i in responding for d in (id_minus[i], id_plus[i])]
    return {"per_vector": per_vector, "minus": minus, "plus": plus,
            "identity_minus": id_minus, "identity_plus": id_plus,
            "threshold_iod": settings.response_threshold, "responding": len(responding),
            "responding_vectors": [i + 1 for i in responding],
            "identity_responding": float(np.mean(responding_ids)) if responding_ids else None}


def contact_sheet(photo: np.ndarray, renders: dict, n_basis: int) -> np.ndarray:
    """Rows: photo and the five views; v_i at own - step; v_i at own + step (uint8 RGB)."""
    tile = renders["photo"].shape[0]
    columns = max(6, n_basis)
    first = [_resized(photo, tile)] + [image for name, image in renders.items() if not name.startswith("v")]
    rows = [first, [renders[f"v{i + 1}-"] for i in range(n_basis)], [renders[f"v{i + 1}+"] for i in range(n_basis)]]
    blank = np.full((tile, tile, 3), 255, np.uint8)
    return np.concatenate([np.concatenate(row + [blank] * (columns - len(row)), axis=1) for row in rows], axis=0)
