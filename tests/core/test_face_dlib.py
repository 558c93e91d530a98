"""dlib on real faces: HOG detection, 68 landmarks in our pixel convention, identity distance (real models)."""
from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from skimage.data import astronaut

from export3d_core.camera import OrbitCamera
from export3d_core.data import face_identity, landmarks_dlib
from export3d_core.data.face_pose import project_template
from export3d_core.data.face_template import LEFT_EYE, RIGHT_EYE
from export3d_core.data.intake import FaceDetection, crop_face
from export3d_core.errors import Export3DError

pytestmark = pytest.mark.usefixtures("offline_hub")  # no network: the models are on disk

PORTRAITS = Path(__file__).resolve().parents[2] / "resources" / "portraits"
# Measured by eye on skimage's astronaut (512 x 512): pupils, in pixels (as in test_intake).
ASTRONAUT_EYES = np.array([[204.0, 101.0], [245.0, 102.0]])


@pytest.fixture(scope="module")
def landmarker() -> landmarks_dlib.DlibLandmarker:
    found = landmarks_dlib.get_dlib_landmarker()
    assert found is not None, landmarks_dlib.missing_files()
    return found


def _eyes(points: np.ndarray) -> np.ndarray:
    return np.stack([points[LEFT_EYE].mean(0), points[RIGHT_EYE].mean(0)])


def _astronaut_crop(landmarker, size: int) -> np.ndarray:
    face = landmarker.detect(astronaut())[0]
    detection = FaceDetection(box=face.box, score=face.score, landmarks=face.landmarks, eyes=None, method="dlib")
    return crop_face(astronaut(), detection, size=size).image


def test_astronaut_gives_68_landmarks_best_score_first(landmarker) -> None:
    faces = landmarker.detect(astronaut())
    assert faces and all(f.landmarks.shape == (68, 2) for f in faces)
    assert [f.score for f in faces] == sorted((f.score for f in faces), reverse=True)
    best = faces[0]
    assert 0.5 < best.score <= 1.0  # above dlib's own threshold (margin 0 -> 0.5)
    x0, y0, x1, y1 = best.box
    assert x0 < ASTRONAUT_EYES[0, 0] < ASTRONAUT_EYES[1, 0] < x1 and y0 < ASTRONAUT_EYES[:, 1].min() < y1
    # Eye centres (mean of the six eyelid points) land within a few pixels of the pupils seen by eye.
    assert np.abs(_eyes(best.landmarks) - ASTRONAUT_EYES).max() < 4.0


def test_crop_puts_the_eyes_on_the_template_at_128(landmarker) -> None:
    """Landmarks found again on the 128 px crop sit on the FFHQ template: conventions agree end to end."""
    size = 128
    crop = _astronaut_crop(landmarker, size)
    found = landmarker.landmarks_in_box(crop, landmarks_dlib.aligned_face_box(size))
    template = project_template(OrbitCamera().params().numpy(), size)
    assert found.shape == (68, 2)
    assert np.abs(_eyes(found) - _eyes(template)).max() < 2.0


def test_landmarks_in_box_follow_a_shifted_image(landmarker) -> None:
    """Moving the face by whole pixels moves the landmarks by as much (no half-pixel drift, no box clamp)."""
    image = astronaut()
    box = landmarker.detect(image)[0].box
    base = landmarker.landmarks_in_box(image, box)
    shifted = np.zeros((600, 600, 3), np.uint8)
    shifted[37:37 + 512, 61:61 + 512] = image
    moved = landmarker.landmarks_in_box(shifted, box + np.array([61, 37, 61, 37]))
    assert np.abs(moved - base - np.array([61, 37])).max() < 0.05


def test_identity_same_person_and_other_person(landmarker) -> None:
    crop = _astronaut_crop(landmarker, 256)
    mirror = np.ascontiguousarray(crop[:, ::-1])
    synthetic = np.asarray(Image.open(PORTRAITS / "synthetic_01.png").convert("RGB"))
    own = face_identity.identity_descriptor(crop)
    assert own.shape == (128,) and np.isfinite(own).all()
    assert face_identity.identity_distance(crop, mirror) < 0.4
    assert face_identity.identity_distance(crop, synthetic) > 0.6
    with pytest.raises(Export3DError, match="square"):
        face_identity.identity_descriptor(crop[:, :200])


def test_missing_models_give_none_after_one_warning(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(landmarks_dlib, "models_dir", lambda: tmp_path)
    landmarks_dlib.reset_cache()
    try:
        assert not landmarks_dlib.dlib_available()
        with pytest.warns(RuntimeWarning, match="shape_predictor_68_face_landmarks.dat"):
            assert landmarks_dlib.get_dlib_landmarker() is None
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            assert landmarks_dlib.get_dlib_landmarker() is None  # said once
    finally:
        landmarks_dlib.reset_cache()
