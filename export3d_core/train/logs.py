"""What a training run writes for people to read: the JSONL loss log and PNG sample grids.

Owns the file formats only; the loop decides when. Nothing here touches an RNG, so logging more
or less often never changes the numbers of a run.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

LOG_FILE = "log.jsonl"
SAMPLES_DIR = "samples"
SAMPLE_ROWS = 4  # batch items shown per grid


class JsonlLog:
    """Append-only JSON-lines log, flushed per record so `tail -f` and a killed run both see it."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._handle = self.path.open("a", encoding="utf-8")

    def write(self, record: dict[str, Any]) -> None:
        self._handle.write(json.dumps(record) + "\n")
        self._handle.flush()

    def close(self) -> None:
        self._handle.close()


def truncate_jsonl(path: str | Path, last_step: int) -> int:
    """Keep the records up to `last_step` (and drop a line torn by a kill); returns how many were
    dropped. A run killed after its last checkpoint has logged steps it will train again on
    resume: without this they would appear twice."""
    from export3d_core.atomic import write_text_atomic

    path = Path(path)
    if not path.is_file():
        return 0
    lines = path.read_text(encoding="utf-8").splitlines()
    kept = []
    for line in lines:
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict) and isinstance(record.get("step"), int) and record["step"] <= last_step:
            kept.append(line)
    dropped = sum(1 for line in lines if line.strip()) - len(kept)
    if dropped:
        write_text_atomic(path, "".join(line + "\n" for line in kept))
    return dropped


def read_jsonl(path: str | Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in Path(path).read_text(encoding="utf-8").splitlines() if line.strip()]


def to_uint8(images: torch.Tensor) -> np.ndarray:
    """(B, 3, H, W) in [-1, 1] -> (B, H, W, 3) uint8."""
    scaled = (images.detach().float().clamp(-1, 1) + 1) * 127.5
    return scaled.round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()


def sample_grid(columns: Sequence[torch.Tensor], size: int, rows: int = SAMPLE_ROWS) -> np.ndarray:
    """One row per batch item, one column per image kind, every image resized to `size`.

    columns: tensors (B, 3, h, w) in [-1, 1] (e.g. source | driving | raw | final).
    """
    resized = [F.interpolate(c[:rows].detach().float(), size=(size, size), mode="bilinear",
                             align_corners=False, antialias=c.shape[-1] > size) for c in columns]
    grid = torch.cat([torch.cat(list(col), dim=2) for col in zip(*resized)], dim=1)  # (3, rows*size, cols*size)
    return to_uint8(grid[None])[0]


def save_sample_grid(path: str | Path, columns: Sequence[torch.Tensor], size: int) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp.png")
    Image.fromarray(sample_grid(columns, size)).save(tmp)
    tmp.replace(path)
    return path
