"""Multi-process data parallelism: process-group set-up, rank helpers, DDP wrapping.

Owns everything that differs between one process and `torchrun --nproc_per_node N`: reading
torchrun's environment (RANK, WORLD_SIZE, LOCAL_RANK), choosing the backend (NCCL on CUDA, gloo
on CPU), the device of each rank, wrapping modules in DistributedDataParallel, and the autocast
context (bf16 on CUDA). A single process without those variables runs as rank 0 of 1 and never
touches torch.distributed.
"""
from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from typing import Iterator

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from export3d_core.devices import parse_device
from export3d_core.errors import Export3DError


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        """Rank 0 alone logs, writes samples and checkpoints."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def launched_by_torchrun() -> bool:
    return "RANK" in os.environ and "WORLD_SIZE" in os.environ


def resolve_device(name: str | None, local_rank: int = 0) -> torch.device:
    """`--device` (cpu, cuda, cuda:1, auto/None): auto takes this rank's GPU when there is one."""
    if name in (None, "auto"):
        return torch.device("cuda", local_rank) if torch.cuda.is_available() else torch.device("cpu")
    device = parse_device(name)
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", local_rank)
    return device


def setup_distributed(device: str | None = None) -> DistInfo:
    """Join the process group torchrun describes, or describe a single process."""
    if not launched_by_torchrun() or int(os.environ["WORLD_SIZE"]) == 1:
        return DistInfo(device=resolve_device(device))
    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    local_rank = int(os.environ.get("LOCAL_RANK", rank))
    named = None if device in (None, "auto") else parse_device(device, available=False)
    if named is not None and named.type == "cuda" and named.index is not None:
        # Every process would take that one GPU, and NCCL refuses duplicate devices.
        raise Export3DError(f"--device {device} names one GPU, but torchrun starts {world} processes and each "
                            "takes its own (its LOCAL_RANK): pass --device cuda, or leave --device out")
    chosen = resolve_device(device, local_rank)
    if chosen.type == "cuda":
        torch.cuda.set_device(chosen)
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if chosen.type == "cuda" else "gloo")
    return DistInfo(rank=rank, world_size=world, local_rank=local_rank, device=chosen)


def cleanup_distributed() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def wrap_ddp(module: nn.Module, info: DistInfo) -> nn.Module:
    """DDP around `module` when distributed (parameters are broadcast from rank 0 here), else itself."""
    if not info.distributed:
        return module
    ids = [info.device.index] if info.device.type == "cuda" else None
    return DistributedDataParallel(module, device_ids=ids)


def unwrap(module: nn.Module) -> nn.Module:
    return module.module if isinstance(module, DistributedDataParallel) else module


def barrier(info: DistInfo) -> None:
    if info.distributed:
        dist.barrier()


def all_reduce_mean(value: float, info: DistInfo) -> float:
    """Mean of a scalar over ranks (for logging the loss of the whole global batch)."""
    if not info.distributed:
        return value
    tensor = torch.tensor([value], dtype=torch.float64, device=info.device)
    dist.all_reduce(tensor)
    return float(tensor.item()) / info.world_size


def average_buffers(module: nn.Module, info: DistInfo) -> None:
    """Mean of every saved floating-point buffer over ranks (the EMA tri-plane).

    Each rank updates the EMA with its own batch mean inside forward; averaging afterwards makes
    it the EMA of the global batch mean and keeps all ranks' buffers equal (DDP would otherwise
    overwrite them with rank 0's at the next forward, dropping the other ranks' batches).
    """
    if not info.distributed:
        return
    saved = set(module.state_dict())
    for name, buffer in module.named_buffers():
        if name in saved and buffer.is_floating_point():
            dist.all_reduce(buffer)
            buffer.div_(info.world_size)


@contextlib.contextmanager
def autocast(device: torch.device, enabled: bool = True) -> Iterator[None]:
    """bf16 autocast on CUDA (its tensor cores); full fp32 elsewhere unless asked otherwise."""
    if enabled and device.type == "cuda":
        with torch.autocast("cuda", dtype=torch.bfloat16):
            yield
    else:
        yield
