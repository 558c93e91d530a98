"""Reading the project's own safetensors files (regressors, readers, fits): tensors plus a JSON-ish
header, refused in one line when the file is damaged or of another kind. Nothing is unpickled."""
from __future__ import annotations

import os
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open

from export3d_core.errors import Export3DError


def read_tensor_file(path: str | os.PathLike, what: str) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """The tensors (on the CPU) and the header of a safetensors file; `what` names it in errors."""
    path = Path(path)
    try:
        with safe_open(str(path), framework="pt", device="cpu") as handle:
            header = handle.metadata() or {}
            tensors = {key: handle.get_tensor(key) for key in handle.keys()}
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise Export3DError(f"{path} is not a valid {what} file (truncated or corrupt safetensors: {exc})") from None
    return tensors, header


def check_format(header: dict[str, str], path: str | os.PathLike, what: str, name: str, version: int) -> None:
    """Refuse a file whose header names another format or version than (`name`, `version`)."""
    if header.get("format") != name or header.get("format_version") != str(version):
        raise Export3DError(f"{path} is not a{'n' if what[0] in 'aeiou' else ''} {what} "
                            f"(format {header.get('format')!r} version {header.get('format_version')!r})")
