"""`export3d animate`: render a project's keyframe animation to MP4, GIF or a PNG folder.

The project is the editor's `*.e3d.json` with an "animation" key; its portrait, checkpoint and
fit are used unless `--portrait` / `--checkpoint` / `--fit` override them. `--paste-back` pastes
every frame into the original photo (`animation_export`: the keys' yaw and pitch turn the head from
the photo's own pose). `--bench` times the timeline's preview playback and the full-quality export
instead of writing anything the user asked for.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

from export3d_core.animation_export import (AnimationExportSettings, PoseRenderer, check_output, export_animation,
                                             frame_times, render_pose)
from export3d_core.errors import Export3DError
from export3d_core.project_file import ProjectFile, load_project_file
from export3d_core.display import RENDER_MODES
from export3d_core.session import PortraitSession


def load_aligned_portrait(path: Path, size: int, *, crop=None, aligned: bool = False) -> np.ndarray:
    """The portrait at the model's framing: the project's manual crop, as-is (`aligned`), or intake."""
    from export3d_core.portrait import load_portrait

    if crop is not None:
        from export3d_core.data.image_io import load_image
        from export3d_core.data.intake import manual_crop

        return manual_crop(load_image(path), crop[0], crop[1], size).image
    return load_portrait(path, size, align=False if aligned else None).image


def open_portrait_session(checkpoint: Path | None, portrait: Path | None, *, random_init: str | None = None,
                          device: str | None = None, crop=None, aligned: bool = False,
                          fit: Path | None = None) -> PortraitSession:
    """A model (`checkpoint`, else the demo) with `portrait` (else a demo portrait) resident, and the
    portrait's `fit` applied to the model first (refused in one line when made for another photo)."""
    from export3d_core.checkpoint import DEMO_CHECKPOINT
    from export3d_core.portrait import default_portrait
    from export3d_core.view_commands import load_model

    if checkpoint is not None and not Path(checkpoint).is_file():
        raise Export3DError(f"checkpoint not found: {checkpoint}")
    model = load_model(argparse.Namespace(checkpoint=checkpoint, random_init=random_init, device=device))
    if portrait is None:
        portrait, crop = default_portrait().path, None
    image = load_aligned_portrait(Path(portrait), model.config.input_size, crop=crop, aligned=aligned)
    if fit is not None:
        from export3d_core.fit_file import load_fit

        load_fit(fit, model, None if random_init else (checkpoint or DEMO_CHECKPOINT), image)
    session = PortraitSession(model)
    session.set_portrait(image)
    return session


def project_session(project: ProjectFile, args: argparse.Namespace) -> PortraitSession:
    """The project's model, portrait and fit (each overridable from the command line), resident. The
    project's fit belongs to its portrait: another `--portrait` goes without it unless `--fit` names one."""
    fit = args.fit or (project.fit if args.portrait is None else None)
    session = open_portrait_session(args.checkpoint or project.checkpoint, args.portrait or project.portrait,
                                    random_init=args.random_init, device=args.device,
                                    crop=project.crop if args.portrait is None else None, aligned=args.aligned,
                                    fit=fit)
    n = session.config.n_basis
    if n != len(project.lam):
        raise Export3DError(f"{project.path.name} has {len(project.lam)} λ values; the model has {n}")
    return session


def check_paste_back_arguments(project: ProjectFile, args: argparse.Namespace) -> None:
    """Refuse options that a pasted animation cannot honour, before any model is loaded."""
    from export3d_core.view_commands import check_paste_back_mode

    check_paste_back_mode(args.mode)
    if args.size is not None:
        raise Export3DError("--paste-back writes frames at the photo's own size; drop --size")
    if args.quality != "full":
        raise Export3DError("--paste-back renders full-quality frames; drop --quality preview")
    if args.bench:
        raise Export3DError("--bench measures the timeline's own renders; drop --paste-back")
    if args.portrait is None and project.portrait is not None and project.crop is not None:
        raise Export3DError(f"{project.path.name}'s crop was placed by hand, so the photo's alignment is not known; "
                            f"--paste-back needs a portrait that intake aligned")


def animation_compositor(project: ProjectFile, args: argparse.Namespace, session: PortraitSession):
    """The compositor into the photo the animation renders (the project's portrait unless overridden)."""
    from export3d_core.paste_back import photo_compositor
    from export3d_core.portrait import default_portrait

    photo = args.portrait or project.portrait or default_portrait().path
    return photo_compositor(photo, session.config.input_size, aligned=True if args.aligned else None)


def export_settings(args: argparse.Namespace) -> AnimationExportSettings:
    return AnimationExportSettings(fps=args.fps, start=args.start, end=args.end, size=args.size, mode=args.mode,
                                   quality=args.quality)


def run_animate(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    if args.threads:
        torch.set_num_threads(args.threads)
    project = load_project_file(args.project)
    if project.animation is None:
        raise Export3DError(f"{project.path.name} has no animation; add keys in the editor's timeline or "
                            f"bake them with `export3d drive --keys-out`")
    settings = export_settings(args)
    if args.paste_back:
        check_paste_back_arguments(project, args)
    if args.bench:
        return bench_animation(project, args, settings)
    if args.output is None:
        raise Export3DError("give -o OUT.mp4, OUT.gif or a folder")
    check_output(args.output, args.overwrite)
    session = project_session(project, args)
    times = frame_times(project.animation, settings)
    compositor = None
    if args.paste_back:
        from export3d_core.animation_export import paste_back_cameras
        from export3d_core.view_commands import warn_beyond_paste_back_limit

        compositor = animation_compositor(project, args, session)
        warn_beyond_paste_back_limit(compositor, paste_back_cameras(project.animation, times,
                                                                    compositor.photo_camera))
    with tqdm(total=len(times), desc="animate", unit="frame") as bar:
        path = export_animation(session, project.animation, args.output, settings, overwrite=args.overwrite,
                                progress=lambda done, _total: bar.update(done - bar.n), compositor=compositor)
    pasted = ", pasted into the photo" if compositor is not None else ""
    print(f"wrote {path} ({len(times)} frames at {settings.fps or project.animation.fps:g} fps{pasted})")
    return 0


def bench_animation(project: ProjectFile, args: argparse.Namespace, settings: AnimationExportSettings) -> int:
    """Preview playback frames/s over the animation, then the time of a full-quality export."""
    import tempfile

    session = project_session(project, args)
    animation = project.animation
    times = frame_times(animation, settings)
    preview = AnimationExportSettings(fps=settings.fps, start=settings.start, end=settings.end, quality="preview")
    renderer = PoseRenderer(session)
    for t in (times[-1], times[0]):  # warm-up: first-call allocations, the reference twin's encode
        render_pose(renderer, animation, t, preview)
    started, cpu = time.perf_counter(), time.process_time()
    for t in times:
        render_pose(renderer, animation, t, preview)
    playback = len(times) / (time.perf_counter() - started)
    playback_cpu = (time.process_time() - cpu) / len(times)
    frames = args.bench_frames
    full = AnimationExportSettings(fps=(frames - 1) / animation.duration, start=0.0, end=animation.duration,
                                   size=settings.size, mode=settings.mode)
    count = len(frame_times(animation, full))
    with tempfile.TemporaryDirectory() as folder:
        started, cpu = time.perf_counter(), time.process_time()
        export_animation(session, animation, Path(folder) / "bench.mp4", full)
        seconds, export_cpu = time.perf_counter() - started, time.process_time() - cpu
    # CPU time as well as wall time: on a shared machine the wall clock also counts other work.
    print(f"preview playback: {playback:.1f} frames/s over {len(times)} frames "
          f"({playback_cpu * 1000:.0f} ms of CPU per frame, {torch.get_num_threads()} thread(s))")
    print(f"full-quality export: {count} frames to MP4 in {seconds:.1f} s ({count / seconds:.1f} frames/s; "
          f"{export_cpu:.1f} s of CPU in this process, ffmpeg apart)")
    return 0


def add_project_model_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--checkpoint", type=Path,
                        help="model checkpoint (default: the project's, else the demo model)")
    parser.add_argument("--random-init", metavar="PRESET", choices=("tiny", "demo", "paper"),
                        help="use a randomly initialised model of this preset instead of a checkpoint")
    parser.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (default: cuda if available)")
    parser.add_argument("--aligned", action="store_true",
                        help="portraits are already cropped to the model's framing (skip face detection)")


def add_range_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--fps", type=float, default=None, help="frames per second (default: the animation's)")
    parser.add_argument("--start", type=float, default=0.0, help="first frame's time in seconds")
    parser.add_argument("--end", type=float, default=None, help="last frame's time in seconds (default: the end)")
    parser.add_argument("--size", type=int, default=None, help="output side in pixels (default: the model's)")
    parser.add_argument("--mode", choices=RENDER_MODES, default="final")
    parser.add_argument("--quality", choices=("full", "preview"), default="full")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing output")


def add_animate_command(subparsers) -> None:
    parser = subparsers.add_parser("animate", help="render a project's keyframe animation to MP4, GIF or PNGs")
    parser.add_argument("project", type=Path, metavar="PROJECT", help="an editor project (*.e3d.json) with keys")
    parser.add_argument("-o", "--output", type=Path, help="OUT.mp4, OUT.gif, or a folder for a PNG sequence")
    parser.add_argument("--portrait", type=Path, help="portrait photo (default: the project's)")
    parser.add_argument("--fit", type=Path,
                        help="a fit file of the portrait (default: the project's, when it renders its own portrait)")
    parser.add_argument("--paste-back", action="store_true",
                        help="paste every frame into the original photo, at the photo's size; the keys' yaw "
                             "and pitch then turn the head from the photo's own pose")
    add_project_model_arguments(parser)
    add_range_arguments(parser)
    parser.add_argument("--bench", action="store_true",
                        help="measure preview playback frames/s and a full-quality export; writes no output")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (default: torch's choice)")
    parser.add_argument("--bench-frames", type=int, default=120, help="frames of the --bench export")
    parser.set_defaults(handler=run_animate)
