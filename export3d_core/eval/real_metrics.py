"""Real-face metrics of `export3d eval`: AKD, CSIM and (where possible) AED / APD on real video corpora.

Owns when data count as "real", the external models these metrics need and what is reported when
a model is missing (a null value, a short reason for the table and a one-sentence note):

- AKD (average keypoint distance, as FOMM's pose-evaluation): 68 face-alignment landmarks of the
  generated image and of the driving frame, both at the model's output size; the mean absolute
  difference over all 136 coordinates, in pixels, averaged over the pairs where both faces are found.
  Needs face-alignment's weights in the torch hub cache (`landmarks_fa`); never downloads.
- CSIM: cosine similarity of ArcFace embeddings of the source and the generated image, from an
  insightface-style ONNX model given by path (112x112 RGB, (x - 127.5) / 127.5, NCHW);
  onnxruntime is an optional extra (`pip install export3d-studio[arcface]`), imported lazily.
- AED / APD need a 3DMM extractor (Deep3DFaceRecon) run on the generated frames, which is not
  bundled: null, with a note (and, for corpora with Deep3DFaceRecon β, that only the driving side has them).

The harness hands over its (source, driving, output) pairs; nothing here renders.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, Sequence

import numpy as np

from export3d_core.data.corpus import read_clip_meta, read_corpus_info
from export3d_core.data.dataset import resize_rgb
from export3d_core.errors import Export3DError
from export3d_core.metrics import cosine_similarity, l1_distance

ARCFACE_SIZE = 112  # insightface ArcFace input side
ARCFACE_MEAN = 127.5  # (x - mean) / std, insightface's normalisation
ARCFACE_STD = 127.5
VIDEO_SOURCE = "video"  # corpus.json "source" of `export3d prepare` corpora
DEEP3D_SOURCE = "deep3d"  # meta.json "beta_source" of clips with Deep3DFaceRecon coefficients

CSIM_NEEDS_MODEL = "CSIM needs --arcface MODEL.onnx (an insightface-style ArcFace model)"
CSIM_NEEDS_RUNTIME = "CSIM needs onnxruntime to run --arcface: pip install onnxruntime"
AED_NOT_BUNDLED = ("AED/APD on real faces need a 3DMM extractor (Deep3DFaceRecon) run on the generated frames, "
                   "which is not bundled")
AED_DRIVING_ONLY = "; the driving frames carry Deep3DFaceRecon coefficients, but only the driving side is available"


class Landmarker(Protocol):
    """What AKD needs of a landmark detector (`landmarks_fa.FaceAlignmentLandmarker` is one)."""

    def detect(self, image: np.ndarray) -> list[Any]: ...  # faces with .landmarks (68, 2) and .score


class OnnxSession(Protocol):
    """The part of `onnxruntime.InferenceSession` the embedder uses."""

    def get_inputs(self) -> list[Any]: ...

    def run(self, output_names: Any, feeds: dict[str, np.ndarray]) -> list[np.ndarray]: ...


# -- is the data real? --------------------------------------------------------------------------------
def is_real_data(data: str | os.PathLike | None, clips: Sequence[Any]) -> bool:
    """True for `export3d prepare` corpora (source "video") or clips without synthetic identities."""
    if data is not None and read_corpus_info(Path(data)).source == VIDEO_SOURCE:
        return True
    return bool(clips) and all(getattr(clip, "identity", None) is None for clip in clips)


def beta_sources(data: str | os.PathLike | None, clip_names: Sequence[str]) -> set[str]:
    """The meta.json `beta_source` of the named clips of a corpus (empty without a corpus)."""
    if data is None:
        return set()
    return {read_clip_meta(Path(data) / name).beta_source for name in clip_names}


# -- the external models ------------------------------------------------------------------------------
def build_landmarker() -> tuple[Landmarker | None, str | None]:
    """face-alignment's landmarker when its weights are on disk, else (None, a note naming where they belong)."""
    from export3d_core.data import landmarks_fa

    missing = landmarks_fa.missing_weights()
    if missing:  # checked here first: get_landmarker would only warn, and the note must name the files
        return None, (f"AKD needs the face-alignment weights ({', '.join(p.name for p in missing)} "
                      f"expected in {missing[0].parent})")
    landmarker = landmarks_fa.get_landmarker(allow_download=False)
    if landmarker is None:
        return None, "AKD needs face-alignment, which could not be loaded (see the warning above)"
    return landmarker, None


def onnx_session(path: Path) -> OnnxSession | None:
    """An onnxruntime CPU session of `path`, or None when onnxruntime is not installed."""
    try:
        import onnxruntime
    except ImportError:
        return None
    try:
        return onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    except Exception as exc:  # noqa: BLE001 - any load failure is a bad model file to the user
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise Export3DError(f"cannot load the ArcFace model {path}: {first}") from None


def check_arcface_path(path: str | os.PathLike) -> Path:
    """The --arcface path as a Path, or a one-line error when it is not a readable file."""
    path = Path(path)
    if not path.is_file():
        raise Export3DError(f"--arcface {path}: no such file (expected an ArcFace .onnx model)")
    if not os.access(path, os.R_OK):
        raise Export3DError(f"--arcface {path}: the file is not readable")
    return path


class ArcFaceEmbedder:
    """Identity embeddings of uint8 RGB images with an insightface-style ArcFace ONNX session."""

    def __init__(self, session: OnnxSession) -> None:
        self.session = session
        self.input_name = session.get_inputs()[0].name

    @staticmethod
    def preprocess(image: np.ndarray) -> np.ndarray:
        """(H, W, 3) uint8 RGB -> (1, 3, 112, 112) float32, (x - 127.5) / 127.5."""
        resized = resize_rgb(image, ARCFACE_SIZE).astype(np.float32)  # (112, 112, 3)
        return ((resized - ARCFACE_MEAN) / ARCFACE_STD).transpose(2, 0, 1)[None]  # (1, 3, 112, 112)

    def embed(self, images: Sequence[np.ndarray]) -> np.ndarray:
        """(N, D) float64 embeddings; one image per call, since many ArcFace exports fix batch 1."""
        rows = []
        for image in images:
            output = self.session.run(None, {self.input_name: self.preprocess(image)})[0]
            rows.append(np.asarray(output, dtype=np.float64).reshape(-1))  # (D,)
        return np.stack(rows)  # (N, D)


def build_embedder(arcface: str | os.PathLike | None) -> tuple[ArcFaceEmbedder | None, str | None]:
    """The ArcFace embedder of --arcface, or (None, a note) when no model or no onnxruntime."""
    if arcface is None:
        return None, CSIM_NEEDS_MODEL
    session = onnx_session(check_arcface_path(arcface))
    if session is None:
        return None, CSIM_NEEDS_RUNTIME
    try:
        return ArcFaceEmbedder(session), None
    except (IndexError, AttributeError) as exc:
        raise Export3DError(f"the ArcFace model {arcface} has no usable input ({type(exc).__name__})") from None


# -- the metrics --------------------------------------------------------------------------------------
def _short(note: str | None) -> str | None:
    """The table's reason: a note's head, before any parenthesis."""
    if note is None:
        return None
    return note.split(" (")[0].strip()


def _face_landmarks(landmarker: Landmarker, image: np.ndarray) -> np.ndarray | None:
    faces = landmarker.detect(image)
    if not faces:
        return None
    best = max(faces, key=lambda face: float(getattr(face, "score", 1.0)))  # the detector's most certain face
    return np.asarray(best.landmarks, dtype=np.float64).reshape(-1)  # (136,)


@dataclass
class RealFaceMetrics:
    """AKD / CSIM / AED / APD on the harness's pairs, with a note for each metric it cannot compute."""

    landmarker: Landmarker | None = None
    embedder: ArcFaceEmbedder | None = None
    notes: dict[str, str] = field(default_factory=dict)  # metric -> why it is null

    def _akd(self, images: list[np.ndarray], drivings: list[np.ndarray],
             driving_points: list[np.ndarray | None]) -> tuple[float | None, str | None]:
        distances, missed = [], 0
        for image, target in zip(images, driving_points):
            points = _face_landmarks(self.landmarker, image)
            if points is None or target is None:
                missed += 1
                continue
            distances.append(float(l1_distance(points, target)))
        if not distances:
            return None, f"AKD: no face found in any of the {len(drivings)} pairs"
        note = f"AKD over {len(distances)} of {len(drivings)} pairs (no face found in {missed})" if missed else None
        return float(np.mean(distances)), note

    def _csim(self, sources: list[np.ndarray], images: list[np.ndarray]) -> float:
        return float(cosine_similarity(self.embedder.embed(sources), self.embedder.embed(images)).mean())

    def _section(self, rows: dict[str, list[np.ndarray]], sources: list[np.ndarray], drivings: list[np.ndarray],
                 with_akd: bool) -> dict[str, Any]:
        metrics = (["akd"] if with_akd else []) + ["csim", "aed", "apd"]
        notes = [self.notes[m] for m in dict.fromkeys(metrics) if m in self.notes]
        notes = list(dict.fromkeys(notes))  # AED and APD share one note
        section: dict[str, Any] = {name: {m: None for m in metrics} for name in rows}
        driving_points = None
        if with_akd and self.landmarker is not None:
            driving_points = [_face_landmarks(self.landmarker, image) for image in drivings]
        for name, images in rows.items():
            if driving_points is not None:
                section[name]["akd"], extra = self._akd(images, drivings, driving_points)
                if extra:
                    notes.append(f"{name}: {extra}")
            if self.embedder is not None:
                section[name]["csim"] = self._csim(sources, images)
        section["missing"] = {m: _short(self.notes[m]) for m in metrics if m in self.notes}
        section["notes"] = notes
        return section

    def same_identity(self, sources: list[np.ndarray], drivings: list[np.ndarray],
                      outputs: list[np.ndarray]) -> dict[str, Any]:
        """AKD (output vs driving), CSIM (source vs output), AED/APD; and the copy-the-source baseline."""
        return self._section({"model": outputs, "copy_source": sources}, sources, drivings, with_akd=True)

    def cross_identity(self, sources: list[np.ndarray], drivings: list[np.ndarray],
                       outputs: list[np.ndarray]) -> dict[str, Any]:
        """CSIM (source vs output), AED/APD; and both baselines (AKD is a same-identity metric)."""
        rows = {"model": outputs, "copy_source": sources, "copy_driving": drivings}
        return self._section(rows, sources, drivings, with_akd=False)

    def skipped(self, rows: Sequence[str], note: str) -> dict[str, Any]:
        """The cross-identity block when the protocol itself is skipped."""
        empty = {name: {"csim": None, "aed": None, "apd": None} for name in rows}
        return {**empty, "missing": {m: "skipped" for m in ("csim", "aed", "apd")}, "notes": [note]}


def build_real_metrics(arcface: str | os.PathLike | None = None,
                       sources_of_beta: set[str] | frozenset[str] = frozenset()) -> RealFaceMetrics:
    """The real-face metrics with whatever models are available; notes say what is missing and where."""
    landmarker, akd_note = build_landmarker()
    embedder, csim_note = build_embedder(arcface)
    aed_note = AED_NOT_BUNDLED + (AED_DRIVING_ONLY if DEEP3D_SOURCE in sources_of_beta else "")
    notes = {"aed": aed_note, "apd": aed_note}
    if akd_note:
        notes["akd"] = akd_note
    if csim_note:
        notes["csim"] = csim_note
    return RealFaceMetrics(landmarker, embedder, notes)


__all__ = ["ArcFaceEmbedder", "RealFaceMetrics", "build_embedder", "build_landmarker", "build_real_metrics",
           "beta_sources", "check_arcface_path", "is_real_data", "onnx_session"]
