"""Writing head meshes: PLY and OBJ through trimesh, GLB through trimesh plus pygltflib for morph targets.

trimesh writes the base mesh of every format (positions, normals, vertex colours, indices) but
not glTF morph targets, so the GLB trimesh wrote is opened with pygltflib, which adds one
POSITION and NORMAL displacement accessor per target, the default weights (0) and the target
names under `mesh.extras.targetNames` (where Blender, three.js and Babylon read them).
Every write is atomic and refuses an existing file unless asked to overwrite.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from export3d_core.atomic import atomic_path, write_bytes_atomic
from export3d_core.errors import Export3DError
from export3d_core.export import check_target
from export3d_core.mesh import HeadMesh, vertex_normals

MESH_SUFFIXES = (".ply", ".obj", ".glb")
_FLOAT, _VEC3 = 5126, "VEC3"  # glTF's float component type and 3-vector type
_ARRAY_BUFFER, _ELEMENT_ARRAY_BUFFER = 34962, 34963  # glTF buffer view targets: vertex, index data


def check_mesh_target(path: Path, overwrite: bool, morph_targets: bool) -> Path:
    """Fail before any work: a known suffix, an existing folder, no file in the way, GLB for morphs."""
    path = check_target(Path(path), MESH_SUFFIXES, overwrite)
    if morph_targets and path.suffix.lower() != ".glb":
        raise Export3DError(f"{path.name}: morph targets need a .glb output (PLY and OBJ cannot hold them)")
    return path


def _trimesh(mesh: HeadMesh):
    import trimesh

    rgba = np.concatenate([mesh.colours, np.full((len(mesh.colours), 1), 255, np.uint8)], axis=1)
    # process=False keeps the vertex order, which the morph targets index into.
    return trimesh.Trimesh(mesh.vertices, mesh.faces, vertex_colors=rgba, process=False)


def write_head_mesh(path: Path, mesh: HeadMesh, overwrite: bool = False) -> Path:
    """PLY (binary, uchar colours), OBJ (colours after each `v`) or GLB (COLOR_0) by suffix."""
    path = check_mesh_target(path, overwrite, bool(mesh.targets))
    base = _trimesh(mesh)
    suffix = path.suffix.lower()
    if suffix == ".glb":
        return write_bytes_atomic(path, finish_glb(base.export(file_type="glb", include_normals=True), mesh))
    with atomic_path(path) as tmp:
        if suffix == ".ply":
            base.export(tmp, file_type="ply", encoding="binary")
        else:
            base.export(tmp, file_type="obj", include_color=True, include_normals=False, include_texture=False)
    return path


def finish_glb(glb: bytes, mesh: HeadMesh) -> bytes:
    """The GLB trimesh wrote (one mesh, one primitive) with `mesh.targets` added as morph targets,
    its buffer views marked as vertex or index data (the Khronos validator asks for it) and the
    mesh named."""
    from pygltflib import GLTF2

    gltf = GLTF2.load_from_bytes(glb)
    primitive = gltf.meshes[0].primitives[0]
    for name in ("POSITION", "NORMAL", "COLOR_0"):
        if getattr(primitive.attributes, name) is not None:
            gltf.bufferViews[gltf.accessors[getattr(primitive.attributes, name)].bufferView].target = _ARRAY_BUFFER
    gltf.bufferViews[gltf.accessors[primitive.indices].bufferView].target = _ELEMENT_ARRAY_BUFFER
    gltf.meshes[0].name = "head"
    if mesh.targets:
        _add_morph_targets(gltf, mesh)
    return b"".join(_as_bytes(gltf.save_to_bytes()))


def _add_morph_targets(gltf, mesh: HeadMesh) -> None:
    """`mesh.targets` as POSITION and NORMAL displacements, with zero weights and the names."""
    from pygltflib import Accessor, Attributes, BufferView

    primitive = gltf.meshes[0].primitives[0]
    if gltf.accessors[primitive.attributes.POSITION].count != len(mesh.vertices):
        raise RuntimeError("trimesh reordered the vertices; the morph targets would not match")
    blob = bytearray(gltf.binary_blob())
    base_normals = vertex_normals(mesh.vertices, mesh.faces)

    def add(values: np.ndarray) -> int:
        nonlocal blob
        blob += b"\0" * (-len(blob) % 4)  # accessors start on 4-byte boundaries
        data = np.ascontiguousarray(values, np.float32).tobytes()
        gltf.bufferViews.append(BufferView(buffer=0, byteOffset=len(blob), byteLength=len(data), target=_ARRAY_BUFFER))
        blob += data
        gltf.accessors.append(Accessor(bufferView=len(gltf.bufferViews) - 1, componentType=_FLOAT,
                                       count=len(values), type=_VEC3, min=values.min(axis=0).tolist(),
                                       max=values.max(axis=0).tolist()))
        return len(gltf.accessors) - 1

    primitive.targets = []
    for positions in mesh.targets:
        normals = vertex_normals(positions, mesh.faces) - base_normals
        primitive.targets.append(Attributes(POSITION=add(positions - mesh.vertices), NORMAL=add(normals)))
    gltf.buffers[0].byteLength = len(blob)
    gltf.set_binary_blob(bytes(blob))
    gltf.meshes[0].weights = [0.0] * len(mesh.targets)
    gltf.meshes[0].extras = {"targetNames": list(mesh.target_names)}
    # What weight 1 means, for tools and people who read the file.
    gltf.asset.extras = {"export3d": {"base_lambda": list(mesh.lam), "morph_scale": mesh.morph_scale,
                                      "iso_level": mesh.level,
                                      "weight_meaning": "target i at weight w is lambda_i = base_i + w * morph_scale"}}


def _as_bytes(parts) -> list[bytes]:
    return [parts] if isinstance(parts, (bytes, bytearray)) else list(parts)


@dataclass
class GlbSummary:
    vertices: int
    faces: int
    targets: int
    target_names: tuple[str, ...]
    has_colours: bool


def validate_glb(path: Path) -> GlbSummary:
    """Read a GLB back with pygltflib and check its structure: one primitive of triangles, index
    and attribute accessors that agree, and morph targets with the base's vertex count, one weight
    and one name each. Raises Export3DError naming the first problem."""
    from pygltflib import GLTF2

    gltf = GLTF2().load(str(path))
    if len(gltf.meshes) != 1 or len(gltf.meshes[0].primitives) != 1:
        raise Export3DError(f"{path}: expected one mesh with one primitive")
    mesh, primitive = gltf.meshes[0], gltf.meshes[0].primitives[0]
    count = gltf.accessors[primitive.attributes.POSITION].count
    indices = gltf.accessors[primitive.indices].count
    if primitive.mode not in (None, 4) or indices % 3:
        raise Export3DError(f"{path}: the primitive is not a triangle list")
    for name in ("NORMAL", "COLOR_0"):
        index = getattr(primitive.attributes, name)
        if index is not None and gltf.accessors[index].count != count:
            raise Export3DError(f"{path}: {name} has {gltf.accessors[index].count} entries for {count} vertices")
    targets = primitive.targets or []
    for i, target in enumerate(targets):
        for name in ("POSITION", "NORMAL"):
            index = target.get(name) if isinstance(target, dict) else getattr(target, name, None)
            if index is not None and gltf.accessors[index].count != count:
                raise Export3DError(f"{path}: morph target {i} {name} has {gltf.accessors[index].count} "
                                    f"entries for {count} vertices")
    names = tuple((mesh.extras or {}).get("targetNames", ()))
    if targets and (len(names) != len(targets) or len(mesh.weights or []) != len(targets)):
        raise Export3DError(f"{path}: {len(targets)} morph targets but {len(names)} names and "
                            f"{len(mesh.weights or [])} weights")
    json.dumps(gltf.asset.extras or {})  # must stay plain JSON
    return GlbSummary(count, indices // 3, len(targets), names, primitive.attributes.COLOR_0 is not None)
