"""Expression presets: named λ (with the coefficient names and an optional camera) as readable JSON.

The preset library lives in one JSON file (by default beside the settings) shared by every
editor that runs; a project carries its own presets, separate from the library. Thumbnails are
not stored: the presets panel renders each preset on the *current* portrait in the background,
which is what an artist wants to compare.

The library file is never overwritten blindly: every change re-reads the file under a lock,
applies this editor's one change (add, remove, import) and writes atomically, so two editors
keep each other's presets. A file that cannot be read is kept aside under a timestamped name.
"""
from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from export3d_core import Export3DError, write_json_atomic

from app.file_lock import LOCK_TIMEOUT_S, LockUnavailable, locked
from app.state import ViewCamera, check_lambda

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
    def from_dict(data: Any) -> "Preset":
        """ValueError with one line for anything that is not a whole, consistent preset."""
        if not isinstance(data, dict):
            raise ValueError(f"a preset is {type(data).__name__}, not an object")
        name = data.get("name")
        if not isinstance(name, str):
            raise ValueError(f"a preset's name is {name!r}, not text")
        values, names = data.get("lambda"), data.get("names", [])
        if not isinstance(values, list) or not isinstance(names, list):
            raise ValueError(f"preset {name!r}: lambda and names must be lists")
        lam = check_lambda(values, f"preset {name!r}: λ")
        if names and len(names) != len(lam):
            raise ValueError(f"preset {name!r} has {len(names)} names for {len(lam)} λ values")
        camera = data.get("camera")
        if camera is not None and not isinstance(camera, dict):
            raise ValueError(f"preset {name!r}: camera must be an object")
        return Preset(name, lam, tuple(str(n) for n in names), ViewCamera.from_dict(camera) if camera else None)


def save_library(path: str | Path, presets: list[Preset]) -> Path:
    data = {"format": LIBRARY_FORMAT, "presets": [p.to_dict() for p in presets]}
    return write_json_atomic(path, data, for_people=True)


def load_library(path: str | Path) -> list[Preset]:
    """The presets in `path` ([] when there is no file); Export3DError with one line if it is broken."""
    path = Path(path)
    if not path.is_file():
        return []
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(data, dict) or data.get("format") != LIBRARY_FORMAT:
            raise ValueError("not a presets file")
        if not isinstance(data.get("presets"), list):
            raise ValueError("its presets are not a list")
        return [Preset.from_dict(p) for p in data["presets"]]
    except (OSError, UnicodeDecodeError, ValueError, TypeError) as exc:  # JSONDecodeError is a ValueError
        raise Export3DError(f"{path.name} is not a valid presets file ({exc})") from None


def keep_aside(path: Path) -> Path:
    """Rename a file that failed to load to `<name>.broken-<timestamp>` so nothing overwrites it."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    target, n = path.with_name(f"{path.name}.broken-{stamp}"), 1
    while target.exists():
        target, n = path.with_name(f"{path.name}.broken-{stamp}-{n}"), n + 1
    os.replace(path, target)
    return target


class PresetLibrary:
    """The shared preset library file; every change merges with what is on disk, under a lock."""

    def __init__(self, path: str | Path, lock_timeout_s: float = LOCK_TIMEOUT_S) -> None:
        self.path = Path(path)
        self.lock_timeout_s = lock_timeout_s
        self.presets: list[Preset] = []

    def load(self) -> str | None:
        """Read the library; a broken file is kept aside and the library starts empty (the notice says so)."""
        try:
            with locked(self.path, self.lock_timeout_s):
                self.presets, notice = self._read()
        except LockUnavailable:  # a read-only folder, or another editor saving: saves are atomic, so
            self.presets, notice = self._read()  # reading without the lock never sees half a file
        return notice

    def add(self, preset: Preset) -> str | None:
        return self._update(lambda disk: disk if preset in disk else disk + [preset])

    def remove(self, preset: Preset) -> str | None:
        return self._update(lambda disk: [p for p in disk if p != preset])

    def import_presets(self, presets: list[Preset]) -> int:
        """Add the presets the library lacks (an equal one is not duplicated); how many were added."""
        added: list[Preset] = []

        def merge(disk: list[Preset]) -> list[Preset]:
            added[:] = [p for i, p in enumerate(presets) if p not in disk and p not in presets[:i]]
            return disk + added

        self._update(merge)
        return len(added)

    def _read(self) -> tuple[list[Preset], str | None]:
        try:
            return load_library(self.path), None
        except Export3DError as exc:
            try:
                aside = keep_aside(self.path)
            except OSError as os_exc:
                raise Export3DError(f"{exc}; could not keep it aside ({os_exc.strerror or os_exc})") from None
            return [], f"{exc}: kept it as {aside.name}; the preset library starts empty"

    def _update(self, change: Callable[[list[Preset]], list[Preset]]) -> str | None:
        """Re-read the file under the lock, apply this editor's change, write atomically."""
        with locked(self.path, self.lock_timeout_s):
            disk, notice = self._read()
            if notice is not None:  # the file broke under us: what this editor knows is the best copy
                disk = self.presets
            presets = change(list(disk))
            try:
                save_library(self.path, presets)
            except OSError as exc:
                raise Export3DError(f"could not save presets to {self.path}: {exc.strerror or exc}") from None
        self.presets = presets
        return notice
