"""RunConfig: one declaration per training setting; the `train` flags, the saved state and the run
tools (`expression-gain`, `train-face-features`, `demo-portraits`) as `export3d` sub-commands."""
from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

import pytest
from test_dataset import write_toy_corpus

from export3d_core.cli import build_parser, main as cli_main
from export3d_core.config import TrainConfig
from export3d_core.train import checkpointing as ckpt
from export3d_core.train.__main__ import main as train_main
from export3d_core.train.run_config import TRAIN_FIELDS, RunConfig, add_run_arguments, train_config

# Every flag `export3d train` has had; scripts, tests and the README use them.
TRAIN_FLAGS = ("--preset", "--data", "--out", "--steps", "--adv-steps", "--batch", "--resume", "--clebs",
               "--init-from", "--unfreeze-lebs", "--skip-expression-channels", "--neural-size", "--vgg",
               "--face-features", "--face-features-weight", "--face-expression-weight", "--seed", "--lr-g",
               "--lr-lebs", "--lr-d", "--distortion", "--sparsity", "--opacity", "--expression-gain",
               "--feature-weight", "--checkpoint-every", "--sample-every", "--device", "--no-progress")


def train_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser()
    add_run_arguments(parser)
    return parser


def test_every_train_flag_is_a_runconfig_field_with_a_comment() -> None:
    parser = train_parser()
    flags = {flag for action in parser._actions for flag in action.option_strings} - {"-h", "--help"}
    assert flags == set(TRAIN_FLAGS)
    for field in dataclasses.fields(RunConfig):
        assert field.metadata["help"], field.name  # the flag's help is the field's comment
    assert set(TRAIN_FIELDS.values()) <= {f.name for f in dataclasses.fields(TrainConfig)}


def test_flags_parse_into_the_config_and_its_train_settings() -> None:
    args = train_parser().parse_args(["--data", "D", "--out", "O", "--steps", "7", "--adv-steps", "2", "--batch", "3",
                                      "--lr-g", "2e-4", "--distortion", "0.5", "--resume", "--expression-gain", "auto"])
    run = RunConfig.from_namespace(args)
    assert (run.data, run.out, run.resume, run.expression_gain, run.preset) == ("D", "O", True, "auto", "tiny")
    tcfg = run.train_config()
    assert (tcfg.recon_steps, tcfg.adv_steps, tcfg.batch_size, tcfg.lr_g, tcfg.lambda_distortion) == (7, 2, 3, 2e-4, 0.5)
    assert tcfg.seed == TrainConfig().seed  # not given: TrainConfig's default
    with pytest.raises(SystemExit):  # --data and --out are required
        train_parser().parse_args(["--data", "D"])


@pytest.mark.parametrize("settings, message", [({"steps": -1}, "--steps must be >= 0"),
                                               ({"lr_d": 2.0}, "--lr-d must be between 0 and 1"),
                                               ({"batch": 0}, "--batch must be >= 1"),
                                               ({"feature_weight": 0.5}, "--feature-weight must be >= 1"),
                                               ({"opacity": -0.1}, "--opacity must be >= 0")])
def test_bad_settings_are_named_by_their_flag(settings: dict, message: str) -> None:
    from export3d_core.errors import Export3DError

    with pytest.raises(Export3DError, match=message):
        train_config(**settings)
    with pytest.raises(Export3DError, match=message):
        RunConfig(data="D", out="O", **settings).train_config()


def test_the_whole_config_is_saved_in_the_run_state_and_an_older_state_resumes(tmp_path: Path) -> None:
    corpus = write_toy_corpus(tmp_path / "corpus", clips=2, frames=4, res=64)
    run = tmp_path / "run"
    common = ["--data", str(corpus), "--out", str(run), "--batch", "2", "--no-progress", "--seed", "3"]
    assert train_main([*common, "--steps", "1"]) == 0
    state = json.loads((run / ckpt.STATE_JSON).read_text())
    saved = state["extra"]["run_config"]
    assert saved == dataclasses.asdict(RunConfig(data=str(corpus), out=str(run), batch=2, no_progress=True, seed=3,
                                                 steps=1))
    # A state written before the run config was kept (no "run_config") still resumes.
    del state["extra"]["run_config"]
    (run / ckpt.STATE_JSON).write_text(json.dumps(state))
    assert train_main([*common, "--steps", "2", "--resume"]) == 0
    resumed = json.loads((run / ckpt.STATE_JSON).read_text())
    assert resumed["step"] == 2 and resumed["extra"]["run_config"]["resume"] is True


def test_run_tools_are_export3d_sub_commands(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    commands = build_parser()._subparsers._group_actions[0].choices
    assert {"expression-gain", "train-face-features", "demo-portraits"} <= set(commands)
    assert cli_main(["expression-gain", str(tmp_path / "nowhere")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("export3d expression-gain: error:") and err.count("\n") == 1
    existing = tmp_path / "net.safetensors"
    existing.write_bytes(b"keep")
    assert cli_main(["train-face-features", str(existing)]) == 2
    assert "exists" in capsys.readouterr().err and existing.read_bytes() == b"keep"


def test_demo_portraits_command_writes_the_list(tmp_path: Path) -> None:
    out = tmp_path / "portraits"
    assert cli_main(["demo-portraits", "--count", "1", "--res", "64", "-o", str(out)]) == 0
    entries = json.loads((out / "portraits.json").read_text())
    assert [e["file"] for e in entries] == ["synthetic_01.png", "astronaut.png"]
    assert all((out / e["file"]).is_file() for e in entries)
