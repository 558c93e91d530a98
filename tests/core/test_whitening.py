"""Whitening of the frozen CLeBS coefficients: the ZCA matrix, its fold into LeBS' last layer, and
the run tool's --whiten."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from test_dataset import write_toy_corpus

from export3d_core.config import ModelConfig
from export3d_core.data.dataset import CorpusDataset
from export3d_core.errors import Export3DError
from export3d_core.nn.lebs import LeBS
from export3d_core.train import checkpointing as ckpt
from export3d_core.train.__main__ import main as train_main
from export3d_core.train.expression_gain import main as gain_main
from export3d_core.train.whitening import whiten_coefficients, whitening_matrix

CFG = ModelConfig.preset("tiny")


def _covariance(x: torch.Tensor) -> torch.Tensor:
    centred = x.double() - x.double().mean(dim=0)
    return centred.T @ centred / (len(x) - 1)


def test_whitening_matrix_gives_identity_covariance_and_bounds_amplification() -> None:
    generator = torch.Generator().manual_seed(0)
    mixing = torch.randn(4, 4, generator=generator) * torch.tensor([10.0, 3.0, 1.0, 0.1])  # lopsided scales
    raw = torch.randn(500, 4, generator=generator) @ mixing
    exact = whitening_matrix(raw, floor=0.0)
    torch.testing.assert_close(_covariance(raw.double() @ exact), torch.eye(4, dtype=torch.float64))
    torch.testing.assert_close(exact, exact.T)  # ZCA: symmetric
    floor = 0.01
    floored = torch.linalg.eigvalsh(whitening_matrix(raw, floor=floor))
    assert float(floored.max() / floored.min()) <= ((1 + floor) / floor) ** 0.5 + 1e-6
    assert float(torch.linalg.eigvalsh(exact).max() / torch.linalg.eigvalsh(exact).min()) > 20  # the floor mattered
    with pytest.raises(Export3DError, match="more expressions than coefficients"):
        whitening_matrix(raw[:4])


def test_whitening_folds_into_the_last_layer_exactly() -> None:
    torch.manual_seed(0)
    lebs = LeBS(CFG)
    betas = torch.rand(200, CFG.beta_dim) * torch.linspace(0.05, 1.0, CFG.beta_dim)
    with torch.no_grad():
        before = lebs.mlp(betas)
        matrix = whiten_coefficients(lebs, betas, floor=0.0)
        after = lebs.mlp(betas)
    torch.testing.assert_close(after, before @ matrix, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(_covariance(after), torch.eye(CFG.n_basis, dtype=torch.float64), rtol=0, atol=1e-3)


def test_run_tool_whitens_the_runs_lebs(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    corpus = write_toy_corpus(tmp_path / "corpus", clips=3, frames=6, res=64)
    run = tmp_path / "run"
    common = ["--data", str(corpus), "--out", str(run), "--batch", "2", "--no-progress", "--checkpoint-every", "1"]
    assert train_main([*common, "--steps", "2", "--lr-g", "1e-2"]) == 0
    assert gain_main([str(run), "--gain", "2", "--whiten"]) == 2  # whitening needs the corpus
    assert "--whiten needs --data" in capsys.readouterr().err
    assert gain_main([str(run), "--gain", "2", "--whiten", "--data", str(corpus)]) == 0
    assert "whitened" in capsys.readouterr().out
    tensors, meta = ckpt.load_training_state(run)
    assert meta["model_config"]["expression_gain"] == 2.0
    assert all(tensors[k].abs().sum() == 0 for k in tensors if k.endswith(".adaLN_modulation.1.weight"))
    lebs = LeBS(CFG)
    lebs.load_state_dict(ckpt.split_prefix(tensors, "model.lebs"))
    betas = CorpusDataset(corpus, 64, 32, 64).betas
    with torch.no_grad():
        values = torch.linalg.eigvalsh(_covariance(lebs.mlp(betas)))
    assert float(values.max()) == pytest.approx(1.0, rel=0.05)  # the strongest direction now has unit variance
    assert np.all(values.numpy() <= 1.0 + 1e-6)
