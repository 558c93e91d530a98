"""The `export3d train` and `export3d pretrain-clebs` sub-commands.

Owns turning command-line options into a configured run: the preset (with beta_dim taken from
the corpus), the TrainConfig, the model, discriminator, frozen CLeBS, perceptual loss and process
group, then hands them to `Trainer` / `pretrain_clebs`. Handlers return exit codes (0 done,
130 interrupted after checkpointing); user errors raise Export3DError.
"""
from __future__ import annotations

import argparse
import dataclasses
import math
import sys
from pathlib import Path

import torch

from export3d_core.atomic import check_writable
from export3d_core.config import ModelConfig, PRESETS, TrainConfig
from export3d_core.data.dataset import CorpusDataset
from export3d_core.errors import EXIT_INTERRUPTED, Export3DError
from export3d_core.train import checkpointing as ckpt
from export3d_core.nn.code_information import describe_code_information
from export3d_core.train.clebs import (CLEBS_FILE, load_lebs_frozen, pretrain_clebs, read_lebs_extra,
                                       resolve_clebs_path)
from export3d_core.train.run_config import RunConfig, add_run_arguments, train_config
from export3d_core.train.ddp import DistInfo, cleanup_distributed, setup_distributed
from export3d_core.train.expression_gain import add_expression_gain_command
from export3d_core.train.face_features import FaceExpressionLoss, add_face_features_command, load_face_features
from export3d_core.train.init_from import initial_config, load_grown, read_source_run
from export3d_core.train.losses import PerceptualLoss
from export3d_core.train.loop import Trainer
from export3d_core.train.vgg import load_vgg16


def add_train_commands(subparsers: argparse._SubParsersAction) -> None:
    """Register `train`, `pretrain-clebs` and the run tools `expression-gain` and
    `train-face-features` on the `export3d` parser."""
    train = subparsers.add_parser("train", help="train Export3D on a corpus (single process or torchrun DDP)",
                                  description="Phase 1 reconstruction for --steps, then phase 2 adds the "
                                              "adversarial loss for --adv-steps. Resumable; Ctrl-C checkpoints.")
    add_run_arguments(train)  # one flag per RunConfig field
    train.set_defaults(handler=run_train)

    clebs = subparsers.add_parser("pretrain-clebs", help="contrastive pre-training of LeBS (CLeBS)",
                                  description="Fit LeBS and the image encoder with InfoNCE; writes OUT/clebs.safetensors.")
    clebs.add_argument("--preset", default="tiny", choices=sorted(PRESETS), help="model size (default tiny)")
    clebs.add_argument("--data", required=True, help="corpus directory")
    clebs.add_argument("--out", required=True, help="run directory")
    clebs.add_argument("--steps", type=int, default=1000, help="steps (default 1000; the paper used 60,000)")
    clebs.add_argument("--batch", type=int, default=None, help="batch size (default TrainConfig's)")
    clebs.add_argument("--beta-negatives", type=int, default=0,
                       help="extra negatives per frame made by moving one β parameter of its own "
                            "(not in the paper; default 0; the demo model uses 32)")
    clebs.add_argument("--seed", type=int, default=None, help="random seed")
    clebs.add_argument("--device", default=None, help="cpu or cuda (default: cuda if available)")
    clebs.add_argument("--no-progress", action="store_true", help="no progress bar")
    clebs.set_defaults(handler=run_pretrain_clebs)
    add_expression_gain_command(subparsers)
    add_face_features_command(subparsers)


# -- helpers ------------------------------------------------------------------------------------------
def corpus_config(preset: str, dataset: CorpusDataset, quiet: bool = False) -> ModelConfig:
    """The preset with beta_dim taken from the corpus (β comes from the data, not the preset)."""
    cfg = ModelConfig.preset(preset)
    if cfg.beta_dim != dataset.beta_dim:
        if not quiet:
            print(f"note: beta_dim {cfg.beta_dim} of preset {preset!r} replaced by the corpus' {dataset.beta_dim}",
                  file=sys.stderr)
        cfg = cfg.replace(beta_dim=dataset.beta_dim)
    return cfg


def build_trainer(run: RunConfig, dist: DistInfo, hooks: list | None = None) -> Trainer:
    """Everything `train` needs, ready to `.train()` (and already resumed with --resume)."""
    from export3d_core.model import Export3D  # deferred: the model pulls in the whole network
    from export3d_core.nn.discriminator import DualDiscriminator

    tcfg = run.train_config()
    out = Path(run.out)
    check_writable(out / ckpt.STATE_JSON)  # a folder that refuses fails now, not after loading the data
    _check_run_flags(run, out)
    source_tensors, source_meta = read_source_run(run.init_from) if run.init_from else (None, None)
    # What the run carries over: its own saved state on --resume, the source's with --init-from.
    prior_meta = source_meta if run.init_from else (_state_meta(out) if run.resume else None)
    dataset = CorpusDataset(run.data, *_run_sizes(run, prior_meta), seed=tcfg.seed,
                            feature_weight=tcfg.feature_weight)
    cfg = run_model_config(run, corpus_config(run.preset, dataset, quiet=not dist.is_main), dataset, out, prior_meta)
    torch.manual_seed(tcfg.seed)  # identical initial weights on every rank (DDP also broadcasts them)
    model = Export3D(cfg)
    # A discriminator once trained stays with the run, also through reconstruction-only stretches.
    keeps_disc = prior_meta is not None and "opt_d" in prior_meta
    discriminator = DualDiscriminator(cfg) if tcfg.adv_steps > 0 or keeps_disc else None
    carried_frozen = bool(prior_meta and prior_meta.get("extra", {}).get("frozen_lebs"))
    frozen = not run.unfreeze_lebs and (bool(run.clebs) or carried_frozen)
    if run.clebs:
        load_lebs_frozen(model.lebs, run.clebs)
    if source_tensors is not None:
        _load_source_run(run.init_from, source_tensors, model, discriminator if keeps_disc else None, dist)
    if frozen:  # the LeBS weights are the pre-trained ones (loaded or carried over); keep them frozen
        model.lebs.requires_grad_(False)
    tcfg = dataclasses.replace(tcfg, lr_lebs=lebs_rate(run, frozen, prior_meta if run.resume else None))
    perceptual, expression = perceptual_losses(run, dist.device)
    torch.manual_seed(tcfg.seed + dist.rank)  # per-rank stochastic ray sampling
    # frozen_lebs, lr_lebs, preset and data are read back by a resumed run (and by runs saved
    # before the whole RunConfig was kept); run_config records every setting of this launch.
    trainer = Trainer(model, dataset, tcfg, out, discriminator=discriminator, perceptual=perceptual,
                      expression=expression, dist=dist, hooks=hooks, progress=not run.no_progress,
                      extra_meta={"frozen_lebs": frozen, "lr_lebs": tcfg.lr_lebs, "preset": run.preset,
                                  "data": str(run.data), "run_config": run.to_dict()})
    if run.resume:
        trainer.resume()
        _apply_rate_flags(trainer, run, tcfg)
    return trainer


def _check_run_flags(run: RunConfig, out: Path) -> None:
    """Flags that contradict each other or the run directory's state."""
    if run.resume and not ckpt.has_training_state(out):
        raise Export3DError(f"nothing to resume in {out}: no {ckpt.STATE_JSON}")
    if not run.resume and ckpt.has_training_state(out):
        raise Export3DError(f"{out} already holds a training run; pass --resume to continue it or choose another --out")
    if run.init_from and (run.resume or run.clebs or run.expression_gain is not None):
        raise Export3DError("--init-from starts a new run with the source's LeBS and gain: "
                            "it takes neither --resume, --clebs nor --expression-gain")
    if run.unfreeze_lebs and not run.init_from:
        raise Export3DError("--unfreeze-lebs goes with --init-from RUN (a new run decides whether LeBS trains; "
                            "a resumed run keeps its own choice)")


def _load_source_run(source: str, tensors: dict, model, discriminator, dist: DistInfo) -> None:
    """The --init-from run's weights into `model` (and `discriminator`, when the run keeps one)."""
    fresh = load_grown(model, ckpt.split_prefix(tensors, "model"))
    if discriminator is not None:
        fresh += [f"disc.{name}" for name in load_grown(discriminator, ckpt.split_prefix(tensors, "disc"))]
    if dist.is_main:
        print(f"initialised from {source}; at their initialisation: {', '.join(fresh) or 'nothing'}",
              file=sys.stderr)


def _apply_rate_flags(trainer: Trainer, run: RunConfig, tcfg) -> None:
    """The optimiser state carries a resumed run's learning rates; a flag given now changes them."""
    for group in trainer.opt_g.param_groups:  # LeBS follows G's rate unless the run gives it its own
        own_rate = group.get("name") == "lebs" and tcfg.lr_lebs is not None
        rate = tcfg.lr_lebs if own_rate else run.lr_g
        if rate is not None:
            group["lr"] = rate
    if trainer.opt_d is not None and run.lr_d is not None:
        for group in trainer.opt_d.param_groups:
            group["lr"] = run.lr_d


def lebs_rate(run: RunConfig, frozen: bool, resumed_meta: dict | None) -> float | None:
    """LeBS's own Adam rate in this run: --lr-lebs, else a resumed run's own; None: it follows G's."""
    flag = run.lr_lebs
    if flag is not None and frozen:
        raise Export3DError("--lr-lebs: LeBS is frozen in this run (pre-trained CLeBS); it trains with G only in a "
                            "run without --clebs or one started with --init-from ... --unfreeze-lebs")
    if flag is None and resumed_meta is not None:
        return resumed_meta.get("extra", {}).get("lr_lebs")
    return flag


def perceptual_losses(run: RunConfig,
                      device: torch.device | str) -> tuple[PerceptualLoss | None, FaceExpressionLoss | None]:
    """The perceptual terms' loss: on --face-features if given, else on VGG16 when its weights are
    found, else None (MSE only, after one warning); and the face expression term, if asked for."""
    face_features, weight, expression_weight = run.face_features, run.face_features_weight, run.face_expression_weight
    if expression_weight < 0:
        raise Export3DError(f"--face-expression-weight must be >= 0, got {expression_weight}")
    if not face_features:
        if expression_weight > 0:
            raise Export3DError("--face-expression-weight needs --face-features (the network that reads the expression)")
        vgg = load_vgg16(run.vgg, device)
        return (PerceptualLoss(vgg) if vgg is not None else None), None
    if run.vgg:
        raise Export3DError("--vgg and --face-features both name the perceptual network: give one")
    if not weight > 0:
        raise Export3DError(f"--face-features-weight must be > 0, got {weight}")
    features = load_face_features(face_features, device)
    # One scale: the network resizes every image to its own side, so a half-size copy adds nothing.
    perceptual = PerceptualLoss(features, scales=1, weight=weight)
    return perceptual, (FaceExpressionLoss(features, expression_weight) if expression_weight > 0 else None)


# Flags that change a new run's architecture (grown from another run with --init-from): flag, ModelConfig field.
ARCHITECTURE_FLAGS = (("--skip-expression-channels", "skip_expression_channels"),
                      ("--neural-size", "neural_size"))


def architecture_config(run: RunConfig, preset_config: ModelConfig) -> ModelConfig:
    """The preset with a new run's architecture flags; with --resume any such flag is refused."""
    cfg = preset_config
    for flag, name in ARCHITECTURE_FLAGS:
        value = getattr(run, name)
        if value is None:
            continue
        if run.resume:
            raise Export3DError(f"{flag} sets a new run's architecture; --resume keeps the run's")
        try:
            cfg = cfg.replace(**{name: value})
        except ValueError as exc:
            raise Export3DError(f"{flag}: {exc}") from None
    return cfg


def run_model_config(run: RunConfig, preset_config: ModelConfig, dataset: CorpusDataset, out: Path,
                     prior_meta: dict | None) -> ModelConfig:
    """The model config of this run: a new run's from the preset and flags (with --init-from, the
    source run's calibration; `prior_meta` is its state), a resumed run's own (`prior_meta` is it)."""
    cfg = architecture_config(run, preset_config)
    if run.resume:  # a run's architecture is fixed when it starts: take it from the run
        return resumed_config(cfg, out, prior_meta, run.expression_gain)
    if prior_meta is not None:
        return initial_config(cfg, prior_meta)
    return cfg.replace(expression_gain=resolve_expression_gain(run, cfg, dataset))


def _state_meta(out: Path) -> dict:
    """The JSON half of a run's training state (no tensors)."""
    return ckpt.read_state_json(out)


def resumed_config(preset_config: ModelConfig, out: Path, state_meta: dict, gain_flag: str | None) -> ModelConfig:
    """The run's saved model config (from its state's JSON), after checking it is this preset's and its
    gain matches any flag."""
    saved = ckpt.saved_model_config(state_meta, out)
    if saved.name != preset_config.name or saved.beta_dim != preset_config.beta_dim:
        raise Export3DError(f"{out} was trained with preset {saved.name!r} (beta_dim {saved.beta_dim}); "
                            "resume with the same preset and corpus")
    if gain_flag not in (None, "auto") and _gain_number(gain_flag) != saved.expression_gain:
        raise Export3DError(f"{out} trains with expression gain {saved.expression_gain:g}; to change it, run "
                            f"export3d expression-gain {out} --gain {gain_flag}")
    return saved


def resolve_expression_gain(run: RunConfig, cfg: ModelConfig, dataset: CorpusDataset) -> float:
    """A new run's `expression_gain`: the flag's number, or `auto` (calibrated on the CLeBS weights)."""
    flag = run.expression_gain
    if flag is None:
        return 1.0
    if flag != "auto":
        return _gain_number(flag)
    if not run.clebs:
        raise Export3DError("--expression-gain auto needs --clebs: it calibrates the pre-trained λ")
    from safetensors.torch import load_file

    from export3d_core.train.expression_gain import calibrated_gain

    return calibrated_gain(cfg, load_file(str(resolve_clebs_path(run.clebs))), dataset.betas)


def _gain_number(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not (math.isfinite(value) and value > 0):
        raise Export3DError(f"--expression-gain must be a positive number or auto, got {text!r}")
    return value


def _run_sizes(run: RunConfig, prior_meta: dict | None) -> tuple[int, int, int]:
    """(input, neural, output) sides of this run's images, known before its data is loaded: a
    resumed run's own, else the preset's with the architecture flags (checked here, early)."""
    if run.resume and prior_meta is not None and "model_config" in prior_meta:
        cfg = ckpt.saved_model_config(prior_meta, run.out)
    else:
        cfg = architecture_config(run, ModelConfig.preset(run.preset))
    return cfg.input_size, cfg.neural_size, cfg.output_size


# -- handlers -----------------------------------------------------------------------------------------
def run_train(args: argparse.Namespace) -> int:
    run = RunConfig.from_namespace(args)
    dist = setup_distributed(run.device)
    try:
        trainer = build_trainer(run, dist)
        status = trainer.train()
    finally:
        cleanup_distributed()
    if dist.is_main:
        where = Path(run.out)
        if status == "done":
            print(f"trained {trainer.step} steps; weights in {where / 'model.safetensors'}", file=sys.stderr)
        else:
            print(f"stopped at step {trainer.step}; continue with --resume --out {where}", file=sys.stderr)
    return 0 if status == "done" else EXIT_INTERRUPTED


def run_pretrain_clebs(args: argparse.Namespace) -> int:
    from export3d_core.train.ddp import resolve_device

    tcfg = train_config(batch=args.batch, seed=args.seed)
    if args.steps < 1:
        raise Export3DError("--steps must be >= 1")
    if args.beta_negatives < 0:
        raise Export3DError("--beta-negatives must be >= 0")
    tcfg = dataclasses.replace(tcfg, clebs_beta_negatives=args.beta_negatives)
    check_writable(Path(args.out) / CLEBS_FILE)
    cfg0 = ModelConfig.preset(args.preset)
    dataset = CorpusDataset(args.data, cfg0.input_size, cfg0.neural_size, cfg0.output_size, seed=tcfg.seed)
    cfg = corpus_config(args.preset, dataset)
    path = pretrain_clebs(dataset, cfg, tcfg, args.out, steps=args.steps, device=resolve_device(args.device),
                          progress=not args.no_progress)
    extra = read_lebs_extra(path)
    if "code_r2" in extra:
        print(describe_code_information(extra["code_r2"], extra.get("beta_names")), file=sys.stderr)
    else:
        print("code information not measured: too few expressions in the corpus", file=sys.stderr)
    print(f"CLeBS weights in {path}; train with --clebs {args.out}", file=sys.stderr)
    return 0
