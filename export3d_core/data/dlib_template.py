"""Where dlib's 68 landmarks sit on the synthetic head: the 3D template PnP uses for dlib's points.

dlib's predictor follows iBUG 300-W's conventions, which are not those of the geometric template
in `face_template` (landmarks placed on the synthetic mesh): iBUG's jaw points trace the face's
outline, the template's lie further in on the jaw. On frontal synthetic renders the two jaws are
about 20 px apart at 256 px, and PnP of dlib's points against the geometric template reads a
frontal face as pitched up by about 17°. Dropping the jaw removes that bias but leaves yaw badly
constrained (the inner points are nearly coplanar).

So this module measures the template dlib needs: it renders synthetic heads (the mean head and
sampled identities, neutral) at a grid of known cameras, finds dlib's 68 landmarks on each render,
and triangulates, per landmark, the 3D point that best explains them over all views (linear least
squares). An outline point slides over the surface as the head turns; the triangulated point is the
best rigid stand-in over the calibrated range of views, which is what PnP needs. The result ships
as package data; regenerate it (needs OpenGL, about a minute) after changing the synthetic head:

    python -m export3d_core.data.dlib_template
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np

# The loader lives beside the geometric template, so intake does not pull in the synthetic renderer.
from export3d_core.data.face_template import ASSET_DIR, DLIB_TEMPLATE_FILE as TEMPLATE_FILE, load_dlib_template
CALIBRATION_SEED = 40_000_000  # identity seeds of the calibration heads: apart from every corpus (< 40M)
CALIBRATION_IDENTITIES = 8  # the mean head plus this many sampled identities
CALIBRATION_YAWS_DEG = (-30.0, -15.0, 0.0, 15.0, 30.0)
CALIBRATION_PITCHES_DEG = (-15.0, 0.0, 15.0)
CALIBRATION_RESOLUTION = 256


def projection_matrix(camera25: np.ndarray, image_size: float) -> np.ndarray:
    """(3, 4) world -> homogeneous pixel matrix of an EG3D camera (pixel centres at +0.5)."""
    params = np.asarray(camera25, dtype=np.float64).reshape(25)
    cam2world = params[:16].reshape(4, 4)
    rotation = cam2world[:3, :3].T  # world -> OpenCV camera axes
    translation = -rotation @ cam2world[:3, 3]
    focal = params[16] * image_size
    intrinsics = np.array([[focal, 0.0, image_size / 2.0], [0.0, focal, image_size / 2.0], [0.0, 0.0, 1.0]])
    return intrinsics @ np.column_stack([rotation, translation])


def triangulate(points2d: np.ndarray, projections: np.ndarray) -> np.ndarray:
    """(3,) point whose projections by (V, 3, 4) matrices best match (V, 2) pixels (linear least squares)."""
    rows = []
    for (u, v), matrix in zip(points2d, projections):
        rows.append(u * matrix[2] - matrix[0])
        rows.append(v * matrix[2] - matrix[1])
    system = np.asarray(rows)  # (2V, 4): system @ [x, y, z, 1] = 0
    solution, *_ = np.linalg.lstsq(system[:, :3], -system[:, 3], rcond=None)
    return solution


def calibration_cameras() -> list[np.ndarray]:
    from export3d_core.camera import OrbitCamera

    return [OrbitCamera(yaw=math.radians(yaw), pitch=math.radians(pitch)).params().numpy()
            for yaw in CALIBRATION_YAWS_DEG for pitch in CALIBRATION_PITCHES_DEG]


def calibration_identities() -> list:
    from export3d_core.data.synthetic import Identity, sample_identity

    rng = np.random.default_rng(CALIBRATION_SEED)
    return [Identity()] + [sample_identity(rng) for _ in range(CALIBRATION_IDENTITIES)]


def dlib_points(landmarker, image: np.ndarray, fallback_box: np.ndarray) -> np.ndarray:
    """dlib's 68 landmarks on a render: on its best detection, else inside the expected face box."""
    faces = landmarker.detect(image)
    return faces[0].landmarks if faces else landmarker.landmarks_in_box(image, fallback_box)


def build_dlib_template() -> np.ndarray:
    """(68, 3) float64: dlib's landmarks triangulated over synthetic renders at known cameras."""
    from export3d_core.data.face_pose import project_template
    from export3d_core.data.landmarks_dlib import get_dlib_landmarker
    from export3d_core.data.synthetic import BETA_DIM, HeadRenderer

    landmarker = get_dlib_landmarker()
    if landmarker is None:
        raise RuntimeError("building the dlib template needs dlib and its 68-point model")
    size = CALIBRATION_RESOLUTION
    observed, projections = [], []
    with HeadRenderer(size) as renderer:
        for identity in calibration_identities():
            for camera in calibration_cameras():
                head = renderer.render(identity, np.zeros(BETA_DIM), camera)
                geometric = project_template(camera, size)
                box = np.r_[geometric.min(0), geometric.max(0)]  # only used when HOG misses the face
                observed.append(dlib_points(landmarker, head.image, box))
                projections.append(projection_matrix(camera, size))
    observed, projections = np.asarray(observed), np.asarray(projections)  # (V, 68, 2), (V, 3, 4)
    return np.stack([triangulate(observed[:, j], projections) for j in range(observed.shape[1])])


def write_template_asset() -> Path:
    """Regenerate the package data file (after the synthetic head or dlib's model changes)."""
    ASSET_DIR.mkdir(parents=True, exist_ok=True)
    np.save(TEMPLATE_FILE, build_dlib_template().astype(np.float64), allow_pickle=False)
    load_dlib_template.cache_clear()
    return TEMPLATE_FILE


if __name__ == "__main__":
    print(write_template_asset())
