"""Configuration dataclasses and presets: every size of the model lives here.

`ModelConfig.preset(name)` gives `tiny` (tests, seconds on CPU), `demo` (trained on CPU and
shipped) or `paper` (the sizes of the Export3D supplementary). A config is saved next to the
weights as JSON and rebuilds the model on load (`to_dict` / `from_dict`).
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any


# Limits a real model can use, checked before anything is allocated: a checkpoint's header is
# untrusted input, and a size of 8192 or a billion samples per ray would take the machine's memory
# and hours before failing. Each bound leaves room well past the paper preset (input and output
# 512, neural 128, tri-plane 128 x 32 channels, 48 + 48 samples per ray, widths up to 1024) and
# past what fits a large GPU: output 2048 (4x the paper's), 512 neural rays a side with up to 512
# samples each, widths up to 8192.
INT_LIMITS: dict[str, tuple[int, int]] = {
    "input_size": (16, 2048), "neural_size": (8, 512), "output_size": (8, 2048),
    "n_basis": (1, 256), "expr_dim": (1, 4096), "beta_dim": (1, 1024), "lebs_hidden": (1, 8192),
    "se_reduction": (1, 1024), "ffn_hidden": (1, 16384), "num_heads": (1, 64), "vit_depth": (0, 64),
    "eadaln_depth": (0, 64), "sr_ratio": (1, 64), "skip_channels": (0, 1024),
    "skip_expression_channels": (0, 1024), "plane_channels": (1, 256), "plane_res": (8, 1024),
    "decoder_hidden": (1, 8192), "decoder_layers": (1, 32), "feature_channels": (3, 512),
    "camera_dim": (25, 25),  # EG3D's camera: 16 cam2world + 9 intrinsics, nothing else is built
    "num_coarse": (1, 512), "num_fine": (0, 512),
}
WIDTH_LIMIT = 8192  # every entry of a tuple of widths
WIDTH_COUNTS: dict[str, tuple[int, int]] = {  # how many widths each tuple may hold
    "encoder_widths": (4, 4), "conv_widths": (0, 4), "sr_channels": (1, 16), "disc_widths": (1, 16),
}
MAX_RAY_DEPTH = 1e4  # world units; the head spans about 1 and the camera sits at 2.7


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)  # True is an int to Python, not a size


def _is_number(value: Any) -> bool:
    return (_is_int(value) or isinstance(value, float)) and math.isfinite(value)


def _int_problems(owner: Any, names: tuple[str, ...]) -> list[str]:
    problems = []
    for name in names:
        value = getattr(owner, name)
        low, high = INT_LIMITS[name]
        if not _is_int(value):
            problems.append(f"{name} must be an integer, got {value!r}")
        elif not low <= value <= high:
            problems.append(f"{name} must be between {low} and {high}, got {value}")
    return problems


@dataclass(frozen=True)
class RenderConfig:
    """Volume-rendering settings (EG3D FFHQ conventions, docs/architecture.md, "EG3D conventions")."""

    ray_start: float = 2.25  # near bound of every ray, in world units
    ray_end: float = 3.3  # far bound of every ray
    box_warp: float = 1.0  # the tri-plane covers [-box_warp/2, box_warp/2]^3
    num_coarse: int = 48  # stratified samples per ray
    num_fine: int = 48  # importance samples per ray, drawn from the coarse weights
    density_shift: float = -1.0  # density = softplus(raw + shift), EG3D's softplus(σ − 1)
    disparity_space: bool = False  # EG3D samples depth linearly for FFHQ

    def __post_init__(self) -> None:
        problems = _int_problems(self, ("num_coarse", "num_fine"))
        numbers = ("ray_start", "ray_end", "box_warp", "density_shift")
        problems += [f"{name} must be a finite number, got {getattr(self, name)!r}" for name in numbers
                     if not _is_number(getattr(self, name))]
        if not problems:
            if not 0 < self.ray_start < self.ray_end <= MAX_RAY_DEPTH:
                problems.append(f"rays need 0 < ray_start < ray_end <= {MAX_RAY_DEPTH:g}, "
                                f"got {self.ray_start} and {self.ray_end}")
            if not 0 < self.box_warp <= MAX_RAY_DEPTH:
                problems.append(f"box_warp must be positive, got {self.box_warp}")
        if not isinstance(self.disparity_space, bool):
            problems.append(f"disparity_space must be true or false, got {self.disparity_space!r}")
        if problems:
            raise ValueError("invalid RenderConfig: " + "; ".join(problems))


@dataclass(frozen=True)
class ModelConfig:
    """All sizes of Export3D. A comment says where the paper is silent and we chose."""

    name: str = "custom"
    # -- images --------------------------------------------------------------------------------
    input_size: int = 512  # side of the source image S
    neural_size: int = 128  # side of the volume-rendered feature image
    output_size: int = 512  # side of the super-resolved final image
    # -- expression (LeBS / CLeBS) -------------------------------------------------------------
    n_basis: int = 10  # n, number of learned basis vectors (paper: 10)
    expr_dim: int = 256  # d = h/4, expression space = token width (paper: 256)
    beta_dim: int = 64  # β: 3DMM expression parameters (paper: 64)
    lebs_hidden: int = 256  # width of LeBS' hidden FC layer (paper silent; chose d)
    # Units of λ (chose; the paper is silent): λ = lambda_scale · FC(β) and e = (λ / lambda_scale) V,
    # so the model computes the same thing for any value. Calibrated after training
    # (`export3d_core.lambda_units`) so the training expressions span the paper's slider scale.
    lambda_scale: float = 1.0
    # Gain of the expression code the generator sees: e = expression_gain · (λ / lambda_scale) V
    # (chose). CLeBS' cosine InfoNCE leaves |λ| arbitrary; frozen, it gave the demo codes of
    # ~0.02 per entry, which the zero-initialised EAdaLN modulation (SiLU -> Linear) can barely
    # learn from. `train --expression-gain auto` sets it so strong expressions give O(1) entries.
    expression_gain: float = 1.0
    encoder_widths: tuple[int, ...] = (64, 128, 256, 512)  # ResNetSE18 stage widths (ResNet-18's)
    se_reduction: int = 16  # squeeze-and-excitation bottleneck ratio (SENet default)
    # -- generator G -----------------------------------------------------------------------------
    conv_widths: tuple[int, ...] = (64, 128, 256)  # conv encoder stages before patch merging (chose)
    ffn_hidden: int = 1024  # h, Mix-FFN hidden width of (EAdaLN-)ViT blocks (paper: 1024)
    num_heads: int = 4  # attention heads (paper: 4)
    vit_depth: int = 2  # plain SegFormer-style ViT blocks (paper silent; chose)
    eadaln_depth: int = 4  # expression-modulated EAdaLN-ViT blocks (paper silent; chose)
    sr_ratio: int = 2  # spatial reduction of keys/values in efficient self-attention (SegFormer)
    lowpass_sigma: float = 1.0  # std (in plane texels) of the fixed Gaussian after pixel shuffle
    skip_channels: int = 32  # high-resolution conv skip from S into the planes (LP3D-style; chose)
    # Channels of the expression code e broadcast into the fusion of that skip (chose; 0 = off, the
    # paper has none). The skip carries the source's own expression at plane resolution and the
    # tokens carry e at 1/16 of the input; this lets the fusion draw the target expression's fine
    # lines (furrows, mouth corners) where it meets the skip.
    skip_expression_channels: int = 0
    # -- tri-plane -----------------------------------------------------------------------------
    plane_channels: int = 32  # C of the tri-plane (paper: 32)
    plane_res: int = 128  # R of the tri-plane (paper: 128)
    ema_decay: float = 0.998  # δ of the EMA tri-plane, Eq. (2)
    # -- decoder and super-resolution ------------------------------------------------------------
    decoder_hidden: int = 64  # width of the density and colour FC stacks (EG3D: 64)
    decoder_layers: int = 2  # FC layers per stack (paper: two separate stacks)
    feature_channels: int = 32  # colour features rendered; the first 3 are RGB (EG3D: 32)
    sr_channels: tuple[int, ...] = (128, 64)  # widths of the SR stages, one per 2x upsampling
    # -- discriminator ---------------------------------------------------------------------------
    disc_widths: tuple[int, ...] = (64, 128, 256, 256, 256, 256)  # one per 2x downsampling (chose)
    camera_dim: int = 25  # EG3D camera: 16 cam2world + 9 intrinsics
    render: RenderConfig = field(default_factory=RenderConfig)

    def __post_init__(self) -> None:
        problems = self._type_problems()
        if problems:  # the checks below do arithmetic on these values
            raise ValueError("invalid ModelConfig: " + "; ".join(problems))
        if self.input_size % 16:
            problems.append(f"input_size {self.input_size} must be a multiple of 16 (tokens at 1/16)")
        if self.plane_res % (self.input_size // 16 or 1):
            problems.append(f"plane_res {self.plane_res} must be a multiple of input_size/16")
        ratio = self.output_size / self.neural_size
        if ratio < 1 or ratio != 2 ** round(math.log2(ratio)):
            problems.append("output_size / neural_size must be a power of two >= 1")
        elif len(self.sr_channels) < round(math.log2(ratio)):
            problems.append("sr_channels needs one width per 2x upsampling stage")
        if self.skip_expression_channels < 0 or (self.skip_expression_channels and not self.skip_channels):
            problems.append("skip_expression_channels must be >= 0 and needs skip_channels > 0")
        if self.expr_dim % self.num_heads:
            problems.append("expr_dim must be divisible by num_heads")
        if self.feature_channels < 3:
            problems.append("feature_channels must be >= 3 (the first three are RGB)")
        for name in ("lambda_scale", "expression_gain"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                problems.append(f"{name} must be a positive number, got {value}")
        if self.n_basis > self.expr_dim:
            problems.append("n_basis must not exceed expr_dim (QR of a d x n matrix)")
        if self.token_grid % self.sr_ratio:
            problems.append(f"sr_ratio {self.sr_ratio} must divide the token grid side {self.token_grid}")
        if problems:
            raise ValueError("invalid ModelConfig: " + "; ".join(problems))

    def _type_problems(self) -> list[str]:
        """Types and ranges of every field (see INT_LIMITS); empty when all are usable."""
        names = tuple(f.name for f in dataclasses.fields(self) if f.name in INT_LIMITS)
        problems = _int_problems(self, names)
        if not isinstance(self.name, str):
            problems.append(f"name must be a string, got {self.name!r}")
        for name, (fewest, most) in WIDTH_COUNTS.items():
            widths = getattr(self, name)
            if not isinstance(widths, tuple) or not fewest <= len(widths) <= most:
                problems.append(f"{name} must be a list of {fewest}..{most} widths, got {widths!r}")
            elif not all(_is_int(w) and 1 <= w <= WIDTH_LIMIT for w in widths):
                problems.append(f"{name} must hold integers between 1 and {WIDTH_LIMIT}, got {widths!r}")
        for name in ("lambda_scale", "expression_gain", "lowpass_sigma", "ema_decay"):
            if not _is_number(getattr(self, name)):
                problems.append(f"{name} must be a finite number, got {getattr(self, name)!r}")
        if not problems:
            if not self.lowpass_sigma > 0:
                problems.append(f"lowpass_sigma must be positive, got {self.lowpass_sigma}")
            if not 0 <= self.ema_decay <= 1:
                problems.append(f"ema_decay must be between 0 and 1, got {self.ema_decay}")
        if not isinstance(self.render, RenderConfig):
            problems.append(f"render must be a table of render settings, got {self.render!r}")
        return problems

    # -- derived sizes ---------------------------------------------------------------------------
    @property
    def token_grid(self) -> int:
        """Side of the token grid: 1/16 of the input side."""
        return self.input_size // 16

    @property
    def upsample_factor(self) -> int:
        """Pixel-shuffle factor from the token grid to the tri-plane."""
        return self.plane_res // self.token_grid

    @property
    def sr_stages(self) -> int:
        return round(math.log2(self.output_size // self.neural_size))

    @property
    def triplane_shape(self) -> tuple[int, int, int, int]:
        return (3, self.plane_channels, self.plane_res, self.plane_res)

    # -- presets and (de)serialisation -----------------------------------------------------------
    @staticmethod
    def preset(name: str) -> "ModelConfig":
        if name not in PRESETS:
            raise ValueError(f"unknown preset {name!r}; choose one of {sorted(PRESETS)}")
        return PRESETS[name]

    def replace(self, **changes: Any) -> "ModelConfig":
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @staticmethod
    def from_dict(data: dict[str, Any]) -> "ModelConfig":
        known = {f.name for f in dataclasses.fields(ModelConfig)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"config has unknown fields: {sorted(unknown)}")
        values = dict(data)
        if "render" in values and isinstance(values["render"], dict):
            render_fields = {f.name for f in dataclasses.fields(RenderConfig)}
            unknown = set(values["render"]) - render_fields
            if unknown:
                raise ValueError(f"config has unknown render fields: {sorted(unknown)}")
            values["render"] = RenderConfig(**values["render"])
        for key, value in values.items():
            if isinstance(value, list):
                values[key] = tuple(value)
        return ModelConfig(**values)


PRESETS: dict[str, ModelConfig] = {
    # Seconds on a CPU: for tests only.
    "tiny": ModelConfig(
        name="tiny", input_size=64, neural_size=32, output_size=64,
        expr_dim=32, beta_dim=12, lebs_hidden=32, encoder_widths=(8, 16, 16, 32),
        se_reduction=4, conv_widths=(8, 16), ffn_hidden=64, num_heads=2, vit_depth=1,
        eadaln_depth=1, sr_ratio=1, skip_channels=4, plane_channels=8, plane_res=32,
        decoder_hidden=16, feature_channels=8, sr_channels=(16,), disc_widths=(16, 32, 32),
        render=RenderConfig(num_coarse=12, num_fine=12),
    ),
    # Trained on a 2-core CPU and shipped; sizes chosen for quality per CPU-second. The shipped
    # model adds skip_expression_channels=16, grown in with `train --init-from` (see its card).
    "demo": ModelConfig(
        name="demo", input_size=128, neural_size=64, output_size=128,
        expr_dim=128, beta_dim=12, lebs_hidden=128, encoder_widths=(16, 32, 64, 128),
        se_reduction=8, conv_widths=(32, 64, 128), ffn_hidden=512, num_heads=4, vit_depth=2,
        eadaln_depth=3, sr_ratio=2, skip_channels=16, plane_channels=16, plane_res=64,
        decoder_hidden=32, feature_channels=16, sr_channels=(32,), disc_widths=(32, 64, 128, 128),
        render=RenderConfig(num_coarse=24, num_fine=24),
    ),
    # The sizes of the supplementary (Fig. S2, §1.2) and docs/architecture.md, "EG3D conventions".
    "paper": ModelConfig(name="paper"),
}


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation settings (supplementary §1.3–1.4)."""

    lr_g: float = 1e-4  # Adam, generator (Export3D)
    lr_d: float = 1e-5  # Adam, discriminator
    lr_clebs: float = 1e-4  # Adam, CLeBS pre-training
    # Adam, LeBS while it trains with G (a run without --clebs, or --unfreeze-lebs); None: lr_g.
    lr_lebs: float | None = None
    lambda_rec: float = 1.0  # λ_rec of Eq. (4)
    lambda_adv: float = 0.01  # λ_adv of Eq. (4)
    r1_gamma: float = 1.0  # R1 penalty weight on real images (EG3D-style)
    lambda_distortion: float = 0.0  # Mip-NeRF 360 distortion regulariser (not in the paper; 0 = off)
    # Free-space opacity at random points (render/sparsity.py; not in the paper; 0 = off): empties
    # the fog a field may leave around the head, which the accelerated renderer cannot skip.
    lambda_sparsity: float = 0.0
    # Transparency of every rendered ray, mean(1 - alpha) (not in the paper; 0 = off). With the
    # sparsity term, the background can then neither stay a thin fog nor vanish (the SR could not
    # tell its colour): it has to become an opaque surface, on which rays stop early.
    lambda_opacity: float = 0.0
    feature_weight: float = 1.0  # L2 weight near brows, eyes, nose and mouth (not in the paper; 1 = off)
    clebs_negatives: int = 32  # negatives per positive, from the same clip
    clebs_temperature: float = 0.07  # τ of InfoNCE
    # Extra CLeBS negatives per positive made in β space: the positive's own β with one parameter
    # moved (not in the paper; 0 = off). Clip negatives differ in many parameters at once, so the
    # salient ones (jaw, blinks) suffice to tell them apart and subtle ones are left out of the
    # code; these differ in exactly one, so every parameter must be read. See train/clebs.py.
    clebs_beta_negatives: int = 0
    batch_size: int = 8
    recon_steps: int = 300_000  # phase 1
    adv_steps: int = 10_000  # phase 2
    checkpoint_every: int = 1000
    sample_every: int = 1000
    seed: int = 0
