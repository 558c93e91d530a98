"""Landmarks and β of a corpus's frames, for training and measuring the expression reader; and
dlib's landmarks of an aligned portrait in its known face box, which the reader reads β from
(`aligned_landmark_beta`: the editor's estimate and `prepare` use it).

Two kinds of landmarks per frame: the corpus's own geometric landmarks (meta.json, exact) and
dlib's 68-point predictor run on the rendered frame, in the box where dlib's HOG detector sits
for a face with those landmarks (`hog_like_box`). The HOG detector itself misses soft renders
and costs ~30x the predictor, so the box is derived, not detected. dlib's landmarks are what the
reader will see on a real photo, so a reader trained on them sees the same kind of errors.

The box rule: in a face aligned to the FFHQ framing, dlib's HOG box is `landmarks_dlib`'s
ALIGNED_FACE_BOX (measured on aligned crops), and the FFHQ square of a frontal synthetic head is
`canonical_quad`. Relative to the FFHQ square of the landmarks (centre c, half-side s, axes u
right and v down) the box therefore has its centre at c + 0.2205 s v and side 1.0726 s, so a
frontal render gets exactly the box the estimator uses on an aligned portrait. Each frame is
read in two views by default: at its own resolution with the exact box, and shrunk to the
editor's 128-pixel portraits with a randomly moved and scaled box (dlib's boxes wander by about
that much), so the reader learns dlib's errors at both sizes.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import cv2
import numpy as np

from export3d_core.data.corpus import read_clip_meta, read_corpus_info
from export3d_core.data.face_template import ffhq_quad
from export3d_core.errors import Export3DError

BOX_CENTRE_DOWN = 0.2205  # box centre below the FFHQ centre, in half-sides of the FFHQ square
BOX_SIDE = 1.0726  # box side in half-sides of the FFHQ square
BOX_JITTER_SHIFT = 0.06  # max shift of a jittered box's centre, in half-sides (each axis)
BOX_JITTER_SCALE = 0.1  # max relative change of a jittered box's side
LANDMARK_SOURCES = ("dlib", "geometric")


@dataclass(frozen=True)
class DlibView:
    """How one dlib reading of a frame is made."""

    side: int = 0  # shrink the frame to this side first (0: as rendered)
    jitter: bool = False  # move and scale the box at random


DEFAULT_VIEWS = (DlibView(0, False), DlibView(128, True))


def box_from_quad(centre: np.ndarray, x_axis: np.ndarray, y_axis: np.ndarray,
                  shift: tuple[float, float] = (0.0, 0.0), scale: float = 1.0) -> np.ndarray:
    """(4,) x0, y0, x1, y1 of the HOG-like box of an FFHQ square (centre, half-axes); optional jitter."""
    half = float(np.hypot(*x_axis))
    u, v = np.asarray(x_axis) / half, np.asarray(y_axis) / half
    middle = np.asarray(centre) + half * ((BOX_CENTRE_DOWN + shift[1]) * v + shift[0] * u)
    side = BOX_SIDE * half * scale
    return np.array([middle[0] - side / 2, middle[1] - side / 2, middle[0] + side / 2, middle[1] + side / 2])


def hog_like_box(landmarks: np.ndarray, rng: np.random.Generator | None = None) -> np.ndarray:
    """Where dlib's HOG detector puts the box of a face with these (68, 2) landmarks (jittered with `rng`)."""
    if rng is None:
        return box_from_quad(*ffhq_quad(np.asarray(landmarks, dtype=np.float64)))
    shift = tuple(rng.uniform(-BOX_JITTER_SHIFT, BOX_JITTER_SHIFT, 2))
    scale = float(np.exp(rng.uniform(np.log1p(-BOX_JITTER_SCALE), np.log1p(BOX_JITTER_SCALE))))
    return box_from_quad(*ffhq_quad(np.asarray(landmarks, dtype=np.float64)), shift=shift, scale=scale)


def read_view(landmarker, image: np.ndarray, points: np.ndarray, view: DlibView,
              rng: np.random.Generator) -> np.ndarray:
    """dlib's (68, 2) landmarks of one view of a frame, in the frame's own pixels."""
    factor = 1.0
    if view.side and view.side < image.shape[0]:
        factor = view.side / image.shape[0]
        image = cv2.resize(image, (view.side, view.side), interpolation=cv2.INTER_AREA)
    box = hog_like_box(points * factor, rng if view.jitter else None)
    return landmarker.landmarks_in_box(image, box) / factor


@dataclass
class FrameLandmarks:
    """Per-frame arrays of a corpus, in one order (clip by clip)."""

    clip: np.ndarray  # (N,) int: index of the frame's clip in the corpus
    beta: np.ndarray  # (N, B) float32
    geometric: np.ndarray  # (N, 68, 2) float32: the corpus's landmarks
    dlib: np.ndarray | None  # (N, V, 68, 2) float32: dlib's landmarks in each view, or None if not read
    views: tuple[DlibView, ...] = DEFAULT_VIEWS

    def landmarks(self, source: str, view: int = 0) -> np.ndarray:
        """(N, 68, 2) landmarks of one source ("geometric" | "dlib", then in view `view`)."""
        if source == "geometric":
            return self.geometric
        if self.dlib is None:
            raise Export3DError("dlib landmarks were not read for this corpus")
        return self.dlib[:, view]


def read_corpus_landmarks(root: str | Path, *, with_dlib: bool = True, clips: list[int] | None = None,
                          views: tuple[DlibView, ...] = DEFAULT_VIEWS, frame_step: int = 1, seed: int = 0,
                          progress: Callable[[int, int], None] | None = None) -> FrameLandmarks:
    """Landmarks and β of every `frame_step`-th frame that has landmarks (synthetic corpora have them all).

    Neighbouring frames of a clip are alike (β eases between keyframes), so a step of 2 loses little.
    """
    from export3d_core.data.image_io import load_image

    root = Path(root)
    info = read_corpus_info(root)
    landmarker = None
    if with_dlib:
        from export3d_core.data.landmarks_dlib import get_dlib_landmarker

        landmarker = get_dlib_landmarker()
    if with_dlib and landmarker is None:
        raise Export3DError("dlib's 68-point model is not installed (pip install dlib-bin face-recognition-models)")
    chosen = range(len(info.clips)) if clips is None else clips
    rng = np.random.default_rng(seed)
    rows: dict[str, list] = {"clip": [], "beta": [], "geometric": [], "dlib": []}
    for done, index in enumerate(chosen):
        clip_dir = root / info.clips[index]
        meta = read_clip_meta(clip_dir)
        for frame in meta.frames[::frame_step]:
            if frame.landmarks is None:
                continue
            points = np.asarray(frame.landmarks, dtype=np.float64)
            rows["clip"].append(index)
            rows["beta"].append(frame.beta)
            rows["geometric"].append(points)
            if landmarker is not None:
                image = load_image(clip_dir / frame.file)
                rows["dlib"].append([read_view(landmarker, image, points, view, rng) for view in views])
        if progress is not None:
            progress(done + 1, len(chosen))
    if not rows["clip"]:
        raise Export3DError(f"{root} has no frames with landmarks to train an expression reader on")
    return FrameLandmarks(clip=np.asarray(rows["clip"]), beta=np.asarray(rows["beta"], dtype=np.float32),
                          geometric=np.asarray(rows["geometric"], dtype=np.float32),
                          dlib=np.asarray(rows["dlib"], dtype=np.float32) if landmarker is not None else None,
                          views=tuple(views))


def aligned_landmarks(landmarker, image: np.ndarray) -> np.ndarray:
    """dlib's (68, 2) landmarks of an aligned (FFHQ-framed) portrait, in the framing's known face box.

    No detector: the HOG detector misses soft renders, and the box of an aligned face is known.
    """
    from export3d_core.data.landmarks_dlib import aligned_face_box

    return landmarker.landmarks_in_box(np.ascontiguousarray(image), aligned_face_box(image.shape[0]))


def aligned_landmark_beta(reader, landmarker, image: np.ndarray) -> np.ndarray:
    """β (beta_dim,) float32 that the expression reader reads from an aligned portrait."""
    return reader.read_beta(aligned_landmarks(landmarker, image)).astype(np.float32)
