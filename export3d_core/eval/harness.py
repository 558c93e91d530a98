"""The evaluation harness: the analogue of the paper's Table S1 on synthetic heads.

Owns the protocol (which frames are compared with which) and the result dictionary:

- same identity: for every clip, the source is its most frontal frame; each of up to
  `driving_per_clip` other frames D is re-enacted with β_D from camera p_D and compared with D:
  PSNR, SSIM, AED, APD. Baseline `copy_source`: the source frame itself instead of the output.
  Diagnostic row `model_from_driving`: D re-enacted from D itself (same β, same camera), i.e.
  the model's reconstruction of the target; its AED/APD is what the model's rendering alone
  costs, the floor that a perfect transfer of expression from another frame would still pay.
- regressor check (synthetic clips, whose β and pose are ground truth): the regressor's own
  error on the driving frames and the true copy-the-source AED, so a reader can tell how much
  of an AED is the instrument's.
- cross identity: the source of clip i is driven by the same driving frames of clip i+1 (mod n):
  id_sim = cosine of the regressor's identity embeddings of source and output, AED / APD against
  the driving frame. Baselines: `copy_source` (id_sim 1 by construction, expression and pose
  wrong) and `copy_driving` (expression and pose right by construction, identity wrong).
- novel views: each clip's source re-rendered with its own β_S from the cameras in `novel_views`
  (EG3D's orbit amplitudes), compared with the synthetic renderer's ground truth of the same head,
  expression, background and camera. Skipped, with a note, when no clip carries an identity.
- basis response: see `export3d_core.eval.basis`.
- real data (a `RealFaceMetrics` given): each reenactment section also gets a "real_face" block
  (AKD, CSIM, AED/APD or null with notes) computed on the same pairs; see `real_metrics`.

AED = mean over pairs of the mean L1 between regressed β of output and driving frame; APD the
same for (yaw, pitch) in radians. `aed_per_parameter` splits AED by β parameter (their mean is
AED), which shows which parts of the expression an output gets wrong. `aed_ratio` (same identity)
is the model's AED over copy-the-source's with its standard error over identities: AED varies
a lot between heads (on the demo model, per-identity AED has a spread of about 0.03), so a
handful of identities decides a comparison less than it seems. Sizes: see `export3d_core.eval.runner`.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from export3d_core.camera import ORBIT_PITCH_AMPLITUDE, ORBIT_YAW_AMPLITUDE
from export3d_core.data.head_landmarks import BETA_NAMES
from export3d_core.errors import Export3DError
from export3d_core.data import synthetic_views as views
from export3d_core.eval.basis import DEFAULT_SCALES, DUPLICATE_COSINE, MOVE_THRESHOLD, BasisResult, basis_response
from export3d_core.eval.clips import EvalClip
from export3d_core.metrics import cosine_similarity, l1_distance, psnr, ratio_over_groups, ssim
from export3d_core.eval.real_metrics import RealFaceMetrics
from export3d_core.faces.regressor import AttributeRegressor, Attributes
from export3d_core.eval.runner import ModelRunner
from export3d_core.nn.code_information import code_information, min_expressions_for_information

NOVEL_VIEWS = (  # (yaw, pitch) radians: the ends of EG3D's orbit video
    (ORBIT_YAW_AMPLITUDE, 0.0), (-ORBIT_YAW_AMPLITUDE, 0.0), (0.0, ORBIT_PITCH_AMPLITUDE), (0.0, -ORBIT_PITCH_AMPLITUDE),
)


@dataclass(frozen=True)
class EvalConfig:
    """What an evaluation run measures and on how much data."""

    identities: int = 8  # held-out identities generated (or corpus clips read)
    frames: int = 8  # frames per generated clip; the most frontal one is the source
    resolution: int = 128  # side of generated frames and ground-truth renders
    driving_per_clip: int = 5  # driving frames per clip, same and cross identity
    novel_views: tuple[tuple[float, float], ...] = NOVEL_VIEWS
    basis_scales: tuple[float, ...] = DEFAULT_SCALES
    basis_sources: int = 2  # source portraits averaged in the basis response
    move_threshold: float = MOVE_THRESHOLD
    duplicate_cosine: float = DUPLICATE_COSINE
    heldout_seed: int = views.HELDOUT_SEED  # corpus seed of the generated held-out identities
    batch_size: int = 4  # renders per model call


@dataclass
class _Pairs:
    """Accumulated (source, driving, output) items of one protocol."""

    sources: list[np.ndarray] = field(default_factory=list)  # uint8 at output size
    drivings: list[np.ndarray] = field(default_factory=list)
    outputs: list[np.ndarray] = field(default_factory=list)
    driving_frames: list[np.ndarray] = field(default_factory=list)  # the frames D at corpus size
    betas: np.ndarray | None = None  # (N, beta_dim) β_D the outputs were driven with
    source_betas: np.ndarray | None = None  # (N, beta_dim) β_S of the source frames
    cameras: np.ndarray | None = None  # (N, 25) p_D
    identities: list[int] = field(default_factory=list)  # index of the source clip of each pair


def _image_scores(outputs: list[np.ndarray], targets: list[np.ndarray]) -> dict[str, float]:
    a, b = np.stack(outputs), np.stack(targets)
    return {"psnr": float(psnr(a, b).mean()), "ssim": float(ssim(a, b).mean())}


class Harness:
    """Runs the protocols of one model with one regressor on a list of clips."""

    def __init__(self, runner: ModelRunner, regressor: AttributeRegressor, config: EvalConfig,
                 real: RealFaceMetrics | None = None) -> None:
        self.runner = runner
        self.regressor = regressor
        self.config = config
        self.real = real  # real-face metrics (AKD, CSIM, ...), added as "real_face" on real data

    def _attribute_scores(self, outputs: list[np.ndarray], wanted: Attributes) -> dict[str, Any]:
        found = self.regressor.predict(outputs)
        per_parameter = (found.expression - wanted.expression).abs().mean(dim=0)  # (beta_dim,)
        names = _beta_names(len(per_parameter))
        return {"aed": float(l1_distance(found.expression, wanted.expression).mean()),
                "apd": float(l1_distance(found.pose, wanted.pose).mean()),
                "aed_per_parameter": {name: round(float(v), 5) for name, v in zip(names, per_parameter)}}

    def _reenact(self, sources: list[EvalClip], drivers: list[EvalClip], desc: str) -> _Pairs:
        pairs = _Pairs()
        frames, betas, cameras, source_betas = [], [], [], []
        for identity, (source_clip, driving_clip) in enumerate(zip(sources, drivers)):
            s = source_clip.source_index()
            source = source_clip.frames[s]
            for d in driving_clip.driving_indices(self.config.driving_per_clip):
                frames.append(source)
                source_betas.append(source_clip.betas[s])
                betas.append(driving_clip.betas[d])
                cameras.append(driving_clip.cameras[d])
                pairs.sources.append(self.runner.target(source))
                pairs.drivings.append(self.runner.target(driving_clip.frames[d]))
                pairs.driving_frames.append(driving_clip.frames[d])
                pairs.identities.append(identity)
        if not frames:
            raise Export3DError("no driving frames to evaluate")
        pairs.betas, pairs.cameras, pairs.source_betas = np.stack(betas), np.stack(cameras), np.stack(source_betas)
        pairs.outputs = self.runner.generate(frames, pairs.cameras, betas=pairs.betas, desc=desc)
        return pairs

    def same_identity(self, clips: list[EvalClip]) -> dict[str, Any]:
        pairs = self._reenact(clips, clips, "same-identity reenactment")
        wanted = self.regressor.predict(pairs.drivings)
        from_driving = self.runner.generate(pairs.driving_frames, pairs.cameras, betas=pairs.betas,
                                            desc="reconstruction of the driving frames")
        result: dict[str, Any] = {}
        for name, images in (("model", pairs.outputs), ("copy_source", pairs.sources),
                             ("model_from_driving", from_driving)):
            result[name] = {**_image_scores(images, pairs.drivings), **self._attribute_scores(images, wanted)}
        result["pairs"] = len(pairs.outputs)
        result["aed_ratio"] = self._aed_ratio(pairs, wanted)
        if all(clip.identity is not None for clip in clips):  # synthetic: β and pose are ground truth
            result["regressor_check"] = self._regressor_check(pairs, wanted)
        if self.real is not None:
            result["real_face"] = self.real.same_identity(pairs.sources, pairs.drivings, pairs.outputs)
        return result

    def _aed_ratio(self, pairs: _Pairs, wanted: Attributes) -> dict[str, Any]:
        """The model's AED over copy-the-source's, and its standard error over identities."""
        model = l1_distance(self.regressor.predict(pairs.outputs).expression, wanted.expression).numpy()
        copy = l1_distance(self.regressor.predict(pairs.sources).expression, wanted.expression).numpy()
        ratio, error = ratio_over_groups(model, copy, np.asarray(pairs.identities))
        return {"model_over_copy_source": ratio, "standard_error": error, "identities": len(set(pairs.identities))}

    @staticmethod
    def _regressor_check(pairs: _Pairs, wanted: Attributes) -> dict[str, float]:
        """How well the instrument reads the driving frames, next to what it should read.

        driving_aed: mean L1 between regressed and true β_D (the regressor's own error on the
        frames every AED is measured against); true_copy_source_aed: mean L1 between the true β_S
        and β_D, the copy-the-source AED a perfect regressor would report.
        """
        true_pose = np.stack([views.pose_of(camera) for camera in pairs.cameras])  # (N, 2)
        return {"driving_aed": float(np.abs(wanted.expression.numpy() - pairs.betas).mean()),
                "driving_apd": float(np.abs(wanted.pose.numpy() - true_pose).mean()),
                "true_copy_source_aed": float(np.abs(pairs.source_betas - pairs.betas).mean())}

    def cross_identity(self, clips: list[EvalClip]) -> dict[str, Any]:
        if len(clips) < 2:
            empty = {"id_sim": None, "aed": None, "apd": None}
            note = "skipped: cross-identity reenactment needs at least 2 identities"
            section = {"model": empty, "copy_source": dict(empty), "copy_driving": dict(empty), "pairs": 0,
                       "note": note}
            if self.real is not None:
                section["real_face"] = self.real.skipped(("model", "copy_source", "copy_driving"), note)
            return section
        drivers = clips[1:] + clips[:1]  # clip i is driven by clip i+1
        pairs = self._reenact(clips, drivers, "cross-identity reenactment")
        source_id = self.regressor.predict(pairs.sources).identity_embedding
        wanted = self.regressor.predict(pairs.drivings)
        result: dict[str, Any] = {}
        for name, images in (("model", pairs.outputs), ("copy_source", pairs.sources),
                             ("copy_driving", pairs.drivings)):
            identity = self.regressor.predict(images).identity_embedding
            result[name] = {"id_sim": float(cosine_similarity(source_id, identity).mean()),
                            **self._attribute_scores(images, wanted)}
        result["pairs"] = len(pairs.outputs)
        if self.real is not None:
            result["real_face"] = self.real.cross_identity(pairs.sources, pairs.drivings, pairs.outputs)
        return result

    def novel_view(self, clips: list[EvalClip]) -> dict[str, Any]:
        renderable = [clip for clip in clips if clip.identity is not None]
        cameras_yp = [list(view) for view in self.config.novel_views]
        if not renderable or not self.config.novel_views:
            return {"model": {"psnr": None, "ssim": None}, "views": 0, "cameras": cameras_yp,
                    "note": "skipped: the clips carry no synthetic identity, so no ground truth for new cameras"}
        from export3d_core.data.synthetic import HeadRenderer

        frames, betas, cameras, truths, sources = [], [], [], [], []
        with HeadRenderer(self.config.resolution) as renderer:
            for clip in renderable:
                s = clip.source_index()
                background = clip.background or (0.5, 0.5, 0.5)
                for yaw, pitch in self.config.novel_views:
                    camera = views.orbit_camera(yaw, pitch)
                    truth = renderer.render(clip.identity, clip.betas[s], camera, background).image
                    frames.append(clip.frames[s])
                    betas.append(clip.betas[s])
                    cameras.append(camera)
                    truths.append(self.runner.target(truth))
                    sources.append(self.runner.target(clip.frames[s]))
        outputs = self.runner.generate(frames, np.stack(cameras), betas=np.stack(betas), desc="novel views")
        return {"model": _image_scores(outputs, truths), "copy_source": _image_scores(sources, truths),
                "views": len(outputs), "cameras": cameras_yp}

    def basis(self, clips: list[EvalClip]) -> tuple[dict[str, Any], BasisResult]:
        found = basis_response(self.runner, self.regressor, clips, scales=self.config.basis_scales,
                               sources=self.config.basis_sources, move_threshold=self.config.move_threshold,
                               duplicate_cosine=self.config.duplicate_cosine)
        summary = {
            "meaningful": found.meaningful,
            "response": [[round(float(v), 5) for v in row] for row in found.response],
            "meaningful_vectors": [i + 1 for i in found.meaningful_vectors],  # 1-based, as v_1 .. v_n
            "strength": [round(float(v), 4) for v in found.strength],
            "moving": found.moving,
            "scales": found.scales,
            "move_threshold": self.config.move_threshold,
            "duplicate_cosine": self.config.duplicate_cosine,
            "units": "response: mean |Δβ_k| per unit λ_i in std units of β_k; strength: max |Δβ_k| in std units",
            "code_information": self._code_information(clips),
        }
        return summary, found

    def _code_information(self, clips: list[EvalClip]) -> dict[str, float] | None:
        """R² of each β parameter read linearly from the model's coefficients (train/clebs.py): how
        much of it the code carries. None when there are too few expressions to measure it."""
        betas = _code_betas(clips)
        if len(betas) < min_expressions_for_information(self.runner.config.n_basis):
            return None
        r2 = code_information(self.runner.model.lebs, torch.from_numpy(betas))
        return {name: round(float(v), 4) for name, v in zip(_beta_names(len(r2)), r2)}

    def run(self, clips: list[EvalClip]) -> tuple[dict[str, Any], BasisResult]:
        """Every protocol; returns the result dict (see `commands` for its JSON) and the basis sweep."""
        beta_dim = self.runner.config.beta_dim
        if clips[0].betas.shape[1] != beta_dim:
            raise Export3DError(f"the data has beta_dim {clips[0].betas.shape[1]} but the model expects {beta_dim}")
        basis_summary, basis_found = self.basis(clips)
        result = {
            "same_identity": self.same_identity(clips),
            "cross_identity": self.cross_identity(clips),
            "novel_view": self.novel_view(clips),
            "basis": basis_summary,
            "n_identities": len(clips),
            "image_size": self.runner.config.output_size,
        }
        return _finite_or_none(result), basis_found


CODE_BETAS = 4000  # expressions drawn for `code_information` on synthetic data
CODE_BETAS_SEED = 40_000_000  # their seed: apart from every corpus and identity seed


def _code_betas(clips: list[EvalClip]) -> np.ndarray:
    """The expressions code information is measured on: fresh draws from the synthetic corpus'
    distribution when every clip is synthetic (a few hundred frames would make the R² noisy),
    else the frames' own β."""
    if all(clip.identity is not None for clip in clips):
        from export3d_core.data.synthetic import sample_expression

        rng = np.random.default_rng(CODE_BETAS_SEED)
        return np.stack([sample_expression(rng) for _ in range(CODE_BETAS)]).astype(np.float32)
    return np.concatenate([clip.betas for clip in clips]).astype(np.float32)


def _beta_names(n: int) -> list[str]:
    return list(BETA_NAMES) if len(BETA_NAMES) == n else [f"beta_{k}" for k in range(n)]


def _finite_or_none(value: Any) -> Any:
    """NaN and inf become None, so the JSON stays standard."""
    if isinstance(value, dict):
        return {k: _finite_or_none(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite_or_none(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


__all__ = ["EvalConfig", "Harness", "NOVEL_VIEWS"]
