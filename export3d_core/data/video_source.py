"""Inputs of `export3d prepare`: videos and frame folders, decoded as RGB frames, plus Deep3DFaceRecon coefficients.

A *source* is a video file (decoded with imageio's bundled ffmpeg) or a folder of still frames
(sorted by name, read with `image_io.load_image`). A folder holding no frames is expanded to the
videos and frame folders directly inside it.

Deep3DFaceRecon coefficients (optional), next to the source:
  video  `talk.mp4`      -> `talk.coeffs.npy` or `talk.coeffs.txt`
  folder `talk/`         -> `talk/coeffs.npy`, `talk/coeffs.txt`, or `talk.coeffs.npy` beside it
Format: one row of 257 float32 numbers per decoded frame, in Deep3DFaceRecon's order
  id [0:80], exp [80:144], tex [144:224], angle [224:227] (x pitch, y yaw, z roll; radians),
  gamma [227:254], trans [254:257].
`.npy` files are read with allow_pickle=False; `.txt` files are whitespace separated (np.loadtxt).
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

from export3d_core.data.image_io import load_image
from export3d_core.errors import Export3DError

VIDEO_SUFFIXES = {".mp4", ".mov", ".avi", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv", ".flv"}
FRAME_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff"}
DEEP3D_DIM = 257
DEEP3D_EXP = slice(80, 144)  # 64 expression coefficients: the paper's β
DEEP3D_ANGLES = slice(224, 227)  # rotation angles x, y, z (radians)
DEEP3D_TRANS = slice(254, 257)  # translation (unused: the crop fixes position and scale)


@dataclass(frozen=True)
class Source:
    path: Path  # video file or frame folder
    kind: str  # "video" | "frames"

    @property
    def name(self) -> str:
        return self.path.stem if self.kind == "video" else self.path.name


def _natural_key(path: Path) -> list:
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", path.name)]


def frame_files(folder: Path) -> list[Path]:
    return sorted((p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in FRAME_SUFFIXES),
                  key=_natural_key)


def find_sources(paths: list[str | Path]) -> list[Source]:
    """Expand the command-line inputs into videos and frame folders (order kept, duplicates dropped)."""
    sources: list[Source] = []
    for raw in paths:
        try:
            path = Path(raw).expanduser().resolve()
        except (OSError, RuntimeError):  # RuntimeError: a symlink loop (Python < 3.13)
            raise Export3DError(f"{raw} is a symbolic link that leads nowhere (a loop)") from None
        if not path.exists():
            raise Export3DError(f"input not found: {raw}")
        if path.is_file():
            sources.append(Source(path, "video"))
        elif frame_files(path):
            sources.append(Source(path, "frames"))
        else:
            inner = sorted(path.iterdir(), key=_natural_key)
            found = [Source(p, "video") for p in inner if p.is_file() and p.suffix.lower() in VIDEO_SUFFIXES]
            found += [Source(p, "frames") for p in inner if p.is_dir() and frame_files(p)]
            if not found:
                raise Export3DError(f"{raw} holds no video and no frames")
            sources.extend(found)
    unique: dict[Path, Source] = {}
    for source in sources:
        unique.setdefault(source.path, source)
    return list(unique.values())


def iter_frames(source: Source, stride: int = 1, max_frames: int | None = None) -> Iterator[tuple[int, np.ndarray]]:
    """(index in the source, (H, W, 3) uint8 RGB) for every `stride`-th frame, at most `max_frames`."""
    emitted = 0
    if source.kind == "frames":
        for index, path in enumerate(frame_files(source.path)):
            if index % stride:
                continue
            if max_frames is not None and emitted >= max_frames:
                return
            yield index, load_image(path)
            emitted += 1
        return
    import imageio.v2 as imageio

    try:
        reader = imageio.get_reader(str(source.path), format="FFMPEG")
    except Exception as exc:  # noqa: BLE001 - imageio raises many types for unreadable files
        raise Export3DError(f"cannot open video {source.path.name}: {_first_line(exc)}") from None
    try:
        for index, frame in enumerate(reader):
            if index % stride:
                continue
            if max_frames is not None and emitted >= max_frames:
                return
            frame = np.asarray(frame)
            if frame.ndim == 2:
                frame = np.repeat(frame[..., None], 3, axis=2)
            yield index, np.ascontiguousarray(frame[..., :3], dtype=np.uint8)
            emitted += 1
    except Export3DError:
        raise
    except Exception as exc:  # noqa: BLE001
        raise Export3DError(f"cannot decode video {source.path.name}: {_first_line(exc)}") from None
    finally:
        reader.close()


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def coefficient_file(source: Source) -> Path | None:
    """The Deep3DFaceRecon coefficient file of a source, if one is provided."""
    if source.kind == "video":
        candidates = [source.path.with_name(source.path.stem + ".coeffs" + ext) for ext in (".npy", ".txt")]
    else:
        candidates = [source.path / "coeffs.npy", source.path / "coeffs.txt",
                      source.path.with_name(source.path.name + ".coeffs.npy"),
                      source.path.with_name(source.path.name + ".coeffs.txt")]
    return next((path for path in candidates if path.is_file()), None)


def read_coefficients(path: Path) -> np.ndarray:
    """(T, 257) float32 Deep3DFaceRecon coefficients."""
    try:
        data = np.load(path, allow_pickle=False) if path.suffix == ".npy" else np.loadtxt(path, ndmin=2)
    except (OSError, ValueError) as exc:
        raise Export3DError(f"cannot read coefficients {path.name}: {_first_line(exc)}") from None
    data = np.asarray(data, dtype=np.float32)
    if data.ndim != 2 or data.shape[1] != DEEP3D_DIM or not np.isfinite(data).all():
        raise Export3DError(f"{path.name}: expected finite (frames, {DEEP3D_DIM}) Deep3DFaceRecon coefficients, "
                            f"got shape {data.shape}")
    return data


def deep3d_view_angles(coeffs: np.ndarray) -> tuple[float, float]:
    """Orbit (yaw, pitch) of the camera, in radians, that sees a head posed by Deep3DFaceRecon angles.

    Deep3DFaceRecon rotates the face by R = Rz Ry Rx (world y up, camera on +z). The camera in the
    head's frame lies along R^T (0, 0, 1): that direction is the orbit camera's.
    """
    ax, ay, az = (float(v) for v in coeffs[DEEP3D_ANGLES])
    cx, sx, cy, sy, cz, sz = np.cos(ax), np.sin(ax), np.cos(ay), np.sin(ay), np.cos(az), np.sin(az)
    rot_x = np.array([[1, 0, 0], [0, cx, -sx], [0, sx, cx]])
    rot_y = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    rot_z = np.array([[cz, -sz, 0], [sz, cz, 0], [0, 0, 1]])
    direction = (rot_z @ rot_y @ rot_x).T @ np.array([0.0, 0.0, 1.0])
    return float(np.arctan2(direction[0], direction[2])), float(np.arcsin(np.clip(direction[1], -1, 1)))
