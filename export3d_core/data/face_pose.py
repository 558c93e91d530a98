"""Head pose from 68 landmarks: PnP against the canonical template, EG3D camera, landmark expression.

`estimate_pose` solves PnP (OpenCV, iterative Levenberg-Marquardt started from the frontal pose)
for the template of `face_template`. `estimate_camera` turns that pose into the EG3D 25-vector of
an orbit camera (docs/architecture.md, "EG3D conventions"): the crop already fixes scale and roll, so only the viewing
direction is kept and the camera sits at radius 2.7 on it, looking at the pivot, as EG3D's own
FFHQ cameras do. `landmark_expression` removes the pose from the landmarks (what PnP explains)
and returns what is left, in template units: a pose-free expression vector for real video.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from export3d_core.camera import DEFAULT_FOV_DEG, DEFAULT_PIVOT, OrbitCamera, focal_from_fov
from export3d_core.data.face_template import load_template, project
from export3d_core.errors import Export3DError

NUM_LANDMARKS = 68
EXPRESSION_DIM = 2 * NUM_LANDMARKS  # (dx, dy) per landmark in the frontal template frame


@dataclass
class HeadPose:
    rotation: np.ndarray  # (3, 3) world -> OpenCV camera
    translation: np.ndarray  # (3,) world -> OpenCV camera
    yaw: float  # radians, camera direction around the pivot (OrbitCamera convention)
    pitch: float  # radians
    reprojection_error: float  # mean pixel distance between the landmarks and the fitted template


def pixel_intrinsics(image_size: float, fov_deg: float = DEFAULT_FOV_DEG) -> np.ndarray:
    """(3, 3) pixel intrinsics of a square `image_size` image with EG3D's normalized focal."""
    f = focal_from_fov(fov_deg) * image_size
    return np.array([[f, 0.0, image_size / 2.0], [0.0, f, image_size / 2.0], [0.0, 0.0, 1.0]])


def _frontal_extrinsics() -> tuple[np.ndarray, np.ndarray]:
    """rvec, tvec (world -> camera) of the frontal orbit camera: the PnP starting point."""
    cam2world = OrbitCamera().cam2world().numpy()
    rotation = cam2world[:3, :3].T
    translation = -rotation @ cam2world[:3, 3]
    rvec, _ = cv2.Rodrigues(rotation)
    return rvec, translation.reshape(3, 1)


def _check_landmarks(landmarks2d: np.ndarray) -> np.ndarray:
    points = np.asarray(landmarks2d, dtype=np.float64)
    if points.shape != (NUM_LANDMARKS, 2) or not np.isfinite(points).all():
        raise Export3DError(f"expected 68 finite 2D landmarks, got an array of shape {points.shape}")
    return points


def estimate_pose(landmarks2d: np.ndarray, image_size: float, template: np.ndarray | None = None) -> HeadPose:
    """PnP of the template to (68, 2) pixel landmarks in a square `image_size` crop.

    `template` (68, 3): where the landmarker's points sit on the head; default the geometric
    template (`face_template`). dlib's points need `dlib_template.load_dlib_template()`.
    """
    points = _check_landmarks(landmarks2d)
    template = load_template() if template is None else np.asarray(template, dtype=np.float64)  # (68, 3)
    camera_matrix = pixel_intrinsics(image_size)
    rvec, tvec = _frontal_extrinsics()
    ok, rvec, tvec = cv2.solvePnP(template, points, camera_matrix, None, rvec=rvec.copy(), tvec=tvec.copy(),
                                  useExtrinsicGuess=True, flags=cv2.SOLVEPNP_ITERATIVE)
    if not ok or not np.isfinite(rvec).all() or not np.isfinite(tvec).all():
        raise Export3DError("head pose estimation failed: the landmarks do not look like a face")
    rotation, _ = cv2.Rodrigues(rvec)
    translation = tvec.reshape(3)
    centre = -rotation.T @ translation  # camera centre in the world (template) frame
    offset = centre - np.asarray(DEFAULT_PIVOT)
    radius = float(np.linalg.norm(offset))
    yaw = math.atan2(offset[0], offset[2])
    pitch = math.asin(max(-1.0, min(1.0, offset[1] / radius)))
    fitted = _project_pose(template, rotation, translation, camera_matrix)
    error = float(np.linalg.norm(fitted - points, axis=1).mean())
    return HeadPose(rotation=rotation, translation=translation, yaw=yaw, pitch=pitch, reprojection_error=error)


def _project_pose(points3d: np.ndarray, rotation: np.ndarray, translation: np.ndarray,
                  camera_matrix: np.ndarray) -> np.ndarray:
    cam = points3d @ rotation.T + translation  # (N, 3)
    return cam[:, :2] / cam[:, 2:3] * camera_matrix[0, 0] + camera_matrix[:2, 2]  # (N, 2)


def estimate_camera(landmarks2d: np.ndarray, image_size: float, template: np.ndarray | None = None) -> np.ndarray:
    """EG3D 25-vector (float32) of the orbit camera that sees the template as the landmarks show."""
    pose = estimate_pose(landmarks2d, image_size, template)
    return OrbitCamera(yaw=pose.yaw, pitch=pose.pitch).params().numpy().astype(np.float32)


def frontal_camera() -> np.ndarray:
    """The default camera when nothing is known about the pose: frontal, (25,) float32."""
    return OrbitCamera().params().numpy().astype(np.float32)


def project_template(camera: np.ndarray, image_size: float) -> np.ndarray:
    """(68, 2) pixel landmarks of the template seen by a 25-vector camera (tests, previews)."""
    params = np.asarray(camera, dtype=np.float64).reshape(25)
    cam2world = params[:16].reshape(4, 4)
    return project(load_template(), cam2world, params[16], image_size)


def landmark_expression(landmarks2d: np.ndarray, image_size: float,
                        pose: HeadPose | None = None) -> np.ndarray:
    """(136,) float32 pose-free expression: landmark offsets from the posed template, frontal frame.

    The residual between the landmarks and the template posed by PnP is what the rigid pose
    cannot explain (mouth opening, brows, blinks). Each residual is back-projected to the template's
    depth (pixels -> world units) and rotated into the head frame, so the same expression gives the
    same vector whatever the head pose and crop size.
    """
    points = _check_landmarks(landmarks2d)
    pose = pose or estimate_pose(points, image_size)
    template = load_template()
    camera_matrix = pixel_intrinsics(image_size)
    cam = template @ pose.rotation.T + pose.translation  # (68, 3) template in camera space
    fitted = cam[:, :2] / cam[:, 2:3] * camera_matrix[0, 0] + camera_matrix[:2, 2]  # (68, 2)
    residual_px = points - fitted  # (68, 2)
    residual_cam = np.zeros((NUM_LANDMARKS, 3))
    residual_cam[:, :2] = residual_px * cam[:, 2:3] / camera_matrix[0, 0]  # pixels -> world units at depth
    residual_head = residual_cam @ pose.rotation  # camera -> world (template) frame, (68, 3)
    # World y is up: report (dx, dy) in the template's frame, image-like signs are not needed.
    return residual_head[:, :2].reshape(-1).astype(np.float32)


def expression_names() -> list[str]:
    return [f"lm{i:02d}_{axis}" for i in range(NUM_LANDMARKS) for axis in ("x", "y")]
