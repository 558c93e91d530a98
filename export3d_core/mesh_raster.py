"""Rasterising a head mesh offscreen (moderngl, EGL where there is no display).

One pass writes two images: the world point each pixel sees (for the depth check against the
volume renderer: both use pixel centres and EG3D cameras) and the vertex colour, optionally lit
by a light at the eye (for pictures of the mesh).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from export3d_core.errors import Export3DError

_VERTEX_SHADER = """
#version 330
uniform mat4 u_mvp;
in vec3 in_pos;
in vec3 in_nrm;
in vec3 in_col;
out vec3 v_pos;
out vec3 v_nrm;
out vec3 v_col;
void main() {
    v_pos = in_pos; v_nrm = in_nrm; v_col = in_col;
    gl_Position = u_mvp * vec4(in_pos, 1.0);
}
"""

_FRAGMENT_SHADER = """
#version 330
uniform vec3 u_eye;
uniform float u_shade;  // 0: the vertex colour as it is; 1: lit by a key light near the eye
in vec3 v_pos;
in vec3 v_nrm;
in vec3 v_col;
layout(location = 0) out vec4 f_pos;
layout(location = 1) out vec4 f_col;
void main() {
    vec3 n = normalize(v_nrm);
    vec3 v = normalize(u_eye - v_pos);
    if (dot(n, v) < 0.0) n = -n;  // two-sided: the inside of an open edge stays visible
    vec3 key = normalize(v + vec3(0.35, 0.45, 0.0));
    float light = 0.3 + 0.75 * max(dot(n, key), 0.0);
    f_pos = vec4(v_pos, 1.0);
    f_col = vec4(v_col * mix(1.0, light, u_shade), 1.0);
}
"""


@dataclass
class Raster:
    position: np.ndarray  # (H, W, 3) float32 world point seen through each pixel centre
    covered: np.ndarray  # (H, W) bool, the mesh covers the pixel
    colour: np.ndarray  # (H, W, 3) float32 in [0, 1] (background where not covered)


def gl_context():
    """A standalone OpenGL 3.3 context: EGL (headless), else the platform's default."""
    import moderngl

    try:
        return moderngl.create_standalone_context(backend="egl")
    except Exception:
        try:
            return moderngl.create_standalone_context()
        except Exception as exc:
            raise Export3DError(f"no OpenGL context for rasterising the mesh: {exc}") from None


def rasterise(vertices: np.ndarray, faces: np.ndarray, colours: np.ndarray, normals: np.ndarray,
              camera25: np.ndarray, resolution: int, *, shade: bool = False,
              background: tuple[float, float, float] = (0.0, 0.0, 0.0)) -> Raster:
    """Render the mesh from an EG3D camera (25,) at resolution², one sample per pixel centre.

    `colours` are (V, 3) uint8 or floats in [0, 1].
    """
    from export3d_core.data.synthetic import gl_projection

    colours = np.asarray(colours, np.float32) / (255.0 if np.asarray(colours).dtype == np.uint8 else 1.0)
    camera25 = np.asarray(camera25, np.float64).reshape(25)
    ctx = gl_context()
    try:
        side = (int(resolution),) * 2
        targets = [ctx.texture(side, 4, dtype="f4") for _ in range(2)]
        fbo = ctx.framebuffer(color_attachments=targets, depth_attachment=ctx.depth_renderbuffer(side))
        program = ctx.program(vertex_shader=_VERTEX_SHADER, fragment_shader=_FRAGMENT_SHADER)
        program["u_mvp"].value = tuple(gl_projection(camera25).T.reshape(-1))  # GL is column-major
        program["u_eye"].value = tuple(camera25[:16].reshape(4, 4)[:3, 3])
        program["u_shade"].value = 1.0 if shade else 0.0
        data = np.concatenate([vertices, normals, colours], axis=1).astype("f4")
        vbo, ibo = ctx.buffer(data.tobytes()), ctx.buffer(np.asarray(faces, "u4").tobytes())
        vao = ctx.vertex_array(program, [(vbo, "3f 3f 3f", "in_pos", "in_nrm", "in_col")],
                               index_buffer=ibo, index_element_size=4)
        fbo.use()
        ctx.enable(ctx.DEPTH_TEST)
        fbo.clear(0.0, 0.0, 0.0, 0.0, depth=1.0)
        vao.render()
        images = [np.flipud(np.frombuffer(fbo.read(components=4, attachment=i, dtype="f4"), np.float32)
                            .reshape(*side, 4)) for i in range(2)]  # GL rows run bottom-up
    finally:
        ctx.release()
    covered = images[0][..., 3] > 0.5
    colour = np.where(covered[..., None], images[1][..., :3], np.asarray(background, np.float32))
    return Raster(position=images[0][..., :3].copy(), covered=covered, colour=colour)


def picture(vertices: np.ndarray, faces: np.ndarray, colours: np.ndarray, normals: np.ndarray,
            cameras: list[np.ndarray], size: int, supersample: int = 3,
            background: tuple[float, float, float] = (0.16, 0.17, 0.19)) -> np.ndarray:
    """Lit views of the mesh side by side, uint8 (size, size * len(cameras), 3), anti-aliased by
    rendering `supersample` times larger and averaging."""
    views = []
    for camera in cameras:
        big = rasterise(vertices, faces, colours, normals, camera, size * supersample, shade=True,
                        background=background).colour
        small = big.reshape(size, supersample, size, supersample, 3).mean(axis=(1, 3))
        views.append(np.clip(np.round(small * 255), 0, 255).astype(np.uint8))
    return np.concatenate(views, axis=1)


PREVIEW_YAWS_DEG = (-40.0, 0.0, 40.0)
PREVIEW_MARGIN = 1.15  # the mesh's longest side fills 1 / 1.15 of the picture's height


def mesh_preview(vertices: np.ndarray, faces: np.ndarray, colours: np.ndarray, size: int = 256) -> np.ndarray:
    """Three lit views (from the left, the front, the right) of a coloured mesh, framed on its
    bounding box; uint8 (size, 3 * size, 3)."""
    import math

    import trimesh

    from export3d_core.camera import DEFAULT_FOV_DEG, OrbitCamera, focal_from_fov

    vertices = np.asarray(vertices, np.float32)
    normals = np.asarray(trimesh.Trimesh(vertices, faces, process=False).vertex_normals, np.float32)
    low, high = vertices.min(axis=0), vertices.max(axis=0)
    centre, reach = (low + high) / 2, float((high - low).max()) / 2
    radius = 2 * focal_from_fov(DEFAULT_FOV_DEG) * reach * PREVIEW_MARGIN + reach  # from the front
    cameras = [OrbitCamera(yaw=math.radians(yaw), radius=radius, pivot=tuple(centre)).params().numpy()
               for yaw in PREVIEW_YAWS_DEG]
    return picture(vertices, faces, colours, normals, cameras, size)


def preview_file(path) -> np.ndarray:
    """`mesh_preview` of a PLY/OBJ/GLB file as trimesh reads it back (the file, not the memory)."""
    import trimesh

    loaded = trimesh.load(str(path), process=False)
    if isinstance(loaded, trimesh.Scene):
        loaded = loaded.to_geometry()
    colours = np.asarray(loaded.visual.vertex_colors)[:, :3]
    return mesh_preview(np.asarray(loaded.vertices), np.asarray(loaded.faces), colours)
