"""Which device to compute on, and what it computes natively.

`parse_device` turns a user's `--device NAME` into a device this machine has and can compute on,
or one line saying why not (an unknown name, `meta`, a GPU that is not there). `pick_device` is
the one place a device is chosen from a user's setting; choosing a CUDA device there also turns
on TF32 matmuls and convolutions for the process (Ampere and later run fp32 work on tensor cores
at ~10-bit mantissa; the renderer keeps its ray geometry in fp32 tensors whatever the flag, and
`export3d bench` reports the frame's agreement with the reference).
"""
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


def enable_tf32() -> None:
    """Process-wide: TF32 for CUDA matmuls and cuDNN convolutions (set once, where the device is chosen)."""
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True


def pick_device(name: str | None = None) -> torch.device:
    """`name` ("cpu", "cuda", "cuda:1"...) as a device; None: CUDA when available, else the CPU."""
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu") if name is None else parse_device(name)
    if device.type == "cuda":
        enable_tf32()
    return device


def native_bf16(device: torch.device) -> bool:
    """Whether `device` computes bf16 convolutions natively (so bf16 is a speed-up, not an emulation)."""
    if device.type == "cuda":  # Ampere (8.x) and later; is_bf16_supported() also says yes where it is emulated
        return torch.cuda.get_device_capability(device)[0] >= 8
    if device.type != "cpu":
        return False
    probes = ("_is_amx_tile_supported", "_is_avx512_bf16_supported")  # private, so looked up defensively
    return any(bool(getattr(torch.cpu, name, lambda: False)()) for name in probes)


__all__ = ["COMPUTE_DEVICE_TYPES", "enable_tf32", "native_bf16", "parse_device", "pick_device"]
