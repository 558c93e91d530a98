"""Every setting of an `export3d train` run, declared once: `RunConfig`.

Each field is one setting: its type, default and help. The `export3d train` flags are generated
from the fields (`add_run_arguments`: field `lr_g` is flag `--lr-g`), so a new setting is one new
field. The run saves the whole config in its training state (`extra["run_config"]`), so a run
records how it was launched. The optimisation settings among them go to `TrainConfig`
(`config.py`, what the training loop reads) through `train_config`, under the field named by
the setting's `train` key.
"""
from __future__ import annotations

import argparse
import dataclasses
from dataclasses import dataclass
from typing import Any, Callable

from export3d_core.config import PRESETS, TrainConfig
from export3d_core.errors import Export3DError


def _setting(default: Any = None, help: str = "", *, parse: Callable | None = None, train: str | None = None,
             **argparse_options: Any) -> Any:
    """A RunConfig field: `parse` converts the flag's text (None: a switch), `train` names the
    TrainConfig field it sets, `argparse_options` go to `add_argument` as they are."""
    metadata = {"help": help, "parse": parse, "train": train, "argparse": argparse_options}
    return dataclasses.field(default=default, metadata=metadata)


@dataclass(frozen=True)
class RunConfig:
    """One training run's settings (`export3d train`); each field's help is its flag's."""

    # -- where from, where to
    data: str = _setting("", "corpus directory (export3d synth / prepare)", parse=str, required=True)
    out: str = _setting("", "run directory: checkpoints, log.jsonl, samples, model.safetensors", parse=str,
                        required=True)
    preset: str = _setting("tiny", "model size (default tiny)", parse=str, choices=sorted(PRESETS))
    # -- how long (phase 1 reconstruction, then phase 2 adds the adversarial loss)
    steps: int = _setting(1000, "phase-1 (reconstruction) steps (default 1000)", parse=int, train="recon_steps")
    adv_steps: int = _setting(0, "phase-2 (adversarial) steps (default 0)", parse=int, train="adv_steps")
    batch: int | None = _setting(None, "batch size per process (default TrainConfig's)", parse=int,
                                 train="batch_size")
    resume: bool = _setting(False, "continue the run in --out from its last checkpoint")
    # -- what the run starts from
    clebs: str | None = _setting(None, "pre-trained CLeBS run directory or clebs.safetensors (frozen)", parse=str)
    init_from: str | None = _setting(
        None, "start this new run from another run's weights (same preset; layers the new run adds start at "
              "their neutral initialisation; see train/init_from.py)", parse=str, metavar="RUN")
    unfreeze_lebs: bool = _setting(
        False, "with --init-from: train the source's LeBS (and so the basis V) with G instead of keeping it "
               "frozen; beyond the paper, which freezes CLeBS (see docs/training.md)")
    # -- a new run's architecture (ModelConfig fields; a resumed run keeps its own)
    skip_expression_channels: int | None = _setting(
        None, "new runs: channels of the expression code fed to the skip fusion (default: the preset's; "
              "ModelConfig.skip_expression_channels)", parse=int, metavar="N")
    neural_size: int | None = _setting(
        None, "new runs: side of the volume-rendered image (default: the preset's; ModelConfig.neural_size); "
              "the super-resolution upsamples it to the output side", parse=int, metavar="N")
    # -- perceptual terms
    vgg: str | None = _setting(None, "torchvision vgg16-397923af.pth (default: the torch hub cache)", parse=str)
    face_features: str | None = _setting(
        None, "an attribute regressor .safetensors whose conv features replace VGG16 in the perceptual terms "
              "(a face-specific stand-in when VGG16 weights are absent; use one trained on other identities "
              "than the regressor eval uses, see docs/training.md)", parse=str, metavar="REGRESSOR")
    face_features_weight: float = _setting(
        1.0, "weight of each --face-features perceptual term (default 1, as VGG16's)", parse=float, metavar="W")
    face_expression_weight: float = _setting(
        0.0, "with --face-features: add the L1 between the expression that network reads from the output and "
             "from the driving frame, times W (default 0: off)", parse=float, metavar="W")
    # -- optimisation (TrainConfig; None keeps its default, or on --resume the run's own)
    seed: int | None = _setting(None, "random seed (default TrainConfig's)", parse=int, train="seed")
    lr_g: float | None = _setting(None, "Adam learning rate of G (default 1e-4, the paper's)", parse=float,
                                  train="lr_g")
    lr_lebs: float | None = _setting(
        None, "Adam learning rate of LeBS where it trains with G (a run without --clebs, or --unfreeze-lebs); "
              "default G's, and on --resume the run's own if it set one", parse=float, train="lr_lebs")
    lr_d: float | None = _setting(
        None, "Adam learning rate of D (default 1e-5, the paper's, for 10,000 adversarial steps; in short "
              "phases D may stay at chance, d_loss 1.386 in the log: see docs/training.md)", parse=float, train="lr_d")
    distortion: float | None = _setting(
        None, "weight of the distortion regulariser that sharpens the density (default 0: off)", parse=float,
        train="lambda_distortion")
    sparsity: float | None = _setting(
        None, "weight of the free-space opacity regulariser that empties fog around the head (default 0: off; "
              "see docs/experiments.md for what it did to the demo model)", parse=float, train="lambda_sparsity")
    opacity: float | None = _setting(
        None, "weight of the mean transparency of the rendered rays; with --sparsity it turns background fog "
              "into an opaque surface (default 0: off)", parse=float, train="lambda_opacity")
    expression_gain: str | None = _setting(
        None, "scale of the expression code the generator sees (default 1; auto calibrates it from the --clebs "
              "weights so strong expressions give O(1) codes); --resume keeps the run's", parse=str,
        metavar="GAIN|auto")
    feature_weight: float | None = _setting(
        None, "L2 weight of the pixels near brows, eyes, nose and mouth (default 1: plain L2); a stand-in for "
              "the perceptual loss when VGG16 weights are absent", parse=float, train="feature_weight")
    checkpoint_every: int | None = _setting(None, "steps between checkpoints", parse=int, train="checkpoint_every")
    sample_every: int | None = _setting(None, "steps between sample grids", parse=int, train="sample_every")
    # -- this process
    device: str | None = _setting(None, "cpu, cuda, cuda:N (default: this rank's GPU if any)", parse=str)
    no_progress: bool = _setting(False, "no progress bar")

    @staticmethod
    def from_namespace(args: argparse.Namespace) -> "RunConfig":
        """The config of parsed `export3d train` arguments (every field must be there)."""
        return RunConfig(**{f.name: getattr(args, f.name) for f in dataclasses.fields(RunConfig)})

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def train_config(self) -> TrainConfig:
        """TrainConfig's defaults with the optimisation settings this run gives (checked)."""
        return train_config(**{f.name: getattr(self, f.name) for f in dataclasses.fields(self)
                               if f.metadata["train"] is not None})


TRAIN_FIELDS = {f.name: f.metadata["train"] for f in dataclasses.fields(RunConfig) if f.metadata["train"]}


def flag_name(name: str) -> str:
    """The flag of RunConfig field `name`: `lr_g` -> `--lr-g`."""
    return "--" + name.replace("_", "-")


def add_run_arguments(parser: argparse.ArgumentParser) -> None:
    """One flag per RunConfig field, with its default, type and help."""
    for f in dataclasses.fields(RunConfig):
        meta = f.metadata
        if meta["parse"] is None:  # a switch
            parser.add_argument(flag_name(f.name), action="store_true", help=meta["help"])
            continue
        options = dict(meta["argparse"])
        if not options.get("required"):
            options["default"] = f.default
        parser.add_argument(flag_name(f.name), type=meta["parse"], help=meta["help"], **options)


def train_config(**settings: Any) -> TrainConfig:
    """TrainConfig defaults overridden by the RunConfig settings given by field name (None = keep);
    every value is checked, and a bad one named by its flag."""
    unknown = set(settings) - set(TRAIN_FIELDS)
    if unknown:
        raise TypeError(f"not optimisation settings: {sorted(unknown)}")
    changes = {TRAIN_FIELDS[name]: value for name, value in settings.items() if value is not None}
    for name in ("steps", "adv_steps", "checkpoint_every", "sample_every", "distortion", "sparsity", "opacity"):
        if changes.get(TRAIN_FIELDS[name], 0) < 0:
            raise Export3DError(f"{flag_name(name)} must be >= 0")
    for name in ("lr_g", "lr_d", "lr_lebs"):
        if name in settings and settings[name] is not None and not 0 < settings[name] < 1:
            raise Export3DError(f"{flag_name(name)} must be between 0 and 1")
    if changes.get("feature_weight", 1) < 1:
        raise Export3DError("--feature-weight must be >= 1")
    if changes.get("batch_size", 1) < 1:
        raise Export3DError("--batch must be >= 1")
    return dataclasses.replace(TrainConfig(), **changes)


__all__ = ["RunConfig", "TRAIN_FIELDS", "add_run_arguments", "flag_name", "train_config"]
