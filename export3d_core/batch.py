"""`export3d batch`: apply presets or a project's animation to every portrait in a folder.

With `--preset P.json` (the editor's presets library, or one preset) each portrait gets one still
PNG per preset; with `--project X` it gets the project's animation (MP4, GIF or a PNG folder), or
the project's still pose when it has no keys; `--paste-back` composites every image into its own
photo at the photo's size (a pose's yaw and pitch turn the head from the photo's own pose, as
`render --paste-back` does). One model stays loaded; a file that cannot be read,
has no face or fails to render is reported on its own line and skipped, never fatal. The exit code
is 0 when every portrait was written, 1 when some were not.
"""
from __future__ import annotations

import argparse
import json
import re
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from export3d_core.animation import Animation, CameraPose
from export3d_core.animation_export import AnimationExportSettings, check_output, export_animation
from export3d_core.atomic import check_writable
from export3d_core.checkpoint import DEMO_CHECKPOINT
from export3d_core.errors import Export3DError
from export3d_core.export import write_png
from export3d_core.fit import FitSettings, fit_crop_size, fit_portrait, with_upscale_steps
from export3d_core.lambda_units import check_lambda
from export3d_core.project_file import ProjectFile, load_project_file
from export3d_core.session import PortraitSession

PRESETS_FORMAT = "export3d-studio-presets"  # app/presets.py's library format
PORTRAIT_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff"}
BATCH_FORMATS = ("mp4", "gif", "png")


@dataclass(frozen=True)
class StillPose:
    name: str
    lam: tuple[float, ...]
    camera: CameraPose


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-") or "preset"


def load_presets(path: Path) -> list[StillPose]:
    """The editor's presets library ({"format", "presets": [...]}) or a single preset object."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise Export3DError(f"presets file not found: {path}") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise Export3DError(f"{Path(path).name} is not a readable presets file ({exc})") from None
    items = data.get("presets") if isinstance(data, dict) and data.get("format") == PRESETS_FORMAT else [data]
    if not isinstance(items, list) or not items:
        raise Export3DError(f"{Path(path).name} holds no presets")
    poses = []
    for index, item in enumerate(items):
        if not isinstance(item, dict) or not isinstance(item.get("lambda"), list):
            raise Export3DError(f"{Path(path).name}: preset {index + 1} needs a name and a lambda list")
        name = str(item.get("name") or f"preset{index + 1}")
        try:
            lam = tuple(check_lambda(item["lambda"], "λ"))
            camera = CameraPose.from_dict(item.get("camera") or {})
        except Export3DError as exc:
            raise Export3DError(f"{Path(path).name}: preset {name!r}: {exc}") from None
        poses.append(StillPose(name, lam, camera))
    return poses


def portrait_files(folder: Path) -> tuple[list[Path], int]:
    """The image files in `folder` (sorted) and how many other files were ignored."""
    if not Path(folder).is_dir():
        raise Export3DError(f"portraits folder not found: {folder}")
    files = sorted(p for p in Path(folder).iterdir() if p.is_file() and not p.name.startswith("."))
    images = [p for p in files if p.suffix.lower() in PORTRAIT_SUFFIXES]
    return images, len(files) - len(images)


@dataclass
class BatchJob:
    """What each portrait gets: still poses (presets) or a project's animation."""

    poses: list[StillPose]
    animation: Animation | None
    out_dir: Path
    kind: str  # mp4 | gif | png (animation only)
    settings: AnimationExportSettings
    overwrite: bool
    paste_back: bool = False  # composite into each portrait's own photo, at its size

    def targets(self, portrait: Path) -> list[Path]:
        stem = portrait.stem
        if self.animation is not None:
            return [self.out_dir / (stem if self.kind == "png" else f"{stem}.{self.kind}")]
        if len(self.poses) == 1:
            return [self.out_dir / f"{stem}.png"]
        return [self.out_dir / f"{stem}_{_slug(pose.name)}.png" for pose in self.poses]

    def check_targets(self, portrait: Path) -> None:
        """Refuse existing outputs before anything is loaded or rendered for this portrait."""
        for target in self.targets(portrait):
            if self.animation is not None:
                check_output(target, self.overwrite)
            elif target.exists() and not self.overwrite:
                raise Export3DError(f"{target} exists; pass --overwrite to replace it")

    def run(self, session: PortraitSession, portrait: Path, compositor=None) -> list[Path]:
        """Render and write this portrait's outputs; with a `paste_back.Compositor`, pasted into its photo."""
        targets = self.targets(portrait)
        if self.animation is not None:
            return [export_animation(session, self.animation, targets[0], self.settings, overwrite=self.overwrite,
                                     compositor=compositor)]
        from export3d_core.animation_export import resize_frame

        for pose, target in zip(self.poses, targets):
            camera = pose.camera.to_orbit()
            if compositor is not None:
                frame = compositor.frame(session, pose.lam, compositor.turned(camera.yaw, camera.pitch))
            else:
                frame = resize_frame(session.render_image(pose.lam, camera, self.settings.mode), self.settings.size)
            write_png(target, frame, overwrite=self.overwrite)
        return targets

    def paste_back_problem(self, compositor) -> str:
        """"" when every pasted view is within the measured pose limit of the photo; else which are not."""
        from export3d_core.animation_export import frame_times, paste_back_cameras
        from export3d_core.paste_back import limit_problem

        if self.animation is not None:
            times = frame_times(self.animation, self.settings)
            cameras = paste_back_cameras(self.animation, times, compositor.photo_camera)
        else:
            cameras = [compositor.turned(c.yaw, c.pitch) for c in (p.camera.to_orbit() for p in self.poses)]
        return limit_problem(cameras, compositor.photo_camera)


@dataclass
class PortraitFitter:
    """`--fit`: each portrait gets its own fitted copy of the model (`export3d_core.fit`, as
    `export3d fit` does it) before it is rendered; the loaded model itself is never changed."""

    model: object  # Export3D
    estimator: object | None  # ExpressionEstimator for the pivot λ (None, a random model: λ = 0)
    steps: int
    upscale_steps: int | None = None  # the upscaler's steps (None: the default; 0: none)

    @property
    def settings(self) -> FitSettings:
        return with_upscale_steps(FitSettings(steps=self.steps), self.upscale_steps)

    @property
    def crop_size(self) -> int:
        """The side portraits are cropped at for the fit (large enough for the upscaler)."""
        return fit_crop_size(self.model.config, self.settings)

    def session_for(self, image: np.ndarray, camera: np.ndarray | None,
                    native_side: float | None = None) -> tuple[PortraitSession, str]:
        """A session of a fitted copy holding `image`, and the line that says how the fit went."""
        from export3d_core.data.face_pose import frontal_camera

        # the pivot, as `export3d fit` takes it: the photo's own λ and camera (frontal without landmarks)
        lam = self.estimator.estimate(image).lam if self.estimator is not None else [0.0] * self.model.config.n_basis
        camera = frontal_camera() if camera is None else camera
        result = fit_portrait(self.model, image, camera, lam, self.settings, native_side=native_side)
        session = PortraitSession(result.model)
        session.set_portrait(image)
        return session, f"fitted in {result.seconds:.1f} s, {result.upscale_note}"


def process_portrait(session: PortraitSession, job: BatchJob, portrait: Path, aligned: bool,
                     fitter: PortraitFitter | None = None) -> str:
    """One portrait, end to end; returns the result line. Raises only what the caller reports."""
    from export3d_core.portrait import load_portrait

    started = time.perf_counter()
    job.check_targets(portrait)
    size = session.config.input_size if fitter is None else fitter.crop_size
    loaded = load_portrait(portrait, size, align=False if aligned else None)
    note = ""
    if fitter is not None:
        session, fitted = fitter.session_for(loaded.image, loaded.camera, loaded.native_side)
        note = f", {fitted}"
    else:
        session.set_portrait(loaded.image)
    compositor = None
    if job.paste_back:
        from export3d_core.paste_back import photo_compositor

        compositor = photo_compositor(portrait, size, aligned=True if aligned else None)
        problem = job.paste_back_problem(compositor)
        note += f", warning: {problem}" if problem else ""
    written = job.run(session, portrait, compositor)
    names = ", ".join(p.name for p in written)
    return f"ok      {portrait.name} -> {names} ({time.perf_counter() - started:.1f} s{note})"


def build_job(args: argparse.Namespace) -> tuple[BatchJob, ProjectFile | None]:
    if args.paste_back:
        from export3d_core.view_commands import check_paste_back_mode

        check_paste_back_mode(args.mode)
        if args.size is not None:
            raise Export3DError("--paste-back writes each image at its photo's own size; drop --size")
    settings = AnimationExportSettings(fps=args.fps, size=args.size, mode=args.mode)
    out_dir = Path(args.output)
    if out_dir.exists() and not out_dir.is_dir():
        raise Export3DError(f"{out_dir} is a file; -o needs a folder")
    if not out_dir.parent.is_dir():
        raise Export3DError(f"folder does not exist: {out_dir.parent}")
    check_writable(out_dir / "probe")  # a read-only folder fails now, not once per portrait
    if args.preset is not None:
        return BatchJob(load_presets(args.preset), None, out_dir, "png", settings, args.overwrite,
                        args.paste_back), None
    project = load_project_file(args.project)
    poses = [StillPose(project.path.name, project.lam, project.camera)]
    return BatchJob(poses, project.animation, out_dir, args.format, settings, args.overwrite,
                    args.paste_back), project


def load_batch_model(args: argparse.Namespace, project: ProjectFile | None):
    from export3d_core.view_commands import load_model

    checkpoint = args.checkpoint or (project.checkpoint if project is not None else None)
    if checkpoint is not None and not Path(checkpoint).is_file():
        raise Export3DError(f"checkpoint not found: {checkpoint}")
    return load_model(argparse.Namespace(checkpoint=checkpoint, random_init=args.random_init, device=args.device))


def batch_estimator(model, args: argparse.Namespace, project: ProjectFile | None):
    """The expression estimator beside the batch's checkpoint; missing, it stops the batch before it starts."""
    from export3d_core.expression_estimate import ExpressionEstimator

    checkpoint = args.checkpoint or (project.checkpoint if project is not None else None) or DEMO_CHECKPOINT
    return ExpressionEstimator.for_checkpoint(model, checkpoint)


def run_batch(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    job, project = build_job(args)
    portraits, ignored = portrait_files(args.portraits)
    if not portraits:
        raise Export3DError(f"no portraits (.png, .jpg, …) in {args.portraits}")
    model = load_batch_model(args, project)
    n = model.config.n_basis
    for pose in job.poses:
        if len(pose.lam) != n:
            raise Export3DError(f"{pose.name!r} has {len(pose.lam)} λ values; the model has {n}")
    fitter = None
    if args.fit:
        fitter = PortraitFitter(model, None if args.random_init else batch_estimator(model, args, project),
                                args.fit_steps, args.fit_upscale_steps)
    job.out_dir.mkdir(exist_ok=True)
    session = PortraitSession(model)
    failed, started = [], time.perf_counter()
    with tqdm(portraits, desc="batch", unit="portrait") as bar:
        for portrait in bar:
            try:
                bar.write(process_portrait(session, job, portrait, args.aligned, fitter))
            except Exception as exc:  # one bad portrait must never stop the batch
                reason = str(exc) if isinstance(exc, Export3DError) else f"{type(exc).__name__}: {exc}"
                bar.write(f"FAILED  {portrait.name}: {reason}")
                failed.append(portrait.name)
    done = len(portraits) - len(failed)
    note = f"; {ignored} non-image file(s) ignored" if ignored else ""
    print(f"batch: {done} of {len(portraits)} portraits written to {job.out_dir}, {len(failed)} failed"
          f"{note} ({time.perf_counter() - started:.1f} s)")
    return 1 if failed else 0


def add_batch_command(subparsers) -> None:
    from export3d_core.animation_commands import add_project_model_arguments
    from export3d_core.display import RENDER_MODES

    parser = subparsers.add_parser("batch", help="apply presets or a project's animation to a folder of portraits")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--preset", type=Path, help="the editor's presets JSON: one still PNG per preset")
    source.add_argument("--project", type=Path, help="a project (*.e3d.json): its animation, or its still pose")
    parser.add_argument("--portraits", type=Path, required=True, help="folder of portrait photos")
    parser.add_argument("-o", "--output", type=Path, required=True, help="output folder (created if missing)")
    parser.add_argument("--format", choices=BATCH_FORMATS, default="mp4",
                        help="for a project's animation: MP4, GIF or a PNG folder per portrait")
    parser.add_argument("--fps", type=float, default=None, help="frames per second (default: the animation's)")
    parser.add_argument("--size", type=int, default=None, help="output side in pixels (default: the model's)")
    parser.add_argument("--mode", choices=RENDER_MODES, default="final")
    parser.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    parser.add_argument("--paste-back", action="store_true",
                        help="composite each image into its own photo, at the photo's size; a pose's "
                             "yaw/pitch turn the head from the photo's own pose")
    parser.add_argument("--fit", action="store_true",
                        help="fit a copy of the model to each portrait first (as `export3d fit`; slower)")
    parser.add_argument("--fit-steps", type=int, default=FitSettings.steps, help="optimisation steps of --fit")
    parser.add_argument("--fit-upscale-steps", type=int, default=None,
                        help="training steps of --fit's 2x upscaler (0: none)")
    add_project_model_arguments(parser)
    parser.set_defaults(handler=run_batch)
