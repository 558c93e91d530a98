"""Portraits as the model sees them: the shipped demo portraits and intake of any photo.

`resources/portraits/portraits.json` lists the demo portraits; each says whether it is already
aligned (synthetic crops are) and whether it lies in the demo model's domain. Any other photo goes
through intake (detect -> align -> crop).
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from export3d_core.checkpoint import REPO_ROOT
from export3d_core.errors import Export3DError

PORTRAITS_DIR = REPO_ROOT / "resources" / "portraits"
PORTRAITS_INDEX = PORTRAITS_DIR / "portraits.json"


@dataclass(frozen=True)
class DemoPortrait:
    path: Path
    label: str
    aligned: bool  # already cropped to the model's framing
    in_domain: bool  # like the demo model's training data


@dataclass
class LoadedPortrait:
    image: np.ndarray  # (S, S, 3) uint8, aligned to the model's framing
    method: str  # "aligned" | "face-alignment" | "dlib" | "opencv" | "manual"
    camera: np.ndarray | None = None  # (25,) estimated camera, when landmarks gave one
    # How many pixels of the original photo span the crop's side: above `image`'s side, the crop
    # was shrunk; below, enlarged (it then holds less detail than its size suggests).
    native_side: float | None = None


def demo_portraits() -> list[DemoPortrait]:
    if not PORTRAITS_INDEX.is_file():
        return []
    entries = json.loads(PORTRAITS_INDEX.read_text(encoding="utf-8"))
    return [
        DemoPortrait(PORTRAITS_DIR / e["file"], e.get("label", e["file"]), bool(e.get("aligned", False)),
                     bool(e.get("in_domain", True)))
        for e in entries
    ]


def default_portrait() -> DemoPortrait:
    for portrait in demo_portraits():
        if portrait.in_domain and portrait.path.is_file():
            return portrait
    raise Export3DError(f"no demo portrait found in {PORTRAITS_DIR}; pass --portrait IMG")


def is_demo_aligned(path: Path) -> bool:
    try:
        path = Path(path).resolve(strict=True)
    except (OSError, RuntimeError):  # missing, or a symlink loop: load_image says which, in one line
        return False
    return any(p.path.resolve() == path and p.aligned for p in demo_portraits())


def load_portrait(path: str | Path, size: int, *, align: bool | None = None, face_index: int | None = None) -> LoadedPortrait:
    """Load a photo and bring it to the model's framing. `align=None`: align unless it is a known aligned demo crop."""
    from export3d_core.data.image_io import load_image

    path = Path(path)
    if align is None:
        align = not is_demo_aligned(path)
    image = load_image(path)
    if not align:
        return LoadedPortrait(_resize(image, size), "aligned", native_side=float(min(image.shape[:2])))
    from export3d_core.data.intake import crop_portrait

    result = crop_portrait(image, size=size, face_index=face_index)
    zoom = float(np.sqrt(abs(np.linalg.det(result.transform[:, :2]))))  # crop pixels per photo pixel
    return LoadedPortrait(result.image, result.method, result.camera, native_side=size / zoom)


def _resize(image: np.ndarray, size: int) -> np.ndarray:
    if image.shape[:2] == (size, size):
        return image
    from PIL import Image

    side = min(image.shape[:2])
    top, left = (image.shape[0] - side) // 2, (image.shape[1] - side) // 2
    square = Image.fromarray(image[top:top + side, left:left + side])
    return np.asarray(square.resize((size, size), Image.Resampling.LANCZOS))
