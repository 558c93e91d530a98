"""Portrait intake: find the face, align and crop it to the model's framing, estimate the camera.

Detection uses face-alignment (S3FD + FAN, 68 landmarks) when its weights are already on disk,
else dlib (HOG detector + the iBUG 68-point predictor, shipped by the `face-recognition-models`
package), else OpenCV's Haar cascades with scikit-image's LBP cascade as a second opinion (face
box and eyes, no landmarks); see `landmarks_fa`, `landmarks_dlib` and `face_detect_cv`. The crop
is FFHQ's (eyes and mouth at fixed positions, eyes level): from the landmarks when there are any,
else from the detected eyes (mouth placed by the template's proportions), else from the face box
alone. The camera comes from PnP on the crop's landmarks (`face_pose`; for dlib's points against
the template measured for them, `dlib_template`), or is frontal without them. `export3d crop`
lives here.
"""
from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from export3d_core.data import face_detect_cv, landmarks_dlib, landmarks_fa
from export3d_core.data.face_pose import estimate_camera, frontal_camera
from export3d_core.data.face_template import canonical_quad, ffhq_quad, ffhq_quad_from_points, mouth_to_eye_ratio
from export3d_core.data.image_io import load_image, save_image_atomic
from export3d_core.errors import Export3DError

DEFAULT_CROP_SIZE = 512  # the paper's input side; the CLI and editor resize to the model's own
# Where a Haar face box puts the eyes when the eye cascade finds none (fractions of the box; set on
# OpenCV's frontal-face cascade, whose box spans brows to chin).
BOX_EYE_X = (0.3, 0.7)
BOX_EYE_Y = 0.38
METHOD_FA, METHOD_DLIB, METHOD_CV, METHOD_MANUAL = "face-alignment", "dlib", "opencv", "manual"


class NoFaceFoundError(Export3DError):
    """No face in the picture; the editor answers with a manual crop."""


@dataclass
class FaceDetection:
    box: np.ndarray  # (4,) x0, y0, x1, y1 in pixels
    score: float  # detector confidence in [0, 1]
    landmarks: np.ndarray | None  # (68, 2) pixels, iBUG order; None from the OpenCV fallback
    eyes: np.ndarray | None  # (2, 2) eye centres (image-left, image-right), or None
    method: str = METHOD_CV  # which detector found it


@dataclass
class CropResult:
    image: np.ndarray  # (S, S, 3) uint8 RGB
    method: str  # "face-alignment" | "dlib" | "opencv" | "manual"
    face_index: int | None  # which detection was cropped (see detect_faces); None for manual
    camera: np.ndarray | None  # (25,) float32 EG3D camera
    landmarks: np.ndarray | None  # (68, 2) in crop pixels
    transform: np.ndarray  # (2, 3) affine: original pixel -> crop pixel


def detect_faces(image: np.ndarray, *, allow_download: bool = False) -> list[FaceDetection]:
    """All faces in an (H, W, 3) uint8 RGB image, in the order `--face-index` counts them.

    face-alignment and OpenCV: largest first. dlib: most confident first, because its HOG detector
    also fires, weakly, on face-like textures (the astronaut's mission patch) as large as the face.
    """
    image = _check_image(image)
    landmarker = landmarks_fa.get_landmarker(allow_download=allow_download)
    if landmarker is not None:
        return _sorted_by_area(_with_landmarks(landmarker.detect(image), METHOD_FA))
    dlib_landmarker = landmarks_dlib.get_dlib_landmarker()
    if dlib_landmarker is not None:
        return _with_landmarks(dlib_landmarker.detect(image), METHOD_DLIB)  # already best score first
    faces = [FaceDetection(box=found.box, score=found.score, landmarks=None, eyes=found.eyes, method=METHOD_CV)
             for found in face_detect_cv.detect_faces_cv(image)]
    return _sorted_by_area(faces)


def _with_landmarks(found: list[landmarks_fa.FaLandmarks], method: str) -> list[FaceDetection]:
    faces = []
    for face in found:
        eyes = np.stack([face.landmarks[36:42].mean(0), face.landmarks[42:48].mean(0)])
        faces.append(FaceDetection(box=face.box, score=face.score, landmarks=face.landmarks, eyes=eyes,
                                   method=method))
    return faces


def _sorted_by_area(faces: list[FaceDetection]) -> list[FaceDetection]:
    return sorted(faces, key=lambda f: -(f.box[2] - f.box[0]) * (f.box[3] - f.box[1]))


def landmark_method(*, allow_download: bool = False) -> str:
    """Which landmarker `detect_faces` uses now: METHOD_FA, METHOD_DLIB, or METHOD_CV (no landmarks)."""
    if landmarks_fa.get_landmarker(allow_download=allow_download) is not None:
        return METHOD_FA
    return METHOD_DLIB if landmarks_dlib.get_dlib_landmarker() is not None else METHOD_CV


def pose_template(method: str) -> np.ndarray | None:
    """The 3D template PnP fits to this landmarker's points; None means the geometric template.

    dlib's points follow iBUG's outline conventions, measured on synthetic renders
    (`dlib_template`): against the geometric template a frontal face reads as pitched up ~17°.
    """
    if method == METHOD_DLIB:
        from export3d_core.data.face_template import load_dlib_template

        return load_dlib_template()
    return None


def _check_image(image: np.ndarray) -> np.ndarray:
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8 or min(image.shape[:2]) < 1:
        raise Export3DError(f"expected an (H, W, 3) uint8 RGB image, got {image.dtype} {image.shape}")
    return np.ascontiguousarray(image)


def face_quad(face: FaceDetection) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """FFHQ crop square (centre, x half-axis, y half-axis) for one detection."""
    if face.landmarks is not None:
        return ffhq_quad(face.landmarks)
    if face.eyes is not None:
        eye_left, eye_right = face.eyes
    else:
        x0, y0, x1, y1 = face.box
        eye_left = np.array([x0 + BOX_EYE_X[0] * (x1 - x0), y0 + BOX_EYE_Y * (y1 - y0)])
        eye_right = np.array([x0 + BOX_EYE_X[1] * (x1 - x0), y0 + BOX_EYE_Y * (y1 - y0)])
    eye_to_eye = eye_right - eye_left
    down = np.array([-eye_to_eye[1], eye_to_eye[0]])  # eye line turned 90 degrees toward the chin
    mouth = (eye_left + eye_right) / 2 + mouth_to_eye_ratio() * down
    return ffhq_quad_from_points(eye_left, eye_right, mouth)


def quad_transform(centre: np.ndarray, x_axis: np.ndarray, y_axis: np.ndarray, size: int,
                   target: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None) -> np.ndarray:
    """(2, 3) affine taking original pixels to a `size` crop: the square (centre, axes) lands on `target`.

    `target` (centre, x half-axis, y half-axis in crop pixels) defaults to the whole crop.
    """
    half = size / 2.0
    if target is None:
        target = (np.array([half, half]), np.array([half, 0.0]), np.array([0.0, half]))
    source_axes = np.column_stack([x_axis, y_axis])  # (2, 2)
    target_axes = np.column_stack([target[1], target[2]])  # (2, 2)
    linear = target_axes @ np.linalg.inv(source_axes)
    return np.column_stack([linear, target[0] - linear @ centre])  # (2, 3)


def face_transform(face: FaceDetection, size: int) -> np.ndarray:
    """(2, 3) affine that puts a detected face where the frontal template sits in a `size` crop."""
    return quad_transform(*face_quad(face), size, target=canonical_quad(size))


def warp_crop(image: np.ndarray, transform: np.ndarray, size: int) -> np.ndarray:
    """Resample `image` into the (size, size) crop given by a continuous-coordinate affine."""
    image = _check_image(image)
    transform = np.asarray(transform, dtype=np.float64)
    # Strong minification aliases with bilinear sampling: pre-shrink with area averaging first.
    zoom = float(np.sqrt(abs(np.linalg.det(transform[:, :2]))))  # crop pixels per source pixel
    if zoom < 0.5:
        factor = int(1.0 / zoom)
        height, width = image.shape[:2]
        small = (max(1, width // factor), max(1, height // factor))
        image = cv2.resize(image, small, interpolation=cv2.INTER_AREA)
        scale = np.diag([width / small[0], height / small[1]])  # small -> original pixels
        transform = np.column_stack([transform[:, :2] @ scale, transform[:, 2]])
    # OpenCV puts pixel centres at integers, we at +0.5: shift in and out.
    matrix = transform.copy()
    matrix[:, 2] += matrix[:, :2] @ np.array([0.5, 0.5]) - 0.5
    return cv2.warpAffine(image, matrix, (size, size), flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_REFLECT_101)


def _apply(transform: np.ndarray, points: np.ndarray) -> np.ndarray:
    return points @ transform[:, :2].T + transform[:, 2]  # (N, 2)


def crop_face(image: np.ndarray, face: FaceDetection, size: int = DEFAULT_CROP_SIZE,
              face_index: int | None = 0) -> CropResult:
    """Align and crop one detection; camera by PnP when it has landmarks, frontal otherwise."""
    transform = face_transform(face, size)
    crop = warp_crop(image, transform, size)
    landmarks = None if face.landmarks is None else _apply(transform, face.landmarks)
    camera = frontal_camera() if landmarks is None else estimate_camera(landmarks, size, pose_template(face.method))
    return CropResult(image=crop, method=face.method, face_index=face_index, camera=camera,
                      landmarks=landmarks, transform=transform)


def crop_portrait(image_or_path: np.ndarray | str | Path, size: int = DEFAULT_CROP_SIZE,
                  face_index: int | None = None, *, allow_download: bool = False) -> CropResult:
    """Detect, align and crop a portrait. Picks the largest face unless `face_index` says otherwise."""
    _check_size(size)
    if isinstance(image_or_path, (str, Path)):
        name, image = Path(image_or_path).name, load_image(image_or_path)
    else:
        name, image = "the image", _check_image(image_or_path)
    faces = detect_faces(image, allow_download=allow_download)
    if not faces:
        raise NoFaceFoundError(f"no face found in {name}; crop it by hand (manual crop) or use a clearer, frontal photo")
    index = 0 if face_index is None else int(face_index)
    if not 0 <= index < len(faces):
        order = "most confident first" if faces[0].method == METHOD_DLIB else "largest first"
        raise Export3DError(f"face index {index} is out of range: {len(faces)} face(s) found "
                            f"(use 0..{len(faces) - 1}, {order})")
    return crop_face(image, faces[index], size, face_index=index)


def manual_crop(image: np.ndarray, center_xy: tuple[float, float], side: float,
                size: int = DEFAULT_CROP_SIZE) -> CropResult:
    """Axis-aligned square crop chosen by the user (no face found): frontal camera, no landmarks."""
    _check_size(size)
    if not np.isfinite(side) or side <= 0:
        raise Export3DError(f"the crop side must be a positive number of pixels, got {side}")
    centre = np.asarray(center_xy, dtype=np.float64).reshape(2)
    half = side / 2.0
    transform = quad_transform(centre, np.array([half, 0.0]), np.array([0.0, half]), size)
    return CropResult(image=warp_crop(image, transform, size), method=METHOD_MANUAL, face_index=None,
                      camera=frontal_camera(), landmarks=None, transform=transform)


def _check_size(size: int) -> None:
    if int(size) != size or size < 8:
        raise Export3DError(f"crop size must be an integer of at least 8 pixels, got {size}")


# -- `export3d crop` ----------------------------------------------------------------------------------
def add_crop_command(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "crop", help="detect, align and crop a portrait to the model's framing",
        description="Find the face in IMG, align it (eyes level, FFHQ framing) and write a square crop.")
    parser.add_argument("image", metavar="IMG", help="portrait photo (any common format)")
    parser.add_argument("-o", "--output", required=True, metavar="OUT.png", help="where to write the crop")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing OUT.png (never IMG itself)")
    parser.add_argument("--size", type=int, default=DEFAULT_CROP_SIZE, help="side of the crop in pixels")
    parser.add_argument("--face-index", type=int, default=None, metavar="K",
                        help="which face to crop when there are several "
                             "(0 = the largest; with dlib, the most confident)")
    parser.add_argument("--download-models", action="store_true",
                        help="allow face-alignment to download its landmark weights (needs internet)")
    parser.set_defaults(handler=run_crop_command)
    return parser


def run_crop_command(args: argparse.Namespace) -> int:
    output = _check_crop_output(Path(args.image), Path(args.output), args.overwrite)
    result = crop_portrait(args.image, size=args.size, face_index=args.face_index,
                           allow_download=args.download_models)
    save_image_atomic(output, result.image)
    detail = "68 landmarks, camera by PnP" if result.landmarks is not None else "face box and eyes, frontal camera"
    print(f"cropped face {result.face_index} with {result.method} ({detail}) -> {args.output}")
    return 0


def _check_crop_output(image: Path, output: Path, overwrite: bool) -> Path:
    """The file to write; refused, before any work, when it is the photo itself (whatever the
    flags) or an existing file without --overwrite."""
    from export3d_core.atomic import check_writable, resolve_output

    target = resolve_output(output)
    try:
        same = target.exists() and image.samefile(target)
    except OSError:
        same = False
    if same:
        raise Export3DError(f"{output} is the input photo itself; write the crop to another file")
    if target.exists() and not overwrite:
        raise Export3DError(f"{output} exists; pass --overwrite to replace it")
    check_writable(target)
    return target


__all__ = ["CropResult", "FaceDetection", "NoFaceFoundError", "add_crop_command", "crop_face", "crop_portrait",
           "detect_faces", "estimate_camera", "manual_crop", "METHOD_CV", "METHOD_DLIB", "METHOD_FA",
           "METHOD_MANUAL"]
