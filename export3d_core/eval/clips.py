"""The clips an evaluation runs on: generated held-out synthetic heads, or any corpus directory.

Owns `EvalClip` (frames, β, cameras and, for synthetic data, the identity that re-renders ground
truth for any camera), `generate_heldout`, `load_corpus` (the layout of
`export3d_core.data.corpus`) and the choice of the source frame: the most frontal frame of a clip
(smallest yaw² + pitch²), as the paper drives a frontal-ish source.

The generated held-out set *is* a synthetic corpus, written by `export3d synth`'s own
`generate_corpus` with corpus seed `HELDOUT_SEED` (10,000,000) into a temporary folder and read
back: the same identities, expressions (eased like speech) and camera range as training data,
but identities no training corpus (seed below 10,000,000) contains. See `synthetic_views`.
"""
from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from export3d_core.data.corpus import read_clip_meta, read_corpus_info
from export3d_core.data.dataset import read_rgb
from export3d_core.errors import Export3DError
from export3d_core.data import synthetic_views as views

CAMERA_DIM = 25  # docs/architecture.md, "EG3D conventions"


@dataclass
class EvalClip:
    """One identity's frames with their driving signals."""

    name: str
    frames: list[np.ndarray]  # uint8 (R, R, 3) each
    betas: np.ndarray  # (F, beta_dim) float32
    cameras: np.ndarray  # (F, 25) float32
    identity: Any | None = None  # the renderer's Identity; None when ground truth cannot be re-rendered
    background: tuple[float, float, float] | None = None  # sRGB in [0, 1]
    corpus_seed: int | None = None  # seed of the synthetic corpus the clip comes from, when known

    def source_index(self) -> int:
        """The most frontal frame: the source image of every pair drawn from this clip."""
        poses = np.stack([views.pose_of(camera) for camera in self.cameras])  # (F, 2)
        return int(np.argmin((poses ** 2).sum(axis=1)))

    def driving_indices(self, limit: int) -> list[int]:
        """Up to `limit` frames other than the source, in clip order."""
        source = self.source_index()
        return [i for i in range(len(self.frames)) if i != source][:limit]


def generate_heldout(identities: int, frames: int, resolution: int, *, seed: int = views.HELDOUT_SEED,
                     progress: bool = True) -> list[EvalClip]:
    """The first `identities` clips (`frames` frames each) of the synthetic corpus with seed `seed`."""
    from export3d_core.data.synth_command import generate_corpus

    if identities < 1 or frames < 2:
        raise Export3DError("evaluation needs at least 1 identity and 2 frames per identity")
    if views.is_training_seed(seed):
        raise Export3DError(f"held-out seed {seed} lies in the training range (below {views.TRAINING_SEED_LIMIT})")
    with tempfile.TemporaryDirectory(prefix="export3d-eval-") as folder:
        generate_corpus(folder, identities, frames, resolution, seed=seed, progress=progress)
        clips = load_corpus(folder)
    for clip in clips:
        clip.corpus_seed = seed
    return clips


def load_corpus(root: str | Path, limit: int | None = None) -> list[EvalClip]:
    """The first `limit` clips (all when None) of a corpus directory, frames decoded in memory."""
    root = Path(root)
    info = read_corpus_info(root)
    names = info.clips[:limit] if limit else info.clips
    if not names:
        raise Export3DError(f"corpus {root} lists no clips")
    clips = []
    for name in names:
        meta = read_clip_meta(root / name)
        if len(meta.frames) < 2:
            continue  # a single frame gives no driving frame
        for record in meta.frames:
            if len(record.beta) != info.beta_dim or len(record.camera) != CAMERA_DIM:
                raise Export3DError(f"{root / name}/{record.file}: expected beta_dim {info.beta_dim} "
                                    f"and a {CAMERA_DIM}-number camera")
        identity = None
        if meta.identity:
            try:
                identity = views.identity_from_dict(meta.identity)
            except (TypeError, ValueError):
                identity = None  # an identity this build cannot render: novel views are skipped
        clips.append(EvalClip(
            name, [read_rgb(root / name / record.file) for record in meta.frames],
            np.asarray([record.beta for record in meta.frames], dtype=np.float32),
            np.asarray([record.camera for record in meta.frames], dtype=np.float32),
            identity, tuple(meta.background) if meta.background else None,
        ))
    if not clips:
        raise Export3DError(f"corpus {root}: no clip has two or more frames")
    return clips


__all__ = ["EvalClip", "generate_heldout", "load_corpus"]
