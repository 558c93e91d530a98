"""How the editor's frames trade exactness for speed: settings and the renderers they build.

`Acceleration` configures the accelerated renderer, SR precision, bf16 autocast of G, a compiled
decoder and CUDA graphs; `PreviewSettings` the fast path used while the artist drags. Both are
measured by `export3d bench` (agreement with the reference in dB, and times).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from export3d_core.config import RenderConfig
from export3d_core.render.accelerated import AcceleratedRenderer


@dataclass(frozen=True)
class PreviewSettings:
    """The fast path used while the artist drags: fewer rays and samples, no SR."""

    ray_fraction: int = 2  # neural_size // ray_fraction rays per side
    sample_fraction: int = 2  # num_coarse and num_fine divided by this


@dataclass(frozen=True)
class Acceleration:
    """How the accelerated renderer trades exactness for speed (measured in `export3d bench`)."""

    grid_resolution: int = 48  # occupancy cells per side; built once per tri-plane (λ change)
    grid_alpha: float = 1e-2  # a cell is empty when its side of path stays below this opacity
    # Samples per ray placed from the grid's densities instead of a coarse pass, as a fraction of
    # the reference's num_coarse + num_fine (0: the reference's samples, skipping only), and
    # evenly spaced samples added to them, as a fraction too; rays whose grid weights spread over
    # more than `soft_spread` coarse intervals take the reference's samples instead (None: none
    # do). Chosen with `export3d bench --sweep` (every demo portrait, 3 views, 2 λ) as the fastest
    # setting that keeps every frame above 40 dB with a margin (the shipped model: sweep minimum
    # 43.9 dB; with soft_spread 4 its bench frame agrees at only 42.2 dB). Other weights may need
    # other settings (a model with thinner surfaces needed 1/6 evenly spaced samples): re-run the
    # sweep after training; `tests/core/test_bench.py` holds the shipped model above 40 dB.
    proposal_fraction: float = 1 / 4
    proposal_uniform_fraction: float = 1 / 8
    soft_spread: int | None = 3
    fine_divisor: int = 4  # without proposals: live importance samples = num_fine // fine_divisor
    early_stop: float = 1e-3  # transmittance at which a ray stops being evaluated
    fine_skip_alpha: float = 1e-2  # without proposals: rays with less coarse opacity skip the importance pass
    sr_bf16: bool | None = None  # SR convolutions in bf16; None: where the device computes bf16 natively
    autocast_bf16: bool = False  # bf16 autocast of G (encode, tri-plane): check agreement with bench
    compile_decoder: bool = False  # torch.compile the decoder MLP (worth it on CUDA)
    # On CUDA: render every frame with the reference renderer replayed as a CUDA graph (one graph
    # per quality, captured on first use; a λ change copies the new planes in). The GPU is bound
    # by kernel launches, which a graph removes; the image is the reference's own.
    cuda_graphs: bool = True


def accelerated_renderer(cfg: RenderConfig, acceleration: Acceleration) -> AcceleratedRenderer:
    """The accelerated renderer `acceleration` describes, for the samples of `cfg`."""
    acc = acceleration
    total = cfg.num_coarse + cfg.num_fine
    proposal = max(2, round(acc.proposal_fraction * total)) if acc.proposal_fraction > 0 else None
    uniform = round(acc.proposal_uniform_fraction * total)
    return AcceleratedRenderer(cfg, early_stop=acc.early_stop, fine_skip_alpha=acc.fine_skip_alpha,
                               fine_samples=max(1, cfg.num_fine // max(1, acc.fine_divisor)),
                               proposal_samples=proposal, proposal_uniform=uniform if uniform >= 2 else 0,
                               soft_spread=acc.soft_spread)


def preview_render_config(cfg: RenderConfig, preview: PreviewSettings) -> RenderConfig:
    """`cfg` with the preview's fewer coarse and importance samples (at least 4 of each)."""
    step = preview.sample_fraction
    return dataclasses.replace(cfg, num_coarse=max(4, cfg.num_coarse // step), num_fine=max(4, cfg.num_fine // step))


__all__ = ["Acceleration", "PreviewSettings", "accelerated_renderer", "preview_render_config"]
