"""Where the facial features of a synthetic head are, for one identity and one expression β.

Owns the expression vector β_syn (names, ranges), the `FaceLayout` (eye, brow, nose and mouth
positions after the expression, in head-local world units: origin at the head centre, y up,
the face looking toward +z), the feature curves shared by the mesh, the fragment shader (which
paints the same curves, see `synthetic._FRAGMENT_SHADER`) and the 68 landmarks (iBUG 300-W
order), and the projection of world points with an EG3D 25-vector camera.

Sides: "left" is the subject's left, i.e. world +x, which is the image right in a frontal view.
The iBUG order starts on the image left (the subject's right, world -x).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from scipy.spatial import cKDTree

if TYPE_CHECKING:  # the Identity dataclass lives with the sampler; only its fields are read here
    from export3d_core.data.head_identity import Identity

BETA_NAMES: tuple[str, ...] = (
    "jaw_open", "smile", "pucker", "blink_left", "blink_right", "brow_raise_left", "brow_raise_right",
    "brow_furrow", "cheek_puff", "gaze_yaw", "gaze_pitch", "mouth_left_right",
)
# Activations live in [0, 1]; signed parameters (gaze, mouth shift) in [-1, 1].
BETA_RANGES: dict[str, tuple[float, float]] = {
    name: ((-1.0, 1.0) if name in ("gaze_yaw", "gaze_pitch", "mouth_left_right") else (0.0, 1.0))
    for name in BETA_NAMES
}
BETA_DIM = len(BETA_NAMES)
_B = {name: i for i, name in enumerate(BETA_NAMES)}

# -- the canonical head, in world units (EG3D frame: the image spans ~0.63 units at the pivot) ----
HEAD_CENTRE = np.array([0.0, 0.015, 0.17])  # near the EG3D pivot (0, 0, 0.2); eyes near image centre
BASE_HALF_WIDTH = 0.178  # a: half the head width (ear to ear)
BASE_HALF_HEIGHT = 0.25  # b: half the crown-to-chin height
BASE_HALF_DEPTH = 0.2  # c: half the back-to-face depth
# -- feature proportions (fractions of a, b, c; classic "thirds" of the face) --------------------
EYE_Y = 0.02  # eye line, in b (the eyes sit half-way between crown and chin)
EYE_X = 0.40  # eye centres, in a
EYE_HALF_WIDTH = 0.19  # in a
EYE_OPENING = 0.42  # eye half-height / eye half-width
IRIS_RADIUS = 0.46  # in eye half-widths
BROW_Y = 0.16  # brow centre line above the eye line, in b
BROW_THICKNESS = 0.045  # in b
BROW_RAISE = 0.08  # brow lift at brow_raise = 1, in b
BROW_FURROW_DROP = 0.07  # inner-brow drop at brow_furrow = 1, in b
NOSE_BOTTOM_Y = -0.24  # in b (end of the middle third)
NOSE_PROJECTION = 0.22  # nose tip height over the face, in c
NOSE_HALF_WIDTH = 0.26  # alar half-width, in a
MOUTH_Y = -0.47  # closed-lip line, in b
MOUTH_HALF_WIDTH = 0.33  # in a
UPPER_LIP = 0.05  # upper-lip height, in b
LOWER_LIP = 0.065  # lower-lip height, in b
JAW_DROP = 0.16  # opening of the lips at jaw_open = 1, in b
SMILE_LIFT = 0.07  # mouth-corner lift at smile = 1, in b
PUCKER_OPENING = 0.025  # small round opening of a pucker, in b
MOUTH_SHIFT = 0.3  # mouth shift at mouth_left_right = +-1, in mouth half-widths
GAZE_X = 0.42  # iris travel at gaze_yaw = +-1, in eye half-widths
GAZE_Y = 0.4  # iris travel at gaze_pitch = +-1, in eye half-heights
HAIRLINE_Y = 0.55  # front hairline, in b
UPPER_TEETH_OPEN = 0.15  # the upper lip's share of the lip opening (the jaw takes the rest)


@dataclass(frozen=True)
class FaceLayout:
    """Feature geometry after the expression, head-local world units."""

    a: float
    b: float
    c: float
    eye_x: float
    eye_y: float
    eye_w: float  # half-width
    eye_h: float  # half-height when open
    iris_r: float
    blink_left: float  # the subject's left eye (+x)
    blink_right: float
    gaze_x: float  # iris offset from the eye centre
    gaze_y: float
    brow_y: float  # brow centre line at rest
    brow_thick: float
    raise_left: float  # brow lift, world units
    raise_right: float
    furrow: float  # 0..1
    nose_bottom_y: float
    nose_proj: float
    nose_w: float  # alar half-width
    mouth_x: float
    mouth_y: float
    mouth_w: float  # half-width
    corner_lift: float
    upper_lip: float
    lower_lip: float
    gap: float  # lip opening at the mouth centre
    jaw_drop: float  # how far the jaw and chin move down
    smile: float
    pucker: float
    cheek_puff: float
    hairline_y: float


def face_layout(identity: "Identity", beta: np.ndarray) -> FaceLayout:
    """Feature positions of `identity` wearing expression `beta` (BETA_DIM,)."""
    beta = np.asarray(beta, dtype=np.float64).reshape(BETA_DIM)
    a = BASE_HALF_WIDTH * identity.head_width
    b = BASE_HALF_HEIGHT * identity.head_height
    c = BASE_HALF_DEPTH * identity.head_depth
    eye_w = EYE_HALF_WIDTH * a * identity.eye_size
    eye_h = EYE_OPENING * eye_w
    jaw, smile, pucker = beta[_B["jaw_open"]], beta[_B["smile"]], beta[_B["pucker"]]
    mouth_w = MOUTH_HALF_WIDTH * a * identity.mouth_width * (1 + 0.22 * smile - 0.38 * pucker - 0.08 * jaw)
    lip_scale = identity.lip_fullness * (1 + 0.45 * pucker - 0.2 * smile)
    gap = JAW_DROP * b * jaw + PUCKER_OPENING * b * pucker
    return FaceLayout(
        a=a, b=b, c=c,
        eye_x=EYE_X * a * identity.eye_spacing, eye_y=EYE_Y * b, eye_w=eye_w, eye_h=eye_h,
        iris_r=IRIS_RADIUS * eye_w,
        blink_left=float(beta[_B["blink_left"]]), blink_right=float(beta[_B["blink_right"]]),
        gaze_x=GAZE_X * eye_w * beta[_B["gaze_yaw"]], gaze_y=GAZE_Y * eye_h * beta[_B["gaze_pitch"]],
        brow_y=EYE_Y * b + BROW_Y * b, brow_thick=BROW_THICKNESS * b * identity.brow_thickness,
        raise_left=BROW_RAISE * b * beta[_B["brow_raise_left"]],
        raise_right=BROW_RAISE * b * beta[_B["brow_raise_right"]],
        furrow=float(beta[_B["brow_furrow"]]),
        nose_bottom_y=NOSE_BOTTOM_Y * b * identity.nose_length,
        nose_proj=NOSE_PROJECTION * c * identity.nose_size,
        nose_w=NOSE_HALF_WIDTH * a * identity.nose_size,
        mouth_x=MOUTH_SHIFT * mouth_w * beta[_B["mouth_left_right"]],
        mouth_y=MOUTH_Y * b, mouth_w=mouth_w,
        corner_lift=SMILE_LIFT * b * smile - 0.02 * b * pucker,
        upper_lip=UPPER_LIP * b * lip_scale, lower_lip=LOWER_LIP * b * lip_scale,
        gap=gap, jaw_drop=(1 - UPPER_TEETH_OPEN) * JAW_DROP * b * jaw,
        smile=float(smile), pucker=float(pucker), cheek_puff=float(beta[_B["cheek_puff"]]),
        hairline_y=(HAIRLINE_Y + 0.12 * identity.hairline) * b,
    )


# -- feature curves (the fragment shader paints exactly these) ------------------------------------
def eye_lids(lay: FaceLayout, side: int, qx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Upper and lower lid heights over the eye centre at offsets qx (side +1 = +x eye)."""
    shape = np.clip(1.0 - (qx / lay.eye_w) ** 2, 0.0, 1.0) ** 0.8
    blink = lay.blink_left if side > 0 else lay.blink_right
    lower = -0.7 * lay.eye_h * shape
    upper = (lay.eye_h * (1 - blink) - 0.7 * lay.eye_h * blink) * shape
    return upper, lower


def brow_curve(lay: FaceLayout, side: int, t: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Brow centre line (x, y) and thickness at t in [0 (inner end), 1 (outer end)]."""
    inner = lay.eye_x - 0.85 * lay.eye_w - 0.3 * lay.eye_w * lay.furrow
    outer = lay.eye_x + 1.2 * lay.eye_w
    x = side * (inner + t * (outer - inner))
    lift = lay.raise_left if side > 0 else lay.raise_right
    y = (lay.brow_y + lift + 0.35 * lay.eye_h * np.sin(np.pi * t ** 0.8)
         - BROW_FURROW_DROP * lay.b * lay.furrow * (1 - t) ** 2)
    return x, y, lay.brow_thick * (1.0 - 0.5 * t)


def lip_curves(lay: FaceLayout, sx: np.ndarray) -> dict[str, np.ndarray]:
    """Lip edges at sx = (x - mouth_x) / mouth_w in [-1, 1]: outer top, inner top/bottom, outer bottom."""
    shape = np.sqrt(np.clip(1.0 - sx ** 2, 0.0, 1.0))
    line = lay.mouth_y + lay.corner_lift * sx ** 2
    gap = lay.gap * shape
    inner_top = line + UPPER_TEETH_OPEN * gap
    inner_bottom = line - (1 - UPPER_TEETH_OPEN) * gap
    bow = 1.0 - 0.25 * np.exp(-(sx / 0.15) ** 2)  # the cupid's-bow dip at the centre
    return {
        "outer_top": inner_top + lay.upper_lip * shape ** 0.7 * bow,
        "inner_top": inner_top, "inner_bottom": inner_bottom,
        "outer_bottom": inner_bottom - lay.lower_lip * shape ** 0.7,
    }


# -- the 68 landmarks -------------------------------------------------------------------------
def feature_landmarks_xy(lay: FaceLayout) -> np.ndarray:
    """(x, y) of landmarks 17-67 (brows, nose, eyes, mouth) in head-local coordinates, (51, 2)."""
    pts: list[tuple[float, float]] = []
    for side, ts in ((-1, (1.0, 0.75, 0.5, 0.25, 0.0)), (1, (0.0, 0.25, 0.5, 0.75, 1.0))):  # 17-26
        x, y, _ = brow_curve(lay, side, np.array(ts))
        pts += list(zip(x, y))
    bridge_top = lay.eye_y + 0.3 * lay.eye_h
    for k in range(4):  # 27-30: bridge to tip
        pts.append((0.0, bridge_top + (nose_tip_y(lay) - bridge_top) * k / 3))
    for k in range(5):  # 31-35: base of the nose, image left to right
        u = (k - 2) / 2
        pts.append((u * 0.6 * lay.nose_w, lay.nose_bottom_y + 0.12 * lay.nose_w * (abs(u) ** 2 - 0.3)))
    third = lay.eye_w / 3
    for side in (-1, 1):  # 36-41 (world -x eye), 42-47 (world +x eye)
        cx = side * lay.eye_x
        # Image left to right along the upper lid, then back along the lower lid (iBUG order):
        # for the -x eye that is outer, upper, upper, inner, lower, lower; mirrored for +x.
        for k, lid in ((-3, "c"), (-1, "u"), (1, "u"), (3, "c"), (1, "l"), (-1, "l")):
            qx = np.array([k * third])
            upper, lower = eye_lids(lay, side, qx)
            dy = 0.0 if lid == "c" else float(upper[0] if lid == "u" else lower[0])
            pts.append((cx + k * third, lay.eye_y + dy))
    outer_s = np.array([-1.0, -2 / 3, -1 / 3, 0.0, 1 / 3, 2 / 3, 1.0, 2 / 3, 1 / 3, 0.0, -1 / 3, -2 / 3])
    inner_s = np.array([-0.9, -1 / 3, 0.0, 1 / 3, 0.9, 1 / 3, 0.0, -1 / 3])
    outer = lip_curves(lay, outer_s)
    for i, s in enumerate(outer_s):  # 48-59: corner, upper lip, corner, lower lip back
        y = outer["outer_top"][i] if i <= 6 else outer["outer_bottom"][i]
        pts.append((lay.mouth_x + s * lay.mouth_w, y))
    inner = lip_curves(lay, inner_s)
    for i, s in enumerate(inner_s):  # 60-67
        y = 0.5 * (inner["inner_top"][i] + inner["inner_bottom"][i]) if i in (0, 4) else (
            inner["inner_top"][i] if i < 4 else inner["inner_bottom"][i])
        pts.append((lay.mouth_x + s * lay.mouth_w, y))
    return np.asarray(pts, dtype=np.float64)  # (51, 2)


def nose_tip_y(lay: FaceLayout) -> float:
    """Height of the most forward point of the nose (a little above its base)."""
    return lay.nose_bottom_y + 0.35 * lay.nose_w


def lift_to_surface(xy: np.ndarray, surface: np.ndarray, k: int = 4) -> np.ndarray:
    """z of the front surface under each (x, y): inverse-distance blend of the k nearest vertices.

    xy (P, 2); surface (V, 3) front-facing head vertices, same frame. Returns (P, 3).
    """
    dist, nearest = cKDTree(surface[:, :2]).query(xy, k=k)  # (P, k) each
    weight = 1.0 / (dist * dist + 1e-12)
    z = (surface[nearest, 2] * weight).sum(1) / weight.sum(1)  # (P,)
    return np.concatenate([xy, z[:, None]], axis=1)


JAW_SIDE_LON = np.radians(80.0)  # longitude of landmarks 0 and 16 (the face outline at the ears)
JAW_CHIN_LAT, JAW_SIDE_LAT = np.radians(-62.0), np.radians(-6.0)  # latitude of the chin and the ends


def jaw_landmarks(head_grid: np.ndarray, lat: np.ndarray, lon: np.ndarray) -> np.ndarray:
    """Landmarks 0-16: fixed points of the head grid along the jaw, so they follow the jaw. (17, 3)."""
    u = np.linspace(-1.0, 1.0, 17)  # image left (world -x) to right
    theta = u * JAW_SIDE_LON
    phi = JAW_CHIN_LAT + (JAW_SIDE_LAT - JAW_CHIN_LAT) * np.abs(u) ** 1.5
    fi = np.interp(phi, lat, np.arange(len(lat)))  # fractional row / column of each point
    fj = np.interp(theta, lon, np.arange(len(lon)))
    i0, j0 = np.floor(fi).astype(int), np.floor(fj).astype(int)
    ti, tj = (fi - i0)[:, None], (fj - j0)[:, None]
    i1, j1 = np.minimum(i0 + 1, len(lat) - 1), np.minimum(j0 + 1, len(lon) - 1)
    return ((1 - ti) * (1 - tj) * head_grid[i0, j0] + (1 - ti) * tj * head_grid[i0, j1]
            + ti * (1 - tj) * head_grid[i1, j0] + ti * tj * head_grid[i1, j1])


def landmarks_local(lay: FaceLayout, head_grid: np.ndarray, lat: np.ndarray, lon: np.ndarray) -> np.ndarray:
    """All 68 landmarks in head-local coordinates, (68, 3)."""
    points = head_grid.reshape(-1, 3)
    # Only the face: the xy-projection of the front is a height field there.
    box = ((points[:, 2] > 0.3 * lay.c) & (np.abs(points[:, 0]) < 0.8 * lay.a)
           & (points[:, 1] < lay.brow_y + 0.25 * lay.b) & (points[:, 1] > lay.mouth_y - 0.45 * lay.b))
    front = points[box]
    features = lift_to_surface(feature_landmarks_xy(lay), front)  # (51, 3)
    return np.concatenate([jaw_landmarks(head_grid, lat, lon), features])


# -- cameras --------------------------------------------------------------------------------------
def project_points(points: np.ndarray, camera25: np.ndarray, resolution: int) -> np.ndarray:
    """World points (P, 3) -> pixel coordinates (P, 2) with an EG3D 25-vector camera.

    Pixels: x right, y down, pixel centres at +0.5 (corpus.py convention).
    """
    cam = np.asarray(camera25, dtype=np.float64).reshape(25)
    cam2world, intr = cam[:16].reshape(4, 4), cam[16:].reshape(3, 3)
    world2cam = np.linalg.inv(cam2world)
    homo = np.concatenate([points, np.ones((len(points), 1))], axis=1)  # (P, 4)
    p_cam = homo @ world2cam.T  # (P, 4), OpenCV axes: z forward
    uvw = p_cam[:, :3] @ intr.T  # (P, 3), normalized image coordinates times depth
    return uvw[:, :2] / uvw[:, 2:3] * resolution  # (P, 2)
