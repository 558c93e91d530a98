"""Project files (`*.e3d.json`): the whole editor state, readable JSON, written atomically.

A project stores the portrait and checkpoint paths (relative to the project file when they sit
beside it, so a project folder can move), λ with its names, the camera, the render mode and the
expression presets, and the portrait's fit file (app/fit_job.py; copied beside the project on save).
Reading validates everything and raises `Export3DError` with one line.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from export3d_core import RENDER_MODES, Animation, CameraPose, Export3DError, path_for_project, write_json_atomic

from app.presets import Preset
from app.state import ViewCamera, check_lambda

PROJECT_FORMAT = "export3d-studio-project"
PROJECT_VERSION = 1
PROJECT_SUFFIX = ".e3d.json"


@dataclass
class Project:
    portrait: Path | None
    checkpoint: Path | None
    lam: tuple[float, ...]
    names: tuple[str, ...]
    camera: ViewCamera = field(default_factory=ViewCamera)
    mode: str = "final"
    presets: list[Preset] = field(default_factory=list)
    crop: tuple[tuple[float, float], float] | None = None  # manual crop (centre, side) when no face was found
    fit: Path | None = None  # the portrait's fit file (export3d_core.fit_file), used by every render and export
    animation: Animation | None = None  # the timeline's keys (docs/animation.md); None: no keys


def _abs(text: str | None, base: Path) -> Path | None:
    if not text:
        return None
    path = Path(text)
    return path if path.is_absolute() else (base / path)


def save_project(path: str | Path, project: Project) -> Path:
    path = Path(path)
    if not path.parent.is_dir():
        raise Export3DError(f"folder does not exist: {path.parent}")
    base = path.parent
    data = {
        "format": PROJECT_FORMAT,
        "version": PROJECT_VERSION,
        "portrait": path_for_project(project.portrait, base),
        "checkpoint": path_for_project(project.checkpoint, base),
        "lambda": list(project.lam),
        "names": list(project.names),
        "camera": project.camera.to_dict(),
        "mode": project.mode,
        "presets": [p.to_dict() for p in project.presets],
        "fit": path_for_project(project.fit, base),
        "crop": None if project.crop is None else {"center": list(project.crop[0]), "side": project.crop[1]},
    }
    if project.animation is not None:  # the same JSON as `export3d animate` reads
        data["animation"] = project.animation.to_dict()
    try:
        return write_json_atomic(path, data, for_people=True)
    except OSError as exc:
        raise Export3DError(f"could not write {path}: {exc.strerror or exc}") from None


def _check_version(name: str, version: Any) -> None:
    if isinstance(version, int) and not isinstance(version, bool) and version == PROJECT_VERSION:
        return
    if isinstance(version, int) and not isinstance(version, bool):
        raise Export3DError(f"{name} has project version {version}; this build reads version {PROJECT_VERSION}")
    raise Export3DError(f"{name} has \"version\": {json.dumps(version)} ({type(version).__name__}); this build "
                        f"reads version {PROJECT_VERSION}, a whole number")


def _path_field(data: dict, key: str) -> str | None:
    value = data.get(key)
    if value is not None and not isinstance(value, str):
        raise ValueError(f"{key} is {json.dumps(value)}, not a file path")
    return value


def _names(data: dict, count: int) -> tuple[str, ...]:
    names = data.get("names") or [f"v{i + 1}" for i in range(count)]
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise ValueError("names must be a list of text")
    if len(names) != count:
        raise ValueError(f"{len(names)} names for {count} λ values")
    return tuple(names)


def load_project(path: str | Path) -> Project:
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise Export3DError(f"project not found: {path}") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise Export3DError(f"{path.name} is not a readable project file ({exc})") from None
    if not isinstance(data, dict) or data.get("format") != PROJECT_FORMAT:
        raise Export3DError(f"{path.name} is not an Export3D Studio project")
    _check_version(path.name, data.get("version"))
    try:
        portrait, checkpoint = _path_field(data, "portrait"), _path_field(data, "checkpoint")
        fit = _path_field(data, "fit")
        if not isinstance(data.get("lambda"), list):
            raise ValueError("lambda must be a list of numbers")
        lam = check_lambda(data["lambda"])
        names = _names(data, len(lam))
        camera = ViewCamera.from_dict(data.get("camera") or {})
        presets = [Preset.from_dict(p) for p in data.get("presets") or []]
        crop = data.get("crop")
        crop = None if not crop else ((float(crop["center"][0]), float(crop["center"][1])), float(crop["side"]))
    except (KeyError, TypeError, ValueError) as exc:
        raise Export3DError(f"{path.name} has invalid values: {exc}") from None
    animation = _animation(path.name, data.get("animation"), len(lam), camera)
    mode = data.get("mode", "final")
    return Project(_abs(portrait, path.parent), _abs(checkpoint, path.parent),
                   lam, names, camera, mode if mode in RENDER_MODES else "final", presets, crop,
                   _abs(fit, path.parent), animation)


def _animation(name: str, data: Any, n_basis: int, camera: ViewCamera) -> Animation | None:
    """The "animation" key, checked by the core (a key's missing camera field takes the project's)."""
    if data is None:
        return None
    try:
        return Animation.from_dict(data, n_basis, CameraPose(**camera.to_dict()))
    except Export3DError as exc:
        raise Export3DError(f"{name} has an invalid animation: {exc}") from None
