"""The triangle mesh of a procedural synthetic head, for one identity and one expression.

Owns the geometry: a UV-sphere grid deformed into a superellipsoid head (jaw, chin, cheeks,
eye sockets, brow ridge, nose, lips), the hair cap (a displaced band of the head grid) and
per-style extra hair (a long curtain or a bun), ears, and a neck that widens into shoulders.
The identity part (`IdentityGeometry`) is built once per identity; `pose_mesh` then adds the
expression deformations of the head grid per frame. Colours are not here: the fragment shader
paints the features from the head-local coordinates carried by every vertex (`face`).

Vertex attributes: world position (3), world normal (3), head-local position (3, the paint
coordinates) and aux (4): material id, hair mask, and two hair-strand coordinates.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from export3d_core.data.head_landmarks import BETA_DIM, HEAD_CENTRE, FaceLayout, face_layout

if TYPE_CHECKING:
    from export3d_core.data.head_identity import Identity

# Materials the fragment shader knows (aux.x).
MAT_HEAD, MAT_HAIR, MAT_SKIN, MAT_CLOTH = 0.0, 1.0, 2.0, 3.0
HEAD_ROWS, HEAD_COLS = 128, 150  # latitude x longitude samples of the head grid
LAT_WARP, LON_WARP = 0.45, 0.6  # > 0 concentrates samples at the equator / at the face (theta = 0)
POLE_MARGIN = 1e-3  # keeps the grid off the poles, where its normals degenerate
SUPERELLIPSE = 2.3  # exponent of the head superellipsoid (2 = ellipsoid; larger = boxier)
HAIR_THICKNESS = {"short": 0.05, "long": 0.05, "bun": 0.035, "bald": 0.012}  # in b
LONG_HAIR_FROM = np.radians(55.0)  # the long-hair curtain covers |theta| >= this (sides and back)
NECK_TOP, NECK_BOTTOM, COLLAR = -0.2, -4.5, -1.5  # neck extent and where clothing starts, in b
EAR_Y, EAR_Z = -0.06, -0.08  # ear centre height (in b) and depth (in c)
PART_ROWS, PART_COLS = 14, 20  # grid of the small parts (ears, bun)


def smoothstep(e0: float, e1: float, x: np.ndarray) -> np.ndarray:
    t = np.clip((x - e0) / (e1 - e0), 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


def gauss(x: np.ndarray, y: np.ndarray | float = 0.0) -> np.ndarray:
    return np.exp(-(x * x + y * y))


@dataclass
class MeshPart:
    positions: np.ndarray  # (V, 3) head-local
    normals: np.ndarray  # (V, 3)
    aux: np.ndarray  # (V, 4)
    indices: np.ndarray  # (T, 3) local vertex indices


@dataclass
class IdentityGeometry:
    """Everything about a head that does not change with the expression."""

    rest: np.ndarray  # (HEAD_ROWS, HEAD_COLS, 3) head grid after identity shaping, before hair
    hair_offset: np.ndarray  # (HEAD_ROWS, HEAD_COLS, 3) outward displacement of the hair cap
    head_aux: np.ndarray  # (HEAD_ROWS * HEAD_COLS, 4)
    head_indices: np.ndarray  # (T, 3)
    parts: MeshPart  # ears, neck and style hair merged, appended after the head vertices
    lat: np.ndarray  # (HEAD_ROWS,) latitude of each grid row, radians
    lon: np.ndarray  # (HEAD_COLS,) longitude of each grid column (0 = facing +z), radians


@dataclass
class PosedMesh:
    positions: np.ndarray  # (V, 3) world
    normals: np.ndarray  # (V, 3) world
    face: np.ndarray  # (V, 3) head-local (paint coordinates)
    aux: np.ndarray  # (V, 4)
    indices: np.ndarray  # (T, 3) uint32
    head_grid: np.ndarray  # (HEAD_ROWS, HEAD_COLS, 3) posed head grid, head-local
    layout: FaceLayout


# -- grids ------------------------------------------------------------------------------------------
def grid_indices(rows: int, cols: int, wrap: bool) -> np.ndarray:
    """Two triangles per grid quad; columns wrap around when `wrap`. (T, 3) int64."""
    i, j = np.meshgrid(np.arange(rows - 1), np.arange(cols if wrap else cols - 1), indexing="ij")
    j1 = (j + 1) % cols
    a, b, c, d = i * cols + j, i * cols + j1, (i + 1) * cols + j1, (i + 1) * cols + j
    return np.concatenate([np.stack([a, b, c], -1).reshape(-1, 3), np.stack([a, c, d], -1).reshape(-1, 3)])


def grid_normals(grid: np.ndarray, wrap: bool) -> np.ndarray:
    """Normals of a (rows, cols, 3) grid whose columns go around (+theta) and rows go up."""
    if wrap:
        d_col = np.roll(grid, -1, axis=1) - np.roll(grid, 1, axis=1)
    else:
        d_col = np.gradient(grid, axis=1)
    d_row = np.gradient(grid, axis=0)
    n = np.cross(d_col, d_row)  # (rows, cols, 3), outward for this parametrisation
    return n / np.maximum(np.linalg.norm(n, axis=-1, keepdims=True), 1e-12)


def _warped(count: int, warp: float, lo: float, hi: float) -> np.ndarray:
    """Samples of u in [lo, hi] (a subset of [-1, 1]) mapped to u - warp sin(pi u) / pi."""
    u = np.linspace(lo, hi, count)
    return u - warp * np.sin(np.pi * u) / np.pi


def _directions(lat: np.ndarray, lon: np.ndarray) -> np.ndarray:
    phi, theta = np.meshgrid(lat, lon, indexing="ij")
    return np.stack([np.cos(phi) * np.sin(theta), np.sin(phi), np.cos(phi) * np.cos(theta)], -1)


def superellipsoid(d: np.ndarray, a: float, b: float, c: float) -> np.ndarray:
    """Points of the superellipsoid with semi-axes (a, b, c) along unit directions d (..., 3)."""
    r = (np.abs(d) ** SUPERELLIPSE).sum(-1, keepdims=True) ** (-1.0 / SUPERELLIPSE)
    return r * d * np.array([a, b, c])


def _ellipsoid_part(centre: np.ndarray, radii: np.ndarray, material: float) -> MeshPart:
    lat = np.linspace(-np.pi / 2 + POLE_MARGIN, np.pi / 2 - POLE_MARGIN, PART_ROWS)
    lon = np.linspace(-np.pi, np.pi, PART_COLS, endpoint=False)
    d = _directions(lat, lon)  # (R, C, 3)
    pos = centre + d * radii
    nrm = d / radii
    nrm /= np.linalg.norm(nrm, axis=-1, keepdims=True)
    aux = np.zeros((pos.shape[0] * pos.shape[1], 4))
    aux[:, 0] = material
    aux[:, 1] = 1.0 if material == MAT_HAIR else 0.0
    phi, theta = np.meshgrid(lat, lon, indexing="ij")
    aux[:, 2], aux[:, 3] = theta.reshape(-1), phi.reshape(-1)
    return MeshPart(pos.reshape(-1, 3), nrm.reshape(-1, 3), aux, grid_indices(PART_ROWS, PART_COLS, True))


def _merge(parts: list[MeshPart]) -> MeshPart:
    offset, indices = 0, []
    for part in parts:
        indices.append(part.indices + offset)
        offset += len(part.positions)
    return MeshPart(np.concatenate([p.positions for p in parts]), np.concatenate([p.normals for p in parts]),
                    np.concatenate([p.aux for p in parts]), np.concatenate(indices))


# -- identity shaping -------------------------------------------------------------------------------
def _shape_head(p: np.ndarray, ident: "Identity", lay: FaceLayout) -> np.ndarray:
    """Identity deformations of the superellipsoid head grid p (..., 3), head-local."""
    a, b, c = lay.a, lay.b, lay.c
    x, y, z = p[..., 0].copy(), p[..., 1].copy(), p[..., 2].copy()
    front = smoothstep(0.1 * c, 0.7 * c, z)
    lower = smoothstep(-0.05 * b, -0.95 * b, y)
    x *= 1.0 - lower * (1.1 - ident.jaw_width) * 0.6  # jaw narrows towards the chin
    z += front * lower * 0.12 * c  # the lower face is flatter than an ellipsoid
    z += (0.14 + 0.06 * ident.chin) * c * gauss((y + 0.86 * b) / (0.16 * b), x / (0.3 * a)) * front
    y -= 0.07 * b * ident.chin * smoothstep(-0.55 * b, -b, y) * front
    for side in (-1.0, 1.0):
        cheek = gauss((x - side * 0.52 * a) / (0.22 * a), (y + 0.22 * b) / (0.2 * b)) * front
        z += (0.03 + 0.06 * ident.cheeks) * c * cheek
        qx, qy = x - side * lay.eye_x, y - lay.eye_y
        z -= 0.1 * c * gauss(qx / (1.5 * lay.eye_w), qy / (2.4 * lay.eye_h)) * front  # eye socket
        z += 0.05 * c * gauss(qx / (0.9 * lay.eye_w), qy / (1.2 * lay.eye_h)) * front  # eyeball
    z += 0.05 * c * gauss((y - lay.brow_y) / (0.09 * b)) * smoothstep(0.9 * a, 0.3 * a, np.abs(x)) * front
    z += _nose(x, y, lay) * front
    mx, my = 0.0, lay.mouth_y
    full = ident.lip_fullness
    upper, lower = lay.upper_lip, lay.lower_lip
    z += 0.04 * c * full * gauss((x - mx) / (0.85 * lay.mouth_w), (y - my - 0.5 * upper) / (0.9 * upper))
    z += 0.045 * c * full * gauss((x - mx) / (0.8 * lay.mouth_w), (y - my + 0.5 * lower) / (0.9 * lower))
    z -= 0.025 * c * gauss(x / (0.7 * lay.mouth_w), (y - my + 1.7 * lay.lower_lip) / (0.6 * lay.lower_lip))
    return np.stack([x, y, z], -1)


def _nose(x: np.ndarray, y: np.ndarray, lay: FaceLayout) -> np.ndarray:
    """Forward displacement of the nose: a ridge from the eyes to a bulb, with alae."""
    t = (lay.eye_y - y) / (lay.eye_y - lay.nose_bottom_y)  # 0 at the eye line, 1 at the nose base
    tc = np.clip(t, 0.0, 1.0)
    height = lay.nose_proj * (0.3 + 0.7 * tc ** 1.4) * smoothstep(-0.4, 0.0, t) * (1 - smoothstep(0.93, 1.08, t))
    width = lay.nose_w * (0.28 + 0.3 * tc ** 2)
    bump = height * gauss(x / width)
    alae = 0.3 * lay.nose_proj * smoothstep(0.55, 0.85, t) * (1 - smoothstep(0.95, 1.1, t))
    for side in (-1.0, 1.0):
        bump = bump + alae * gauss((x - side * 0.7 * lay.nose_w) / (0.35 * lay.nose_w))
    return bump


def _hair_mask(lat: np.ndarray, lon: np.ndarray, y: np.ndarray, ident: "Identity", lay: FaceLayout) -> np.ndarray:
    """1 where the head grid wears hair: above a hairline that drops from the forehead to the nape."""
    b = lay.b
    theta = np.abs(np.broadcast_to(lon[None, :], y.shape))
    deg = np.degrees(theta)
    front_line = lay.hairline_y + 0.1 * b * (np.minimum(deg, 60.0) / 60.0) ** 2
    side_line = np.interp(deg, [60.0, 85.0, 105.0, 180.0], [lay.hairline_y + 0.1 * b, 0.05 * b, 0.05 * b, -0.55 * b])
    line = np.where(deg < 60.0, front_line, side_line)
    mask = smoothstep(-0.025 * b, 0.025 * b, y - line)
    if ident.hair_style == "bald":
        mask = mask * smoothstep(0.45 * b, 0.25 * b, y)  # only a short fringe round the sides and back
    return mask


def _long_hair(rest_with_hair: np.ndarray, lon: np.ndarray, lay: FaceLayout) -> MeshPart:
    """A curtain of hair from the temples round the back down to the shoulders, clear of the head."""
    b, c = lay.b, lay.c
    cols = np.concatenate([np.nonzero(lon >= LONG_HAIR_FROM)[0], np.nonzero(lon <= -LONG_HAIR_FROM)[0]])
    theta = np.unwrap(lon[cols])
    top, bottom = 0.3 * b, -1.6 * b
    zc = -0.1 * c
    band = (rest_with_hair[..., 1] < top + 0.05 * b)  # rows the curtain must clear
    radial = np.hypot(rest_with_hair[..., 0] / lay.a, (rest_with_hair[..., 2] - zc) / c)
    clearance = np.where(band, radial, 0.0).max(axis=0)[cols]  # (C,) in ellipse units
    clearance = np.maximum.reduce([clearance, np.roll(clearance, 1), np.roll(clearance, -1)]) + 0.05
    ys = np.linspace(bottom, top, 24)  # rows go up
    flare = 1.0 + 0.22 * smoothstep(top, bottom, ys)[:, None]  # (R, 1)
    scale = clearance[None, :] * flare  # (R, C)
    pos = np.stack([lay.a * scale * np.sin(theta)[None, :], np.broadcast_to(ys[:, None], scale.shape),
                    zc + c * scale * np.cos(theta)[None, :]], -1)
    aux = np.zeros((pos.shape[0] * pos.shape[1], 4))
    aux[:, 0], aux[:, 1] = MAT_HAIR, 1.0
    aux[:, 2] = np.broadcast_to(theta[None, :], scale.shape).reshape(-1)
    aux[:, 3] = np.broadcast_to(ys[:, None] / b, scale.shape).reshape(-1)
    return MeshPart(pos.reshape(-1, 3), grid_normals(pos, wrap=False).reshape(-1, 3), aux,
                    grid_indices(pos.shape[0], pos.shape[1], wrap=False))


def _neck(lay: FaceLayout) -> MeshPart:
    a, b, c = lay.a, lay.b, lay.c
    ys = np.linspace(NECK_BOTTOM * b, NECK_TOP * b, 40)
    theta = np.linspace(-np.pi, np.pi, 48, endpoint=False)
    shoulders = smoothstep(-1.5 * b, -3.2 * b, ys)[:, None]  # (R, 1)
    rx, rz = 0.62 * a * (1 + 2.2 * shoulders), 0.55 * c * (1 + 0.5 * shoulders)
    pos = np.stack([rx * np.sin(theta)[None, :], np.broadcast_to(ys[:, None], (len(ys), len(theta))),
                    -0.2 * c + rz * np.cos(theta)[None, :]], -1)
    aux = np.zeros((pos.shape[0] * pos.shape[1], 4))
    aux[:, 0] = np.where(pos[..., 1] < COLLAR * b, MAT_CLOTH, MAT_SKIN).reshape(-1)
    return MeshPart(pos.reshape(-1, 3), grid_normals(pos, wrap=True).reshape(-1, 3), aux,
                    grid_indices(pos.shape[0], pos.shape[1], wrap=True))


def identity_geometry(ident: "Identity") -> IdentityGeometry:
    """Build the expression-independent part of a head."""
    lay = face_layout(ident, np.zeros(BETA_DIM))
    lat = np.pi / 2 * _warped(HEAD_ROWS, LAT_WARP, -1 + POLE_MARGIN, 1 - POLE_MARGIN)
    lon = np.pi * _warped(HEAD_COLS + 1, LON_WARP, -1.0, 1.0)[:-1]
    d = _directions(lat, lon)  # (R, C, 3)
    rest = _shape_head(superellipsoid(d, lay.a, lay.b, lay.c), ident, lay)
    mask = _hair_mask(lat, lon, rest[..., 1], ident, lay)
    outward = rest / np.linalg.norm(rest, axis=-1, keepdims=True)
    hair_offset = (HAIR_THICKNESS[ident.hair_style] * lay.b) * mask[..., None] * outward
    head_aux = np.zeros((HEAD_ROWS * HEAD_COLS, 4))
    head_aux[:, 0], head_aux[:, 1] = MAT_HEAD, mask.reshape(-1)
    phi, theta = np.meshgrid(lat, lon, indexing="ij")
    head_aux[:, 2], head_aux[:, 3] = theta.reshape(-1), phi.reshape(-1)
    parts = [_neck(lay)]
    near_ear = ((np.abs(rest[..., 1] - EAR_Y * lay.b) < 0.08 * lay.b)
                & (np.abs(rest[..., 2] - EAR_Z * lay.c) < 0.25 * lay.c))
    half_width = np.abs(rest[..., 0])[near_ear].max()
    ear_radii = np.array([0.1 * lay.a, 0.27 * lay.b, 0.17 * lay.c]) * ident.ear_size
    for side in (-1.0, 1.0):
        centre = np.array([side * (half_width - 0.2 * ear_radii[0]), EAR_Y * lay.b, EAR_Z * lay.c])
        parts.append(_ellipsoid_part(centre, ear_radii, MAT_SKIN))
    if ident.hair_style == "long":
        parts.append(_long_hair(rest + hair_offset, lon, lay))
    elif ident.hair_style == "bun":
        direction = np.array([0.0, 0.55, -0.8]) / np.hypot(0.55, 0.8)
        radius = 0.3 * lay.b
        surface = superellipsoid(direction, lay.a, lay.b, lay.c)
        centre = surface + direction * (HAIR_THICKNESS["bun"] * lay.b + 0.55 * radius)
        parts.append(_ellipsoid_part(centre, np.full(3, radius), MAT_HAIR))
    return IdentityGeometry(rest=rest, hair_offset=hair_offset, head_aux=head_aux,
                            head_indices=grid_indices(HEAD_ROWS, HEAD_COLS, wrap=True),
                            parts=_merge(parts), lat=lat, lon=lon)


# -- expression ------------------------------------------------------------------------------------
def _express(rest: np.ndarray, lay: FaceLayout, rest_lay: FaceLayout) -> np.ndarray:
    """Expression deformations of the head grid, driven by rest positions (..., 3)."""
    a, b, c = lay.a, lay.b, lay.c
    x, y, z = rest[..., 0], rest[..., 1], rest[..., 2]
    front = smoothstep(-0.2 * c, 0.4 * c, z)
    dx, dy, dz = np.zeros_like(x), np.zeros_like(x), np.zeros_like(x)
    my = rest_lay.mouth_y
    jaw = smoothstep(my, my - 0.6 * rest_lay.lower_lip, y) * smoothstep(0.95 * a, 0.45 * a, np.abs(x)) * front
    dy -= lay.jaw_drop * jaw
    dz -= 0.35 * lay.jaw_drop * jaw * smoothstep(my, -b, y)
    cheek = gauss((np.abs(x) - 0.5 * a) / (0.25 * a), (y + 0.3 * b) / (0.2 * b)) * front
    dy += 0.04 * b * lay.smile * cheek
    dz += 0.02 * c * lay.smile * cheek
    corner = gauss((np.abs(x) - rest_lay.mouth_w) / (0.3 * rest_lay.mouth_w), (y - my) / (0.15 * b)) * front
    dy += lay.corner_lift * corner
    dx += np.sign(x) * 0.2 * rest_lay.mouth_w * lay.smile * corner
    mouth = gauss(x / (0.9 * rest_lay.mouth_w), (y - my) / (0.12 * b)) * front
    dz += 0.09 * c * lay.pucker * mouth
    dx -= 0.3 * lay.pucker * x * mouth
    dx += lay.mouth_x * gauss(x / (1.3 * rest_lay.mouth_w), (y - my) / (0.2 * b)) * front
    for side, lift in ((1.0, lay.raise_left), (-1.0, lay.raise_right)):
        brow = (smoothstep(lay.eye_y + lay.eye_h, lay.brow_y, y) * gauss((side * x - lay.eye_x) / (1.6 * lay.eye_w))
                * gauss((y - lay.brow_y) / (0.35 * b)) * front)
        dy += lift * brow
    dz += 0.025 * c * lay.furrow * gauss(x / (0.12 * a), (y - lay.brow_y) / (0.08 * b)) * front
    puff = gauss((np.abs(x) - 0.55 * a) / (0.3 * a), (y - my - 0.05 * b) / (0.25 * b)) * front
    dx += np.sign(x) * 0.1 * a * lay.cheek_puff * puff
    dz += 0.07 * c * lay.cheek_puff * puff
    return rest + np.stack([dx, dy, dz], -1)


def pose_mesh(geom: IdentityGeometry, ident: "Identity", beta: np.ndarray) -> PosedMesh:
    """The full mesh of `ident` with expression `beta`, in world coordinates."""
    lay = face_layout(ident, beta)
    rest_lay = face_layout(ident, np.zeros_like(np.asarray(beta, dtype=np.float64)))
    head = _express(geom.rest, lay, rest_lay) + geom.hair_offset  # (R, C, 3)
    head_normals = grid_normals(head, wrap=True)
    local = np.concatenate([head.reshape(-1, 3), geom.parts.positions])
    normals = np.concatenate([head_normals.reshape(-1, 3), geom.parts.normals])
    aux = np.concatenate([geom.head_aux, geom.parts.aux])
    indices = np.concatenate([geom.head_indices, geom.parts.indices + HEAD_ROWS * HEAD_COLS]).astype(np.uint32)
    return PosedMesh(positions=local + HEAD_CENTRE, normals=normals, face=local, aux=aux,
                     indices=indices, head_grid=head, layout=lay)
