"""`--device NAME` for every sub-command: a torch device this machine has and can compute on,
or one line saying why not (an unknown name, `meta`, a GPU that is not there)."""
from __future__ import annotations

import torch

from export3d_core.errors import Export3DError

COMPUTE_DEVICE_TYPES = ("cpu", "cuda", "mps")  # devices that hold real numbers (not meta, not lazy)


def parse_device(name: str, *, available: bool = True) -> torch.device:
    """The device `name` means; with `available`, also one this machine has."""
    try:
        device = torch.device(name)
    except (RuntimeError, ValueError):
        raise Export3DError(f"unknown device {name!r}; use cpu, cuda or cuda:N") from None
    if device.type not in COMPUTE_DEVICE_TYPES:
        raise Export3DError(f"cannot compute on device {name!r}; use cpu, cuda or cuda:N")
    if not available:
        return device
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise Export3DError(f"--device {name}: CUDA was asked for but is not available")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise Export3DError(f"there is no {name}: this machine has {torch.cuda.device_count()} GPU(s)")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise Export3DError(f"--device {name}: MPS was asked for but is not available")
    return device
