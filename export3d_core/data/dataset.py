"""The training data set: (source, driving) pairs drawn from one clip of a corpus (supplementary §1.3).

Owns reading the corpus layout of `export3d_core.data.corpus` into memory (uint8, already
resized to the three sides the model needs: source `input_size`, driving `output_size`, raw
driving `neural_size`) and drawing pairs. Item `i` is the driving frame `i` (a global frame
index); its source is another frame of the same clip drawn by a generator seeded with
(seed, epoch, i), so an item depends on nothing but those three numbers and a resumed run sees
exactly the data an uninterrupted run would. A clip with a single frame pairs the frame with
itself (a corpus made only of such clips is rejected: it cannot teach expression transfer).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from export3d_core.data.corpus import read_clip_meta, read_corpus_info
from export3d_core.errors import Export3DError

CAMERA_DIM = 25  # docs/architecture.md, "EG3D conventions": 16 cam2world + 9 intrinsics
# Landmarks whose neighbourhood an expression moves, in the iBUG 68-point layout: brows (17-26),
# nose (27-35), eyes (36-47) and mouth (48-67); the jaw line (0-16) mostly moves with the pose.
FEATURE_LANDMARKS = slice(17, 68)
FEATURE_RADIUS = 0.04  # disc radius around each feature landmark, as a fraction of the image side


def feature_mask(landmarks: np.ndarray, size: int, radius: float = FEATURE_RADIUS) -> np.ndarray:
    """(size, size) float32 mask, 1 within `radius` (fraction of the side) of any feature landmark.

    `landmarks` (68, 2) are (x, y) in fractions of the image side.
    """
    points = np.asarray(landmarks, dtype=np.float32)[FEATURE_LANDMARKS] * size  # (K, 2) pixels
    centres = (np.arange(size, dtype=np.float32) + 0.5)  # pixel centres
    dx = centres[None, None, :] - points[:, 0, None, None]  # (K, 1, W)
    dy = centres[None, :, None] - points[:, 1, None, None]  # (K, H, 1)
    inside = (dx ** 2 + dy ** 2) <= (radius * size) ** 2  # (K, H, W)
    return inside.any(axis=0).astype(np.float32)


def resize_rgb(image: np.ndarray, size: int) -> np.ndarray:
    """Resize an (H, W, 3) uint8 image to (size, size, 3): area when shrinking (no aliasing),
    bilinear when enlarging."""
    if image.shape[0] == size and image.shape[1] == size:
        return image
    shrink = size < image.shape[0]
    return cv2.resize(image, (size, size), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)


def to_tensor(image: np.ndarray) -> torch.Tensor:
    """(H, W, 3) uint8 -> (3, H, W) float in [-1, 1]."""
    return torch.from_numpy(image).permute(2, 0, 1).float().div(127.5).sub(1.0)


def read_rgb(path: Path) -> np.ndarray:
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise Export3DError(f"cannot read frame {path}")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)  # (H, W, 3) uint8


@dataclass(frozen=True)
class FrameRef:
    clip: int  # index of the clip in the corpus
    path: Path  # the PNG


class CorpusDataset(Dataset):
    """Pairs (S, D) from the same clip. Each item is a dict:

    source (3, in, in), driving (3, out, out), driving_raw (3, n, n) in [-1, 1];
    beta (beta_dim,) and camera (25,) of the driving frame; clip (int64 scalar);
    index / source_index (int64 scalars, global frame indices). With `feature_weight` > 1 also
    weight (1, out, out): `feature_weight` near the driving frame's brows, eyes, nose and mouth
    (`feature_mask`), 1 elsewhere, for the loss to weigh what expressions move.
    """

    def __init__(self, root: str | Path, input_size: int, neural_size: int, output_size: int | None = None,
                 *, in_memory: bool = True, seed: int = 0, feature_weight: float = 1.0) -> None:
        self.root = Path(root)
        if not feature_weight >= 1.0:
            raise Export3DError(f"the feature weight must be >= 1, got {feature_weight}")
        self.feature_weight = float(feature_weight)
        self.sizes = (input_size, output_size or input_size, neural_size)  # source, driving, raw
        self.seed = seed
        self.epoch = 0
        self.info = read_corpus_info(self.root)
        if not self.info.clips:
            raise Export3DError(f"corpus {self.root} lists no clips")
        frames: list[FrameRef] = []
        betas: list[list[float]] = []
        cameras: list[list[float]] = []
        landmarks: list[list[list[float]]] = []
        self.clip_frames: list[np.ndarray] = []  # per clip: the global indices of its frames
        for clip_index, name in enumerate(self.info.clips):
            meta = read_clip_meta(self.root / name)
            start = len(frames)
            for record in meta.frames:
                if len(record.beta) != self.info.beta_dim:
                    raise Export3DError(f"{name}/{record.file}: beta has {len(record.beta)} values, "
                                        f"corpus.json says beta_dim {self.info.beta_dim}")
                if len(record.camera) != CAMERA_DIM:
                    raise Export3DError(f"{name}/{record.file}: camera has {len(record.camera)} values, expected {CAMERA_DIM}")
                if self.feature_weight > 1 and not record.landmarks:
                    raise Export3DError(f"{name}/{record.file} has no landmarks; the feature weight needs "
                                        "them in every frame (train without --feature-weight)")
                frames.append(FrameRef(clip_index, self.root / name / record.file))
                betas.append(record.beta)
                cameras.append(record.camera)
                if self.feature_weight > 1:
                    landmarks.append(record.landmarks)
            self.clip_frames.append(np.arange(start, len(frames)))
        if not frames:
            raise Export3DError(f"corpus {self.root} has no frames")
        if max(len(c) for c in self.clip_frames) < 2:
            raise Export3DError(f"corpus {self.root}: every clip has a single frame; pairs need two frames of one clip")
        self.frames = frames
        self.betas = torch.tensor(betas, dtype=torch.float32)  # (N, beta_dim)
        self.cameras = torch.tensor(cameras, dtype=torch.float32)  # (N, 25)
        self.frame_clip = np.array([f.clip for f in frames], dtype=np.int64)  # (N,)
        # (N, 68, 2) in fractions of the side (landmarks are stored in pixels of the corpus frames)
        self.landmarks = np.asarray(landmarks, dtype=np.float32) / self.info.resolution if landmarks else None
        self._cache: list[tuple[np.ndarray, ...]] | None = None
        if in_memory:
            # Decoded once: PNG decoding and resizing dominate a CPU step otherwise.
            self._cache = [self._decode(i) for i in range(len(frames))]

    # -- frames ------------------------------------------------------------------------------------
    @property
    def beta_dim(self) -> int:
        return self.info.beta_dim

    @property
    def num_clips(self) -> int:
        return len(self.clip_frames)

    def _decode(self, index: int) -> tuple[np.ndarray, ...]:
        image = read_rgb(self.frames[index].path)
        return tuple(resize_rgb(image, size) for size in self.sizes)

    def images(self, index: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """uint8 (source-size, driving-size, raw-size) versions of one frame."""
        return self._cache[index] if self._cache is not None else self._decode(index)  # type: ignore[return-value]

    def source_image(self, index: int) -> torch.Tensor:
        """Frame `index` at the source side, (3, in, in) in [-1, 1] (CLeBS trains f_I on these)."""
        return to_tensor(self.images(index)[0])

    # -- pairs -------------------------------------------------------------------------------------
    def set_epoch(self, epoch: int) -> None:
        """Choose the epoch whose source draws items use (the loop calls it with the sampler's)."""
        self.epoch = epoch

    def rng(self, index: int) -> np.random.Generator:
        """The generator of item `index` in this epoch: depends on (seed, epoch, index) only."""
        return np.random.default_rng([self.seed, self.epoch, index])

    def draw_source(self, index: int) -> int:
        siblings = self.clip_frames[self.frame_clip[index]]
        if len(siblings) == 1:
            return index
        others = siblings[siblings != index]
        return int(others[self.rng(index).integers(len(others))])

    def __len__(self) -> int:
        return len(self.frames)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        index = int(index)
        source_index = self.draw_source(index)
        driving, driving_raw = self.images(index)[1:]
        item = {
            "source": self.source_image(source_index),  # (3, in, in)
            "driving": to_tensor(driving),  # (3, out, out)
            "driving_raw": to_tensor(driving_raw),  # (3, n, n)
            "beta": self.betas[index],  # (beta_dim,)
            "camera": self.cameras[index],  # (25,)
            "clip": torch.tensor(self.frame_clip[index]),
            "index": torch.tensor(index),
            "source_index": torch.tensor(source_index),
        }
        if self.landmarks is not None:
            mask = feature_mask(self.landmarks[index], self.sizes[1])  # (out, out)
            item["weight"] = torch.from_numpy(1.0 + (self.feature_weight - 1.0) * mask)[None]  # (1, out, out)
        return item
