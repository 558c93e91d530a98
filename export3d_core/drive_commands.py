"""`export3d drive`: a video of a face drives a portrait; MP4/GIF/PNGs out, keys into a project."""
from __future__ import annotations

import argparse
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from export3d_core.animation import CameraPose
from export3d_core.animation_export import (AnimationExportSettings, animation_frames, beside, check_output,
                                           write_frames)
from export3d_core.drive import (DriveSettings, FaceReader, Performance, bake, jitter, neutral_lambda,
                                 performance_curves, read_performance)
from export3d_core.errors import Export3DError
from export3d_core.project_file import check_project_target
from export3d_core.session import tensor_to_image

DEFAULT_FRAME_FOLDER_FPS = 25.0


def video_source(path: Path):
    """A video file or a folder of frames, and its frame rate (a folder's comes from --fps)."""
    from export3d_core.data.video_source import FRAME_SUFFIXES, VIDEO_SUFFIXES, Source, frame_files

    path = Path(path)
    if path.is_dir():
        if not frame_files(path):
            raise Export3DError(f"{path} holds no frames ({', '.join(sorted(FRAME_SUFFIXES))})")
        return Source(path, "frames"), None
    if not path.is_file():
        raise Export3DError(f"video not found: {path}")
    if path.suffix.lower() not in VIDEO_SUFFIXES:
        raise Export3DError(f"{path.name}: not a video ({', '.join(sorted(VIDEO_SUFFIXES))}) or a folder of frames")
    import imageio.v2 as imageio

    try:
        reader = imageio.get_reader(str(path), format="FFMPEG")
        fps = float(reader.get_meta_data().get("fps") or 0) or None
        reader.close()
    except Exception as exc:  # noqa: BLE001 - imageio raises many types for unreadable files
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise Export3DError(f"cannot open video {path.name}: {first}") from None
    return Source(path, "video"), fps


def source_frames(args: argparse.Namespace):
    from export3d_core.data.video_source import iter_frames

    source, _ = video_source(args.video)
    return (frame for _, frame in iter_frames(source, max_frames=args.max_frames))


def read_video(args: argparse.Namespace, estimator, size: int) -> Performance:
    from tqdm import tqdm

    _, fps = video_source(args.video)
    fps = args.fps or fps or DEFAULT_FRAME_FOLDER_FPS
    reader = FaceReader(estimator, size, aligned=args.aligned_video, max_side=max(640, 4 * size),
                        source=args.reader)
    frames = source_frames(args)
    started = time.perf_counter()
    with tqdm(desc="reading", unit="frame") as bar:
        performance = read_performance(frames, reader, fps, progress=lambda done: bar.update(done - bar.n))
    seconds = time.perf_counter() - started
    print(f"read {len(performance.found)} frames at {fps:g} fps in {seconds:.1f} s "
          f"({len(performance.found) / seconds:.1f} frames/s); {performance.held} without a face (held)")
    return performance


def run_drive(args: argparse.Namespace) -> int:
    from export3d_core.animation_commands import open_portrait_session
    from export3d_core.checkpoint import DEMO_CHECKPOINT
    from export3d_core.expression_estimate import ExpressionEstimator
    from export3d_core.project_file import save_animation

    if args.threads:
        torch.set_num_threads(args.threads)
    if args.output is None and args.keys_out is None:
        raise Export3DError("give -o OUT.mp4|OUT.gif|DIR, --keys-out PROJECT, or both")
    settings = DriveSettings(gain=args.gain, smoothing=args.smoothing, head_pose=not args.no_head_pose,
                             tolerance=args.simplify)
    export_settings = AnimationExportSettings(size=args.size, quality=args.quality)
    if args.paste_back:
        check_drive_paste_back(args)
    if args.output is not None:
        check_output(args.output, args.overwrite)
    if args.keys_out is not None:
        check_project_target(args.keys_out, args.overwrite)
    session = open_portrait_session(args.checkpoint, args.portrait, device=args.device,
                                    aligned=args.aligned_portrait, fit=args.fit)
    model = session.model
    estimator = ExpressionEstimator.for_checkpoint(model, args.checkpoint or DEMO_CHECKPOINT)
    performance = read_video(args, estimator, model.config.input_size)
    origin, offset = neutral_lambda(model), None
    if args.relative:
        own = np.asarray(estimator.estimate(tensor_to_image(session.source)).lam)
        origin, offset = performance.lam[0], own - performance.lam[0]
    animation = bake(performance, settings, origin, CameraPose(), offset)
    n = model.config.n_basis
    raw = performance_curves(performance, replace(settings, smoothing=0.0), origin, offset)[:, :n]
    smoothed = performance_curves(performance, settings, origin, offset)[:, :n]
    print(f"baked {len(animation.keys)} keys over {animation.duration:.2f} s; λ jitter per frame "
          f"{jitter(raw):.3f} raw, {jitter(smoothed):.3f} smoothed")
    if args.keys_out is not None:
        path = save_animation(args.keys_out, animation, portrait=args.portrait,
                              checkpoint=args.checkpoint, fit=args.fit, overwrite=args.overwrite)
        print(f"wrote keys to {path}")
    if args.output is not None:
        render_performance(args, session, animation, export_settings)
    return 0


def check_drive_paste_back(args: argparse.Namespace) -> None:
    """Refuse what a pasted performance cannot honour, before the model or the video is read."""
    if args.output is None:
        raise Export3DError("--paste-back needs -o OUT.mp4|OUT.gif|DIR (it pastes the rendered frames)")
    if args.size is not None:
        raise Export3DError("--paste-back writes frames at the photo's own size; drop --size")
    if args.quality != "full":
        raise Export3DError("--paste-back renders full-quality frames; drop --quality preview")


def performance_frames(args: argparse.Namespace, session, animation, settings: AnimationExportSettings):
    """The rendered frames, or with `--paste-back` each pasted into the portrait's photo (the baked
    head pose turns the head from the photo's own pose; one warning beyond the measured limit)."""
    if not args.paste_back:
        return animation_frames(session, animation, settings)
    from export3d_core.animation_export import paste_back_cameras, pasted_frames
    from export3d_core.paste_back import photo_compositor
    from export3d_core.portrait import default_portrait
    from export3d_core.view_commands import warn_beyond_paste_back_limit

    photo = args.portrait or default_portrait().path
    compositor = photo_compositor(photo, session.config.input_size, aligned=True if args.aligned_portrait else None)
    times = animation.frame_times()
    warn_beyond_paste_back_limit(compositor, paste_back_cameras(animation, times, compositor.photo_camera))
    return pasted_frames(session, animation, times, compositor)


def render_performance(args: argparse.Namespace, session, animation, settings: AnimationExportSettings) -> None:
    from tqdm import tqdm

    total = len(animation.frame_times())
    started = time.perf_counter()
    frames = performance_frames(args, session, animation, settings)
    if args.side_by_side:  # the driving frame on the left of each render
        frames = (beside(source, render) for source, render in zip(source_frames(args), frames))
    with tqdm(total=total, desc="rendering", unit="frame") as bar:
        path = write_frames(args.output, frames, animation.fps, total=total, overwrite=args.overwrite,
                            progress=lambda done, _total: bar.update(done - bar.n))
    seconds = time.perf_counter() - started
    print(f"wrote {path} ({total} frames in {seconds:.1f} s, {total / seconds:.1f} frames/s)")


def run_live(args: argparse.Namespace) -> int:
    """Drive live from a camera (or a file paced like one) for `--seconds`, recording the take."""
    from export3d_core.animation_commands import open_portrait_session
    from export3d_core.checkpoint import DEMO_CHECKPOINT
    from export3d_core.expression_estimate import ExpressionEstimator
    from export3d_core.live import LatestFrameSource, LiveDriver
    from export3d_core.project_file import save_animation

    if args.threads:
        torch.set_num_threads(args.threads)
    check_project_target(args.keys_out, args.overwrite)
    if args.output is not None:
        check_output(args.output, args.overwrite)
    settings = DriveSettings(gain=args.gain, smoothing=args.smoothing, head_pose=not args.no_head_pose,
                             tolerance=args.simplify)
    session = open_portrait_session(args.checkpoint, args.portrait, device=args.device, fit=args.fit)
    model = session.model
    estimator = ExpressionEstimator.for_checkpoint(model, args.checkpoint or DEMO_CHECKPOINT)
    reader = FaceReader(estimator, model.config.input_size, source=args.reader)
    driver = LiveDriver(reader, neutral_lambda(model), settings, session=session, quality="preview")
    reader(np.full((256, 256, 3), 128, np.uint8))  # warm-up: loads the face detector before the clock runs
    source = LatestFrameSource(args.camera if args.video is None else args.video)
    shown, started = [], time.perf_counter()
    driver.start_recording()
    try:
        while time.perf_counter() - started < args.seconds and (item := source.latest(timeout=2.0)) is not None:
            shown.append(driver.step(item[1], time.perf_counter() - started).image)
    finally:
        source.close()
    seconds = time.perf_counter() - started
    take = driver.stop_recording(fps=max(1.0, min(120.0, round(len(shown) / seconds))))
    print(f"live: showed {len(shown)} of {source.grabbed} frames in {seconds:.1f} s ({len(shown) / seconds:.1f} "
          f"frames/s, {source.grabbed - len(shown)} dropped, {driver.faceless} without a face)")
    path = save_animation(args.keys_out, take, portrait=args.portrait, checkpoint=args.checkpoint,
                          fit=args.fit, overwrite=args.overwrite)
    print(f"wrote {len(take.keys)} keys to {path}")
    if args.output is not None:
        print(f"wrote {write_frames(args.output, shown, take.fps, overwrite=args.overwrite)} (the previews shown)")
    return 0


def add_live_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--gain", type=float, default=1.0, help="scale the performance (0 neutral, >1 exaggerate)")
    parser.add_argument("--smoothing", type=float, default=1.0,
                        help="One Euro filter strength: 0 off, 1 default, higher smoother")
    parser.add_argument("--simplify", type=float, default=None, metavar="TOL",
                        help="keep only the keys needed to stay within TOL of λ (default: a key every frame)")
    parser.add_argument("--no-head-pose", action="store_true", help="keep the camera still")
    parser.add_argument("--checkpoint", type=Path, help="model checkpoint (default: the shipped demo model)")
    parser.add_argument("--device", default=None, help="cpu, cuda, ... (default: cuda if available)")
    parser.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (default: torch's choice)")
    parser.add_argument("--reader", choices=("landmarks", "image"), default=None,
                        help="how β is read: dlib landmarks (default; any face) or the image regressor (synthetic)")


def add_live_command(subparsers) -> None:
    parser = subparsers.add_parser("live", help="drive a portrait live from a webcam and record the take as keys")
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--camera", type=int, default=0, help="OpenCV capture device index (default 0)")
    source.add_argument("--video", type=Path, help="a video file played at its own rate instead of a camera")
    parser.add_argument("--portrait", type=Path, help="portrait photo (default: a shipped demo portrait)")
    parser.add_argument("--fit", type=Path, help="a fit file of this portrait (from `export3d fit`)")
    parser.add_argument("--seconds", type=float, default=10.0, help="length of the take")
    parser.add_argument("--keys-out", type=Path, required=True, metavar="PROJECT", help="project for the take's keys")
    parser.add_argument("-o", "--output", type=Path, help="also save the previews shown (MP4, GIF or a folder)")
    add_live_arguments(parser)
    parser.set_defaults(handler=run_live)


def add_drive_command(subparsers) -> None:
    parser = subparsers.add_parser("drive", help="drive a portrait from a video of a face; bake the keys")
    parser.add_argument("--portrait", type=Path, help="portrait photo (default: a shipped demo portrait)")
    parser.add_argument("--fit", type=Path, help="a fit file of this portrait (from `export3d fit`)")
    parser.add_argument("--video", type=Path, required=True, help="video file or folder of frames with one face")
    parser.add_argument("-o", "--output", type=Path, help="OUT.mp4, OUT.gif, or a folder for PNGs")
    parser.add_argument("--keys-out", type=Path, metavar="PROJECT",
                        help="write the baked keys into this project (*.e3d.json; made if missing)")
    parser.add_argument("--checkpoint", type=Path, help="model checkpoint (default: the shipped demo model)")
    parser.add_argument("--device", default=None, help="cpu, cuda, ... (default: cuda if available)")
    parser.add_argument("--gain", type=float, default=1.0, help="scale the performance (0 neutral, >1 exaggerate)")
    parser.add_argument("--smoothing", type=float, default=1.0,
                        help="One Euro filter strength: 0 off, 1 default, higher smoother")
    parser.add_argument("--simplify", type=float, default=None, metavar="TOL",
                        help="keep only the keys needed to stay within TOL of λ (default: a key every frame)")
    parser.add_argument("--relative", action="store_true",
                        help="add the performance's change since its first frame to the portrait's own expression")
    parser.add_argument("--no-head-pose", action="store_true", help="keep the camera still")
    parser.add_argument("--aligned-video", action="store_true",
                        help="the video's frames are already face crops at the model's framing (no detection)")
    parser.add_argument("--aligned-portrait", action="store_true", help="the portrait is already a crop")
    parser.add_argument("--fps", type=float, default=None, help="frame rate (default: the video's; folders 25)")
    parser.add_argument("--max-frames", type=int, default=None, help="read at most this many frames")
    parser.add_argument("--size", type=int, default=None, help="output side in pixels (default: the model's)")
    parser.add_argument("--side-by-side", action="store_true", help="show the driving frame left of each render")
    parser.add_argument("--paste-back", action="store_true",
                        help="paste each frame into the portrait's photo at its size (the head pose turns the "
                             "head from the photo's own pose)")
    parser.add_argument("--quality", choices=("full", "preview"), default="full")
    parser.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (default: torch's choice)")
    parser.add_argument("--reader", choices=("landmarks", "image"), default=None,
                        help="how β is read: dlib landmarks (default; any face) or the image regressor (synthetic)")
    parser.set_defaults(handler=run_drive)
    add_live_command(subparsers)
