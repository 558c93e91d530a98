"""The face-feature perceptual loss: an attribute regressor's conv stages as the feature network
of `PerceptualLoss`, read like the regressor reads images, frozen, and wired into `train`."""
from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from skimage.data import astronaut
from test_dataset import write_toy_corpus

from export3d_core.data.dataset import resize_rgb, to_tensor
from export3d_core.errors import Export3DError
from export3d_core.faces.regressor import AttributeRegressor, RegressorConfig, save_regressor, two_views
from export3d_core.train.__main__ import main as train_main
from export3d_core.train.face_features import FaceExpressionLoss, load_face_features
from export3d_core.train.logs import LOG_FILE, read_jsonl
from export3d_core.train.losses import PerceptualLoss

CONFIG = RegressorConfig(resolution=32, widths=(8, 16), hidden=16, identity_dim=3, identity_names=("a", "b", "c"))


@pytest.fixture(scope="module")
def regressor_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    model = AttributeRegressor(CONFIG)
    for module in model.modules():  # batch-norm statistics other than the identity, so eval mode matters
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-0.5, 0.5)
            module.running_var.uniform_(0.5, 2.0)
    return save_regressor(model, tmp_path_factory.mktemp("facenet") / "facenet.safetensors")


def portrait(side: int) -> np.ndarray:
    return resize_rgb(astronaut()[:400, 50:450], side)


def test_reads_images_as_the_regressor_does(regressor_file: Path) -> None:
    from export3d_core.faces.regressor import load_regressor

    regressor = load_regressor(regressor_file)
    features = load_face_features(regressor_file)
    image = portrait(128)
    views = features.two_views(to_tensor(image)[None])  # (1, 6, 32, 32)
    expected = torch.from_numpy(two_views(image, CONFIG)).float().div(127.5).sub(1.0)[None]
    assert views.shape == expected.shape
    # The whole view is an exact 4x area shrink; the face crop's side (79 px) is not a multiple of
    # 32, where cv2's area weights and adaptive pooling's windows differ slightly (and cv2 rounds).
    assert (views[:, :3] - expected[:, :3]).abs().max() < 2 / 127.5
    assert (views[:, 3:] - expected[:, 3:]).abs().mean() < 0.03
    # The last tap is what the regressor's head reads: the same features, not a copy of the layout.
    taps = features(to_tensor(image)[None])
    assert [t.shape[1] for t in taps] == list(CONFIG.widths)
    with torch.no_grad():
        assert torch.allclose(regressor.head(taps[-1]), regressor(views), atol=1e-5)


def test_expression_term_is_the_l1_of_the_regressed_expressions(regressor_file: Path) -> None:
    from export3d_core.faces.regressor import load_regressor

    regressor = load_regressor(regressor_file)
    term = FaceExpressionLoss(load_face_features(regressor_file), weight=3.0)
    target = to_tensor(portrait(64))[None]
    assert term(target.clone(), target).item() == pytest.approx(0.0, abs=1e-6)
    prediction = torch.flip(target, dims=[-1]).requires_grad_(True)
    with torch.no_grad():
        read = [regressor(term.features.two_views(x))[:, :CONFIG.beta_dim] for x in (prediction, target)]
    value = term(prediction, target)
    assert value.item() == pytest.approx(3.0 * (read[0] - read[1]).abs().mean().item(), rel=1e-5)
    assert value.item() > 0
    value.backward()
    assert prediction.grad.abs().sum() > 0


def test_frozen_in_train_mode_and_passes_gradients_to_the_image(regressor_file: Path) -> None:
    features = load_face_features(regressor_file)
    perceptual = PerceptualLoss(features, scales=1, weight=2.0)
    perceptual.train()  # the Trainer puts its modules in train mode: batch norm must stay frozen
    assert not features.training and not any(p.requires_grad for p in features.parameters())
    target = to_tensor(portrait(64))[None]
    assert float(perceptual(target.clone(), target)) == pytest.approx(0.0, abs=1e-6)
    prediction = (target + 0.3 * torch.randn_like(target)).clamp(-1, 1).requires_grad_(True)
    distance = perceptual(prediction, target)
    assert distance.item() > 0.01
    assert PerceptualLoss(features, scales=1)(prediction, target).item() == pytest.approx(distance.item() / 2)
    distance.backward()
    assert prediction.grad is not None and prediction.grad.abs().sum() > 0
    assert all(p.grad is None for p in features.parameters())


def test_train_flag_adds_the_perceptual_terms(regressor_file: Path, tmp_path: Path,
                                              capsys: pytest.CaptureFixture) -> None:
    corpus = write_toy_corpus(tmp_path / "corpus", clips=1, frames=3, res=64)
    common = ["--data", str(corpus), "--batch", "2", "--steps", "1", "--no-progress"]
    assert train_main([*common, "--out", str(tmp_path / "run"), "--face-features", str(regressor_file),
                       "--face-features-weight", "0.5"]) == 0
    record = read_jsonl(tmp_path / "run" / LOG_FILE)[0]
    assert record["lpips"] > 0 and record["lpips_raw"] > 0 and "expr" not in record
    assert record["rec"] == pytest.approx(record["l2"] + record["l2_raw"] + record["lpips"] + record["lpips_raw"],
                                          rel=1e-5)
    assert train_main([*common, "--out", str(tmp_path / "expr"), "--face-features", str(regressor_file),
                       "--face-expression-weight", "2"]) == 0
    record = read_jsonl(tmp_path / "expr" / LOG_FILE)[0]
    assert record["expr"] > 0 and record["expr_raw"] > 0
    assert record["rec"] == pytest.approx(sum(record[k] for k in ("l2", "l2_raw", "lpips", "lpips_raw", "expr",
                                                                   "expr_raw")), rel=1e-5)
    assert train_main([*common, "--out", str(tmp_path / "d"), "--face-expression-weight", "1"]) == 2
    assert "needs --face-features" in capsys.readouterr().err

    assert train_main([*common, "--out", str(tmp_path / "a"), "--face-features", str(tmp_path / "none")]) == 2
    assert "face-feature network not found" in capsys.readouterr().err
    assert train_main([*common, "--out", str(tmp_path / "b"), "--face-features", str(regressor_file),
                       "--vgg", str(regressor_file)]) == 2
    assert "give one" in capsys.readouterr().err
    assert train_main([*common, "--out", str(tmp_path / "c"), "--face-features", str(regressor_file),
                       "--face-features-weight", "0"]) == 2
    assert not any((tmp_path / name).exists() and any((tmp_path / name).iterdir()) for name in "abcd")


def test_regressor_training_starts_at_first_identity(monkeypatch: pytest.MonkeyPatch) -> None:
    from export3d_core.faces import regressor_training as regressor_module

    real_render_set, ranges = regressor_module.render_set, []

    def recording_render_set(config, first, count, *args, **kwargs):
        ranges.append((first, count))
        return real_render_set(config, first, count, *args, **kwargs)

    monkeypatch.setattr(regressor_module, "render_set", recording_render_set)
    config = dataclasses.replace(CONFIG, identity_dim=0, identity_names=(), train_identities=2, test_identities=1,
                                 frames_per_identity=2, render_resolution=64, steps=2, batch_size=4,
                                 first_identity=10_000)
    model = regressor_module.train_regressor(config, progress=False, log=lambda message: None)
    assert ranges == [(10_000, 2), (10_002, 1)]  # training identities, then the test ones after them
    assert model.config.first_identity == 10_000 and math.isfinite(model.meta["accuracy"]["expression_mae"])


def test_face_network_command_keeps_an_existing_file(regressor_file: Path, capsys: pytest.CaptureFixture) -> None:
    from export3d_core.train.face_features import main

    before = regressor_file.read_bytes()
    assert main([str(regressor_file)]) == 2
    assert "exists" in capsys.readouterr().err and regressor_file.read_bytes() == before
