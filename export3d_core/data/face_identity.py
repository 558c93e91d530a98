"""Identity distance between aligned faces: dlib's 128-d face descriptor, Euclidean (a metric only).

dlib's ResNet descriptor (`dlib_face_recognition_resnet_model_v1.dat`, from the
`face-recognition-models` package) maps a face chip to 128 numbers; two photos of one person are
usually closer than 0.6 (dlib's own same-person threshold). It is not differentiable: use it to
measure, not to train.

The face box is not detected. Every input is an aligned crop in our FFHQ framing, so the face sits
in a known box (`landmarks_dlib.aligned_face_box`); dlib's HOG detector misses soft 128 px renders
about half the time, and a measurement must not depend on it. Inside that box dlib's 5-point
predictor places the eye corners and nose, which is how dlib itself aligns the chip it describes.
"""
from __future__ import annotations

import threading

import numpy as np

from export3d_core.data import landmarks_dlib
from export3d_core.data.landmarks_dlib import DESCRIPTOR_FILE, LANDMARKS_5_FILE
from export3d_core.errors import Export3DError

DESCRIPTOR_DIM = 128
SAME_PERSON_THRESHOLD = 0.6  # dlib's documented threshold for its descriptor (Euclidean)
# The chip is 150 px; the 5-point predictor is more stable on a face of at least this many pixels.
MIN_BOX_SIDE = 150

_lock = threading.Lock()
_cached: list = []  # [IdentityEncoder] once built


class IdentityEncoder:
    """dlib's 5-point predictor and face descriptor, loaded once."""

    def __init__(self) -> None:
        import dlib

        missing = landmarks_dlib.missing_files((LANDMARKS_5_FILE, DESCRIPTOR_FILE))
        if missing:
            raise Export3DError(f"the identity metric needs dlib and its models; missing: {', '.join(missing)}")
        folder = landmarks_dlib.models_dir()
        self._predictor = dlib.shape_predictor(str(folder / LANDMARKS_5_FILE))
        self._descriptor = dlib.face_recognition_model_v1(str(folder / DESCRIPTOR_FILE))
        self._lock = threading.Lock()

    def descriptor(self, aligned_image: np.ndarray) -> np.ndarray:
        """(128,) float64 descriptor of the face in an aligned (FFHQ-framed) square crop."""
        image = _check_aligned(aligned_image)
        box = landmarks_dlib.aligned_face_box(image.shape[0])
        patch, patch_box, _ = landmarks_dlib.face_patch(image, box, MIN_BOX_SIDE)
        with self._lock:
            shape = self._predictor(patch, landmarks_dlib.to_dlib_rect(patch_box))
            values = self._descriptor.compute_face_descriptor(patch, shape, 0)  # no jitter: deterministic
        return np.asarray(values, dtype=np.float64).reshape(DESCRIPTOR_DIM)


def _check_aligned(image: np.ndarray) -> np.ndarray:
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8 or image.shape[0] != image.shape[1]:
        raise Export3DError(f"identity needs a square aligned (S, S, 3) uint8 RGB crop, "
                            f"got {image.dtype} {image.shape}")
    if image.shape[0] < 32:
        raise Export3DError(f"identity needs an aligned crop of at least 32 pixels, got {image.shape[0]}")
    return np.ascontiguousarray(image)


def identity_available() -> bool:
    """True when dlib and the 5-point and descriptor models are on disk (nothing is loaded)."""
    return not landmarks_dlib.missing_files((LANDMARKS_5_FILE, DESCRIPTOR_FILE))


def get_identity_encoder() -> IdentityEncoder:
    """The shared encoder (built once); raises Export3DError when dlib or its models are missing."""
    with _lock:
        if not _cached:
            _cached.append(IdentityEncoder())
        return _cached[0]


def identity_descriptor(aligned_image: np.ndarray) -> np.ndarray:
    """(128,) dlib face descriptor of an aligned crop."""
    return get_identity_encoder().descriptor(aligned_image)


def descriptor_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Euclidean distance between two descriptors (dlib: < 0.6 usually means the same person)."""
    return float(np.linalg.norm(np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)))


def identity_distance(a_image: np.ndarray, b_image: np.ndarray) -> float:
    """Identity distance between two aligned crops (any sizes)."""
    return descriptor_distance(identity_descriptor(a_image), identity_descriptor(b_image))
