"""Paste-back: composite a rendered head into the original photo at the photo's own resolution.

The render lives in the aligned crop; intake's alignment (`CropResult.transform`, original pixel ->
crop pixel) is inverted to bring it back. Only the face is pasted: a mask from the rendered
opacity times the face region (the template head's landmarks seen from the render's camera, so
the region turns with the head, raised over the forehead), feathered with a Gaussian. The render's
colour is matched to the photo's in the feather band, where both are seen. Outside the mask the
output is the photo, pixel for pixel.

Far from the photo's own pose the photo around the mask no longer fits the head: the photo's own
face shows beside the turned one. `pose_supported` says whether a camera is within the measured
limit (`MAX_YAW_DEG`, `MAX_PITCH_DEG`); callers warn or disable paste-back beyond it.

Every pasted view is the photo's own pose turned by a yaw and a pitch (`Compositor.turned`): the
commands' `--yaw/--pitch` and an animation's camera keys alike, so 0°, 0° is the photo's pose. The
distance and field of view are always the photo's, or the render would not line up with it.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from export3d_core.camera import OrbitCamera, focal_from_fov
from export3d_core.data.face_template import JAW, LEFT_EYE, RIGHT_EYE, load_template, project
from export3d_core.errors import Export3DError

# Measured with tools/paste_back_limit.py on the fitted astronaut (dlib crop): the mean mismatch
# (0-255) between the colour-matched render and the photo in the feather band is 7.7 at the photo's
# own pose, 27.9 at 10° yaw, 34.0 at 15° (where the photo's own eye shows beside the turned one),
# 37.7 at 20°, and 29.4 at 10° pitch, 35.5 at 15° (a doubled brow). The limit is the largest
# offset that stays below 30.
MAX_YAW_DEG = 10.0
MAX_PITCH_DEG = 10.0


@dataclass(frozen=True)
class PasteBackSettings:
    """How the rendered face is blended into the photo."""

    feather: float = 0.15  # Gaussian sigma of the mask's edge, in inter-ocular distances
    forehead: float = 0.9  # how far the region reaches above the brows, in inter-ocular distances
    # The hard region is eroded by this many sigmas before feathering, so the blurred mask reaches 1
    # inside the face (with less, the photo's own eyes showed through the render) and its soft
    # edge stays on the face, where the photo and the render agree best.
    shrink_sigmas: float = 2.0
    colour_match: bool = True  # shift the render's mean colour in the feather band to the photo's


def pose_offset_deg(camera: OrbitCamera, photo_camera: OrbitCamera) -> tuple[float, float]:
    """How far `camera` turns from the photo's pose: absolute yaw and pitch differences in degrees."""
    return abs(math.degrees(camera.yaw - photo_camera.yaw)), abs(math.degrees(camera.pitch - photo_camera.pitch))


def pose_supported(camera: OrbitCamera, photo_camera: OrbitCamera) -> tuple[bool, str]:
    """Whether paste-back can be right at `camera` for a photo seen from `photo_camera`, and why not."""
    yaw, pitch = pose_offset_deg(camera, photo_camera)
    if yaw > MAX_YAW_DEG or pitch > MAX_PITCH_DEG:
        return False, (f"paste-back is only right within {MAX_YAW_DEG:g}° yaw and {MAX_PITCH_DEG:g}° pitch of the "
                       f"photo's own pose (this view: {yaw:.0f}° yaw, {pitch:.0f}° pitch away)")
    return True, ""


def turned_camera(photo_camera: OrbitCamera, yaw: float, pitch: float) -> OrbitCamera:
    """The photo's own camera turned by `yaw` and `pitch` (radians): the view a pasted frame renders
    from. Distance, field of view and pivot stay the photo's, so the render lines up with it."""
    return photo_camera.replace(yaw=photo_camera.yaw + yaw, pitch=photo_camera.pitch + pitch)


def limit_problem(cameras: list[OrbitCamera], photo_camera: OrbitCamera) -> str:
    """"" when every view is within the pose limit; else why not for the farthest view, and how many
    of several views are beyond it."""
    beyond = [c for c in cameras if not pose_supported(c, photo_camera)[0]]
    if not beyond:
        return ""
    worst = max(beyond, key=lambda c: max(pose_offset_deg(c, photo_camera)))
    count = f"; {len(beyond)} of {len(cameras)} frames are beyond it" if len(cameras) > 1 else ""
    return pose_supported(worst, photo_camera)[1] + count


def face_region(camera: np.ndarray, size: int, settings: PasteBackSettings = PasteBackSettings()) -> np.ndarray:
    """(size, size) float32 mask in [0, 1]: the template face seen from `camera` (25,), feathered."""
    camera = np.asarray(camera, dtype=np.float64).reshape(-1)
    cam2world = camera[:16].reshape(4, 4)
    focal = float(camera[16]) if camera[16] > 0 else focal_from_fov(18.837)
    points = project(load_template(), cam2world, focal, size)  # (68, 2) in pixels
    iod = float(np.linalg.norm(points[RIGHT_EYE].mean(0) - points[LEFT_EYE].mean(0)))
    brows = points[17:27].copy()
    eye_line = (points[RIGHT_EYE].mean(0) - points[LEFT_EYE].mean(0)) / max(iod, 1e-9)
    up = np.array([eye_line[1], -eye_line[0]])  # the eye line turned towards the top of the head
    forehead = brows + up * settings.forehead * iod
    hull = cv2.convexHull(np.concatenate([points[JAW], forehead]).astype(np.float32))
    hard = np.zeros((size, size), np.uint8)
    cv2.fillConvexPoly(hard, np.round(hull[:, 0] * 16).astype(np.int32), 1, lineType=cv2.LINE_8, shift=4)
    sigma = max(settings.feather * iod, 0.5)
    erode = int(round(settings.shrink_sigmas * sigma))
    if erode > 0:
        hard = cv2.erode(hard, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * erode + 1, 2 * erode + 1)))
    return cv2.GaussianBlur(hard.astype(np.float32), (0, 0), sigma)


def paste_back(original: np.ndarray, transform: np.ndarray, crop_size: int, rendered: np.ndarray,
               alpha: np.ndarray, camera: np.ndarray, settings: PasteBackSettings = PasteBackSettings()) -> np.ndarray:
    """The photo `original` (H, W, 3) uint8 with the rendered face pasted in.

    `transform` (2, 3) maps original pixels to a `crop_size` crop; `rendered` (S, S, 3) uint8 is the
    render in that crop's framing at any size S; `alpha` (s, s) its opacity in [0, 1]; `camera` (25,)
    the render's camera. Pixels outside the feathered mask are the original's, unchanged.
    """
    original = np.asarray(original)
    if original.ndim != 3 or original.shape[2] != 3 or original.dtype != np.uint8:
        raise Export3DError(f"paste-back needs the original photo as (H, W, 3) uint8, got {original.dtype} {original.shape}")
    size = rendered.shape[0]
    matrix = _render_matrix(transform, crop_size, size)
    height, width = original.shape[:2]
    face = cv2.warpAffine(rendered.astype(np.float32), matrix, (width, height),
                          flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP, borderMode=cv2.BORDER_REPLICATE)
    weight = paste_weight(original.shape[:2], transform, crop_size, size, alpha, camera, settings)
    photo = original.astype(np.float32)
    if settings.colour_match:
        face = face + _seam_offset(face, photo, weight)
    blended = face * weight[..., None] + photo * (1 - weight[..., None])
    out = np.clip(np.round(blended), 0, 255).astype(np.uint8)
    return np.where(weight[..., None] > 0, out, original)


def paste_weight(shape: tuple[int, int], transform: np.ndarray, crop_size: int, size: int, alpha: np.ndarray,
                 camera: np.ndarray, settings: PasteBackSettings = PasteBackSettings()) -> np.ndarray:
    """(H, W) float32 blend weight of the render in the original photo: opacity x face region,
    feathered, brought back through the inverse alignment; exactly 0 where the photo stays itself."""
    alpha = cv2.resize(np.asarray(alpha, np.float32), (size, size), interpolation=cv2.INTER_LINEAR)
    mask = np.clip(alpha, 0, 1) * face_region(camera, size, settings)
    weight = cv2.warpAffine(mask, _render_matrix(transform, crop_size, size), (shape[1], shape[0]),
                            flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP, borderMode=cv2.BORDER_CONSTANT,
                            borderValue=0)
    weight[weight < 1.0 / 255] = 0.0  # the Gaussian's far tail: outside, the photo stays exactly itself
    return weight


def _render_matrix(transform: np.ndarray, crop_size: int, size: int) -> np.ndarray:
    """OpenCV matrix from original pixels to the pixels of a `size` render of the `crop_size` crop."""
    matrix = np.asarray(transform, np.float64) * (size / crop_size)
    matrix[:, 2] += matrix[:, :2] @ np.array([0.5, 0.5]) - 0.5  # OpenCV's pixel centres are at integers
    return matrix


def _seam_offset(face: np.ndarray, photo: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """Per-channel colour offset that makes the render's mean in the feather band the photo's."""
    band = 4 * weight * (1 - weight)  # peaks where the mask is 0.5: both images are seen
    total = float(band.sum())
    if total < 1e-6:
        return np.zeros(3, np.float32)
    return ((photo - face) * band[..., None]).sum((0, 1)) / total


class Compositor:
    """Renders views of a session's portrait and pastes each into the original photo."""

    def __init__(self, original: np.ndarray, transform: np.ndarray, crop_size: int,
                 photo_camera: OrbitCamera, settings: PasteBackSettings = PasteBackSettings()) -> None:
        self.original, self.transform, self.crop_size = original, transform, crop_size
        self.photo_camera, self.settings = photo_camera, settings

    def turned(self, yaw: float, pitch: float) -> OrbitCamera:
        """The photo's own camera turned by `yaw` and `pitch` (radians), as `turned_camera`."""
        return turned_camera(self.photo_camera, yaw, pitch)

    def frame(self, session, lam, camera: OrbitCamera) -> np.ndarray:
        """The final render of (λ, camera) pasted into the photo, (H, W, 3) uint8 at the photo's size."""
        from export3d_core.session import tensor_to_image

        out = session.render(lam, camera)
        return paste_back(self.original, self.transform, self.crop_size, tensor_to_image(out.image),
                          out.alpha[0, 0].float().cpu().numpy(), camera.params().numpy(), self.settings)


def photo_and_transform(path: str | Path, crop_size: int, face_index: int | None = None,
                        aligned: bool | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """The original photo, its alignment transform (original pixel -> `crop_size` crop) and its
    estimated camera (None without landmarks), as intake computes them for `load_portrait` (a demo
    portrait that is already aligned: its centre-crop resize and no camera)."""
    from export3d_core.data.image_io import load_image
    from export3d_core.data.intake import crop_portrait
    from export3d_core.portrait import is_demo_aligned

    image = load_image(Path(path))
    if aligned is None:
        aligned = is_demo_aligned(Path(path))
    if aligned:
        side = min(image.shape[:2])
        top, left = (image.shape[0] - side) // 2, (image.shape[1] - side) // 2
        scale = crop_size / side
        return image, np.array([[scale, 0.0, -left * scale], [0.0, scale, -top * scale]]), None
    crop = crop_portrait(image, size=crop_size, face_index=face_index)
    return image, crop.transform, crop.camera


def photo_compositor(path: str | Path, crop_size: int, face_index: int | None = None,
                     aligned: bool | None = None, settings: PasteBackSettings = PasteBackSettings()) -> Compositor:
    """A compositor into the photo at `path`, aligned as intake aligns it for a `crop_size` crop; a photo
    without landmarks (an aligned demo portrait) is taken as seen from the frontal camera."""
    original, transform, photo_camera = photo_and_transform(path, crop_size, face_index, aligned)
    photo = OrbitCamera() if photo_camera is None else OrbitCamera.from_params(photo_camera)
    return Compositor(original, transform, crop_size, photo, settings)
