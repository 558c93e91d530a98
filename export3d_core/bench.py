"""`export3d bench`: per-stage latency, reference vs accelerated renderer, preview and full frames.

Every number is the median of several timed runs after warm-up, measured in one process so the
reference and accelerated renderers see the same machine state. Prints a table; `--json OUT`
writes the shape promised in the performance issue.
"""
from __future__ import annotations

import argparse
import json
import math
import resource
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from export3d_core.camera import OrbitCamera
from export3d_core.checkpoint import DEMO_CHECKPOINT, load_checkpoint
from export3d_core.config import ModelConfig
from export3d_core.model import Export3D
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


def psnr_db(a: torch.Tensor, b: torch.Tensor) -> float:
    """PSNR of two images in [-1, 1] (peak-to-peak 2)."""
    mse = (a.float() - b.float()).square().mean().item()
    return float("inf") if mse == 0 else 10 * math.log10(4.0 / mse)


def peak_memory_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


@torch.no_grad()
def bench_model(model: Export3D, device: torch.device, settings: BenchSettings) -> dict[str, float]:
    cfg = model.config
    model = model.to(device).eval()
    torch.manual_seed(0)
    source = torch.rand(1, 3, cfg.input_size, cfg.input_size, device=device) * 2 - 1
    lam = torch.zeros(1, cfg.n_basis, device=device)
    camera = OrbitCamera(yaw=0.3, pitch=0.1)
    cameras = camera.params(device=device)[None]
    appearance = model.encode(source)
    e = model.expression(lam=lam)
    planes = model.triplane(appearance, e)
    field = model.field(planes)
    reference = model.renderer.render(field, cameras, cfg.neural_size)
    stats = {
        "encode_ms": median_ms(lambda: model.encode(source), device, settings),
        "triplane_ms": median_ms(lambda: model.triplane(appearance, model.expression(lam=lam)), device, settings),
        "reference_render_ms": median_ms(lambda: model.renderer.render(field, cameras, cfg.neural_size), device, settings),
        "sr_ms": median_ms(lambda: model.superres(reference.features[:, :3], reference.features), device, settings),
    }
    session = PortraitSession(model, device)
    session.set_portrait(source)
    accelerated = session.accelerated_renderer
    if accelerated is not None:
        grid = accelerated.build_grid(field, cfg.render)
        fast = accelerated.render(field, cameras, cfg.neural_size, grid=grid)
        stats["accelerated_render_ms"] = median_ms(
            lambda: accelerated.render(field, cameras, cfg.neural_size, grid=grid), device, settings)
        stats["grid_build_ms"] = median_ms(lambda: accelerated.build_grid(field, cfg.render), device, settings)
        ref_image = model.superres(reference.features[:, :3], reference.features)
        fast_image = model.superres(fast.features[:, :3], fast.features)
        stats["agreement_psnr_db"] = psnr_db(ref_image, fast_image)
        stats["speedup"] = stats["reference_render_ms"] / stats["accelerated_render_ms"]
    else:
        stats["accelerated_render_ms"] = stats["reference_render_ms"]
        stats["agreement_psnr_db"] = float("inf")
        stats["speedup"] = 1.0
    stats["render_ms"] = stats["accelerated_render_ms"]  # what the editor pays: decoder + volume rendering
    lam_values = [0.0] * cfg.n_basis
    flip = [0]

    def lambda_change() -> None:
        flip[0] += 1  # a new λ every call, so the tri-plane cache misses as it does for the artist
        lam_values[0] = float(flip[0])
        session.render(lam_values, camera, quality="preview")

    stats["preview_ms"] = median_ms(lambda: session.render(lam_values, camera, quality="preview"), device, settings)
    stats["full_ms"] = median_ms(lambda: session.render(lam_values, camera, quality="full"), device, settings)
    stats["lambda_change_ms"] = median_ms(lambda_change, device, settings)
    stats["peak_mem_mb"] = peak_memory_mb(device)
    return {key: round(value, 3) for key, value in stats.items()}


def device_label(device: torch.device) -> str:
    if device.type == "cuda":
        return f"{device.type}:{device.index or 0} ({torch.cuda.get_device_name(device)})"
    return "cpu"


def run_bench(args: argparse.Namespace) -> int:
    from export3d_core.view_commands import pick_device

    device = pick_device(args.device)
    settings = BenchSettings(warmup=args.warmup, repeats=args.repeats)
    report: dict = {"device": device_label(device), "threads": torch.get_num_threads(), "presets": {}, "notes": []}
    for preset in args.presets:
        if preset == "demo" and (args.checkpoint or DEMO_CHECKPOINT.is_file()):
            model, _ = load_checkpoint(args.checkpoint or DEMO_CHECKPOINT)
            origin = str(args.checkpoint or DEMO_CHECKPOINT)
        else:
            torch.manual_seed(0)
            model = Export3D(ModelConfig.preset(preset))
            origin = "random weights"
        report["notes"].append(f"{preset}: {origin}")
        print(f"benchmarking {preset} ({origin}) on {report['device']}, {report['threads']} threads ...", flush=True)
        report["presets"][preset] = bench_model(model, device, settings)
    _print_table(report)
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1), encoding="utf-8")
        print(f"wrote {args.json}")
    return 0


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
    parser.add_argument("--json", type=Path, help="also write the numbers as JSON")
    parser.set_defaults(handler=run_bench)


__all__ = ["BenchSettings", "bench_model", "psnr_db", "add_bench_command"]
