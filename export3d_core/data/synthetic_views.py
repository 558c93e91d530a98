"""Synthetic heads for evaluation: seeds that keep evaluation honest, frames, attribute targets.

Owns the seed convention and everything the harness and the attribute regressor need from the
synthetic renderer (`export3d_core.data.synthetic`, `export3d_core.data.synth_command`):

- identities are named as `export3d synth` names them: clip i of a corpus with seed S is drawn
  from `clip_rng(S, i)` (a SeedSequence of [S, i]), so a corpus seed S owns the identities
  (S, 0), (S, 1), ... and two different corpus seeds never share one.
  Training corpora use seeds below `HELDOUT_SEED` (the default is 0);
  held-out evaluation identities are the clips of corpus seed `HELDOUT_SEED` (10,000,000);
  the attribute regressor trains, and measures its own accuracy, on identities of corpus seed
  `REGRESSOR_SEED` (20,000,000), so neither the model nor the regressor saw an evaluation identity.
- the attribute targets of a render: β, pose (yaw, pitch in radians from `OrbitCamera.from_params`)
  and the identity vector (every continuous parameter of the identity, colours included, in
  sorted key order; integers, booleans and strings are categorical and left out).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Iterator

import numpy as np

from export3d_core.camera import POSE_DIM, OrbitCamera
from export3d_core.data.synth_command import TRAINING_SEED_LIMIT  # `export3d synth --seed S` needs S below it

HELDOUT_SEED = TRAINING_SEED_LIMIT  # corpus seed of the held-out evaluation identities (10,000,000)
REGRESSOR_SEED = 20_000_000  # corpus seed of the attribute regressor's identities


def identity_rng(corpus_seed: int, index: int) -> np.random.Generator:
    """The generator of identity `index` of corpus seed `corpus_seed` (as `export3d synth` draws clips)."""
    from export3d_core.data.synth_command import clip_rng

    return clip_rng(corpus_seed, index)


def is_training_seed(corpus_seed: int) -> bool:
    """Whether a corpus seed lies in the range training corpora may use."""
    return 0 <= corpus_seed < TRAINING_SEED_LIMIT


# -- identities -----------------------------------------------------------------------------------
def identity_to_dict(identity: Any) -> dict[str, Any]:
    """The identity's parameters as a plain dict (dataclass, `to_dict()` object or dict)."""
    if isinstance(identity, dict):
        return identity
    if hasattr(identity, "to_dict"):
        return identity.to_dict()
    if dataclasses.is_dataclass(identity):
        return dataclasses.asdict(identity)
    raise TypeError(f"cannot read identity parameters from {type(identity).__name__}")


def identity_from_dict(data: dict[str, Any]) -> Any:
    """Rebuild the renderer's `Identity` from the dict stored in a clip's meta.json."""
    from export3d_core.data.synthetic import Identity

    return Identity.from_dict(data)


def _continuous(value: Any) -> list[float]:
    if isinstance(value, bool) or isinstance(value, (int, str)) or value is None:
        return []  # categorical or text
    if isinstance(value, float):
        return [value]
    if isinstance(value, dict):
        return [x for key in sorted(value) for x in _continuous(value[key])]
    if isinstance(value, (list, tuple, np.ndarray)):
        array = np.asarray(value)
        if array.dtype.kind == "f":
            return [float(x) for x in array.reshape(-1)]
        return [x for item in value for x in _continuous(item)] if array.dtype.kind == "O" else []
    if isinstance(value, np.floating):
        return [float(value)]
    return []


def identity_keys(identity: Any) -> list[str]:
    """Names of the identity vector's entries (for the regressor's config), in vector order."""
    data = identity_to_dict(identity)
    keys = []
    for key in sorted(data):
        n = len(_continuous(data[key]))
        keys.extend([key] if n == 1 else [f"{key}[{j}]" for j in range(n)])
    return keys


def identity_vector(identity: Any) -> np.ndarray:
    """Every continuous identity parameter (shape, colours) as float32 (I,), sorted by key."""
    data = identity_to_dict(identity)
    return np.asarray([x for key in sorted(data) for x in _continuous(data[key])], dtype=np.float32)


# -- cameras --------------------------------------------------------------------------------------
def pose_of(camera25: np.ndarray | list[float]) -> np.ndarray:
    """(yaw, pitch) in radians of an EG3D 25-vector, float32 (2,)."""
    cam = OrbitCamera.from_params(np.asarray(camera25, dtype=np.float64))
    return np.asarray([cam.yaw, cam.pitch], dtype=np.float32)


def sample_camera(rng: np.random.Generator) -> np.ndarray:
    """A camera from the training corpus' range (yaw, pitch uniform), float32 (25,)."""
    from export3d_core.data.synth_command import MAX_PITCH, MAX_YAW

    yaw, pitch = rng.uniform(-MAX_YAW, MAX_YAW), rng.uniform(-MAX_PITCH, MAX_PITCH)
    return OrbitCamera(yaw=float(yaw), pitch=float(pitch)).params().numpy()


def orbit_camera(yaw: float, pitch: float) -> np.ndarray:
    """The default EG3D camera at (yaw, pitch) radians, float32 (25,)."""
    return OrbitCamera(yaw=yaw, pitch=pitch).params().numpy()


# -- drawing heads ---------------------------------------------------------------------------------
@dataclass
class SyntheticHead:
    """One identity with its background and frames (β and camera per frame)."""

    corpus_seed: int
    index: int
    identity: Any  # the renderer's identity object
    background: tuple[float, float, float]
    betas: np.ndarray  # (F, beta_dim)
    cameras: np.ndarray  # (F, 25)


def draw_head(corpus_seed: int, index: int, frames: int) -> SyntheticHead:
    """Identity and background of clip `index` of corpus seed `corpus_seed` (the same person as
    `export3d synth --seed corpus_seed` draws there), with `frames` independent random (β, camera)."""
    from export3d_core.data.synthetic import sample_background, sample_expression, sample_identity

    rng = identity_rng(corpus_seed, index)
    identity = sample_identity(rng)  # drawn first, as the corpus does
    background = sample_background(rng)
    betas = np.stack([np.asarray(sample_expression(rng), dtype=np.float32) for _ in range(frames)])
    cameras = np.stack([sample_camera(rng) for _ in range(frames)])
    return SyntheticHead(corpus_seed, index, identity, background, betas, cameras)


def render_head(renderer: Any, head: SyntheticHead) -> Iterator[np.ndarray]:
    """uint8 (R, R, 3) renders of a head's frames with an open `HeadRenderer`."""
    for beta, camera in zip(head.betas, head.cameras):
        yield renderer.render(head.identity, beta, camera, head.background).image


__all__ = [
    "HELDOUT_SEED", "REGRESSOR_SEED", "TRAINING_SEED_LIMIT", "POSE_DIM", "identity_rng", "is_training_seed",
    "identity_to_dict", "identity_from_dict", "identity_keys", "identity_vector", "pose_of", "sample_camera",
    "orbit_camera", "SyntheticHead", "draw_head", "render_head",
]
