"""68-point landmarks with face-alignment (FAN + S3FD), used only when its weights are on disk.

face-alignment downloads its weights into the torch hub cache on first use. We never let it do
that implicitly: `get_landmarker()` first checks the cache for the exact files (a few `stat`
calls, no network), and only builds `FaceAlignment` when they are there or when the caller
explicitly passed `allow_download=True`. When they are missing it says so once (a warning and a
log line) and returns None, and `intake` falls back to dlib, else OpenCV.
"""
from __future__ import annotations

import logging
import os
import threading
import warnings
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

import numpy as np

logger = logging.getLogger(__name__)

FAN_MODEL = "2DFAN-4"  # 2D landmarks, large network: the one the paper's AKD metric uses
DETECTOR = "sfd"  # S3FD, face-alignment's default face detector
NUM_LANDMARKS = 68

_lock = threading.Lock()
_cached: dict[bool, "FaceAlignmentLandmarker | None"] = {}
_warned = False


@dataclass
class FaLandmarks:
    box: np.ndarray  # (4,) x0, y0, x1, y1 in pixels
    score: float  # detector confidence in [0, 1]
    landmarks: np.ndarray  # (68, 2) pixel coordinates


def hub_checkpoint_dir() -> Path:
    """Where face-alignment (through torch.hub) keeps its weights."""
    import torch.hub

    return Path(torch.hub.get_dir()) / "checkpoints"


def weight_files() -> list[str]:
    """File names face-alignment would download, read from the installed package's URL tables."""
    try:
        from face_alignment.api import models_urls
        from face_alignment.detection.sfd.sfd_detector import models_urls as sfd_urls
    except Exception:  # noqa: BLE001 - a broken or missing install simply means "not available"
        return []
    urls = [models_urls[FAN_MODEL], sfd_urls["s3fd"]]
    return [os.path.basename(urlparse(url).path) for url in urls]


def missing_weights() -> list[Path]:
    """The weight files not in the cache (all of them when face-alignment is not importable)."""
    names = weight_files()
    folder = hub_checkpoint_dir()
    if not names:
        return [folder / "face_alignment (package not importable)"]
    return [folder / name for name in names if not (folder / name).is_file()]


class FaceAlignmentLandmarker:
    """Thin wrapper over `face_alignment.FaceAlignment` on the CPU, built once."""

    def __init__(self) -> None:
        import face_alignment

        # flip_input doubles the cost for a small gain; torch.compile is slow to warm up on CPU.
        self._fa = face_alignment.FaceAlignment(
            face_alignment.LandmarksType.TWO_D, device="cpu", flip_input=False,
            face_detector=DETECTOR, compile=False)

    def detect(self, image: np.ndarray) -> list[FaLandmarks]:
        """All faces in an (H, W, 3) uint8 RGB image."""
        result = self._fa.get_landmarks_from_image(image, return_bboxes=True)
        landmarks, _, boxes = result if result is not None else (None, None, None)
        if not landmarks:
            return []
        faces = []
        for points, box in zip(landmarks, boxes):
            points = np.asarray(points, dtype=np.float64)[:, :2]  # (68, 2)
            box = np.asarray(box, dtype=np.float64)
            score = float(box[4]) if box.shape[0] > 4 else 1.0
            faces.append(FaLandmarks(box=box[:4], score=score, landmarks=points))
        return faces

    def landmarks_in_box(self, image: np.ndarray, box: np.ndarray) -> np.ndarray | None:
        """(68, 2) landmarks of the face in a known box (tracking: skips the S3FD detector)."""
        boxes = [np.asarray(box, dtype=np.float64)[:4]]
        landmarks = self._fa.get_landmarks_from_image(image, detected_faces=boxes)
        if not landmarks:
            return None
        return np.asarray(landmarks[0], dtype=np.float64)[:, :2]  # (68, 2)


def _warn_missing(missing: list[Path]) -> None:
    global _warned
    if _warned:
        return
    _warned = True
    message = (f"face-alignment weights not found ({', '.join(p.name for p in missing)} in "
               f"{missing[0].parent}); using dlib's landmarks, else the OpenCV face detector "
               "(pass allow_download=True / --download-models to fetch them)")
    # One line through logging (no warnings-module source line): with dlib beside it, missing
    # face-alignment weights are the ordinary state, so this informs rather than alarms.
    logger.warning(message)


def get_landmarker(allow_download: bool = False) -> FaceAlignmentLandmarker | None:
    """The face-alignment landmarker, or None (after one warning) when its weights are absent."""
    with _lock:
        missing = missing_weights()
        key = bool(allow_download) or not missing
        if not key:
            _warn_missing(missing)
            return None
        if key not in _cached:
            try:
                _cached[key] = FaceAlignmentLandmarker()
            except Exception as exc:  # noqa: BLE001 - download / load failure: fall back, say why
                message = f"face-alignment could not be loaded ({type(exc).__name__}: {exc}); using dlib or OpenCV"
                logger.warning(message)
                warnings.warn(message, RuntimeWarning, stacklevel=2)
                _cached[key] = None
        return _cached[key]


def reset_cache() -> None:
    """Forget the loaded model and the warn-once flag (tests, or after downloading weights)."""
    global _warned
    with _lock:
        _cached.clear()
        _warned = False
