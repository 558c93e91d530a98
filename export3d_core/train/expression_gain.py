"""Set the expression gain of a training run: `export3d expression-gain RUN`.

`ModelConfig.expression_gain` scales the expression code the generator sees (see config.py).
A run trained with too small a gain hardly learns expression; this tool switches a run's last
checkpoint to a new gain and zeroes the expression weights of every EAdaLN modulation (their
biases, the expression-neutral part, stay), so the model's images hardly change at the switch
and the expression pathway learns afresh at the new scale. Continue the run with
`export3d train ... --resume`; the gain is read from the checkpoint.

`--gain auto` calibrates it as `train --expression-gain auto` does: the gain at which the
corpus' strong expressions give λ of the slider scale (`export3d_core.lambda_units`).
`--whiten` first whitens the frozen CLeBS coefficients over the corpus (`train/whitening.py`),
so that every expression parameter reaches the generator with a comparable strength.
`--clebs RUN_OR_FILE` first replaces the run's frozen CLeBS by other pre-trained weights (e.g. a
pre-training that keeps more of β, see `train/clebs.py`); the zeroed expression weights then
learn the new code while everything expression-neutral is kept.
"""
from __future__ import annotations

import argparse
import sys

from export3d_core.errors import EXIT_USER_ERROR, Export3DError
from export3d_core.train import checkpointing as ckpt

MODULATION_WEIGHT = ".adaLN_modulation.1.weight"  # the Linear that reads e in each EAdaLN block
STATE_KEYS = ("format", "version", "step", "tensors")  # written by save_training_state itself


def calibrated_gain(cfg, lebs_state: dict, betas) -> float:
    """The gain `auto` means for a LeBS with weights `lebs_state` on expression parameters `betas`."""
    from export3d_core.lambda_units import calibrated_scale
    from export3d_core.nn.lebs import LeBS

    lebs = LeBS(cfg)
    lebs.load_state_dict(lebs_state)
    return calibrated_scale(lebs, betas)


def set_run_gain(run_dir, gain: str | float, data: str | None = None, whiten: bool = False,
                 clebs: str | None = None) -> float:
    """Rewrite the last checkpoint of `run_dir` with expression gain `gain` (a number or "auto"),
    after replacing its CLeBS by the pre-trained weights at `clebs` when given, and whitening its
    CLeBS coefficients over the corpus at `data` when `whiten`."""
    tensors, meta = ckpt.load_training_state(run_dir)
    cfg = ckpt.saved_model_config(meta, run_dir)
    betas = None
    if gain == "auto" or whiten:
        if data is None:
            flag = "--whiten" if whiten else "--gain auto"
            raise Export3DError(f"{flag} needs --data: the corpus whose expressions calibrate it")
        from export3d_core.data.dataset import CorpusDataset

        betas = CorpusDataset(data, cfg.input_size, cfg.neural_size, cfg.output_size, in_memory=False).betas
    if clebs is not None and not meta.get("extra", {}).get("frozen_lebs"):
        # Its optimiser state holds LeBS' parameters: a frozen one would no longer fit it.
        raise Export3DError(f"{run_dir} trains its own LeBS; --clebs replaces only a frozen CLeBS "
                            "(a run started with `export3d train --clebs`)")
    if clebs is not None or whiten:
        _rewrite_run_lebs(tensors, cfg, clebs, betas if whiten else None)
    if gain == "auto":
        value = calibrated_gain(cfg, ckpt.split_prefix(tensors, "model.lebs"), betas)
    else:
        value = float(gain)
    cfg.replace(expression_gain=value)  # validates: positive and finite
    weights = [name for name in tensors if name.startswith("model.") and name.endswith(MODULATION_WEIGHT)]
    if not weights:
        raise Export3DError(f"the checkpoint in {run_dir} has no EAdaLN modulation weights")
    for name in weights:
        tensors[name] = tensors[name].clone().zero_()
    meta["model_config"]["expression_gain"] = value
    step = meta["step"]
    ckpt.save_training_state(run_dir, step, tensors, {k: v for k, v in meta.items() if k not in STATE_KEYS})
    return value


def _rewrite_run_lebs(tensors: dict, cfg, clebs: str | None, whiten_over) -> None:
    """Rewrite the LeBS weights in a training state's tensors, in place: replaced by the
    pre-trained ones at `clebs` when given, then whitened over the expressions `whiten_over`
    when given."""
    from export3d_core.nn.lebs import LeBS
    from export3d_core.train.clebs import load_lebs_frozen
    from export3d_core.train.whitening import whiten_coefficients

    lebs = LeBS(cfg)
    lebs.load_state_dict(ckpt.split_prefix(tensors, "model.lebs"))
    if clebs is not None:
        load_lebs_frozen(lebs, clebs)  # checks that the weights fit this model
    if whiten_over is not None:
        whiten_coefficients(lebs, whiten_over)
    for name, value in lebs.state_dict().items():
        tensors[f"model.lebs.{name}"] = value.detach().clone()


def add_expression_gain_command(subparsers: argparse._SubParsersAction) -> None:
    """Register `export3d expression-gain RUN`."""
    parser = subparsers.add_parser("expression-gain", help="switch a training run to a new expression gain",
                                   description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_expression_gain_arguments(parser)
    parser.set_defaults(handler=run_expression_gain)


def add_expression_gain_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run", help="training run directory (export3d train --out)")
    parser.add_argument("--gain", default="auto", help="the new gain, or auto (default)")
    parser.add_argument("--data", default=None, help="corpus directory (needed by --gain auto and --whiten)")
    parser.add_argument("--clebs", default=None,
                        help="replace the run's frozen CLeBS by these pre-trained weights (run directory or file) first")
    parser.add_argument("--whiten", action="store_true",
                        help="whiten the frozen CLeBS coefficients over the corpus' expressions first")


def run_expression_gain(args: argparse.Namespace) -> int:
    try:
        gain = args.gain if args.gain == "auto" else float(args.gain)
        value = set_run_gain(args.run, gain, args.data, whiten=args.whiten, clebs=args.clebs)
    except ValueError as exc:
        raise Export3DError(str(exc)) from None
    replaced = f"CLeBS replaced by {args.clebs}; " if args.clebs else ""
    whitened = "CLeBS coefficients whitened; " if args.whiten else ""
    print(f"{args.run}: {replaced}{whitened}expression gain {value:.4g}; EAdaLN expression weights zeroed; continue with --resume")
    return 0


def main(argv: list[str] | None = None) -> int:
    """`python -m export3d_core.train.expression_gain`: the same as `export3d expression-gain`."""
    parser = argparse.ArgumentParser(prog="python -m export3d_core.train.expression_gain", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_expression_gain_arguments(parser)
    try:
        return run_expression_gain(parser.parse_args(argv))
    except Export3DError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USER_ERROR


if __name__ == "__main__":
    sys.exit(main())
