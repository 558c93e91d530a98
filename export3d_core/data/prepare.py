"""`export3d prepare`: real talking-head videos -> a training corpus (layout of `corpus.py`).

Per video (or frame folder): pass 1 decodes the frames, runs the face detector every k-th frame
(face-alignment when its weights are present, else dlib, else OpenCV, see `intake`), follows the
same face (nearest to the last one) and, with face-alignment or dlib, tracks 68 landmarks on every
frame inside the last box. The FFHQ crop square of every frame is interpolated between detections and smoothed
over time (a Gaussian on its centre and axes), so the crop does not jitter. Pass 2 decodes again
(bounded memory), crops, estimates the camera (PnP on the landmarks; else Deep3DFaceRecon's angles;
else frontal) and the expression β, and writes the clip into a hidden folder that is renamed into
place when complete.

β (`meta.beta_source`): "deep3d" = coeff[80:144] of the Deep3DFaceRecon file beside the video
(format in `video_source`); "landmarks" = the twelve synthetic expression parameters that the
expression reader (`data.expression_reader`, shipped beside the demo model) reads from dlib's
landmarks of the aligned frame, as the editor reads a portrait, so a prepared corpus speaks the
demo model's β; "none" = zeros of that size, when neither is available (no dlib or no reader),
so the clip still carries frames and cameras. One corpus has one β source and one β size.

Resumable: finished clips (their meta.json names the source) are skipped; parallel over videos
with a process pool; a summary lists skipped frames and videos and why.
"""
from __future__ import annotations

import argparse
import math
import multiprocessing
import shutil
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from scipy.ndimage import gaussian_filter1d

from export3d_core.camera import OrbitCamera
from export3d_core.data import corpus, landmarks_dlib, landmarks_fa
from export3d_core.data.face_pose import estimate_pose, frontal_camera
from export3d_core.data.head_landmarks import BETA_DIM, BETA_NAMES
from export3d_core.data.image_io import save_image_atomic
from export3d_core.data.face_template import canonical_quad
from export3d_core.data.intake import (METHOD_DLIB, METHOD_FA, FaceDetection, detect_faces, face_quad,
                                       landmark_method, pose_template, quad_transform, warp_crop)
from export3d_core.data.video_source import (DEEP3D_EXP, Source, coefficient_file, deep3d_view_angles,
                                             find_sources, iter_frames, read_coefficients)
from export3d_core.errors import Export3DError

BETA_SOURCES = ("auto", "deep3d", "landmarks")
DEEP3D_NAMES = [f"exp{i:02d}" for i in range(DEEP3D_EXP.stop - DEEP3D_EXP.start)]
PARTIAL_PREFIX = ".partial_"


@dataclass(frozen=True)
class PrepareOptions:
    resolution: int = 256  # side of the written frames (the demo model trains at 128)
    detect_every: int = 5  # run the face detector on every k-th frame; track / interpolate between
    smooth_sigma: float = 2.0  # std (frames) of the temporal Gaussian on the crop square
    max_gap: int = 10  # frames farther than this from any detection are dropped, not interpolated
    stride: int = 1  # keep every n-th frame of the source
    max_frames: int | None = None  # at most this many frames per source (after the stride)
    beta: str = "auto"  # "auto" | "deep3d" | "landmarks"
    workers: int = 1  # processes, one video each
    allow_download: bool = False  # let face-alignment download its weights
    expression_reader: str = ""  # β "landmarks": the reader file ("" = the one shipped beside the demo model)

    def __post_init__(self) -> None:
        if self.resolution < 16 or self.detect_every < 1 or self.stride < 1 or self.workers < 1:
            raise Export3DError("prepare: --res must be >= 16; --detect-every, --stride and --workers >= 1")
        if self.beta not in BETA_SOURCES:
            raise Export3DError(f"prepare: --beta must be one of {', '.join(BETA_SOURCES)}")


@dataclass
class VideoReport:
    source: str
    clip: str
    status: str  # "done" | "exists" | "skipped"
    frames: int = 0
    skipped_frames: dict[str, int] = field(default_factory=dict)
    message: str = ""


# -- pass 1: follow the face ----------------------------------------------------------------------
def _pick(faces: list[FaceDetection], previous: np.ndarray | None) -> FaceDetection | None:
    if not faces:
        return None
    if previous is None:
        return faces[0]  # the largest
    centres = [(f.box[:2] + f.box[2:]) / 2 for f in faces]
    return faces[int(np.argmin([np.linalg.norm(c - previous) for c in centres]))]


def track_faces(source: Source, options: PrepareOptions) -> tuple[list[int], np.ndarray, list[np.ndarray | None]]:
    """Source frame indices, quads (T, 4) = centre + x half-axis (NaN where unknown), landmarks per frame."""
    landmarker, method = landmarks_fa.get_landmarker(options.allow_download), METHOD_FA
    if landmarker is None:  # the same order as detect_faces: face-alignment, else dlib
        landmarker, method = landmarks_dlib.get_dlib_landmarker(), METHOD_DLIB
    indices: list[int] = []
    quads: list[np.ndarray] = []
    landmarks: list[np.ndarray | None] = []
    box, previous = None, None
    for step, (index, frame) in enumerate(iter_frames(source, options.stride, options.max_frames)):
        indices.append(index)
        face = None
        if step % options.detect_every == 0 or (landmarker is not None and box is None):
            face = _pick(detect_faces(frame, allow_download=options.allow_download), previous)
        elif landmarker is not None and box is not None:
            points = landmarker.landmarks_in_box(frame, box)
            if points is not None:
                face = FaceDetection(box=np.r_[points.min(0), points.max(0)], score=1.0, landmarks=points,
                                     eyes=None, method=method)
        if face is None:
            quads.append(np.full(4, np.nan))
            landmarks.append(None)
            if step % options.detect_every == 0:
                box = None  # the detector lost the face: do not track a stale box
            continue
        centre, x_axis, _ = face_quad(face)
        quads.append(np.r_[centre, x_axis])
        landmarks.append(face.landmarks)
        box, previous = face.box, (face.box[:2] + face.box[2:]) / 2
    return indices, np.asarray(quads).reshape(-1, 4), landmarks


def fill_and_smooth(quads: np.ndarray, max_gap: int, sigma: float) -> tuple[np.ndarray, np.ndarray]:
    """Interpolate unknown quads near a detection, smooth over time; returns (quads (T, 4), kept mask (T,))."""
    count = len(quads)
    known = np.flatnonzero(np.isfinite(quads).all(axis=1))
    if known.size == 0:
        return quads, np.zeros(count, dtype=bool)
    steps = np.arange(count)
    distance = np.abs(steps[:, None] - known[None, :]).min(axis=1)  # frames to the nearest detection
    kept = distance <= max_gap
    filled = np.stack([np.interp(steps, known, quads[known, j]) for j in range(quads.shape[1])], axis=1)
    if sigma > 0 and kept.sum() > 1:
        filled[kept] = smooth_track(filled[kept], sigma)
    return filled, kept


def smooth_track(values: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian smoothing over time (axis 0) that keeps linear motion intact at the clip's ends.

    Padding by point reflection (2 x0 - x_k) continues a drift past the ends, where plain
    "nearest" padding would drag the first and last crops toward the middle of the clip.
    """
    pad = min(len(values) - 1, int(math.ceil(3 * sigma)))
    head = 2 * values[:1] - values[pad:0:-1]  # (pad, D)
    tail = 2 * values[-1:] - values[-2:-pad - 2:-1]  # (pad, D)
    padded = np.concatenate([head, values, tail])
    return gaussian_filter1d(padded, sigma, axis=0, mode="nearest")[pad:pad + len(values)]


# -- pass 2: crop and write -----------------------------------------------------------------------
def _quad_axes(quad: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    x_axis = quad[2:4]
    return quad[:2], x_axis, np.array([-x_axis[1], x_axis[0]])  # y half-axis: x turned toward the chin


def prepare_source(source: Source, out_dir: Path, clip: str, beta_source: str,
                   options: PrepareOptions) -> VideoReport:
    """Turn one video / frame folder into `out_dir/clip`; never raises for a bad video."""
    report = VideoReport(source=str(source.path), clip=clip, status="skipped")
    partial = out_dir / f"{PARTIAL_PREFIX}{clip}"
    try:
        coeffs = None
        if beta_source == "deep3d" or (beta_source != "landmarks" and coefficient_file(source)):
            path = coefficient_file(source)
            if path is None:
                report.message = "no Deep3DFaceRecon coefficient file (see `export3d prepare --help`)"
                return report
            coeffs = read_coefficients(path)
        indices, quads, landmarks = track_faces(source, options)
        if not indices:
            report.message = "no frames decoded"
            return report
        if coeffs is not None and len(coeffs) <= max(indices):
            report.message = f"coefficient file has {len(coeffs)} rows but the video has more frames"
            return report
        quads, kept = fill_and_smooth(quads, options.max_gap, options.smooth_sigma)
        skipped = Counter({"no face": int((~kept).sum())})
        template = pose_template(landmark_method(allow_download=options.allow_download))  # as track_faces saw
        if not kept.any():
            report.message = "no face found"
            report.skipped_frames = dict(skipped)
            return report
        shutil.rmtree(partial, ignore_errors=True)
        reader = load_expression_reader(options) if beta_source == "landmarks" else None
        records: list[corpus.FrameRecord] = []
        size = options.resolution
        for step, (index, frame) in enumerate(iter_frames(source, options.stride, options.max_frames)):
            if step >= len(kept) or not kept[step]:
                continue
            frame_in = _FrameIn(frame, quads[step], landmarks[step], None if coeffs is None else coeffs[index])
            records.append(_write_frame(frame_in, partial, len(records), size, template, beta_source, reader))
        report.skipped_frames = {k: v for k, v in skipped.items() if v}
        if not records:
            report.message = "no usable frame"
            shutil.rmtree(partial, ignore_errors=True)
            return report
        identity = {"source": str(source.path), "kind": source.kind, "resolution": size}
        corpus.write_clip_meta(partial, corpus.ClipMeta(clip=clip, frames=records, identity=identity,
                                                        background=None, beta_source=beta_source))
        final = out_dir / clip
        shutil.rmtree(final, ignore_errors=True)
        partial.rename(final)  # the clip appears complete or not at all
        report.status, report.frames = "done", len(records)
        return report
    except Export3DError as exc:
        report.message = str(exc)
    except Exception as exc:  # noqa: BLE001 - one broken video must not stop the others
        report.message = f"unexpected {type(exc).__name__}: {exc}"
    shutil.rmtree(partial, ignore_errors=True)
    return report


@dataclass
class _FrameIn:
    """One decoded frame with what tracking found in it."""
    frame: np.ndarray  # (H, W, 3) uint8
    quad: np.ndarray  # the smoothed crop square
    points: np.ndarray | None  # 68 landmarks in frame pixels, when found
    coeffs: np.ndarray | None  # its Deep3DFaceRecon coefficients, when given


def _write_frame(item: _FrameIn, partial: Path, number: int, size: int, template, beta_source: str,
                 reader) -> corpus.FrameRecord:
    """Crop one frame into the clip folder; its camera (PnP, else Deep3D's angles, else frontal) and β."""
    transform = quad_transform(*_quad_axes(item.quad), size, target=canonical_quad(size))
    crop_points = None if item.points is None else item.points @ transform[:, :2].T + transform[:, 2]
    pose = None if crop_points is None else estimate_pose(crop_points, size, template)
    if pose is not None:
        camera = OrbitCamera(yaw=pose.yaw, pitch=pose.pitch).params().numpy()
    elif item.coeffs is not None:
        yaw, pitch = deep3d_view_angles(item.coeffs)
        camera = OrbitCamera(yaw=yaw, pitch=pitch).params().numpy()
    else:
        camera = frontal_camera()
    if beta_source == "deep3d":
        beta = item.coeffs[DEEP3D_EXP]
    elif beta_source == "landmarks":
        beta = read_frame_beta(reader, item.frame, item.quad)
    else:
        beta = np.zeros(BETA_DIM, dtype=np.float32)
    name = corpus.frame_file(number)
    save_image_atomic(partial / name, warp_crop(item.frame, transform, size))
    return corpus.FrameRecord(file=name, beta=[float(v) for v in beta], camera=[float(v) for v in camera],
                              landmarks=None if crop_points is None else crop_points.tolist(), landmarks3d=None)


READER_SIDE = 256  # side of the aligned crop the expression reader's landmarks are read on (any --res)


def reader_path(options: PrepareOptions) -> Path:
    from export3d_core.data.expression_reader import DEFAULT_READER

    return Path(options.expression_reader) if options.expression_reader else DEFAULT_READER


def load_expression_reader(options: PrepareOptions):
    from export3d_core.data.expression_reader import load_reader

    return load_reader(reader_path(options))


def read_frame_beta(reader, frame: np.ndarray, quad: np.ndarray) -> np.ndarray:
    """β of one frame: the expression reader on dlib's landmarks of the frame aligned at READER_SIDE."""
    from export3d_core.data.expression_reader_data import aligned_landmark_beta

    transform = quad_transform(*_quad_axes(quad), READER_SIDE, target=canonical_quad(READER_SIDE))
    crop = warp_crop(frame, transform, READER_SIDE)
    return aligned_landmark_beta(reader, landmarks_dlib.get_dlib_landmarker(), crop)


def _worker(job: tuple[Source, Path, str, str, PrepareOptions]) -> VideoReport:
    import cv2
    import torch

    cv2.setNumThreads(1)  # one video per process: do not oversubscribe the cores
    torch.set_num_threads(1)
    return prepare_source(*job)


# -- the whole run ---------------------------------------------------------------------------------
def choose_beta_source(sources: list[Source], options: PrepareOptions) -> str:
    """One β source for the corpus: Deep3DFaceRecon if every source has it, else landmarks, else none."""
    has_landmarks = landmarks_dlib.dlib_available() and reader_path(options).is_file()
    if options.beta == "deep3d":
        return "deep3d"
    if options.beta == "landmarks":
        if not has_landmarks:
            raise Export3DError(f"--beta landmarks needs dlib (pip install dlib-bin face-recognition-models) and "
                                f"the expression reader {reader_path(options)}; or put Deep3DFaceRecon "
                                "coefficient files beside the videos")
        return "landmarks"
    if all(coefficient_file(source) for source in sources):
        return "deep3d"
    return "landmarks" if has_landmarks else "none"


def beta_layout(beta_source: str) -> tuple[int, list[str]]:
    if beta_source == "deep3d":
        return len(DEEP3D_NAMES), list(DEEP3D_NAMES)
    return BETA_DIM, list(BETA_NAMES)  # "landmarks" (the expression reader's β) and "none" (zeros)


def _existing_clips(out_dir: Path) -> dict[str, str]:
    """source path -> clip name of the finished clips already in `out_dir`."""
    done = {}
    for meta_path in sorted(out_dir.glob(f"clip_*/{corpus.CLIP_META_FILE}")):
        try:
            meta = corpus.read_clip_meta(meta_path.parent)
        except Export3DError:
            continue  # unreadable: it will be redone under a new name
        if meta.identity and "source" in meta.identity:
            done[str(meta.identity["source"])] = meta.clip
    return done


def _check_existing_corpus(out_dir: Path, resolution: int, beta_dim: int, beta_source: str) -> list[str]:
    if not (out_dir / corpus.CORPUS_FILE).is_file():
        return []
    info = corpus.read_corpus_info(out_dir)
    if info.resolution != resolution or info.beta_dim != beta_dim:
        raise Export3DError(
            f"{out_dir} already holds a corpus at {info.resolution}px with beta_dim {info.beta_dim}; this run "
            f"would write {resolution}px with beta_dim {beta_dim} ({beta_source}): choose another -o folder")
    return info.clips


def prepare_corpus(inputs: list[str | Path], out_dir: str | Path, options: PrepareOptions,
                   progress: bool = True) -> list[VideoReport]:
    """Prepare every source into `out_dir`; returns one report per source (done, exists or skipped)."""
    from tqdm import tqdm

    sources = find_sources(inputs)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    beta_source = choose_beta_source(sources, options)
    beta_dim, beta_names = beta_layout(beta_source)
    listed = _check_existing_corpus(out_dir, options.resolution, beta_dim, beta_source)
    for stale in out_dir.glob(f"{PARTIAL_PREFIX}*"):  # left by an interrupted run
        shutil.rmtree(stale, ignore_errors=True)
    done = _existing_clips(out_dir)
    taken = {p.name for p in out_dir.glob("clip_*")} | set(listed)
    next_index = 0
    reports: list[VideoReport] = []
    jobs = []
    for source in sources:
        if str(source.path) in done:
            reports.append(VideoReport(str(source.path), done[str(source.path)], "exists",
                                       message="already prepared"))
            continue
        while corpus.clip_name(next_index) in taken:
            next_index += 1
        clip = corpus.clip_name(next_index)
        taken.add(clip)
        jobs.append((source, out_dir, clip, beta_source, options))
    clips = sorted(set(listed) | {r.clip for r in reports})
    info = corpus.CorpusInfo(resolution=options.resolution, beta_dim=beta_dim, beta_names=beta_names,
                             clips=clips, source="video")
    corpus.write_corpus_info(out_dir, info)
    bar = tqdm(total=len(jobs), desc="prepare", unit="video", disable=not progress or not jobs)
    workers = min(options.workers, len(jobs))
    if workers > 1:
        # spawn: safe with torch / OpenCV threads; each worker re-imports the package (a second or two).
        with multiprocessing.get_context("spawn").Pool(workers) as pool:
            results = pool.imap_unordered(_worker, jobs)
            reports += _collect(results, info, out_dir, bar)
    else:
        reports += _collect((prepare_source(*job) for job in jobs), info, out_dir, bar)
    bar.close()
    return reports


def _collect(results, info: corpus.CorpusInfo, out_dir: Path, bar) -> list[VideoReport]:
    """Record each finished video in corpus.json as soon as it lands (an interrupted run keeps it)."""
    reports = []
    for report in results:
        reports.append(report)
        if report.status == "done":
            info.clips = sorted(set(info.clips) | {report.clip})
            corpus.write_corpus_info(out_dir, info)
        bar.update(1)
    return reports


def summary_lines(reports: list[VideoReport]) -> list[str]:
    counts = Counter(r.status for r in reports)
    frames = sum(r.frames for r in reports)
    lines = [f"{counts['done']} video(s) prepared ({frames} frames), {counts['exists']} already done, "
             f"{counts['skipped']} skipped"]
    for report in reports:
        name = Path(report.source).name
        if report.status == "skipped":
            lines.append(f"  skipped {name}: {report.message}")
        if report.skipped_frames:
            reasons = ", ".join(f"{count} {reason}" for reason, count in sorted(report.skipped_frames.items()))
            lines.append(f"  {name}: dropped frames: {reasons}")
    return lines


# -- `export3d prepare` ---------------------------------------------------------------------------
def add_prepare_command(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    defaults = PrepareOptions()
    parser = subparsers.add_parser(
        "prepare", help="turn talking-head videos into a training corpus",
        description=__doc__.split("\n\n")[0] + " Deep3DFaceRecon coefficients: put NAME.coeffs.npy "
        "(frames x 257, id/exp/tex/angle/gamma/trans) beside NAME.mp4; β = coeff[80:144].")
    parser.add_argument("inputs", nargs="+", metavar="VIDEO_OR_DIR", help="videos, frame folders, or folders of them")
    parser.add_argument("-o", "--output", required=True, metavar="DIR", help="corpus folder (created or resumed)")
    parser.add_argument("--res", type=int, default=defaults.resolution, help="side of the written frames")
    parser.add_argument("--workers", type=int, default=defaults.workers, help="videos processed in parallel")
    parser.add_argument("--detect-every", type=int, default=defaults.detect_every, metavar="K",
                        help="run the face detector every K frames")
    parser.add_argument("--stride", type=int, default=defaults.stride, help="keep every N-th frame")
    parser.add_argument("--max-frames", type=int, default=None, help="at most this many frames per video")
    parser.add_argument("--beta", choices=BETA_SOURCES, default=defaults.beta,
                        help="expression source: Deep3DFaceRecon files, landmarks, or auto")
    parser.add_argument("--download-models", action="store_true",
                        help="allow face-alignment to download its landmark weights (needs internet)")
    parser.add_argument("--expression-reader", default="", metavar="FILE",
                        help="β from landmarks: this expression reader (default: the one beside the demo model)")
    parser.set_defaults(handler=run_prepare_command)
    return parser


def run_prepare_command(args: argparse.Namespace) -> int:
    options = PrepareOptions(resolution=args.res, detect_every=args.detect_every, stride=args.stride,
                             max_frames=args.max_frames, beta=args.beta, workers=args.workers,
                             allow_download=args.download_models, expression_reader=args.expression_reader)
    reports = prepare_corpus(args.inputs, args.output, options)
    for line in summary_lines(reports):
        print(line)
    if reports and all(r.status == "skipped" for r in reports):
        raise Export3DError("no video could be prepared (reasons above)")
    return 0
