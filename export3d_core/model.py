"""Export3D: composes LeBS, the hybrid tri-plane generator, the decoder, the renderer and SR.

The staged API mirrors the three caches (docs/architecture.md, "The three caches"): `encode`
(per portrait), `expression` + `triplane` (per λ), `render` (per camera). `forward` runs all
stages and equals the staged calls.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from export3d_core.config import ModelConfig, RenderConfig
from export3d_core.nn.decoder import TriplaneDecoder
from export3d_core.nn.generator import Appearance, HybridTriplaneGenerator
from export3d_core.nn.lebs import LeBS
from export3d_core.nn.superres import SuperResolution
from export3d_core.nn.upscaler import Upscaler
from export3d_core.render.accelerated import AcceleratedRenderer
from export3d_core.render.occupancy import OccupancyGrid
from export3d_core.render.renderer import FieldFn, VolumeRenderer, chunked_field, rays_per_pass
from export3d_core.render.sparsity import free_space_opacity
from export3d_core.render.triplane import sample_triplane


@dataclass
class RenderOutput:
    """One rendered view. Images are in [-1, 1]."""

    # (B, 3, S, S) after super-resolution: S = output_size, or factor × output_size for a fitted
    # portrait's full-quality render when the fit learnt an upscaler
    image: Tensor
    image_raw: Tensor  # (B, 3, n, n): first three channels of the feature image
    depth: Tensor  # (B, 1, n, n) expected ray depth
    alpha: Tensor  # (B, 1, n, n) accumulated opacity
    features: Tensor  # (B, F, n, n) the composited feature image
    distortion: Tensor | None = None  # (B,) mean distortion loss of the rays (training forward only)
    sparsity: Tensor | None = None  # (B,) free-space opacity (`render.sparsity`), when asked for


class Export3D(nn.Module):
    """One-shot, expression-controllable 3D portrait model (Ki et al., ECCV 2024)."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        self.lebs = LeBS(config)
        self.generator = HybridTriplaneGenerator(config)
        self.decoder = TriplaneDecoder(config)
        self.superres = SuperResolution(config)
        self.renderer = VolumeRenderer(config.render)
        # A fitted portrait's upscaler (nn/upscaler.py), run after SR on full-quality renders; None
        # in a trained model, so checkpoints' state dicts do not hold it.
        self.upscaler: Upscaler | None = None

    # -- expression -------------------------------------------------------------------------------
    def basis(self) -> Tensor:
        """The learned orthonormal basis V, (n, d)."""
        return self.lebs.basis()

    def coefficients(self, beta: Tensor) -> Tensor:
        """LeBS: expression parameters β (B, beta_dim) -> coefficients λ (B, n)."""
        _check_last_dim(beta, self.config.beta_dim, "beta")
        return self.lebs.coefficients(beta)

    def expression(self, *, lam: Tensor | None = None, beta: Tensor | None = None) -> Tensor:
        """Expression embedding e = Σ λ_i v_i, (B, d), from λ (the sliders) or from β."""
        if (lam is None) == (beta is None):
            raise ValueError("give exactly one of lam= or beta=")
        if beta is not None:
            lam = self.coefficients(beta)
        _check_last_dim(lam, self.config.n_basis, "lam")
        return self.lebs.embed(lam)

    # -- appearance and tri-plane -----------------------------------------------------------------
    def encode(self, source: Tensor) -> Appearance:
        """Everything that depends on the source image alone; cache it per portrait."""
        size = self.config.input_size
        if source.dim() != 4 or source.shape[1:] != (3, size, size):
            raise ValueError(f"source must be (B, 3, {size}, {size}) in [-1, 1], got {tuple(source.shape)}")
        return self.generator.encode(source)

    def triplane(self, appearance: Appearance, e: Tensor) -> Tensor:
        """Expression-conditioned tri-plane, (B, 3, C, R, R)."""
        return self.generator.triplane(appearance, e)

    def generate_triplane(self, source: Tensor, *, lam: Tensor | None = None, beta: Tensor | None = None) -> Tensor:
        """encode -> expression -> triplane in one call (evaluation, benchmarks), (B, 3, C, R, R)."""
        return self.triplane(self.encode(source), self.expression(lam=lam, beta=beta))

    # -- rendering --------------------------------------------------------------------------------
    def field(self, planes: Tensor, decoder: nn.Module | None = None) -> FieldFn:
        """The radiance field of one batch of tri-planes: points (B, N, 3) -> (density_raw, colour).
        `decoder` stands in for the model's own (a session's compiled copy of it)."""
        box_warp = self.config.render.box_warp
        decoder = self.decoder if decoder is None else decoder

        def evaluate(points: Tensor) -> tuple[Tensor, Tensor]:
            return decoder(sample_triplane(planes, points, box_warp))

        return chunked_field(evaluate)

    def density_field(self, planes: Tensor) -> FieldFn:
        """Density only, returned as both outputs (an occupancy grid needs no colour): half the
        decoder's work per point."""
        box_warp = self.config.render.box_warp

        def evaluate(points: Tensor) -> tuple[Tensor, Tensor]:
            raw = self.decoder.density(sample_triplane(planes, points, box_warp))  # (B, N, 1)
            return raw, raw

        return chunked_field(evaluate)

    def render(
        self,
        planes: Tensor,
        cameras: Tensor,
        *,
        neural_size: int | None = None,
        renderer: VolumeRenderer | AcceleratedRenderer | None = None,
        grid: OccupancyGrid | None = None,
        decoder: nn.Module | None = None,
        sr_bf16: bool = False,
        perturb: bool = False,
        super_resolve: bool = True,
        **render_kwargs,
    ) -> RenderOutput:
        """Decoder + volume rendering + SR for cameras (B, 25): the one composition of the three.

        `renderer` swaps in another renderer with the same interface (the accelerated one, given
        its occupancy `grid`); `decoder` another copy of the decoder (a compiled one); `neural_size`
        renders fewer rays (the editor's preview); `super_resolve=False` skips SR and returns the
        raw image bilinearly upsampled to the output size instead, as does any `neural_size` but
        the model's. A fitted portrait's `upscaler`, when there is one, runs after SR (full quality
        only), so its image is `factor` times the output size. `sr_bf16` runs SR under bf16 autocast. Rays are rendered in passes of
        `rays_per_pass` unless `chunk` (rays per pass) is given.
        """
        if cameras.dim() != 2 or cameras.shape[1] != self.config.camera_dim:
            raise ValueError(f"cameras must be (B, {self.config.camera_dim}), got {tuple(cameras.shape)}")
        # Ray geometry stays fp32 whatever the planes' dtype: in bf16 (autocast training on CUDA)
        # depths in [2.25, 3.3] snap to steps of 1/64 and the importance samples collapse.
        cameras = cameras.to(device=planes.device, dtype=torch.float32)
        size = neural_size or self.config.neural_size
        render_kwargs.setdefault("chunk", rays_per_pass(cameras.shape[0], self.config.render))
        if grid is not None:
            render_kwargs["grid"] = grid
        result = (renderer or self.renderer).render(
            self.field(planes, decoder), cameras, size, perturb=perturb, **render_kwargs
        )
        image_raw = result.features[:, :3]  # (B, 3, n, n)
        if super_resolve and size == self.config.neural_size and self.upscaler is not None:
            image, hidden = self.superres(image_raw, result.features, bf16=sr_bf16, hidden=True)
            image = self.upscaler(image, hidden).clamp(-1, 1)
        elif super_resolve and size == self.config.neural_size:
            image = self.superres(image_raw, result.features, bf16=sr_bf16)
        else:
            image = nn.functional.interpolate(
                image_raw, size=(self.config.output_size,) * 2, mode="bilinear", align_corners=False
            )
        return RenderOutput(image, image_raw, result.depth, result.alpha, result.features, result.distortion)

    def forward(
        self, source: Tensor, cameras: Tensor, *, lam: Tensor | None = None, beta: Tensor | None = None,
        sparsity_points: int = 0,
    ) -> RenderOutput:
        """All stages at once; equal to encode -> expression -> triplane -> render.

        In training mode the output also carries the rays' distortion loss (for the regulariser);
        `sparsity_points` > 0 adds the free-space opacity at that many random points per image.
        """
        planes = self.generate_triplane(source, lam=lam, beta=beta)
        out = self.render(planes, cameras, perturb=self.training, distortion=self.training)
        if sparsity_points > 0:
            out.sparsity = free_space_opacity(self.field(planes), self.config.render, planes.shape[0],
                                              sparsity_points, device=planes.device)
        return out

    def parameter_count(self) -> int:
        return sum(p.numel() for p in self.parameters())


def _check_last_dim(tensor: Tensor, size: int, name: str) -> None:
    if tensor.dim() != 2 or tensor.shape[1] != size:
        raise ValueError(f"{name} must be (B, {size}), got {tuple(tensor.shape)}")


__all__ = ["Export3D", "RenderOutput", "Appearance", "ModelConfig", "RenderConfig"]
