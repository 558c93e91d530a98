"""`export3d bench`: per-stage latency, reference vs accelerated renderer, preview and full frames.

Every number is the median of several timed runs after warm-up, measured in one process so the
reference and accelerated renderers see the same machine state. Prints a table; `--json OUT`
writes the shape promised in the performance issue.
"""
from __future__ import annotations

import argparse
import dataclasses
import resource
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from export3d_core.acceleration import Acceleration
from export3d_core.atomic import write_json_atomic
from export3d_core.camera import ORBIT_PITCH_AMPLITUDE, OrbitCamera, orbit_path
from export3d_core.checkpoint import DEMO_CHECKPOINT, load_checkpoint
from export3d_core.config import ModelConfig
from export3d_core.devices import pick_device
from export3d_core.metrics import psnr_db
from export3d_core.model import Export3D
from export3d_core.render.triplane import sample_triplane
from export3d_core.session import PortraitSession


@dataclass(frozen=True)
class BenchSettings:
    warmup: int = 1  # untimed runs first (allocator, caches, lazy init)
    repeats: int = 5  # timed runs; the median is reported


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def median_ms(fn: Callable[[], object], device: torch.device, settings: BenchSettings) -> float:
    for _ in range(settings.warmup):
        fn()
    times = []
    for _ in range(settings.repeats):
        _sync(device)
        start = time.perf_counter()
        fn()
        _sync(device)
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def reset_peak_memory(device: torch.device) -> None:
    """Start a model's peak from here on CUDA (earlier presets and blob fitting do not count).
    A CPU process's peak resident size cannot be reset: there it is the process's peak so far."""
    if device.type == "cuda":
        _sync(device)
        torch.cuda.reset_peak_memory_stats(device)


def peak_memory_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


# A head-sized, sharp-surfaced blob for random-weight models (their field is haze everywhere,
# which no renderer can skip, so it says nothing about a trained model's speed).
BLOB_CENTRE = (0.0, 0.0, 0.05)  # world units; the tri-plane box is [-0.5, 0.5]^3
BLOB_AXES = (0.2, 0.26, 0.22)  # ellipsoid semi-axes, world units
BLOB_SHARPNESS = 2000.0  # raw density per world unit of signed distance: a surface ~2 texels thick
BLOB_RAW_RANGE = (-20.0, 60.0)  # raw density outside / inside (inside: opaque within ~2 coarse steps)


@dataclass(frozen=True)
class ShapeSettings:
    steps: int = 600  # Adam steps of the fit (seconds at demo size on one core)
    points: int = 8192  # random points per step: a third in the grid's extent, a third in the box, the rest near the surface
    lr: float = 1e-2


def blob_target(points: torch.Tensor, n_features: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Raw density and colour features of the blob at points (B, N, 3)."""
    centre, axes = points.new_tensor(BLOB_CENTRE), points.new_tensor(BLOB_AXES)
    inside = (1 - ((points - centre) / axes).norm(dim=-1, keepdim=True)) * axes.min()  # ~signed distance
    raw = (inside * BLOB_SHARPNESS).clamp(*BLOB_RAW_RANGE)  # (B, N, 1)
    phases = torch.arange(n_features, device=points.device, dtype=points.dtype)  # (F,)
    colour = torch.sin(points[..., phases.long() % 3] * 9 + phases) * 0.4 + 0.5  # (B, N, F) a coloured texture
    return raw, colour


def shape_random_model(model: Export3D, source: torch.Tensor, settings: ShapeSettings = ShapeSettings()) -> None:
    """Fit the decoder and the EMA tri-plane of a random-weight model so that λ = 0 shows the blob.

    The EMA tri-plane is added to every generated tri-plane, so the session's own path (encode,
    expression, tri-plane) yields the fitted planes; other λ perturb them as the random G does.
    """
    cfg, generator = model.config, torch.Generator(device="cpu").manual_seed(0)
    with torch.no_grad():
        lam = torch.zeros(1, cfg.n_basis, device=source.device)
        generated = model.triplane(model.encode(source), model.expression(lam=lam))  # (1, 3, C, R, R)
    planes = generated.detach().clone().requires_grad_(True)
    decoder = model.decoder.train()
    optimiser = torch.optim.Adam([planes, *decoder.parameters()], lr=settings.lr)
    centre, axes = torch.tensor(BLOB_CENTRE), torch.tensor(BLOB_AXES)
    third = settings.points // 3
    with torch.enable_grad():
        for _ in range(settings.steps):
            wide = (torch.rand(1, third, 3, generator=generator) - 0.5) * 1.5 * cfg.render.box_warp
            box = (torch.rand(1, third, 3, generator=generator) - 0.5) * cfg.render.box_warp
            n_shell = settings.points - 2 * third
            direction = F.normalize(torch.randn(1, n_shell, 3, generator=generator), dim=-1)
            shell = centre + direction * axes * (1 + 0.1 * torch.randn(1, n_shell, 1, generator=generator))
            points = torch.cat([wide, box, shell], dim=1).to(source.device)  # (1, N, 3)
            raw_target, colour_target = blob_target(points, cfg.feature_channels)
            raw, colour = decoder(sample_triplane(planes, points, cfg.render.box_warp))
            surface = (raw_target > 0).float()  # colour matters where the surface is seen
            loss = (raw - raw_target).square().mean() / 100 + ((colour - colour_target).square() * surface).mean()
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
    decoder.eval()
    with torch.no_grad():
        model.generator.triplane_ema.add_((planes.detach() - generated)[0].to(model.generator.triplane_ema.dtype))


def _orbit(step: int) -> OrbitCamera:
    """A new camera every call, as in a drag (EG3D's orbit video path)."""
    yaw, pitch = orbit_path(step / 16, pitch_amp=ORBIT_PITCH_AMPLITUDE / 2)
    return OrbitCamera(yaw=yaw, pitch=pitch)


def bench_source(model: Export3D, device: torch.device, trained: bool) -> torch.Tensor:
    """The portrait a benchmark renders: the default demo portrait for a trained model (what the
    artist sees first; noise would give it an out-of-domain, fog-filled field), noise otherwise."""
    size = model.config.input_size
    if trained:
        from export3d_core.portrait import default_portrait, load_portrait
        from export3d_core.display import image_to_tensor

        return image_to_tensor(load_portrait(default_portrait().path, size).image, size).to(device)
    torch.manual_seed(0)
    return torch.rand(1, 3, size, size, device=device) * 2 - 1


@torch.no_grad()
def bench_model(model: Export3D, device: torch.device, settings: BenchSettings,
                shape: ShapeSettings | None = None, acceleration: Acceleration = Acceleration()) -> dict[str, float]:
    """All numbers for one model; `shape` first fits a random model's field to a sharp blob.
    `acceleration` configures the session (the editor's path); the reference is always plain fp32."""
    cfg = model.config
    model = model.to(device).eval()
    source = bench_source(model, device, trained=shape is None)
    if shape is not None:
        shape_random_model(model, source, shape)
    reset_peak_memory(device)
    cameras = OrbitCamera(yaw=0.3, pitch=0.1).params(device=device)[None]  # (1, 25)
    session = PortraitSession(model, device, acceleration=acceleration)
    session.set_portrait(source)
    stats = _stage_stats(model, session, source, cameras, device, settings)
    stats.update(_editor_stats(session, device, settings))
    stats.update(_bf16_check(model, source, torch.zeros(1, cfg.n_basis, device=device), cameras, device, settings))
    stats["peak_mem_mb"] = peak_memory_mb(device)
    return {key: round(value, 3) for key, value in stats.items()}


def _stage_stats(model: Export3D, session: PortraitSession, source: torch.Tensor, cameras: torch.Tensor,
                 device: torch.device, settings: BenchSettings) -> dict[str, float]:
    """Each stage's time at λ = 0, and the accelerated frame's agreement with the reference."""
    cfg = model.config
    lam = torch.zeros(1, cfg.n_basis, device=device)
    lam_values = [0.0] * cfg.n_basis
    appearance = model.encode(source)
    planes = session.planes(lam_values)
    field = session.field(planes)  # through the session's decoder (compiled where asked)
    exact_planes = model.generate_triplane(source, lam=lam).float()  # fp32 G, whatever the session's autocast
    exact_field = model.field(exact_planes)  # the model's own decoder, never compiled
    grid = session.grid(lam_values)
    accelerated = session.accelerated_renderer
    # Whole frames go through Export3D.render; the stage timings below call the renderers alone.
    reference = model.render(exact_planes, cameras)  # the reference pipeline, plain fp32
    fast = model.render(planes, cameras, renderer=accelerated, grid=grid, decoder=session.decoder)
    stats = {
        "encode_ms": median_ms(lambda: model.encode(source), device, settings),
        "triplane_ms": median_ms(lambda: model.triplane(appearance, model.expression(lam=lam)), device, settings),
        "grid_ms": median_ms(lambda: session.build_grid(planes), device, settings),
        "reference_render_ms": median_ms(lambda: model.renderer.render(exact_field, cameras, cfg.neural_size), device, settings),
        "accelerated_render_ms": median_ms(
            lambda: accelerated.render(field, cameras, cfg.neural_size, grid=grid), device, settings),
        "sr_fp32_ms": median_ms(lambda: model.superres(reference.image_raw, reference.features), device, settings),
        "sr_ms": median_ms(lambda: session.super_resolve(reference.image_raw, reference.features), device, settings),
    }
    stats["agreement_psnr_db"] = psnr_db(reference.image, fast.image)
    # The editor's whole full-quality frame (accelerated render + its SR) against the reference pipeline.
    stats["full_agreement_psnr_db"] = psnr_db(reference.image, session.render(lam_values, cameras, quality="full").image)
    stats["sr_bf16"] = float(session.sr_bf16)
    stats["cuda_graphs"] = float(session.cuda_graphs)  # frames replayed as CUDA graphs (reference renderer)
    stats["proposal_samples"] = float(accelerated.proposal_samples or 0)
    stats["raw_agreement_psnr_db"] = psnr_db(reference.image_raw, fast.image_raw)
    stats["speedup"] = stats["reference_render_ms"] / stats["accelerated_render_ms"]
    stats["render_ms"] = stats["accelerated_render_ms"]  # what the editor pays: decoder + volume rendering
    stats["opacity_mean"] = reference.alpha.mean().item()  # how much of the frame the subject fills
    return stats


def _editor_stats(session: PortraitSession, device: torch.device, settings: BenchSettings) -> dict[str, float]:
    """What the artist waits for: a new camera every frame (a drag), or a new λ and camera."""
    lam_values = [0.0] * session.config.n_basis
    step = [0]

    def camera_change(quality: str) -> None:
        step[0] += 1
        session.render(lam_values, _orbit(step[0]), quality=quality)

    def lambda_change(quality: str) -> None:
        step[0] += 1  # a new λ every call, so the tri-plane and grid caches miss as they do for the artist
        lam_values[0] = 0.01 * step[0]
        session.render(lam_values, _orbit(step[0]), quality=quality)

    return {
        "preview_ms": median_ms(lambda: camera_change("preview"), device, settings),
        "full_ms": median_ms(lambda: camera_change("full"), device, settings),
        "lambda_change_ms": median_ms(lambda: lambda_change("preview"), device, settings),
        "lambda_change_full_ms": median_ms(lambda: lambda_change("full"), device, settings),
    }


def _bf16_check(model: Export3D, source: torch.Tensor, lam: torch.Tensor, cameras: torch.Tensor,
                device: torch.device, settings: BenchSettings) -> dict[str, float]:
    """bf16 autocast of G (encode + tri-plane): its time and the final image's agreement with fp32."""
    def generate() -> torch.Tensor:
        with torch.autocast(device.type, dtype=torch.bfloat16):
            return model.generate_triplane(source, lam=lam).float()

    exact = model.render(model.generate_triplane(source, lam=lam), cameras).image
    approx = model.render(generate(), cameras).image
    return {
        "bf16_generator_ms": median_ms(generate, device, settings),
        "fp32_generator_ms": median_ms(lambda: model.generate_triplane(source, lam=lam), device, settings),
        "bf16_agreement_psnr_db": psnr_db(exact, approx),
    }


# The agreement sweep: every demo portrait, these cameras (yaw, pitch), λ = 0 and one basis vector at
# SWEEP_LAMBDA (a different one per portrait). One frame says little: the worst one is what the
# 40 dB promise is about.
SWEEP_VIEWS = ((0.0, 0.0), (0.35, 0.1), (-0.3, -0.2))
SWEEP_LAMBDA = 4.0


@torch.no_grad()
def agreement_sweep(model: Export3D, device: torch.device, acceleration: Acceleration = Acceleration(),
                    portraits: list | None = None, views: tuple[tuple[float, float], ...] = SWEEP_VIEWS) -> dict:
    """Reference vs accelerated renderer on many frames: final-image PSNR (min, median) and the
    median time of each renderer (one timed run per frame, after that frame's untimed one)."""
    from export3d_core.portrait import demo_portraits, load_portrait

    cfg, model = model.config, model.to(device).eval()
    portraits = demo_portraits() if portraits is None else portraits
    agreement, reference_ms, accelerated_ms = [], [], []
    once = BenchSettings(warmup=0, repeats=1)  # each frame is warm: both renderers just drew it
    for index, portrait in enumerate(portraits):
        session = PortraitSession(model, device, acceleration=acceleration)
        session.set_portrait(load_portrait(portrait.path, cfg.input_size).image)
        renderer = session.accelerated_renderer
        for lam in ([0.0] * cfg.n_basis, [SWEEP_LAMBDA * (i == index % cfg.n_basis) for i in range(cfg.n_basis)]):
            planes, grid = session.planes(lam), session.grid(lam)
            field = session.field(planes)
            for yaw, pitch in views:
                cameras = OrbitCamera(yaw=yaw, pitch=pitch).params(device=device)[None]
                reference = model.render(planes, cameras, decoder=session.decoder)
                fast = model.render(planes, cameras, renderer=renderer, grid=grid, decoder=session.decoder)
                agreement.append(psnr_db(reference.image, fast.image))
                reference_ms.append(median_ms(lambda: model.renderer.render(field, cameras, cfg.neural_size), device, once))
                accelerated_ms.append(median_ms(lambda: renderer.render(field, cameras, cfg.neural_size, grid=grid),
                                                device, once))
    if not agreement:
        raise ValueError("the agreement sweep needs at least one portrait and one view")
    reference_median, accelerated_median = statistics.median(reference_ms), statistics.median(accelerated_ms)
    return {"frames": len(agreement), "min_agreement_psnr_db": round(min(agreement), 3),
            "median_agreement_psnr_db": round(statistics.median(agreement), 3),
            "reference_render_ms": round(reference_median, 3), "accelerated_render_ms": round(accelerated_median, 3),
            "speedup": round(reference_median / accelerated_median, 3)}


def device_label(device: torch.device) -> str:
    if device.type == "cuda":
        return f"{device.type}:{device.index or 0} ({torch.cuda.get_device_name(device)})"
    return "cpu"


def run_bench(args: argparse.Namespace) -> int:
    from export3d_core.atomic import check_writable

    device = pick_device(args.device)
    if args.json:
        check_writable(args.json)  # before minutes of timing
    if args.threads:
        torch.set_num_threads(args.threads)
    settings = BenchSettings(warmup=args.warmup, repeats=args.repeats)
    acceleration = Acceleration(compile_decoder=args.compile_decoder, autocast_bf16=args.autocast_bf16,
                                cuda_graphs=not args.no_cuda_graphs)
    if args.sweep:
        path = args.checkpoint or DEMO_CHECKPOINT
        sweep = agreement_sweep(load_checkpoint(path)[0], device, acceleration)
        print(f"{path}: {device_label(device)}, {torch.get_num_threads()} threads, {sweep['frames']} frames "
              "(demo portraits x views x 2 λ)")
        for key, value in sweep.items():
            print(f"  {key:26s}{value}")
        if args.json:
            write_json_atomic(args.json, sweep)
        return 0
    if args.forward:
        for preset in args.presets:
            params, ms = forward_pass(preset, device, settings)
            print(f"{preset:6s} parameters {params:>12,}   one forward pass {ms:9.1f} ms "
                  f"({device_label(device)}, {torch.get_num_threads()} threads, median of {settings.repeats})")
        return 0
    report = bench_presets(args.presets, device, settings, checkpoint=args.checkpoint,
                           shape=ShapeSettings(steps=args.shape_steps), acceleration=acceleration)
    _print_table(report)
    if args.json:
        write_json_atomic(args.json, report)
        print(f"wrote {args.json}")
    return 0


@torch.no_grad()
def forward_pass(preset: str, device: torch.device, settings: BenchSettings) -> tuple[int, float]:
    """Parameter count and the time of one full `model(source, camera, lam=...)` at batch 1."""
    torch.manual_seed(0)
    model = Export3D(ModelConfig.preset(preset)).to(device).eval()
    cfg = model.config
    source = torch.rand(1, 3, cfg.input_size, cfg.input_size, device=device) * 2 - 1
    cameras = OrbitCamera().params(device=device)[None]
    lam = torch.zeros(1, cfg.n_basis, device=device)
    return model.parameter_count(), median_ms(lambda: model(source, cameras, lam=lam), device, settings)


def bench_presets(presets: list[str], device: torch.device, settings: BenchSettings, *,
                  checkpoint: Path | None = None, shape: ShapeSettings = ShapeSettings(),
                  acceleration: Acceleration = Acceleration()) -> dict:
    """The report of the issue: device, threads, and one `bench_model` dict per preset.

    A preset uses `checkpoint` when its config has that preset's name, the shipped demo model for
    "demo" when present, and otherwise random weights with a fitted blob field (noted in the report).
    """
    report: dict = {"device": device_label(device), "threads": torch.get_num_threads(), "presets": {}, "notes": [],
                    "acceleration": dataclasses.asdict(acceleration)}
    loaded = load_checkpoint(checkpoint)[0] if checkpoint else None
    for preset in presets:
        if loaded is not None and loaded.config.name == preset:
            model, origin, fit = loaded, str(checkpoint), None
        elif preset == "demo" and loaded is None and DEMO_CHECKPOINT.is_file():
            model, origin, fit = load_checkpoint(DEMO_CHECKPOINT)[0], str(DEMO_CHECKPOINT), None
        else:
            torch.manual_seed(0)
            model, fit = Export3D(ModelConfig.preset(preset)), shape
            origin = f"random weights; decoder + EMA tri-plane fitted to a sharp blob ({shape.steps} steps)"
        report["notes"].append(f"{preset}: {origin}")
        print(f"benchmarking {preset} ({origin}) on {report['device']}, {report['threads']} threads ...", flush=True)
        report["presets"][preset] = bench_model(model, device, settings, fit, acceleration)
    if loaded is not None and loaded.config.name not in presets:
        report["notes"].append(f"{checkpoint} is a {loaded.config.name!r} model, not benchmarked")
    return report


def _print_table(report: dict) -> None:
    presets = list(report["presets"])
    keys = sorted({key for stats in report["presets"].values() for key in stats})
    print(f"{'metric':24s}" + "".join(f"{name:>14s}" for name in presets))
    for key in keys:
        print(f"{key:24s}" + "".join(f"{report['presets'][p].get(key, float('nan')):14.2f}" for p in presets))


def add_bench_command(subparsers) -> None:
    parser = subparsers.add_parser("bench", help="measure per-stage latency and renderer speed-up")
    parser.add_argument("--checkpoint", type=Path, help="demo-preset checkpoint (default: the shipped demo model)")
    parser.add_argument("--presets", nargs="+", default=["demo", "paper"], choices=("tiny", "demo", "paper"))
    parser.add_argument("--device", default=None)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (default: torch's choice)")
    parser.add_argument("--shape-steps", type=int, default=ShapeSettings.steps,
                        help="fit steps of the blob field given to random-weight models")
    parser.add_argument("--json", type=Path, help="also write the numbers as JSON")
    parser.add_argument("--compile-decoder", action="store_true",
                        help="the session's decoder through torch.compile (CUDA only; compiles on first use)")
    parser.add_argument("--autocast-bf16", action="store_true",
                        help="the session's G (encode, tri-plane) under bf16 autocast; the reference stays fp32")
    parser.add_argument("--no-cuda-graphs", action="store_true",
                        help="on CUDA, render the session's frames eagerly with the accelerated renderer "
                             "instead of replaying the reference renderer's CUDA graphs")
    parser.add_argument("--forward", action="store_true",
                        help="only print each preset's parameter count and one full forward pass")
    parser.add_argument("--sweep", action="store_true",
                        help="only the renderer agreement over every demo portrait, 3 views and 2 λ "
                             "(min / median PSNR, median speed-up) for the demo checkpoint")
    parser.set_defaults(handler=run_bench)


__all__ = ["BenchSettings", "ShapeSettings", "agreement_sweep", "bench_model", "bench_presets",
           "shape_random_model", "add_bench_command"]
