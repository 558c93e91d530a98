"""`export3d train --init-from RUN`: a new run that starts from another run's weights.

What a grown architecture needs (e.g. a run that adds `--skip-expression-channels` to a trained
one): the new run takes the preset's architecture (with its flags) and the source
run's calibration (expression gain, λ units, whether LeBS is frozen), then copies every weight by
name, the discriminator's too.
- A weight the source lacks keeps its initialisation: new layers are built to start neutral
  (e.g. zero-initialised), so the model starts where the source stopped.
- A convolution or linear weight that grew along its input channels keeps the source's values in
  the leading channels; its new input channels keep their initialisation.
- Anything else that does not fit (a weight the new model lacks, another shape) is refused.
The optimisers, the step count and the data order start afresh, as in any new run.
"""
from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from export3d_core.config import ModelConfig
from export3d_core.errors import Export3DError
from export3d_core.train import checkpointing as ckpt

# The calibration a run's weights were trained with; the preset cannot know it.
CALIBRATION_FIELDS = ("expression_gain", "lambda_scale")


def read_source_run(run_dir: str | Path) -> tuple[dict[str, torch.Tensor], dict]:
    """The source run's latest training state (tensors, meta), with a clear error when there is none."""
    if not ckpt.has_training_state(run_dir):
        raise Export3DError(f"--init-from {run_dir}: no training run there (no {ckpt.STATE_JSON})")
    tensors, meta = ckpt.load_training_state(run_dir)
    ckpt.saved_model_config(meta, run_dir)  # readable, or a clear error before anything is built
    return tensors, meta


def initial_config(preset_config: ModelConfig, source_meta: dict) -> ModelConfig:
    """The preset's architecture with the source run's calibration; another preset or β is refused."""
    source = ModelConfig.from_dict(source_meta["model_config"])
    if source.name != preset_config.name:
        raise Export3DError(f"--init-from: the source run is preset {source.name!r}, this run {preset_config.name!r}")
    if source.beta_dim != preset_config.beta_dim:
        raise Export3DError(f"--init-from: the source run was trained on {source.beta_dim} β parameters, "
                            f"this corpus has {preset_config.beta_dim}")
    return preset_config.replace(**{name: getattr(source, name) for name in CALIBRATION_FIELDS})


def load_grown(module: nn.Module, source: dict[str, torch.Tensor]) -> list[str]:
    """Copy `source` into `module` as the module docstring says; returns the names left at their init
    (new weights, or grown ones in part). Raises Export3DError, changing nothing, when it cannot."""
    own = module.state_dict()
    problems = sorted(f"{name} (not in this model)" for name in set(source) - set(own))
    merged, fresh = {}, []
    for name, value in own.items():
        if name not in source:
            merged[name] = value
            fresh.append(name)
            continue
        old = source[name].to(value.dtype)
        if old.shape == value.shape:
            merged[name] = old
        elif _grown_inputs(old, value):
            grown = value.clone()
            grown[:, :old.shape[1]] = old
            merged[name] = grown
            fresh.append(f"{name} (input channels {old.shape[1]} -> {value.shape[1]})")
        else:
            problems.append(f"{name} ({tuple(old.shape)} in the source, {tuple(value.shape)} here)")
    if problems:
        raise Export3DError("--init-from: the source weights do not fit this model (the preset's architecture "
                            "and its flags, e.g. --skip-expression-channels, --neural-size): " + "; ".join(problems[:4]))
    module.load_state_dict(merged)
    return fresh


def _grown_inputs(old: torch.Tensor, new: torch.Tensor) -> bool:
    """Whether `new` is `old` with more input channels (dim 1) and every other size equal."""
    return (old.dim() == new.dim() >= 2 and old.shape[0] == new.shape[0] and old.shape[2:] == new.shape[2:]
            and old.shape[1] < new.shape[1])
