"""Which parts of a head mesh are the head: the piece at the frontal view's axis, cut free of
background matter joined to it (step 4 of `export3d_core.mesh`)."""
from __future__ import annotations

import numpy as np

from export3d_core.camera import OrbitCamera
from export3d_core.mesh import compact

HEAD_RADIUS = 0.12  # world units around the frontal view axis in which the head piece is counted


def piece_labels(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """The connected piece of each face (pieces are joined through shared vertices)."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    edges = np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]]])
    graph = coo_matrix((np.ones(len(edges), np.int8), (edges[:, 0], edges[:, 1])), shape=(len(vertices),) * 2)
    _, labels = connected_components(graph, directed=False)
    return labels[faces[:, 0]]


def head_region(grid: np.ndarray, level: float, half: float, camera: OrbitCamera, joint: float) -> np.ndarray:
    """Grid points (bool, grid's shape) that belong to the head rather than to matter joined to it.

    The demo model's background pillars can touch the shoulders at the bottom of the box, so the
    head and the background are one piece. Shrinking the occupied space (σ > level) by `joint`
    world units cuts such joints; of the cores left, the head's is the one with most voxels near
    the frontal view's axis. Every grid point then goes with its nearest core, so thin parts of
    the head (ears, strands) stay with it and a joint splits half-way. Runs on at most 128³ points.
    """
    from scipy.ndimage import binary_erosion, distance_transform_edt, label

    n = grid.shape[0]
    stride = max(1, -(-n // 128))
    occupied = grid[::stride, ::stride, ::stride] > level
    step = 2 * half / (n - 1) * stride
    cores = binary_erosion(occupied, iterations=max(1, round(joint / step)))
    labels, count = label(cores)
    if count <= 1:
        return np.ones(grid.shape, bool)
    where = np.nonzero(cores)
    points = np.stack(where, axis=1) * step - half
    distance = axis_distance(points, camera)
    near = np.bincount(labels[where], weights=(distance < HEAD_RADIUS).astype(np.float64), minlength=count + 1)
    head = near.argmax() if near.max() > 0 else labels[where][distance.argmin()]
    nearest = distance_transform_edt(~cores, return_distances=False, return_indices=True)
    mine = labels[tuple(nearest)] == head
    coarse = np.minimum(np.arange(n) // stride, mine.shape[0] - 1)
    return mine[np.ix_(coarse, coarse, coarse)]


def keep_pieces(vertices: np.ndarray, faces: np.ndarray, keep: str,
                camera: OrbitCamera) -> tuple[np.ndarray, np.ndarray]:
    """The pieces `keep` asks for (see the module's step 4)."""
    if keep == "all" or len(faces) == 0:
        return vertices, faces
    labels = piece_labels(vertices, faces)
    if keep == "largest":
        chosen = np.bincount(labels).argmax()
    else:
        distance = axis_distance(vertices[faces[:, 0]], camera)
        near = np.bincount(labels, weights=(distance < HEAD_RADIUS).astype(np.float64))
        if near.max() > 0:
            chosen = near.argmax()
        else:  # no piece crosses the axis: the one that comes closest to it
            chosen = labels[distance.argmin()]
    return compact(vertices, faces[labels == chosen])


def axis_distance(points: np.ndarray, camera: OrbitCamera) -> np.ndarray:
    """Distance of each point from the line through the camera and its pivot."""
    origin, pivot = np.asarray(camera.origin()), np.asarray(camera.pivot)
    axis = (pivot - origin) / np.linalg.norm(pivot - origin)
    offset = points - origin
    return np.linalg.norm(offset - (offset @ axis)[:, None] * axis, axis=1)
