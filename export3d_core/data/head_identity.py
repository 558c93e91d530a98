"""A synthetic person: the `Identity` a procedural head is made of, and how one is drawn at random.

Shared by the mesh (`head_mesh`), the landmarks (`head_landmarks`), the renderer (`synthetic`)
and the corpus writer (`synth_command`); it imports none of them.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

HAIR_STYLES = ("short", "long", "bald", "bun")
SKIN_TONES = ((0.96, 0.80, 0.69), (0.92, 0.72, 0.58), (0.82, 0.62, 0.47), (0.68, 0.48, 0.34),
              (0.50, 0.34, 0.24), (0.36, 0.24, 0.17))
IRIS_COLOURS = ((0.36, 0.21, 0.10), (0.20, 0.12, 0.07), (0.28, 0.45, 0.70), (0.30, 0.50, 0.32),
                (0.52, 0.40, 0.20), (0.48, 0.54, 0.60))
HAIR_COLOURS = ((0.07, 0.06, 0.05), (0.22, 0.14, 0.08), (0.42, 0.27, 0.15), (0.80, 0.64, 0.38),
                (0.58, 0.24, 0.10), (0.62, 0.62, 0.62))


@dataclass(frozen=True)
class Identity:
    """One synthetic person. Shape values are multipliers around 1 unless said otherwise."""

    head_width: float = 1.0
    head_height: float = 1.0
    head_depth: float = 1.0
    jaw_width: float = 0.9  # 0.75 (pointed chin) .. 1.05 (square jaw)
    chin: float = 0.0  # -1 (short, receding) .. 1 (long, prominent)
    cheeks: float = 0.5  # 0 (hollow) .. 1 (full)
    nose_size: float = 1.0
    nose_length: float = 1.0
    eye_spacing: float = 1.0
    eye_size: float = 1.0
    lip_fullness: float = 1.0
    mouth_width: float = 1.0
    brow_thickness: float = 1.0
    ear_size: float = 1.0
    hairline: float = 0.0  # -1 (low) .. 1 (high, receding)
    skin_color: tuple[float, float, float] = SKIN_TONES[1]  # sRGB in [0, 1], like every colour here
    lip_color: tuple[float, float, float] = (0.75, 0.42, 0.42)
    iris_color: tuple[float, float, float] = IRIS_COLOURS[0]
    brow_color: tuple[float, float, float] = HAIR_COLOURS[1]
    hair_color: tuple[float, float, float] = HAIR_COLOURS[1]
    cloth_color: tuple[float, float, float] = (0.25, 0.30, 0.45)
    hair_style: str = "short"  # one of HAIR_STYLES

    def to_dict(self) -> dict[str, Any]:
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in dataclasses.asdict(self).items()}

    @staticmethod
    def from_dict(data: dict[str, Any]) -> "Identity":
        return Identity(**{k: (tuple(v) if isinstance(v, list) else v) for k, v in data.items()})


def _colour(rgb: Sequence[float] | np.ndarray) -> tuple[float, float, float]:
    return tuple(round(float(v), 4) for v in np.clip(rgb, 0.0, 1.0))  # type: ignore[return-value]


def sample_identity(rng: np.random.Generator) -> Identity:
    """A random person; the same generator state gives the same person."""
    u = rng.uniform
    skin = np.asarray(SKIN_TONES[rng.integers(len(SKIN_TONES))]) + u(-0.03, 0.03, 3)
    hair = np.asarray(HAIR_COLOURS[rng.integers(len(HAIR_COLOURS))]) * u(0.85, 1.15) + u(-0.02, 0.02, 3)
    lip = skin * np.array([0.82, 0.55, 0.55]) + np.array([0.08, 0.0, 0.02]) + u(-0.03, 0.03, 3)
    brow = hair * 0.7 + 0.08 * np.array([0.3, 0.22, 0.15])  # brows a little darker than the hair
    shape = dict(
        head_width=u(0.9, 1.1), head_height=u(0.94, 1.06), head_depth=u(0.93, 1.05),
        jaw_width=u(0.75, 1.05), chin=u(-1.0, 1.0), cheeks=u(0.0, 1.0), nose_size=u(0.75, 1.25),
        nose_length=u(0.85, 1.15), eye_spacing=u(0.92, 1.08), eye_size=u(0.85, 1.15),
        lip_fullness=u(0.7, 1.3), mouth_width=u(0.85, 1.15), brow_thickness=u(0.6, 1.4),
        ear_size=u(0.85, 1.15), hairline=u(-1.0, 1.0),
    )
    return Identity(
        **{k: round(float(v), 4) for k, v in shape.items()},
        skin_color=_colour(skin), lip_color=_colour(lip),
        iris_color=_colour(np.asarray(IRIS_COLOURS[rng.integers(len(IRIS_COLOURS))]) + u(-0.03, 0.03, 3)),
        brow_color=_colour(brow), hair_color=_colour(hair), cloth_color=_colour(u(0.1, 0.8, 3)),
        hair_style=HAIR_STYLES[rng.integers(len(HAIR_STYLES))],
    )


def sample_background(rng: np.random.Generator) -> tuple[float, float, float]:
    """A plain, muted studio colour."""
    grey = rng.uniform(0.25, 0.85)
    return _colour(grey + rng.uniform(-0.12, 0.12, 3))


__all__ = ["HAIR_COLOURS", "HAIR_STYLES", "IRIS_COLOURS", "SKIN_TONES", "Identity", "sample_background",
           "sample_identity"]
