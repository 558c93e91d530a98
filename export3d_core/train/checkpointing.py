"""Resumable training checkpoints: tensors in safetensors, everything else in JSON, never pickle.

A checkpoint of run RUN is two files:
  RUN/train_state-<step>.safetensors  model, discriminator and optimiser tensors, RNG states
  RUN/train_state.json                step, phase, sampler position, config, optimiser scalars,
                                      and the name of the tensor file it belongs to
Each is written to a temporary file and renamed over (os.replace); the JSON is written last and is
the commit point, so a run killed at any moment leaves the previous complete checkpoint. Older
tensor files are removed only after the new JSON is in place.
"""
from __future__ import annotations

import json
import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from export3d_core.config import ModelConfig
from export3d_core.atomic import write_json_atomic
from export3d_core.errors import Export3DError

STATE_JSON = "train_state.json"
STATE_FORMAT = "export3d-train-state"
STATE_VERSION = 1
TMP_SUFFIX = ".tmp"  # of the tensor file while it is written


# -- optimiser state <-> (tensors, JSON) -----------------------------------------------------------
def flatten_optimizer(state: dict[str, Any], prefix: str) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Split `optimizer.state_dict()` into tensors named `<prefix>.<param>.<key>` and JSON scalars."""
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for param_id, entries in state["state"].items():
        for key, value in entries.items():
            if isinstance(value, torch.Tensor):
                tensors[f"{prefix}.{param_id}.{key}"] = value
            else:
                scalars.setdefault(str(param_id), {})[key] = value
    return tensors, {"param_groups": state["param_groups"], "scalars": scalars}


def unflatten_optimizer(tensors: dict[str, torch.Tensor], meta: dict[str, Any], prefix: str) -> dict[str, Any]:
    """Inverse of `flatten_optimizer` (JSON lists in param groups become tuples again, e.g. betas)."""
    state: dict[int, dict[str, Any]] = {}
    for name, value in tensors.items():
        if name.startswith(prefix + "."):
            param_id, key = name[len(prefix) + 1:].split(".", 1)
            state.setdefault(int(param_id), {})[key] = value
    for param_id, entries in meta["scalars"].items():
        state.setdefault(int(param_id), {}).update(entries)
    groups = [{k: (tuple(v) if isinstance(v, list) and k != "params" else v) for k, v in group.items()}
              for group in meta["param_groups"]]
    return {"state": state, "param_groups": groups}


# -- RNG state <-> (tensors, JSON) -------------------------------------------------------------------
def capture_rng() -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """torch (CPU and CUDA), numpy and python RNG states, split into tensors and JSON."""
    tensors = {"rng.torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        for index, cuda_state in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"rng.cuda.{index}"] = cuda_state
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    tensors["rng.numpy"] = torch.from_numpy(np.asarray(keys, dtype=np.int64))
    version, internal, gauss_next = random.getstate()
    meta = {"numpy": [kind, int(pos), int(has_gauss), float(cached)],
            "python": [version, list(internal), gauss_next]}
    return tensors, meta


def restore_rng(tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
    torch.set_rng_state(tensors["rng.torch"])
    cuda_states = [tensors[k] for k in sorted(tensors) if k.startswith("rng.cuda.")]
    if cuda_states and torch.cuda.is_available():  # a machine with fewer GPUs restores those it has
        for index, cuda_state in enumerate(cuda_states[:torch.cuda.device_count()]):
            torch.cuda.set_rng_state(cuda_state, index)
    kind, pos, has_gauss, cached = meta["numpy"]
    np.random.set_state((kind, tensors["rng.numpy"].numpy().astype(np.uint32), pos, has_gauss, cached))
    version, internal, gauss_next = meta["python"]
    random.setstate((version, tuple(internal), gauss_next))


# -- files --------------------------------------------------------------------------------------------
def _detached(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    # safetensors refuses tensors that share storage: give every entry its own contiguous copy.
    return {k: v.detach().cpu().contiguous().clone() for k, v in tensors.items()}


def save_training_state(run_dir: str | Path, step: int, tensors: dict[str, torch.Tensor],
                        meta: dict[str, Any]) -> Path:
    """Write one checkpoint atomically; returns the JSON path. `meta` must be JSON-serialisable."""
    run = Path(run_dir)
    run.mkdir(parents=True, exist_ok=True)
    tensor_name = f"train_state-{step:08d}.safetensors"
    tmp = run / f".{tensor_name}{TMP_SUFFIX}"
    save_file(_detached(tensors), str(tmp), metadata={"format": STATE_FORMAT})
    os.replace(tmp, run / tensor_name)
    document = {"format": STATE_FORMAT, "version": STATE_VERSION, "step": step, "tensors": tensor_name, **meta}
    write_json_atomic(run / STATE_JSON, document)
    for old in run.glob("train_state-*.safetensors"):
        if old.name != tensor_name:
            old.unlink(missing_ok=True)
    return run / STATE_JSON


def remove_stale_temp_files(run_dir: str | Path) -> list[Path]:
    """Delete the temporary files a killed run left (a half-written tensor file is as large as a
    whole one); returns what was removed. Only names this package writes are touched: the tensor
    file's `.train_state-*.safetensors.tmp`, and `.NAME.*` beside the run's own files, which is
    how `atomic_path` names its temporaries (train_state.json, model.safetensors, sample grids)."""
    run = Path(run_dir)
    if not run.is_dir():
        return []
    patterns = [f".train_state-*.safetensors{TMP_SUFFIX}", f".{STATE_JSON}.*", ".model.safetensors.*",
                ".log.jsonl.*", "samples/.step_*"]
    removed = []
    for pattern in patterns:
        for path in run.glob(pattern):
            if path.is_file():
                path.unlink(missing_ok=True)
                removed.append(path)
    return removed


def has_training_state(run_dir: str | Path) -> bool:
    return (Path(run_dir) / STATE_JSON).is_file()


def load_training_state(run_dir: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """(tensors, meta) of the last complete checkpoint of a run; Export3DError if none."""
    run = Path(run_dir)
    path = run / STATE_JSON
    if not path.is_file():
        raise Export3DError(f"no training checkpoint in {run} ({STATE_JSON} is missing); drop --resume to start afresh")
    meta = read_state_json(run)
    tensor_path = run / meta["tensors"]
    try:
        tensors = load_file(str(tensor_path))
    except (OSError, ValueError, SafetensorError) as exc:
        reason = " ".join(str(exc).split()) or type(exc).__name__
        raise Export3DError(f"cannot read training checkpoint {tensor_path} (truncated or corrupt? {reason})") from None
    return tensors, meta


def read_state_json(run_dir: str | Path) -> dict[str, Any]:
    """The JSON half of a run's checkpoint; Export3DError when it is unreadable, truncated or foreign."""
    path = Path(run_dir) / STATE_JSON
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise Export3DError(f"cannot read training checkpoint {path} (truncated or corrupt? {exc})") from None
    if not isinstance(meta, dict) or meta.get("format") != STATE_FORMAT or not isinstance(meta.get("tensors"), str):
        raise Export3DError(f"{path} is not an export3d training state")
    return meta


def saved_model_config(meta: dict[str, Any], run_dir: str | Path) -> ModelConfig:
    """The `ModelConfig` a run's training state records; Export3DError when it has none or this
    version cannot build it (e.g. a field another version added)."""
    if "model_config" not in meta:
        raise Export3DError(f"the training state in {run_dir} records no model config")
    try:
        return ModelConfig.from_dict(meta["model_config"])
    except (ValueError, TypeError) as exc:
        raise Export3DError(f"the training state in {run_dir} has a model config this version of export3d "
                            f"cannot build ({exc}); was it written by another version?") from None


def split_prefix(tensors: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    """The entries `<prefix>.<name>` as {name: tensor}."""
    cut = len(prefix) + 1
    return {k[cut:]: v for k, v in tensors.items() if k.startswith(prefix + ".")}


def with_prefix(tensors: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    return {f"{prefix}.{k}": v for k, v in tensors.items()}
