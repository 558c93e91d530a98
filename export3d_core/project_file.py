"""The editor's project files (`*.e3d.json`) as the headless commands need them, without Qt.

The editor owns the format (app/project.py); this reader takes only what `animate`, `batch`
and `drive` use (portrait, checkpoint, fit, λ, names, camera, mode and the optional "animation") and
leaves every other key alone, so it keeps working as the editor adds fields. Paths are relative
to the project file when they sit beside it. `save_animation` writes the "animation" key into a
project, keeping all its other keys, or makes a minimal project the editor can open.
"""
from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from export3d_core.animation import Animation, CameraPose
from export3d_core.atomic import check_writable, write_text_atomic
from export3d_core.display import RENDER_MODES
from export3d_core.errors import Export3DError

PROJECT_FORMAT = "export3d-studio-project"  # the same strings as app/project.py
PROJECT_VERSION = 1
PROJECT_SUFFIX = ".e3d.json"


@dataclass
class ProjectFile:
    path: Path
    portrait: Path | None
    checkpoint: Path | None
    lam: tuple[float, ...]
    names: tuple[str, ...]
    camera: CameraPose
    mode: str
    animation: Animation | None
    crop: tuple[tuple[float, float], float] | None = None  # the editor's manual crop (centre, side)
    fit: Path | None = None  # the portrait's fit file (`export3d fit`, the editor's Fit to this portrait)


def _abs(text: Any, base: Path, what: str) -> Path | None:
    if text in (None, ""):
        return None
    if not isinstance(text, str):
        raise Export3DError(f"the project's {what} must be a path")
    path = Path(text)
    return path if path.is_absolute() else base / path


def path_for_project(path: Path | None, base: Path) -> str | None:
    """How a project in `base` names `path`: relative (POSIX) when it lies below `base`, else absolute."""
    if path is None:
        return None
    path = Path(path).resolve()
    try:
        return path.relative_to(base.resolve()).as_posix()
    except ValueError:
        return str(path)


_NUMBER_LIST = re.compile(r"\[\s*(-?[0-9][-+0-9.eE]*(?:,\s*-?[0-9][-+0-9.eE]*)*)\s*\]")


def readable_json(data: Any) -> str:
    """Indented JSON with each list of numbers on one line (a key's λ reads as one row)."""
    text = json.dumps(data, indent=2, ensure_ascii=False)
    return _NUMBER_LIST.sub(lambda m: "[" + ", ".join(v.strip() for v in m.group(1).split(",")) + "]", text) + "\n"


def read_json_object(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise Export3DError(f"project not found: {path}") from None
    except IsADirectoryError:
        raise Export3DError(f"{path} is a folder, not a project file") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise Export3DError(f"{Path(path).name} is not a readable project file ({exc})") from None
    if not isinstance(data, dict) or data.get("format") != PROJECT_FORMAT:
        raise Export3DError(f"{Path(path).name} is not an Export3D Studio project")
    if data.get("version") != PROJECT_VERSION:
        raise Export3DError(f"{Path(path).name} has project version {data.get('version')}; this build reads "
                            f"{PROJECT_VERSION}")
    return data


def load_project_file(path: str | Path) -> ProjectFile:
    """Validated; each bad value is one `Export3DError` naming the file."""
    path = Path(path)
    data = read_json_object(path)
    base = path.parent
    try:
        lam_data = data["lambda"]
        if not isinstance(lam_data, list):
            raise Export3DError("lambda must be a list of numbers")
        lam = tuple(float(v) for v in lam_data)
        if not all(math.isfinite(v) for v in lam):
            raise Export3DError("λ must be finite numbers")
        names = tuple(str(n) for n in data.get("names") or [f"v{i + 1}" for i in range(len(lam))])
        if len(names) != len(lam):
            raise Export3DError(f"{len(names)} names for {len(lam)} λ values")
        camera = CameraPose.from_dict(data.get("camera") or {})
        raw_animation = data.get("animation")
        animation = None if raw_animation is None else Animation.from_dict(raw_animation, len(lam), camera)
        portrait = _abs(data.get("portrait"), base, "portrait")
        checkpoint = _abs(data.get("checkpoint"), base, "checkpoint")
        fit = _abs(data.get("fit"), base, "fit")
        crop = data.get("crop")
        crop = None if not crop else ((float(crop["center"][0]), float(crop["center"][1])), float(crop["side"]))
    except KeyError as exc:
        raise Export3DError(f"{path.name}: missing {exc.args[0]!r}") from None
    except (TypeError, ValueError) as exc:
        raise Export3DError(f"{path.name} has invalid values: {exc}") from None
    except Export3DError as exc:
        raise Export3DError(f"{path.name}: {exc}") from None
    mode = data.get("mode", "final")
    return ProjectFile(path, portrait, checkpoint, lam, names, camera,
                       mode if mode in RENDER_MODES else "final", animation, crop, fit)


def check_project_target(path: str | Path, overwrite: bool) -> Path:
    """Refuse a project path that cannot be written, before the work that fills it."""
    path = Path(path)
    if not path.parent.is_dir():
        raise Export3DError(f"folder does not exist: {path.parent}")
    if path.exists() and not overwrite:
        raise Export3DError(f"{path} exists; pass --overwrite to replace its animation")
    check_writable(path)
    return path


def save_animation(path: str | Path, animation: Animation, *, portrait: Path | None = None,
                   checkpoint: Path | None = None, fit: Path | None = None, overwrite: bool = False) -> Path:
    """Put `animation` into the project at `path` (its other keys kept), or make a new project.

    An existing project is updated in place only with `overwrite`; a new one gets the animation's
    first pose as its still pose, and `portrait`/`checkpoint`/`fit` (relative when beside it).
    """
    path = Path(path)
    if not path.parent.is_dir():
        raise Export3DError(f"folder does not exist: {path.parent}")
    if path.exists():
        if not overwrite:
            raise Export3DError(f"{path} exists; pass --overwrite to replace its animation")
        data = read_json_object(path)
    else:
        lam, camera = animation.sample(animation.keys[0].time)
        data = {"format": PROJECT_FORMAT, "version": PROJECT_VERSION,
                "portrait": path_for_project(portrait, path.parent),
                "checkpoint": path_for_project(checkpoint, path.parent),
                "lambda": list(lam), "names": [f"v{i + 1}" for i in range(len(lam))],
                "camera": camera.to_dict(), "mode": "final", "presets": [], "crop": None}
        if fit is not None:
            data["fit"] = path_for_project(fit, path.parent)
    if len(data.get("lambda") or []) not in (0, animation.n_basis):
        raise Export3DError(f"{path.name} has {len(data['lambda'])} λ values; the animation has {animation.n_basis}")
    data["animation"] = animation.to_dict()
    try:
        return write_text_atomic(path, readable_json(data))
    except OSError as exc:
        raise Export3DError(f"could not write {path}: {exc.strerror or exc}") from None
