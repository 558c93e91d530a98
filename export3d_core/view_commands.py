"""The headless view commands: `export3d render`, `turntable`, `sweep`.

They go through `PortraitSession` and `export.py`, the same code paths as the editor's exports.
"""
from __future__ import annotations

import argparse
import math
from pathlib import Path

import numpy as np
import torch

from export3d_core.arg_types import bounded, finite_float, positive_float
from export3d_core.camera import DEFAULT_FOV_DEG, DEFAULT_RADIUS, ORBIT_YAW_AMPLITUDE, OrbitCamera
from export3d_core.checkpoint import DEMO_CHECKPOINT, load_checkpoint
from export3d_core.config import ModelConfig
from export3d_core.devices import pick_device
from export3d_core.display import RENDER_MODES, opacity_to_alpha, view_image
from export3d_core.errors import Export3DError
from export3d_core.export import (ANIMATION_SUFFIXES, MAX_ANIMATION_FRAMES, MAX_FPS, STILL_SUFFIXES,
                                  TurntableSettings, check_target, sweep_frames, sweep_lambdas, turntable_cameras,
                                  turntable_frames, write_animation, write_png)
from export3d_core.lambda_units import MAX_ABS_LAMBDA, check_lambda
from export3d_core.model import Export3D
from export3d_core.paste_back import Compositor
from export3d_core.portrait import default_portrait, load_portrait
from export3d_core.session import PortraitSession


def parse_lambda(text: str | None, n_basis: int) -> list[float]:
    """`v1=2.5,v3=-4` -> a λ list (unnamed coefficients are 0)."""
    lam = [0.0] * n_basis
    if not text:
        return lam
    for item in text.split(","):
        name, sep, value = item.strip().partition("=")
        if not sep or not name.startswith("v") or not name[1:].isdigit():
            raise Export3DError(f"bad --lam item {item!r}; write e.g. v1=2.5,v3=-4")
        index = int(name[1:]) - 1
        if not 0 <= index < n_basis:
            raise Export3DError(f"--lam {name}: basis vectors are v1..v{n_basis}")
        try:
            number = float(value)
        except ValueError:
            raise Export3DError(f"--lam {name}: {value!r} is not a number") from None
        lam[index] = number
    return check_lambda(lam, "--lam")


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--checkpoint", type=Path, help="model checkpoint (default: the shipped demo model)")
    parser.add_argument("--random-init", metavar="PRESET", choices=("tiny", "demo", "paper"),
                        help="use a randomly initialised model of this preset instead of a checkpoint")
    parser.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (default: cuda if available)")


def add_view_arguments(parser: argparse.ArgumentParser) -> None:
    add_model_arguments(parser)
    parser.add_argument("--portrait", type=Path, help="portrait photo (default: a shipped demo portrait)")
    parser.add_argument("--face-index", type=bounded(int, 0), default=None,
                        help="which face when the photo has several")
    parser.add_argument("--lam", help="coefficients, e.g. v1=2.5,v3=-4 (others 0)")
    parser.add_argument("--yaw", type=finite_float, default=0.0, help="degrees, + moves the camera to the right")
    parser.add_argument("--pitch", type=finite_float, default=0.0, help="degrees, + moves the camera up")
    parser.add_argument("--radius", type=positive_float, default=DEFAULT_RADIUS, help="camera distance from the pivot")
    parser.add_argument("--fov", type=positive_float, default=DEFAULT_FOV_DEG,
                        help="diagonal field of view in degrees (EG3D's convention: 18.837 = focal 4.2647)")
    parser.add_argument("--mode", choices=RENDER_MODES, default="final")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing output file")
    parser.add_argument("--fit", type=Path, help="a fit file of this portrait (from `export3d fit`)")
    parser.add_argument("--paste-back", action="store_true",
                        help="composite the rendered face into the original photo, at the photo's size; "
                             "--yaw/--pitch then turn the head from the photo's own pose")
    parser.add_argument("-o", "--output", type=Path, required=True)


def load_model(args: argparse.Namespace) -> Export3D:
    device = pick_device(args.device)
    if args.random_init:
        if args.checkpoint:
            raise Export3DError("give --checkpoint or --random-init, not both")
        print(f"using a RANDOMLY INITIALISED {args.random_init} model (no trained weights)")
        torch.manual_seed(0)
        return Export3D(ModelConfig.preset(args.random_init)).to(device).eval()
    path = args.checkpoint or DEMO_CHECKPOINT
    if args.checkpoint is None and not DEMO_CHECKPOINT.is_file():
        raise Export3DError(f"no demo model at {DEMO_CHECKPOINT}; pass --checkpoint C or --random-init PRESET")
    model, _ = load_checkpoint(path, device=device)
    return model


def apply_fit_argument(args: argparse.Namespace, model: Export3D, portrait) -> None:
    """`--fit FIT` applied to `model` (refused in one line when made for another photo or checkpoint);
    without one, the hint for an unfitted photo outside the model's domain."""
    if args.fit is not None:
        from export3d_core.fit_file import load_fit

        load_fit(args.fit, model, None if args.random_init else (args.checkpoint or DEMO_CHECKPOINT), portrait.image)
    elif portrait.method != "aligned":
        print_domain_hint(model, portrait)


def open_session(args: argparse.Namespace) -> tuple[PortraitSession, OrbitCamera, list[float]]:
    model = load_model(args)
    cfg = model.config
    portrait_path = args.portrait or default_portrait().path
    portrait = load_portrait(portrait_path, cfg.input_size, face_index=args.face_index)
    apply_fit_argument(args, model, portrait)
    session = PortraitSession(model)
    session.set_portrait(portrait.image)
    try:
        camera = OrbitCamera(yaw=math.radians(args.yaw), pitch=math.radians(args.pitch),
                             radius=args.radius, fov_deg=args.fov)
    except ValueError as exc:
        raise Export3DError(str(exc)) from None
    return session, camera, parse_lambda(args.lam, cfg.n_basis)


def paste_back_compositor(args: argparse.Namespace, session: PortraitSession,
                          camera: OrbitCamera) -> tuple[Compositor, OrbitCamera]:
    """The --paste-back compositor for this portrait and the camera to render from: the photo's own
    pose turned by --yaw/--pitch (the composite is only right near that pose)."""
    from export3d_core.paste_back import photo_compositor

    check_paste_back_mode(args.mode)
    compositor = photo_compositor(args.portrait or default_portrait().path, session.config.input_size,
                                  args.face_index)
    return compositor, compositor.turned(camera.yaw, camera.pitch)


def check_paste_back_mode(mode: str) -> None:
    if mode != "final":
        raise Export3DError("--paste-back composites the final image; drop --mode or use --mode final")


def warn_beyond_paste_back_limit(compositor: Compositor, cameras: list[OrbitCamera]) -> None:
    """One warning on stderr when any view is beyond the measured pose limit (`paste_back.limit_problem`)."""
    import sys

    from export3d_core.paste_back import limit_problem

    problem = limit_problem(cameras, compositor.photo_camera)
    if problem:
        print(f"warning: {problem}", file=sys.stderr)


def print_domain_hint(model: Export3D, portrait) -> None:
    """Say once, on stderr, when an unfitted photo lies outside the model's domain (`domain.py`)."""
    import sys

    from export3d_core.data.face_pose import frontal_camera
    from export3d_core.domain import FIT_HINT, out_of_domain

    camera = frontal_camera() if portrait.camera is None else portrait.camera
    outside, psnr = out_of_domain(model, portrait.image, camera)
    if outside:
        print(f"note: {FIT_HINT} (reconstruction {psnr:.1f} dB)", file=sys.stderr)


def run_render(args: argparse.Namespace) -> int:
    check_target(args.output, STILL_SUFFIXES, args.overwrite)  # before loading or rendering anything
    session, camera, lam = open_session(args)
    if args.paste_back:
        if args.alpha:
            raise Export3DError("--alpha and --paste-back do not go together (the composite is opaque)")
        compositor, camera = paste_back_compositor(args, session, camera)
        warn_beyond_paste_back_limit(compositor, [camera])
        image = compositor.frame(session, lam, camera)
        path = write_png(args.output, image, overwrite=args.overwrite)
        print(f"wrote {path} ({image.shape[1]}x{image.shape[0]}, pasted into the photo)")
        return 0
    output = session.render(lam, camera)
    cfg = session.config
    image = view_image(output, args.mode, cfg.render.ray_start, cfg.render.ray_end)
    alpha = None
    if args.alpha:
        alpha = opacity_to_alpha(output.alpha)
        if alpha.shape != image.shape[:2]:
            from PIL import Image
            alpha = np.asarray(Image.fromarray(alpha).resize(image.shape[1::-1], Image.Resampling.BILINEAR))
    path = write_png(args.output, image, alpha, overwrite=args.overwrite)
    print(f"wrote {path} ({image.shape[1]}x{image.shape[0]}, {args.mode})")
    return 0


def run_turntable(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    settings = TurntableSettings(frames=args.frames, fps=args.fps, path=args.path,
                                 yaw_amplitude=math.radians(args.amplitude))
    check_target(args.output, ANIMATION_SUFFIXES, args.overwrite)
    session, camera, lam = open_session(args)
    frames = turntable_frames(session, lam, camera, settings, args.mode)
    if args.paste_back:
        compositor, camera = paste_back_compositor(args, session, camera)
        cameras = turntable_cameras(camera, settings)
        warn_beyond_paste_back_limit(compositor, cameras)
        frames = (compositor.frame(session, lam, c) for c in cameras)
    frames = tqdm(frames, total=settings.frames, desc="turntable", unit="frame")
    path = write_animation(args.output, frames, settings.fps, loop=settings.loop, overwrite=args.overwrite)
    print(f"wrote {path} ({settings.frames} frames)")
    return 0


MAX_STRIP_STEPS = 64  # a PNG strip is one image: 64 frames side by side is already 8,192 px at 128 px


def run_sweep(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    strip = args.output.suffix.lower() == ".png"
    check_target(args.output, STILL_SUFFIXES + ANIMATION_SUFFIXES, args.overwrite)
    if strip and args.steps > MAX_STRIP_STEPS:
        raise Export3DError(f"a PNG strip holds at most {MAX_STRIP_STEPS} steps; write a .gif or .mp4 for more")
    for name, value in (("--from", args.start), ("--to", args.stop)):  # before any model is loaded
        if abs(value) > MAX_ABS_LAMBDA:
            raise Export3DError(f"{name} {value:g} is beyond ±{MAX_ABS_LAMBDA:g}, the largest λ this build renders")
    session, camera, lam = open_session(args)
    if args.basis > len(lam):
        raise Export3DError(f"basis index must be 1..{len(lam)}, got {args.basis}")
    frames = sweep_frames(session, lam, camera, args.basis - 1, args.start, args.stop, args.steps, args.mode)
    if args.paste_back:
        compositor, camera = paste_back_compositor(args, session, camera)
        warn_beyond_paste_back_limit(compositor, [camera])
        rows = sweep_lambdas(lam, args.basis - 1, args.start, args.stop, args.steps)
        frames = (compositor.frame(session, row, camera) for row in rows)
    frames = tqdm(frames, total=args.steps, desc=f"sweep v{args.basis}", unit="frame")
    if strip:
        path = write_png(args.output, np.concatenate(list(frames), axis=1), overwrite=args.overwrite)
    else:
        path = write_animation(args.output, frames, args.fps, overwrite=args.overwrite)
    print(f"wrote {path} ({args.steps} steps of v{args.basis} from {args.start:g} to {args.stop:g})")
    return 0


def add_view_commands(subparsers) -> None:
    render = subparsers.add_parser("render", help="render one still PNG")
    add_view_arguments(render)
    render.add_argument("--alpha", action="store_true", help="store the rendered opacity as the PNG's alpha")
    render.set_defaults(handler=run_render)

    turntable = subparsers.add_parser("turntable", help="render a turntable GIF or MP4")
    add_view_arguments(turntable)
    turntable.add_argument("--frames", type=bounded(int, 2, MAX_ANIMATION_FRAMES), default=60,
                           help=f"number of frames, 2..{MAX_ANIMATION_FRAMES} (default 60)")
    turntable.add_argument("--fps", type=bounded(int, 1, MAX_FPS), default=30, help=f"1..{MAX_FPS} (default 30)")
    turntable.add_argument("--path", choices=("orbit", "yaw"), default="orbit",
                           help="EG3D's orbit (yaw and pitch) or a plain yaw sweep")
    turntable.add_argument("--amplitude", type=bounded(float, 0, 180), default=math.degrees(ORBIT_YAW_AMPLITUDE),
                           help="yaw amplitude in degrees, 0..180")
    turntable.set_defaults(handler=run_turntable)

    sweep = subparsers.add_parser("sweep", help="sweep one basis coefficient into a GIF/MP4 or a PNG strip")
    add_view_arguments(sweep)
    sweep.add_argument("--basis", type=bounded(int, 1), required=True, help="basis vector 1..n")
    sweep.add_argument("--from", dest="start", type=finite_float, required=True)
    sweep.add_argument("--to", dest="stop", type=finite_float, required=True)
    sweep.add_argument("--steps", type=bounded(int, 2, MAX_ANIMATION_FRAMES), default=9,
                       help=f"frames of the sweep, 2..{MAX_ANIMATION_FRAMES} (default 9)")
    sweep.add_argument("--fps", type=bounded(int, 1, MAX_FPS), default=8, help=f"1..{MAX_FPS} (default 8)")
    sweep.set_defaults(handler=run_sweep)
