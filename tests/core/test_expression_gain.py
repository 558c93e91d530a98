"""Expression gain: it scales the code the generator sees; runs get it from the flag, `auto`
(calibrated on CLeBS), their checkpoint on --resume, or the switching tool."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from test_dataset import write_toy_corpus

from export3d_core.config import ModelConfig
from export3d_core.lambda_units import calibrated_scale
from export3d_core.model import Export3D
from export3d_core.nn.lebs import LeBS
from export3d_core.train import checkpointing as ckpt
from export3d_core.train.__main__ import main as train_main
from export3d_core.train.clebs import CLEBS_FILE
from export3d_core.train.expression_gain import main as gain_main

CFG = ModelConfig.preset("tiny")


def test_gain_scales_the_expression_code_not_lambda() -> None:
    torch.manual_seed(0)
    plain, gained = LeBS(CFG), LeBS(CFG.replace(expression_gain=7.0))
    gained.load_state_dict(plain.state_dict())
    beta = torch.rand(2, CFG.beta_dim)
    with torch.no_grad():
        torch.testing.assert_close(gained.coefficients(beta), plain.coefficients(beta))
        torch.testing.assert_close(gained(beta), 7.0 * plain(beta))


@pytest.fixture
def toy(tmp_path: Path) -> Path:
    return write_toy_corpus(tmp_path / "corpus", clips=1, frames=4, res=64)


def test_auto_gain_is_calibrated_on_the_pretrained_lebs(toy: Path, tmp_path: Path,
                                                        capsys: pytest.CaptureFixture) -> None:
    common = ["--data", str(toy), "--batch", "2", "--no-progress", "--steps", "1"]
    assert train_main([*common, "--out", str(tmp_path / "r0"), "--expression-gain", "auto"]) == 2
    assert "needs --clebs" in capsys.readouterr().err
    assert train_main([*common, "--out", str(tmp_path / "r1"), "--expression-gain", "-3"]) == 2
    assert "positive number or auto" in capsys.readouterr().err
    assert train_main(["pretrain-clebs", "--data", str(toy), "--out", str(tmp_path / "clebs"), "--steps", "1",
                       "--batch", "2", "--no-progress"]) == 0
    run = tmp_path / "run"
    assert train_main([*common, "--out", str(run), "--expression-gain", "auto", "--clebs", str(tmp_path / "clebs"),
                       "--checkpoint-every", "1"]) == 0
    lebs = LeBS(CFG)
    lebs.load_state_dict(load_file(str(tmp_path / "clebs" / CLEBS_FILE)))
    from export3d_core.data.dataset import CorpusDataset

    betas = CorpusDataset(toy, 64, 32, 64).betas
    saved = ckpt.load_training_state(run)[1]["model_config"]["expression_gain"]
    assert saved == pytest.approx(calibrated_scale(lebs, betas)) and saved != 1.0
    # --resume keeps the run's gain; another number is refused with the way to change it
    assert train_main([*common[:-1], "2", "--out", str(run), "--resume"]) == 0
    assert train_main([*common[:-1], "3", "--out", str(run), "--resume", "--expression-gain", "2"]) == 2
    assert "export3d expression-gain" in capsys.readouterr().err  # the tool that changes it


def test_switching_tool_sets_the_gain_and_zeroes_the_expression_weights(toy: Path, tmp_path: Path,
                                                                          capsys: pytest.CaptureFixture) -> None:
    run = tmp_path / "run"
    common = ["--data", str(toy), "--out", str(run), "--batch", "2", "--no-progress", "--checkpoint-every", "1"]
    assert train_main([*common, "--steps", "2", "--lr-g", "1e-2"]) == 0
    before, _ = ckpt.load_training_state(run)
    weights = [k for k in before if k.endswith(".adaLN_modulation.1.weight")]
    assert weights and any(before[k].abs().sum() > 0 for k in weights)  # training moved them off zero
    assert gain_main([str(run), "--gain", "auto"]) == 2  # auto needs the corpus
    assert "needs --data" in capsys.readouterr().err
    assert gain_main([str(run), "--gain", "4.5"]) == 0
    after, meta = ckpt.load_training_state(run)
    assert meta["model_config"]["expression_gain"] == 4.5 and meta["step"] == 2
    assert all(after[k].abs().sum() == 0 for k in weights)
    biases = [k.replace(".weight", ".bias") for k in weights]
    assert all(torch.equal(after[k], before[k]) for k in biases)  # the neutral modulation stays
    assert train_main([*common, "--steps", "3", "--resume"]) == 0  # continues at the new gain
    model = Export3D(ModelConfig.from_dict(ckpt.load_training_state(run)[1]["model_config"]))
    assert model.config.expression_gain == 4.5
    assert gain_main([str(tmp_path / "nowhere")]) == 2


def test_switching_tool_replaces_the_runs_clebs(toy: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    run, clebs = tmp_path / "run", tmp_path / "clebs"
    common = ["--data", str(toy), "--out", str(run), "--batch", "2", "--no-progress", "--checkpoint-every", "1"]
    assert train_main([*common, "--steps", "2", "--lr-g", "1e-2"]) == 0  # LeBS trained with G: not replaceable
    assert train_main(["pretrain-clebs", "--data", str(toy), "--out", str(tmp_path / "first"), "--steps", "1",
                       "--batch", "2", "--no-progress"]) == 0
    assert gain_main([str(run), "--gain", "2", "--clebs", str(tmp_path / "first")]) == 2
    assert "replaces only a frozen CLeBS" in capsys.readouterr().err
    shutil.rmtree(run)
    assert train_main([*common, "--steps", "2", "--lr-g", "1e-2", "--clebs", str(tmp_path / "first")]) == 0
    assert train_main(["pretrain-clebs", "--data", str(toy), "--out", str(clebs), "--steps", "2", "--batch", "2",
                       "--beta-negatives", "2", "--seed", "5", "--no-progress"]) == 0
    before, _ = ckpt.load_training_state(run)
    assert gain_main([str(run), "--gain", "2", "--clebs", str(tmp_path / "missing")]) == 2
    assert "not found" in capsys.readouterr().err
    other = write_toy_corpus(tmp_path / "other", clips=1, frames=4, res=64, beta_dim=5)
    assert train_main(["pretrain-clebs", "--data", str(other), "--out", str(tmp_path / "clebs5"), "--steps", "1",
                       "--batch", "2", "--no-progress"]) == 0
    assert gain_main([str(run), "--gain", "2", "--clebs", str(tmp_path / "clebs5")]) == 2
    assert "do not fit" in capsys.readouterr().err
    assert ckpt.load_training_state(run)[0].keys() == before.keys()  # refused: nothing rewritten
    assert all(torch.equal(ckpt.load_training_state(run)[0][k], before[k]) for k in before)

    assert gain_main([str(run), "--gain", "2", "--clebs", str(clebs)]) == 0
    assert "CLeBS replaced" in capsys.readouterr().out
    after, meta = ckpt.load_training_state(run)
    pretrained = load_file(str(clebs / CLEBS_FILE))
    assert all(torch.equal(after[f"model.lebs.{k}"], v) for k, v in pretrained.items())
    assert not torch.equal(before["model.lebs.basis_weight"], after["model.lebs.basis_weight"])
    assert all(after[k].abs().sum() == 0 for k in after if k.endswith(".adaLN_modulation.1.weight"))
    others = [k for k in before if k.startswith("model.") and ".lebs." not in k and "adaLN_modulation.1.weight" not in k]
    assert all(torch.equal(after[k], before[k]) for k in others)  # everything else is kept
    assert meta["model_config"]["expression_gain"] == 2.0
    assert train_main([*common, "--steps", "3", "--resume"]) == 0  # trains on with the new, frozen CLeBS
    resumed = ckpt.load_training_state(run)[0]
    assert all(torch.equal(resumed[f"model.lebs.{k}"], v) for k, v in pretrained.items())
