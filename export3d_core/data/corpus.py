"""The on-disk layout of a training corpus, shared by `synth`, `prepare` and the data set.

```
DIR/
  corpus.json                {"format": "export3d-corpus", "version": 1, "source": "synthetic"|"video",
                              "resolution": R, "beta_dim": B, "beta_names": [...], "clips": ["clip_00000", ...]}
  clip_00000/
    meta.json                {"clip": "clip_00000", "identity": {...} | null, "background": [r, g, b] | null,
                              "beta_source": "synthetic"|"deep3d"|"landmarks",
                              "frames": [{"file": "frames/000000.png", "beta": [B floats],
                                          "camera": [25 floats], "landmarks": [[x, y] * 68] | null,
                                          "landmarks3d": [[x, y, z] * 68] | null}, ...]}
    frames/000000.png        RGB, R x R, uint8
```
Landmarks are pixel coordinates in the frame (x right, y down, pixel centres at +0.5) in the
usual 68-point layout (iBUG 300-W order). `landmarks3d` are world coordinates (EG3D frame) when
known (synthetic data). Cameras follow docs/architecture.md, "EG3D conventions" (25 numbers).
Files are written atomically.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from export3d_core.atomic import write_json_atomic
from export3d_core.errors import Export3DError

CORPUS_FORMAT = "export3d-corpus"
CORPUS_VERSION = 1
CORPUS_FILE = "corpus.json"
CLIP_META_FILE = "meta.json"
NUM_LANDMARKS = 68


def clip_name(index: int) -> str:
    return f"clip_{index:05d}"


def frame_file(index: int) -> str:
    return f"frames/{index:06d}.png"


@dataclass
class FrameRecord:
    file: str
    beta: list[float]
    camera: list[float]
    landmarks: list[list[float]] | None = None
    landmarks3d: list[list[float]] | None = None


@dataclass
class ClipMeta:
    clip: str
    frames: list[FrameRecord]
    identity: dict[str, Any] | None = None
    background: list[float] | None = None
    beta_source: str = "synthetic"

    def to_dict(self) -> dict[str, Any]:
        return {
            "clip": self.clip, "identity": self.identity, "background": self.background,
            "beta_source": self.beta_source, "frames": [vars(f) for f in self.frames],
        }

    @staticmethod
    def from_dict(data: dict[str, Any]) -> "ClipMeta":
        frames = [FrameRecord(**f) for f in data["frames"]]
        return ClipMeta(clip=data["clip"], frames=frames, identity=data.get("identity"),
                        background=data.get("background"), beta_source=data.get("beta_source", "synthetic"))


@dataclass
class CorpusInfo:
    resolution: int
    beta_dim: int
    beta_names: list[str]
    clips: list[str] = field(default_factory=list)
    source: str = "synthetic"

    def to_dict(self) -> dict[str, Any]:
        return {"format": CORPUS_FORMAT, "version": CORPUS_VERSION, "source": self.source,
                "resolution": self.resolution, "beta_dim": self.beta_dim,
                "beta_names": self.beta_names, "clips": self.clips}


def read_corpus_info(root: Path) -> CorpusInfo:
    path = Path(root) / CORPUS_FILE
    if not path.is_file():
        raise Export3DError(f"{root} is not a corpus: {CORPUS_FILE} is missing (make one with `export3d synth` or `export3d prepare`)")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise Export3DError(f"cannot read {path}: {exc}") from None
    if data.get("format") != CORPUS_FORMAT:
        raise Export3DError(f"{path} is not an export3d corpus file")
    if data.get("version") != CORPUS_VERSION:
        raise Export3DError(f"{path} has corpus version {data.get('version')}, expected {CORPUS_VERSION}")
    return CorpusInfo(resolution=int(data["resolution"]), beta_dim=int(data["beta_dim"]),
                      beta_names=list(data["beta_names"]), clips=list(data["clips"]),
                      source=data.get("source", "synthetic"))


def write_corpus_info(root: Path, info: CorpusInfo) -> None:
    write_json_atomic(Path(root) / CORPUS_FILE, info.to_dict())


def read_clip_meta(clip_dir: Path) -> ClipMeta:
    path = Path(clip_dir) / CLIP_META_FILE
    try:
        return ClipMeta.from_dict(json.loads(path.read_text(encoding="utf-8")))
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise Export3DError(f"cannot read clip metadata {path}: {exc}") from None


def write_clip_meta(clip_dir: Path, meta: ClipMeta) -> None:
    write_json_atomic(Path(clip_dir) / CLIP_META_FILE, meta.to_dict())
