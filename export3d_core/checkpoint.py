"""Inference checkpoints: one safetensors file whose header carries the JSON config and version.

A checkpoint is self-contained (weights + `ModelConfig` + format version + free-form meta), so it
rebuilds its model on load. Nothing is ever unpickled. Every way a file can be wrong gives an
`Export3DError` that says what is wrong, including which tensors differ from the config.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from export3d_core.atomic import atomic_path
from export3d_core.config import ModelConfig
from export3d_core.errors import Export3DError

FORMAT_NAME = "export3d"
FORMAT_VERSION = 1
DEFAULT_FILENAME = "model.safetensors"
REPO_ROOT = Path(__file__).resolve().parent.parent
DEMO_CHECKPOINT = REPO_ROOT / "resources" / "models" / "demo" / DEFAULT_FILENAME


def resolve_checkpoint_path(path: str | os.PathLike) -> Path:
    """A file, or a directory holding `model.safetensors`."""
    path = Path(path)
    if path.is_dir():
        path = path / DEFAULT_FILENAME
    if not path.is_file():
        raise Export3DError(f"checkpoint not found: {path}")
    return path


def save_checkpoint(
    model: torch.nn.Module,
    path: str | os.PathLike,
    meta: dict[str, Any] | None = None,
    *,
    dtype: torch.dtype | None = None,
) -> Path:
    """Write weights + config atomically. `dtype=torch.float16` halves the file for shipping."""
    path = Path(path)
    if path.suffix != ".safetensors":
        path = path / DEFAULT_FILENAME
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors = {}
    for name, tensor in model.state_dict().items():
        tensor = tensor.detach().to("cpu")
        if dtype is not None and tensor.is_floating_point():
            tensor = tensor.to(dtype)
        tensors[name] = tensor.contiguous()
    header = {
        "format": FORMAT_NAME,
        "format_version": str(FORMAT_VERSION),
        "config": json.dumps(model.config.to_dict()),
        "meta": json.dumps(meta or {}),
    }
    with atomic_path(path) as tmp:
        save_file(tensors, tmp, metadata=header)
    return path


def read_header(path: str | os.PathLike) -> tuple[ModelConfig, dict[str, Any]]:
    """Config and meta of a checkpoint without loading its weights (for the editor's info panel)."""
    path = resolve_checkpoint_path(path)
    with _open(path) as handle:
        return _parse_header(path, handle.metadata())


def load_checkpoint(path: str | os.PathLike, device: str | torch.device = "cpu"):
    """Rebuild the model from a checkpoint. Returns (model in eval mode, meta dict)."""
    from export3d_core.model import Export3D  # here to keep this module importable on its own

    path = resolve_checkpoint_path(path)
    with _open(path) as handle:
        config, meta = _parse_header(path, handle.metadata())
        try:
            tensors = {key: handle.get_tensor(key) for key in handle.keys()}
        except (SafetensorError, RuntimeError, OSError) as exc:
            raise Export3DError(f"{path} is corrupt: {exc}") from None
    model = Export3D(config)
    expected = model.state_dict()
    _check_tensors(path, expected, tensors)
    _check_values(path, expected, tensors)
    for key, tensor in tensors.items():
        tensors[key] = tensor.to(expected[key].dtype)
    model.load_state_dict(tensors, strict=True)
    meta["config_name"] = config.name
    return model.to(device).eval(), meta


def _open(path: Path):
    try:
        return safe_open(str(path), framework="pt", device="cpu")
    except (SafetensorError, OSError, ValueError) as exc:
        size = path.stat().st_size
        why = "empty file" if size == 0 else f"{exc}"
        raise Export3DError(
            f"{path} is not a valid checkpoint (truncated or corrupt safetensors file: {why})"
        ) from None


def _parse_header(path: Path, header: dict[str, str] | None) -> tuple[ModelConfig, dict[str, Any]]:
    header = header or {}
    if header.get("format") != FORMAT_NAME or "config" not in header:
        raise Export3DError(f"{path} is a safetensors file but not an Export3D checkpoint (no config in its header)")
    try:
        version = int(header.get("format_version", "0"))
    except ValueError:
        version = -1
    if version != FORMAT_VERSION:
        raise Export3DError(
            f"{path} has checkpoint format version {header.get('format_version')}; this build reads version {FORMAT_VERSION}"
        )
    try:
        config = ModelConfig.from_dict(json.loads(header["config"]))
        meta = json.loads(header.get("meta", "{}"))
    except (ValueError, TypeError) as exc:
        raise Export3DError(f"{path} has an invalid config in its header: {exc}") from None
    return config, meta


def _check_tensors(path: Path, expected: dict[str, torch.Tensor], found: dict[str, torch.Tensor]) -> None:
    missing = sorted(set(expected) - set(found))
    unexpected = sorted(set(found) - set(expected))
    mismatched = [
        f"{key} {tuple(found[key].shape)} != {tuple(expected[key].shape)}"
        for key in sorted(set(expected) & set(found))
        if found[key].shape != expected[key].shape
    ]
    if not (missing or unexpected or mismatched):
        return
    parts = []
    for label, items in (("missing", missing), ("unexpected", unexpected), ("shape mismatch", mismatched)):
        if items:
            shown = ", ".join(items[:6]) + (f" (+{len(items) - 6} more)" if len(items) > 6 else "")
            parts.append(f"{label}: {shown}")
    raise Export3DError(f"{path}: weights do not match its config: " + "; ".join(parts))


def _check_values(path: Path, expected: dict[str, torch.Tensor], found: dict[str, torch.Tensor]) -> None:
    """Weights of the right kind and finite: an int8 tensor would be cast to garbage and a NaN
    renders black, both silently."""
    for key in sorted(found):
        tensor, wanted = found[key], expected[key]
        if tensor.is_floating_point() != wanted.is_floating_point() or tensor.is_complex() or tensor.dtype == torch.bool:
            kind = "floating-point" if wanted.is_floating_point() else "integer"
            raise Export3DError(f"{path}: tensor {key} is {str(tensor.dtype).replace('torch.', '')}; "
                                f"the model needs {kind} values there")
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            raise Export3DError(f"{path}: tensor {key} holds NaN or infinite values; the weights are corrupt")
