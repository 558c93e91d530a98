"""The canonical 3D face: 68 landmarks (iBUG 300-W order) in EG3D world units, and the crop framing.

The template is the neutral mean head of the synthetic data generator (`synthetic.Identity()`
with β = 0), so that real portraits and synthetic renders share one geometry and one framing: the
crop of a real face puts its eyes and mouth where a frontal synthetic render has them, and PnP on
a frontal synthetic render returns the frontal camera. It is shipped as package data
(`assets/landmarks68_template.npy`; `write_template_asset()` regenerates it after the synthetic
head changes, and a test checks that the two still agree).

The framing follows FFHQ's recipe (Karras et al., `recreate_aligned_images`): a square from the
eye and mouth centres, eyes level. `canonical_quad(size)` is that square for the template seen by
the frontal camera; `intake` maps every detected face's square onto it.
"""
from __future__ import annotations

import functools
from pathlib import Path

import numpy as np

from export3d_core.camera import DEFAULT_FOV_DEG, focal_from_fov

ASSET_DIR = Path(__file__).resolve().parent / "assets"
TEMPLATE_FILE = ASSET_DIR / "landmarks68_template.npy"
# Where dlib's 68 points sit on the head (built by `data.dlib_template`, which explains why it differs).
DLIB_TEMPLATE_FILE = ASSET_DIR / "landmarks68_dlib_template.npy"

# -- landmark index groups (iBUG 300-W) ------------------------------------------------------------
JAW = slice(0, 17)
LEFT_EYE = slice(36, 42)  # the eye on the image's left (the subject's right)
RIGHT_EYE = slice(42, 48)
MOUTH_LEFT, MOUTH_RIGHT = 48, 54
NOSE_TIP = 30

# -- FFHQ framing (Karras et al., recreate_aligned_images) -----------------------------------------
FFHQ_EYE_SCALE = 2.0  # half-side of the crop >= 2 x eye-to-eye distance
FFHQ_MOUTH_SCALE = 1.8  # half-side of the crop >= 1.8 x eye-to-mouth distance
FFHQ_CENTRE_SHIFT = 0.1  # crop centre = eye midpoint + 0.1 x eye-to-mouth

def project(points3d: np.ndarray, cam2world: np.ndarray, focal: float, size: float) -> np.ndarray:
    """Pinhole projection to pixel coordinates of a `size`-pixel square image. (N, 3) -> (N, 2)."""
    rotation, origin = cam2world[:3, :3], cam2world[:3, 3]
    cam = (points3d - origin) @ rotation  # (N, 3) world -> OpenCV camera axes
    return focal * size * cam[:, :2] / cam[:, 2:3] + size / 2.0  # (N, 2)


def ffhq_quad(landmarks: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """FFHQ crop square from 68 landmarks: (centre (2,), x half-axis (2,), y half-axis (2,))."""
    eye_left = landmarks[LEFT_EYE].mean(axis=0)
    eye_right = landmarks[RIGHT_EYE].mean(axis=0)
    return ffhq_quad_from_points(eye_left, eye_right, (landmarks[MOUTH_LEFT] + landmarks[MOUTH_RIGHT]) / 2)


def ffhq_quad_from_points(eye_left: np.ndarray, eye_right: np.ndarray,
                          mouth: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """FFHQ crop square from the eye centres and the mouth centre (image coordinates, y down)."""
    eye_avg = (eye_left + eye_right) / 2
    eye_to_eye = eye_right - eye_left
    eye_to_mouth = mouth - eye_avg
    x_axis = eye_to_eye - np.flipud(eye_to_mouth) * np.array([-1.0, 1.0])
    x_axis = x_axis / max(float(np.hypot(*x_axis)), 1e-9)
    x_axis = x_axis * max(np.hypot(*eye_to_eye) * FFHQ_EYE_SCALE, np.hypot(*eye_to_mouth) * FFHQ_MOUTH_SCALE)
    y_axis = np.flipud(x_axis) * np.array([-1.0, 1.0])
    centre = eye_avg + eye_to_mouth * FFHQ_CENTRE_SHIFT
    return centre, x_axis, y_axis


def _frontal_cam2world() -> np.ndarray:
    from export3d_core.camera import OrbitCamera

    return OrbitCamera().cam2world().numpy()


def build_template() -> np.ndarray:
    """(68, 3) float64: the synthetic generator's neutral mean head, in world units."""
    from export3d_core.data import head_landmarks as hl
    from export3d_core.data.head_mesh import identity_geometry, pose_mesh
    from export3d_core.data.head_identity import Identity

    identity = Identity()
    geometry = identity_geometry(identity)
    mesh = pose_mesh(geometry, identity, np.zeros(hl.BETA_DIM))
    local = hl.landmarks_local(mesh.layout, mesh.head_grid, geometry.lat, geometry.lon)  # (68, 3)
    return np.asarray(local + hl.HEAD_CENTRE, dtype=np.float64)


def canonical_quad(size: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The FFHQ square of the template seen by the frontal camera, in a `size` image."""
    frontal = project(load_template(), _frontal_cam2world(), focal_from_fov(DEFAULT_FOV_DEG), size)
    return ffhq_quad(frontal)


def mouth_to_eye_ratio() -> float:
    """Eye-to-mouth over eye-to-eye distance of the frontal template (places a mouth from two eyes)."""
    frontal = project(load_template(), _frontal_cam2world(), focal_from_fov(DEFAULT_FOV_DEG), 1.0)
    eyes = frontal[LEFT_EYE].mean(0), frontal[RIGHT_EYE].mean(0)
    mouth = (frontal[MOUTH_LEFT] + frontal[MOUTH_RIGHT]) / 2
    return float(np.linalg.norm(mouth - (eyes[0] + eyes[1]) / 2) / np.linalg.norm(eyes[1] - eyes[0]))


@functools.lru_cache(maxsize=1)
def load_template() -> np.ndarray:
    """The shipped template (68, 3) float64; rebuilt if the package data file is missing."""
    try:
        template = np.load(TEMPLATE_FILE, allow_pickle=False)
        if template.shape == (68, 3):
            return template.astype(np.float64)
    except (OSError, ValueError):
        pass
    return build_template()  # package data missing (e.g. a source checkout): rebuild it


@functools.lru_cache(maxsize=1)
def load_dlib_template() -> np.ndarray:
    """The shipped dlib template (68, 3) float64."""
    template = np.load(DLIB_TEMPLATE_FILE, allow_pickle=False)
    if template.shape != (68, 3):
        raise ValueError(f"{DLIB_TEMPLATE_FILE} holds an array of shape {template.shape}, expected (68, 3)")
    return template.astype(np.float64)


def write_template_asset() -> Path:
    """Regenerate the package data file (run after changing the proportions above)."""
    ASSET_DIR.mkdir(parents=True, exist_ok=True)
    np.save(TEMPLATE_FILE, build_template().astype(np.float64), allow_pickle=False)
    return TEMPLATE_FILE


if __name__ == "__main__":
    print(write_template_asset())
