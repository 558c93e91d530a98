"""Expression presets: named λ (with the coefficient names and an optional camera) as readable JSON.

The library lives in one JSON file (by default in the user's config folder) and is also saved in
project files. Thumbnails are not stored: the presets panel renders each preset on the *current*
portrait in the background, which is what an artist wants to compare.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from export3d_core.errors import Export3DError

from app.state import ViewCamera

LIBRARY_FORMAT = "export3d-studio-presets"


@dataclass(frozen=True)
class Preset:
    name: str
    lam: tuple[float, ...]
    names: tuple[str, ...] = ()
    camera: ViewCamera | None = None

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"name": self.name, "lambda": list(self.lam)}
        if self.names:
            data["names"] = list(self.names)
        if self.camera is not None:
            data["camera"] = self.camera.to_dict()
        return data

    @staticmethod
    def from_dict(data: dict[str, Any]) -> "Preset":
        lam = tuple(float(v) for v in data["lambda"])
        if not all(math.isfinite(v) for v in lam):
            raise ValueError(f"preset {data.get('name')!r} has a non-finite λ")
        camera = ViewCamera.from_dict(data["camera"]) if data.get("camera") else None
        return Preset(str(data["name"]), lam, tuple(str(n) for n in data.get("names", ())), camera)


def save_library(path: str | Path, presets: list[Preset]) -> Path:
    from app.project import write_json_atomic

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return write_json_atomic(path, {"format": LIBRARY_FORMAT, "presets": [p.to_dict() for p in presets]})


def load_library(path: str | Path) -> list[Preset]:
    path = Path(path)
    if not path.is_file():
        return []
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        if data.get("format") != LIBRARY_FORMAT:
            raise ValueError("not a presets file")
        return [Preset.from_dict(p) for p in data["presets"]]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise Export3DError(f"{path.name} is not a valid presets file ({exc})") from None
