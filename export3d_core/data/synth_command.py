"""The synthetic corpus and the `export3d synth` sub-command.

Owns writing a corpus of synthetic heads in the layout of `export3d_core.data.corpus`: one clip
per identity, with the same identity and background in every frame, an expression that eases
between random keyframes (like a talking-head video) and a random camera per frame. Clip i is
drawn from a generator seeded with (seed, i) only, so clips can be rendered in any order or
process and a run resumes by skipping clips whose meta.json (written last) exists.
The renderer is `synthetic`'s, imported inside functions (it loads OpenGL); identities come from `head_identity`.
"""
from __future__ import annotations

import argparse
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from export3d_core.data.corpus import (CLIP_META_FILE, CORPUS_FILE, ClipMeta, CorpusInfo, FrameRecord,
                                       clip_name, frame_file, read_corpus_info, write_clip_meta,
                                       write_corpus_info)
from export3d_core.data.head_landmarks import BETA_DIM, BETA_NAMES
from export3d_core.errors import Export3DError

if TYPE_CHECKING:
    from export3d_core.data.synthetic import HeadRenderer

# -- the corpus --------------------------------------------------------------------------------------
MAX_YAW, MAX_PITCH = np.radians(35.0), np.radians(20.0)  # camera range of the corpus
FRAMES_PER_KEY = 4  # expression keyframe spacing: β moves smoothly between keys, like speech


# Corpus seeds from here up are reserved for held-out identities (export3d_core/data/synthetic_views.py).
TRAINING_SEED_LIMIT = 10_000_000


def clip_rng(seed: int, index: int) -> np.random.Generator:
    """The generator of clip `index`: depends only on (seed, index), so clips can be made in any order."""
    return np.random.default_rng([int(seed), int(index)])


def clip_expressions(rng: np.random.Generator, frames: int) -> np.ndarray:
    """(frames, BETA_DIM) β that eases between random keyframes every FRAMES_PER_KEY frames."""
    from export3d_core.data.synthetic import sample_expression

    keys = np.stack([sample_expression(rng) for _ in range(frames // FRAMES_PER_KEY + 2)])  # (K, B)
    pos = np.arange(frames) / FRAMES_PER_KEY
    k = np.floor(pos).astype(int)
    t = (pos - k)[:, None]
    ease = t * t * (3 - 2 * t)
    return keys[k] * (1 - ease) + keys[k + 1] * ease


def render_clip(renderer: HeadRenderer, out_dir: Path, index: int, frames: int, seed: int) -> None:
    """Render clip `index` into out_dir/clip_XXXXX; meta.json is written last (it marks the clip done)."""
    from export3d_core.camera import OrbitCamera
    from export3d_core.data.image_io import save_image_atomic
    from export3d_core.data.head_identity import sample_background, sample_identity

    rng = clip_rng(seed, index)
    identity = sample_identity(rng)
    background = sample_background(rng)
    betas = np.round(clip_expressions(rng, frames), 5)  # rounded first: the meta holds what was rendered
    clip_dir = Path(out_dir) / clip_name(index)
    records = []
    for f in range(frames):
        yaw, pitch = rng.uniform(-MAX_YAW, MAX_YAW), rng.uniform(-MAX_PITCH, MAX_PITCH)
        camera = OrbitCamera(yaw=float(yaw), pitch=float(pitch)).params().numpy().astype(np.float64)
        out = renderer.render(identity, betas[f], camera, background)
        save_image_atomic(clip_dir / frame_file(f), out.image)
        records.append(FrameRecord(
            file=frame_file(f), beta=[float(v) for v in betas[f]], camera=[float(v) for v in camera],
            landmarks=np.round(out.landmarks2d, 3).tolist(), landmarks3d=np.round(out.landmarks3d, 5).tolist()))
    write_clip_meta(clip_dir, ClipMeta(clip=clip_name(index), frames=records, identity=identity.to_dict(),
                                       background=list(background), beta_source="synthetic"))


def check_existing_corpus(out: Path, identities: int, frames: int, resolution: int, seed: int) -> None:
    """A folder that already holds clips is resumed or extended only with the same shape and seed.

    Finished clips are skipped, so other settings would mix two corpora (clips of another length,
    or other heads) under one corpus.json, and fewer identities would drop clips from it.
    """
    from export3d_core.data.corpus import read_clip_meta
    from export3d_core.data.synthetic import sample_identity

    if (out / CORPUS_FILE).exists():
        info = read_corpus_info(out)
        if info.resolution != resolution or info.source != "synthetic":
            raise Export3DError(f"{out} already holds a {info.source} corpus at {info.resolution} px; "
                                f"choose another folder")
        if identities < len(info.clips):
            raise Export3DError(f"{out} already holds {len(info.clips)} clips; --identities {identities} would "
                                f"drop some from corpus.json (give at least {len(info.clips)}, or another folder)")
    done = sorted(out.glob(f"clip_*/{CLIP_META_FILE}")) if out.is_dir() else []
    if not done:
        return
    clip_dir = done[0].parent
    meta = read_clip_meta(clip_dir)
    index = int(clip_dir.name.split("_")[-1])
    if len(meta.frames) != frames:
        raise Export3DError(f"{out} holds clips of {len(meta.frames)} frames; give --frames {len(meta.frames)} "
                            "to resume or extend it, or choose another folder")
    if meta.identity is not None and meta.identity != sample_identity(clip_rng(seed, index)).to_dict():
        raise Export3DError(f"{out} was made with another --seed (its {clip_dir.name} is another head); "
                            "give the same seed to resume or extend it, or choose another folder")


_WORKER_RENDERER: "HeadRenderer | None" = None  # one GL context per worker process


def _init_worker(resolution: int) -> None:
    from export3d_core.data.synthetic import HeadRenderer

    global _WORKER_RENDERER
    _WORKER_RENDERER = HeadRenderer(resolution)


def _worker_clip(out_dir: Path, index: int, frames: int, seed: int) -> int:
    assert _WORKER_RENDERER is not None, "worker not initialised"
    render_clip(_WORKER_RENDERER, out_dir, index, frames, seed)
    return index


def generate_corpus(out_dir: str | Path, identities: int, frames: int, resolution: int, seed: int = 0,
                    progress: bool = True, workers: int = 1) -> Path:
    """Write a synthetic corpus (export3d_core.data.corpus layout): one clip per identity.

    Resumable: clips whose meta.json exists are skipped; corpus.json is written at the end.
    `workers` > 1 renders clips in that many processes (each with its own GL context); the
    output is the same byte for byte, since clip i depends only on (seed, i).
    """
    from tqdm import tqdm

    from export3d_core.data.synthetic import HeadRenderer

    if identities < 1 or frames < 1:
        raise Export3DError(f"need at least one identity and one frame, got {identities} and {frames}")
    out = Path(out_dir)
    check_existing_corpus(out, identities, frames, resolution, seed)
    out.mkdir(parents=True, exist_ok=True)
    todo = [i for i in range(identities) if not (out / clip_name(i) / CLIP_META_FILE).exists()]
    bar = tqdm(total=len(todo), desc="synth", unit="clip", disable=not progress)
    if todo and workers <= 1:
        with HeadRenderer(resolution) as renderer:
            for index in todo:
                render_clip(renderer, out, index, frames, seed)
                bar.update()
    elif todo:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor, as_completed

        # spawn, not fork: a forked child must not inherit a parent's GL or torch threads.
        with ProcessPoolExecutor(max_workers=min(workers, len(todo)), initializer=_init_worker,
                                 initargs=(resolution,), mp_context=multiprocessing.get_context("spawn")) as pool:
            for future in as_completed([pool.submit(_worker_clip, out, i, frames, seed) for i in todo]):
                future.result()  # re-raises a worker's error here
                bar.update()
    bar.close()
    write_corpus_info(out, CorpusInfo(resolution=resolution, beta_dim=BETA_DIM, beta_names=list(BETA_NAMES),
                                      clips=[clip_name(i) for i in range(identities)], source="synthetic"))
    return out


MIN_RESOLUTION = 32  # below this the eyes and mouth are a pixel or two
MAX_RESOLUTION = 2048  # keeps one frame's framebuffer (supersampled) well inside GPU/CPU memory


def add_synth_command(subparsers: Any) -> None:
    """Register `export3d synth -o DIR --identities N --frames M --res R [--seed S]`."""
    parser = subparsers.add_parser(
        "synth", help="render a synthetic training corpus of procedural heads",
        description="Render a corpus of procedural heads (one clip per identity, random expression "
                    "and camera per frame) with ground-truth expression parameters, cameras and "
                    "68 landmarks. Interrupted runs resume: finished clips are kept.")
    parser.add_argument("-o", "--out", required=True, help="output folder of the corpus")
    parser.add_argument("--identities", type=int, default=100, help="number of identities = clips (default 100)")
    parser.add_argument("--frames", type=int, default=32, help="frames per clip (default 32)")
    parser.add_argument("--res", type=int, default=128, help="image side in pixels (default 128)")
    parser.add_argument("--seed", type=int, default=0, help="random seed; the same seed gives the same corpus")
    parser.add_argument("--workers", type=int, default=min(4, os.cpu_count() or 1),
                        help="processes rendering clips in parallel (default: CPU count, at most 4)")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    parser.set_defaults(handler=run_synth)


def validate(identities: int, frames: int, resolution: int, seed: int, workers: int = 1) -> None:
    """Raise Export3DError for values the generator cannot honour."""
    if identities < 1:
        raise Export3DError(f"--identities must be at least 1, got {identities}")
    if frames < 1:
        raise Export3DError(f"--frames must be at least 1, got {frames}")
    if not MIN_RESOLUTION <= resolution <= MAX_RESOLUTION:
        raise Export3DError(f"--res must be between {MIN_RESOLUTION} and {MAX_RESOLUTION}, got {resolution}")
    if seed < 0:
        raise Export3DError(f"--seed must be >= 0, got {seed}")
    if seed >= TRAINING_SEED_LIMIT:
        raise Export3DError(f"--seed must be below {TRAINING_SEED_LIMIT:,}: higher seeds are the held-out "
                            "evaluation, regressor and demo-portrait identities")
    if workers < 1:
        raise Export3DError(f"--workers must be at least 1, got {workers}")


def run_synth(args: argparse.Namespace) -> int:
    validate(args.identities, args.frames, args.res, args.seed, args.workers)
    start = time.perf_counter()
    out = generate_corpus(args.out, args.identities, args.frames, args.res, seed=args.seed,
                          progress=not args.no_progress, workers=args.workers)
    seconds = time.perf_counter() - start
    print(f"wrote {args.identities} clips x {args.frames} frames at {args.res} px to {out} in {seconds:.1f} s")
    return 0
