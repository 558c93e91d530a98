"""Procedural synthetic heads: expressions β_syn and an offscreen moderngl renderer (identities are
drawn in `head_identity`, re-exported here; the corpus and `export3d synth` are `synth_command`'s).

We have no face data set offline, so we make one. An `Identity` (face shape, colours, hair style)
and an expression β (BETA_NAMES, 12 numbers) give a mesh (`head_mesh`) whose features are painted
by the fragment shader below from the same curves that place the 68 landmarks (`head_landmarks`).
`HeadRenderer` renders any EG3D 25-vector camera (ground truth for evaluation too); it uses EGL
headless (Mesa llvmpipe on a server, the GPU on a desktop), supersampled 2x for clean
geometry edges, and the shader antialiases painted edges with screen-space derivatives.
Everything is deterministic for a seed.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from export3d_core.data import head_landmarks as hl
from export3d_core.data.head_landmarks import BETA_DIM, BETA_NAMES, BETA_RANGES, project_points
from export3d_core.data.head_identity import HAIR_STYLES, Identity, sample_background, sample_identity
from export3d_core.data.head_mesh import IdentityGeometry, identity_geometry, pose_mesh
from export3d_core.errors import Export3DError

SUPERSAMPLE = 2  # render at 2x and average 2x2 blocks: llvmpipe's MSAA costs 3x, this 1.5x
NEAR, FAR = 0.5, 8.0  # depth range of the GL projection, world units (camera radius 2.7)
ACTIVE_PROBABILITY = 0.45  # chance that one expression parameter is non-zero in a sampled β


def sample_expression(rng: np.random.Generator) -> np.ndarray:
    """A random β (BETA_DIM,): each parameter is active with ACTIVE_PROBABILITY, else neutral."""
    beta = np.zeros(BETA_DIM)
    for i, name in enumerate(BETA_NAMES):
        lo, hi = BETA_RANGES[name]
        value = rng.uniform(lo, hi)
        beta[i] = value if rng.random() < ACTIVE_PROBABILITY else 0.0
    return beta


_VERTEX_SHADER = """
#version 330
uniform mat4 u_mvp;
in vec3 in_pos; in vec3 in_nrm; in vec3 in_face; in vec4 in_aux;
out vec3 v_pos; out vec3 v_nrm; out vec3 v_face; out vec4 v_aux;
void main() {
    v_pos = in_pos; v_nrm = in_nrm; v_face = in_face; v_aux = in_aux;
    gl_Position = u_mvp * vec4(in_pos, 1.0);
}
"""

# Paints the features from head-local coordinates with the curves of head_landmarks (eye_lids,
# brow_curve, lip_curves); @NAME@ tokens are replaced by that module's constants.
_FRAGMENT_TEMPLATE = """
#version 330
uniform vec3 u_eye_pos;
uniform vec4 u_eye;    // eye_x, eye_y, eye_w, eye_h
uniform vec4 u_eye2;   // blink_left (+x eye), blink_right, gaze_x, gaze_y
uniform vec4 u_brow;   // brow_y, thickness, raise_left, raise_right
uniform vec4 u_mouth;  // mouth_x, mouth_y, mouth_w, corner_lift
uniform vec4 u_lips;   // upper_lip, lower_lip, gap, furrow
uniform vec4 u_dims;   // a, b, c, iris_r
uniform vec4 u_nose;   // nose_bottom_y, nose_w, nose_tip_y, smile
uniform vec3 u_skin, u_lip, u_iris, u_brow_col, u_hair, u_cloth;
in vec3 v_pos; in vec3 v_nrm; in vec3 v_face; in vec4 v_aux;
out vec4 f_color;

float cover(float d) {  // coverage of a signed distance (negative inside), one pixel of softness
    return clamp(0.5 - d / max(fwidth(d), 1e-7), 0.0, 1.0);
}

vec3 paint_eye(vec3 col, vec2 p, float side, float blink) {
    vec2 q = p - vec2(side * u_eye.x, u_eye.y);
    float ew = u_eye.z, eh = u_eye.w;
    float shape = pow(clamp(1.0 - (q.x / ew) * (q.x / ew), 0.0, 1.0), 0.8);
    float lower = -0.7 * eh * shape;
    float upper = (eh * (1.0 - blink) - 0.7 * eh * blink) * shape;
    float crease = 1.7 * eh * sqrt(shape) + 0.2 * eh;
    col = mix(col, col * 0.8, cover(abs(q.y - crease) - 0.08 * eh) * cover(abs(q.x) - 0.95 * ew));
    float inside = cover(max(max(q.y - upper, lower - q.y), abs(q.x) - ew));
    vec2 ic = q - u_eye2.zw;
    float r = length(ic), ir = u_dims.w;
    vec3 e = vec3(0.93, 0.91, 0.88);
    e = mix(e, u_iris, cover(r - ir));
    e = mix(e, u_iris * 0.6, cover(abs(r - 0.95 * ir) - 0.06 * ir));
    e = mix(e, vec3(0.03), cover(r - 0.42 * ir));
    e = mix(e, vec3(1.0), 0.8 * cover(length(ic - vec2(0.3, 0.3) * ir) - 0.15 * ir));
    e *= mix(0.7, 1.0, clamp((upper - q.y) / (0.6 * eh + 1e-6), 0.0, 1.0));  // shadow of the lid
    col = mix(col, e, inside);
    float lash = cover(max(abs(q.y - upper - 0.05 * eh) - 0.1 * eh - 0.1 * eh * shape, abs(q.x) - 1.05 * ew));
    return mix(col, vec3(0.05, 0.04, 0.04), lash);
}

vec3 paint_brow(vec3 col, vec2 p, float side, float lift) {
    float furrow = u_lips.w;
    float inner = u_eye.x - 0.85 * u_eye.z - 0.3 * u_eye.z * furrow;
    float outer = u_eye.x + 1.2 * u_eye.z;
    float t = (side * p.x - inner) / (outer - inner);
    float tc = clamp(t, 0.0, 1.0);
    float y = u_brow.x + lift + 0.35 * u_eye.w * sin(3.14159265 * pow(tc, 0.8))
              - @BROW_FURROW_DROP@ * u_dims.y * furrow * (1.0 - tc) * (1.0 - tc);
    float th = u_brow.y * (1.0 - 0.5 * tc);
    float d = max(abs(p.y - y) - 0.5 * th, max(-t, t - 1.0) * (outer - inner));
    col = mix(col, u_brow_col, 0.92 * cover(d));
    // forehead lines when the brow is raised
    float raise = lift / (@BROW_RAISE@ * u_dims.y);
    float wave = abs(fract((p.y - y) / (0.09 * u_dims.y)) - 0.5);
    float lines = cover(wave - 0.08) * step(y + 0.1 * u_dims.y, p.y) * step(p.y, y + 0.33 * u_dims.y)
                  * step(side * p.x, outer) * step(0.0, side * p.x);
    return mix(col, col * 0.8, 0.8 * raise * lines);
}

vec3 paint_mouth(vec3 col, vec2 p) {
    float sx = (p.x - u_mouth.x) / u_mouth.z;
    float shape = sqrt(clamp(1.0 - sx * sx, 0.0, 1.0));
    float line = u_mouth.y + u_mouth.w * sx * sx;
    float gap = u_lips.z * shape;
    float it = line + @UPPER_TEETH_OPEN@ * gap;
    float ib = line - (1.0 - @UPPER_TEETH_OPEN@) * gap;
    float bow = 1.0 - 0.25 * exp(-(sx / 0.15) * (sx / 0.15));
    float ot = it + u_lips.x * pow(shape, 0.7) * bow;
    float ob = ib - u_lips.y * pow(shape, 0.7);
    float side = (abs(sx) - 1.0) * u_mouth.z;
    col = mix(col, u_lip * (1.0 - 0.15 * clamp((it - p.y) / (u_lips.y + 1e-6) + 1.0, 0.0, 1.0)),
              cover(max(max(p.y - ot, ob - p.y), side)));
    float b = u_dims.y;
    vec3 inside = vec3(0.2, 0.06, 0.06);
    float teeth = cover(max(max(it - min(0.35 * u_lips.z, 0.06 * b) - p.y, p.y - it), abs(sx) - 0.7));
    inside = mix(inside, vec3(0.9, 0.88, 0.82), teeth);
    col = mix(col, inside, cover(max(max(p.y - it, ib - p.y), side)));
    return mix(col, vec3(0.25, 0.08, 0.08), cover(max(abs(p.y - line) - 0.008 * b, side)));
}

vec3 paint_face(vec3 col, vec2 p) {
    float a = u_dims.x, b = u_dims.y;
    for (int k = 0; k < 2; ++k) {
        float side = k == 0 ? 1.0 : -1.0;
        vec2 cheek = (p - vec2(side * 0.5 * a, -0.25 * b)) / vec2(0.22 * a, 0.18 * b);
        col = mix(col, col * vec3(1.02, 0.88, 0.88), 0.5 * exp(-dot(cheek, cheek)));
        col = paint_eye(col, p, side, k == 0 ? u_eye2.x : u_eye2.y);
        col = paint_brow(col, p, side, k == 0 ? u_brow.z : u_brow.w);
        vec2 nostril = (p - vec2(side * 0.38 * u_nose.y, u_nose.x + 0.1 * u_nose.y)) / vec2(0.2, 0.08) / u_nose.y;
        col = mix(col, col * 0.45, cover((length(nostril) - 1.0) * 0.08 * u_nose.y));
    }
    float furrow = cover(max(abs(abs(p.x) - 0.04 * a) - 0.006 * b, abs(p.y - u_brow.x) - 0.06 * b));
    col = mix(col, col * 0.7, u_lips.w * furrow);
    return paint_mouth(col, p);
}

void main() {
    int material = int(v_aux.x + 0.5);
    float strand = sin(v_aux.z * 70.0 + 3.0 * sin(v_aux.w * 9.0 + v_aux.z * 5.0));
    vec3 hair = u_hair * (0.88 + 0.12 * strand * clamp(0.5 / (fwidth(v_aux.z * 70.0) + 1e-4), 0.0, 1.0));
    vec3 col = u_skin;
    float shine = 0.06;
    if (material == 0) {
        if (v_face.z > 0.0) col = paint_face(col, v_face.xy);
        col = mix(col, hair, v_aux.y);
    } else if (material == 1) {
        col = hair;
    } else if (material == 3) {
        col = u_cloth;
        shine = 0.0;
    }
    vec3 n = normalize(v_nrm);
    vec3 v = normalize(u_eye_pos - v_pos);
    if (dot(n, v) < 0.0) n = -n;  // two-sided (hair sheets)
    vec3 key = normalize(vec3(0.45, 0.6, 1.0)), fill = normalize(vec3(-0.8, 0.15, 0.5));
    float light = 0.62 * max(dot(n, key) * 0.8 + 0.2, 0.0) + 0.22 * max(dot(n, fill), 0.0) + 0.28 + 0.08 * n.y;
    float spec = pow(max(dot(reflect(-key, n), v), 0.0), 20.0) * shine;
    f_color = vec4(clamp(col * light + spec, 0.0, 1.0), 1.0);
}
"""


def _fragment_shader() -> str:
    source = _FRAGMENT_TEMPLATE
    for name in ("BROW_FURROW_DROP", "BROW_RAISE", "UPPER_TEETH_OPEN"):
        source = source.replace(f"@{name}@", repr(float(getattr(hl, name))))
    return source


@dataclass
class RenderedHead:
    image: np.ndarray  # (R, R, 3) uint8
    landmarks2d: np.ndarray  # (68, 2) pixels, x right, y down, pixel centres at +0.5
    landmarks3d: np.ndarray  # (68, 3) world


def gl_projection(camera25: np.ndarray) -> np.ndarray:
    """World -> clip matrix (4, 4) for an EG3D camera; clip y is flipped so that row 0 read back
    from GL (after a vertical flip) is the top of the image, as in OpenCV pixels."""
    cam = np.asarray(camera25, dtype=np.float64).reshape(25)
    world2cam = np.linalg.inv(cam[:16].reshape(4, 4))
    k = cam[16:].reshape(3, 3)
    a, b = (FAR + NEAR) / (FAR - NEAR), -2.0 * FAR * NEAR / (FAR - NEAR)
    proj = np.array([
        [2 * k[0, 0], 2 * k[0, 1], 2 * k[0, 2] - 1, 0.0],
        [0.0, -2 * k[1, 1], -(2 * k[1, 2] - 1), 0.0],
        [0.0, 0.0, a, b],
        [0.0, 0.0, 1.0, 0.0],
    ])
    return proj @ world2cam


class HeadRenderer:
    """Offscreen renderer of synthetic heads at `resolution`; holds the GL context (use `with`)."""

    def __init__(self, resolution: int, supersample: int = SUPERSAMPLE) -> None:
        import moderngl  # imported here: only synthesis needs GL

        if resolution < 8:
            raise Export3DError(f"render resolution must be at least 8, got {resolution}")
        self.resolution = int(resolution)
        try:
            self.ctx = moderngl.create_standalone_context(backend="egl")
        except Exception:  # no EGL (macOS, Windows): the platform's default offscreen context
            try:
                self.ctx = moderngl.create_standalone_context()
            except Exception as exc:
                raise Export3DError(f"cannot create an OpenGL context for synthetic rendering: {exc}") from None
        self.supersample = max(1, int(supersample))
        side = self.resolution * self.supersample
        self._fbo = self.ctx.framebuffer([self.ctx.renderbuffer((side, side))],
                                         self.ctx.depth_renderbuffer((side, side)))
        self.program = self.ctx.program(vertex_shader=_VERTEX_SHADER, fragment_shader=_fragment_shader())
        self._identity: Identity | None = None
        self._geometry: IdentityGeometry | None = None

    def __enter__(self) -> "HeadRenderer":
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    def release(self) -> None:
        if self.ctx is not None:
            self.ctx.release()
            self.ctx = None

    def _geometry_for(self, identity: Identity) -> IdentityGeometry:
        if self._geometry is None or self._identity != identity:  # one cache slot: clips reuse it
            self._geometry, self._identity = identity_geometry(identity), identity
        return self._geometry

    def render(self, identity: Identity, beta: np.ndarray, camera25: np.ndarray | Sequence[float],
               background_rgb: Sequence[float] = (0.5, 0.5, 0.5)) -> RenderedHead:
        """Render `identity` with expression `beta` from `camera25` over a plain background (sRGB 0..1)."""
        if self.ctx is None:
            raise RuntimeError("HeadRenderer used after release()")
        camera = np.asarray(camera25, dtype=np.float64).reshape(25)
        geom = self._geometry_for(identity)
        mesh = pose_mesh(geom, identity, beta)
        self._set_uniforms(identity, mesh.layout, camera)
        vertices = np.concatenate([mesh.positions, mesh.normals, mesh.face, mesh.aux], axis=1).astype("f4")
        vbo = self.ctx.buffer(vertices.tobytes())
        ibo = self.ctx.buffer(mesh.indices.tobytes())
        vao = self.ctx.vertex_array(self.program, [(vbo, "3f 3f 3f 4f", "in_pos", "in_nrm", "in_face", "in_aux")],
                                    index_buffer=ibo, index_element_size=4)
        try:
            self._fbo.use()
            self._fbo.clear(*[float(v) for v in background_rgb], 1.0, depth=1.0)
            self.ctx.enable(self.ctx.DEPTH_TEST)
            vao.render()
            raw = self._fbo.read(components=3, alignment=1)
        finally:
            vao.release(), vbo.release(), ibo.release()
        image = self._downsample(np.frombuffer(raw, np.uint8))
        local = hl.landmarks_local(mesh.layout, mesh.head_grid, geom.lat, geom.lon)  # (68, 3)
        world = local + hl.HEAD_CENTRE
        return RenderedHead(image=image, landmarks2d=project_points(world, camera, self.resolution),
                            landmarks3d=world)

    def _downsample(self, raw: np.ndarray) -> np.ndarray:
        """GL rows bottom-up at ss x R -> (R, R, 3) uint8, top row first, 2x2 (ss x ss) box filter."""
        r, ss = self.resolution, self.supersample
        big = np.flipud(raw.reshape(r * ss, r * ss, 3)).astype(np.float32)
        small = big.reshape(r, ss, r, ss, 3).mean(axis=(1, 3))  # (R, R, 3)
        return np.clip(np.rint(small), 0, 255).astype(np.uint8)

    def _set_uniforms(self, ident: Identity, lay: hl.FaceLayout, camera: np.ndarray) -> None:
        values = {
            "u_mvp": gl_projection(camera).T.reshape(-1),  # GL matrices are column-major
            "u_eye_pos": camera[:16].reshape(4, 4)[:3, 3],
            "u_eye": (lay.eye_x, lay.eye_y, lay.eye_w, lay.eye_h),
            "u_eye2": (lay.blink_left, lay.blink_right, lay.gaze_x, lay.gaze_y),
            "u_brow": (lay.brow_y, lay.brow_thick, lay.raise_left, lay.raise_right),
            "u_mouth": (lay.mouth_x, lay.mouth_y, lay.mouth_w, lay.corner_lift),
            "u_lips": (lay.upper_lip, lay.lower_lip, lay.gap, lay.furrow),
            "u_dims": (lay.a, lay.b, lay.c, lay.iris_r),
            "u_nose": (lay.nose_bottom_y, lay.nose_w, hl.nose_tip_y(lay), lay.smile),
            "u_skin": ident.skin_color, "u_lip": ident.lip_color, "u_iris": ident.iris_color,
            "u_brow_col": ident.brow_color, "u_hair": ident.hair_color, "u_cloth": ident.cloth_color,
        }
        for name, value in values.items():
            if name in self.program:
                self.program[name].value = tuple(float(v) for v in np.asarray(value).reshape(-1))

__all__ = [
    "BETA_DIM", "BETA_NAMES", "BETA_RANGES", "HAIR_STYLES", "HeadRenderer", "Identity", "RenderedHead",
    "sample_background", "sample_expression", "sample_identity",
]
