"""Face detection and 68-point landmarks with dlib (HOG detector + iBUG 68-point shape predictor), offline.

The model files come from the `face-recognition-models` package, found on disk without importing
it (its `__init__` needs `pkg_resources`, which modern environments lack). Nothing is downloaded.
`get_dlib_landmarker()` returns None, after one warning, when dlib or the files are missing, so
`intake` can fall back to OpenCV.

Conventions. dlib puts pixel centres at integer coordinates and returns integer landmark
positions; we put pixel centres at +0.5 and keep floats. So dlib points get +0.5 on the way out,
and our boxes (edges in continuous coordinates) become dlib's inclusive pixel rectangles on the
way in. Small faces are upscaled before the shape predictor so that its integer rounding stays
well under a pixel of the input (our renders are 128 px wide; dlib was trained on larger faces).

Scores: the HOG detector returns an SVM margin (0 is its default threshold, confident faces are
about 1 to 3). We report `sigmoid(margin / SCORE_SCALE)` in [0, 1], so dlib's own threshold maps
to 0.5 and the order is the margin's.
"""
from __future__ import annotations

import importlib.util
import logging
import math
import threading
import warnings
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from export3d_core.data.landmarks_fa import FaLandmarks

logger = logging.getLogger(__name__)

PACKAGE = "face_recognition_models"
LANDMARKS_68_FILE = "shape_predictor_68_face_landmarks.dat"
LANDMARKS_5_FILE = "shape_predictor_5_face_landmarks.dat"
DESCRIPTOR_FILE = "dlib_face_recognition_resnet_model_v1.dat"
NUM_LANDMARKS = 68
SCORE_SCALE = 0.5  # margin 1 (a clear face) -> 0.88, margin 0 (dlib's threshold) -> 0.5
# dlib's HOG box of a frontal face in our aligned FFHQ framing, as fractions of the crop side
# (x0, y0, x1, y1): measured on the astronaut's crop at 128 and 512 px and three demo portraits
# (their boxes agree to about 2 % of the side). The shape predictor and the descriptor were
# trained on such boxes, so a face of known framing gets its box without a detector.
ALIGNED_FACE_BOX = (0.245, 0.335, 0.755, 0.845)


@dataclass
class DlibSettings:
    work_side: int = 800  # detection runs on a copy downscaled to this longest side (speed)
    upsample_below: int = 400  # upsample once when the work image is smaller: HOG's window is 80 px
    threshold: float = 0.0  # SVM margin a detection needs (dlib's default)
    min_landmark_box: int = 256  # upscale the image so that the face box is at least this many pixels


_lock = threading.Lock()
_cached: list = []  # [DlibLandmarker | None] once built
_warned = False


def models_dir() -> Path | None:
    """The folder of face-recognition-models' .dat files, or None when the package is not installed."""
    try:
        spec = importlib.util.find_spec(PACKAGE)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0]) / "models"


def missing_files(names: tuple[str, ...] = (LANDMARKS_68_FILE,)) -> list[str]:
    """What stops dlib from working: 'dlib' when the module is absent, then missing model files."""
    missing = [] if importlib.util.find_spec("dlib") is not None else ["dlib (pip install dlib-bin)"]
    folder = models_dir()
    if folder is None:
        return missing + ["face-recognition-models (pip install face-recognition-models)"]
    return missing + [str(folder / name) for name in names if not (folder / name).is_file()]


def dlib_available() -> bool:
    """True when dlib imports and the 68-point model is on disk (no model is loaded)."""
    return not missing_files()


def to_dlib_rect(box: np.ndarray):  # -> dlib.rectangle
    """Our box (continuous edges, pixel centres at +0.5) as dlib's inclusive integer pixel rectangle."""
    import dlib

    x0, y0, x1, y1 = (float(v) for v in np.asarray(box, dtype=np.float64)[:4])
    return dlib.rectangle(int(round(x0)), int(round(y0)), int(round(x1)) - 1, int(round(y1)) - 1)


def from_dlib_rect(rect) -> np.ndarray:
    """dlib's inclusive pixel rectangle as our continuous-edge box (4,)."""
    return np.array([rect.left(), rect.top(), rect.right() + 1, rect.bottom() + 1], dtype=np.float64)


def shape_points(shape) -> np.ndarray:
    """(N, 2) float landmarks of a dlib full_object_detection, in our pixel convention."""
    return np.array([[p.x, p.y] for p in shape.parts()], dtype=np.float64) + 0.5


def aligned_face_box(size: float) -> np.ndarray:
    """dlib-style face box (4,) of a frontal face in a `size` aligned (FFHQ-framed) crop."""
    return np.asarray(ALIGNED_FACE_BOX, dtype=np.float64) * float(size)


def as_rgb_uint8(image: np.ndarray) -> np.ndarray:
    """A C-contiguous (H, W, 3) uint8 copy or view, which dlib's bindings require."""
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"expected an (H, W, 3) uint8 RGB image, got {image.dtype} {image.shape}")
    return np.ascontiguousarray(image)


def face_patch(image: np.ndarray, box: np.ndarray, min_side: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(patch, box in patch pixels, (origin, factor)): the box's surroundings enlarged so the box is >= min_side.

    Only the region around the box is resampled, so a small face in a large photo stays cheap.
    Patch pixel p' = factor * (p - origin) in our continuous convention.
    """
    side = float(min(box[2] - box[0], box[3] - box[1]))
    factor = max(1, math.ceil(min_side / max(side, 1.0)))
    if factor == 1:
        return image, box, np.array([0.0, 0.0, 1.0])
    margin = 0.5 * max(box[2] - box[0], box[3] - box[1])  # the predictor looks a little outside its box
    origin = np.floor(np.asarray(box[:2]) - margin)
    extent = np.ceil((np.asarray(box[2:]) + margin - origin) * factor).astype(int)
    # OpenCV samples at integer pixel centres, we at +0.5: shift in and out.
    shift = factor * (0.5 - origin) - 0.5
    matrix = np.array([[factor, 0.0, shift[0]], [0.0, factor, shift[1]]])
    patch = cv2.warpAffine(image, matrix, (int(extent[0]), int(extent[1])), flags=cv2.INTER_CUBIC,
                           borderMode=cv2.BORDER_REPLICATE)
    patch_box = (np.asarray(box, dtype=np.float64) - np.r_[origin, origin]) * factor
    return np.ascontiguousarray(patch), patch_box, np.r_[origin, factor]


class DlibLandmarker:
    """dlib's HOG face detector and 68-point shape predictor, loaded once."""

    def __init__(self, folder: Path, settings: DlibSettings | None = None) -> None:
        import dlib

        self.settings = settings or DlibSettings()
        self._detector = dlib.get_frontal_face_detector()
        self._predictor = dlib.shape_predictor(str(folder / LANDMARKS_68_FILE))
        self._lock = threading.Lock()  # dlib objects are not documented as thread-safe

    def detect(self, image: np.ndarray) -> list[FaLandmarks]:
        """All faces in an (H, W, 3) uint8 RGB image with their 68 landmarks, best score first."""
        image = as_rgb_uint8(image)
        height, width = image.shape[:2]
        scale = min(1.0, self.settings.work_side / max(height, width))
        work = image
        if scale < 1.0:
            size = (max(1, round(width * scale)), max(1, round(height * scale)))
            work = np.ascontiguousarray(cv2.resize(image, size, interpolation=cv2.INTER_AREA))
        upsample = 1 if max(work.shape[:2]) < self.settings.upsample_below else 0
        with self._lock:
            rects, margins, _ = self._detector.run(work, upsample, self.settings.threshold)
        faces = []
        for rect, margin in zip(rects, margins):
            box = from_dlib_rect(rect) / scale  # back to input pixels
            score = 1.0 / (1.0 + math.exp(-float(margin) / SCORE_SCALE))
            faces.append(FaLandmarks(box=box, score=score, landmarks=self.landmarks_in_box(image, box)))
        faces.sort(key=lambda face: -face.score)
        return faces

    def landmarks_in_box(self, image: np.ndarray, box: np.ndarray) -> np.ndarray:
        """(68, 2) landmarks of the face in a known box (our pixel convention), no detector."""
        image = as_rgb_uint8(image)
        patch, patch_box, (origin_x, origin_y, factor) = face_patch(
            image, np.asarray(box, dtype=np.float64), self.settings.min_landmark_box)
        with self._lock:
            shape = self._predictor(patch, to_dlib_rect(patch_box))
        return shape_points(shape) / factor + np.array([origin_x, origin_y])


def _warn_missing(missing: list[str]) -> None:
    global _warned
    if _warned:
        return
    _warned = True
    message = f"dlib face landmarks unavailable (missing: {', '.join(missing)})"
    logger.warning(message)
    warnings.warn(message, RuntimeWarning, stacklevel=3)


def get_dlib_landmarker() -> DlibLandmarker | None:
    """The dlib landmarker (built once), or None after one warning when dlib or its files are missing."""
    with _lock:
        if _cached:
            return _cached[0]
        missing = missing_files()
        landmarker = None
        if missing:
            _warn_missing(missing)
        else:
            try:
                landmarker = DlibLandmarker(models_dir())
            except Exception as exc:  # noqa: BLE001 - a broken install or file: fall back, say why
                _warn_missing([f"loading failed ({type(exc).__name__}: {exc})"])
        _cached.append(landmarker)
        return landmarker


def reset_cache() -> None:
    """Forget the loaded models and the warn-once flag (tests)."""
    global _warned
    with _lock:
        _cached.clear()
        _warned = False
