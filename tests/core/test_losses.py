"""Losses of Eq. (3)-(4): MSE parts, the VGG16 perceptual distance, GAN terms, R1; VGG loading."""
from __future__ import annotations

import math
import warnings
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from export3d_core.errors import Export3DError
from export3d_core.train import vgg as vgg_module
from export3d_core.train.losses import (PerceptualLoss, discriminator_loss, generator_adv_loss,
                                        r1_penalty, reconstruction_loss)
from export3d_core.train.vgg import VGG16_FILE, VGG16Features, load_vgg16


def fake_torchvision_vgg16(path: Path) -> dict[str, torch.Tensor]:
    """A state dict shaped like torchvision's vgg16-397923af.pth (features + classifier keys)."""
    torch.manual_seed(0)
    state = {f"features.{k}": v.clone() for k, v in VGG16Features().features.state_dict().items()}
    state["classifier.0.weight"] = torch.zeros(4, 2)  # present in the real file; must be ignored
    state["classifier.0.bias"] = torch.zeros(4)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(state, path)
    return state


def batch_and_output(b: int = 2, n: int = 8, out: int = 16) -> tuple[SimpleNamespace, dict[str, torch.Tensor]]:
    g = torch.Generator().manual_seed(1)
    batch = {"driving": torch.rand(b, 3, out, out, generator=g) * 2 - 1,
             "driving_raw": torch.rand(b, 3, n, n, generator=g) * 2 - 1}
    output = SimpleNamespace(image=torch.rand(b, 3, out, out, generator=g) * 2 - 1,
                             image_raw=torch.rand(b, 3, n, n, generator=g) * 2 - 1)
    return output, batch


def test_reconstruction_loss_mse_only() -> None:
    out, batch = batch_and_output()
    total, parts = reconstruction_loss(out, batch)
    assert set(parts) == {"l2_raw", "l2"}
    expected_raw = ((out.image_raw - batch["driving_raw"]) ** 2).mean()
    expected = ((out.image - batch["driving"]) ** 2).mean()
    assert parts["l2_raw"] == pytest.approx(float(expected_raw), rel=1e-6)
    assert float(total) == pytest.approx(float(expected_raw + expected), rel=1e-6)
    same = SimpleNamespace(image=batch["driving"], image_raw=batch["driving_raw"])
    assert float(reconstruction_loss(same, batch)[0]) == 0.0


def test_vgg_loads_torchvision_layout_and_perceptual_distance(tmp_path: Path) -> None:
    path = tmp_path / VGG16_FILE
    state = fake_torchvision_vgg16(path)
    net = load_vgg16(path)
    assert net is not None and not any(p.requires_grad for p in net.parameters())
    assert torch.equal(net.features[28].weight, state["features.28.weight"])  # conv5_3
    taps = net(torch.zeros(1, 3, 32, 32))
    assert [t.shape[1] for t in taps] == [64, 128, 256, 512, 512]  # relu1_2 .. relu5_3
    assert [t.shape[-1] for t in taps] == [32, 16, 8, 4, 2]

    perceptual = PerceptualLoss(net)
    out, batch = batch_and_output(n=32, out=32)
    same = SimpleNamespace(image=batch["driving"].clone(), image_raw=batch["driving_raw"].clone())
    assert float(perceptual(same.image, batch["driving"])) == pytest.approx(0.0, abs=1e-6)
    prediction = out.image.clone().requires_grad_(True)
    distance = perceptual(prediction, batch["driving"])
    assert distance.item() > 0.01
    distance.backward()
    assert prediction.grad is not None and prediction.grad.abs().sum() > 0
    total, parts = reconstruction_loss(out, batch, perceptual)
    assert set(parts) == {"l2_raw", "l2", "lpips_raw", "lpips"}
    assert float(total) == pytest.approx(sum(parts.values()), rel=1e-5)


def test_vgg_absent_warns_once_and_training_uses_mse(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    monkeypatch.setattr(vgg_module, "_warned", set())
    expected = f"VGG16 weights not found at {tmp_path / 'hub' / 'checkpoints' / VGG16_FILE}; perceptual loss disabled, training with MSE only"
    with pytest.warns(UserWarning) as record:
        assert load_vgg16() is None
    assert [str(w.message) for w in record] == [expected]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a second call must stay silent
        assert load_vgg16() is None
    # Found in the hub cache once it is there.
    fake_torchvision_vgg16(tmp_path / "hub" / "checkpoints" / VGG16_FILE)
    assert isinstance(load_vgg16(), VGG16Features)


def test_vgg_bad_files_are_user_errors(tmp_path: Path) -> None:
    with pytest.raises(Export3DError, match="not found"):
        load_vgg16(tmp_path / "nope.pth")
    wrong = tmp_path / "wrong.pth"
    torch.save({"features.0.weight": torch.zeros(1)}, wrong)
    with pytest.raises(Export3DError, match="not a torchvision VGG16"):
        load_vgg16(wrong)


def test_gan_losses_are_softplus() -> None:
    zero = torch.zeros(3)
    assert float(generator_adv_loss(zero)) == pytest.approx(math.log(2))
    assert float(discriminator_loss(zero, zero)) == pytest.approx(2 * math.log(2))
    # A confident, correct D: real logits +10, fake -10 -> loss ~ 2 * log(1 + e^-10).
    assert float(discriminator_loss(torch.full((2,), 10.0), torch.full((2,), -10.0))) == pytest.approx(
        2 * math.log1p(math.exp(-10)), rel=1e-4)
    assert float(generator_adv_loss(torch.full((2,), -10.0))) == pytest.approx(10.0, rel=1e-3)


def test_r1_penalty_of_a_linear_discriminator() -> None:
    # D(x, y) = <w, x> + <u, y>: the gradient is (w, u) for every sample, R1 = |w|^2 + |u|^2.
    w, u = torch.randn(3, 4, 4), torch.randn(3, 2, 2)
    x = torch.randn(5, 3, 4, 4, requires_grad=True)
    y = torch.randn(5, 3, 2, 2, requires_grad=True)
    logits = (x * w).flatten(1).sum(1) + (y * u).flatten(1).sum(1)  # (5,)
    r1 = r1_penalty(logits, [x, y])
    assert float(r1) == pytest.approx(float(w.pow(2).sum() + u.pow(2).sum()), rel=1e-5)
    # Differentiable w.r.t. D's parameters (here: w as a leaf).
    w_leaf = w.clone().requires_grad_(True)
    r1_penalty((x * w_leaf).flatten(1).sum(1), [x]).backward()
    assert torch.allclose(w_leaf.grad, 2 * w, atol=1e-5)


def test_weighted_mse_is_a_weighted_mean_at_either_side() -> None:
    from export3d_core.train.losses import weighted_mse

    output, target = torch.zeros(1, 3, 8, 8), torch.zeros(1, 3, 8, 8)
    output[..., :4, :] = 1.0  # error 1 in the top half only
    uniform = torch.full((1, 1, 8, 8), 2.0)
    assert weighted_mse(output, target, uniform).item() == pytest.approx(0.5)
    assert weighted_mse(output, target, None).item() == pytest.approx(0.5)
    top = torch.ones(1, 1, 8, 8)
    top[..., :4, :] = 3.0  # the erroneous half weighs 3: (3 * 32) / (3 * 32 + 32)
    assert weighted_mse(output, target, top).item() == pytest.approx(0.75)
    big = torch.ones(1, 1, 16, 16)
    big[..., :8, :] = 3.0  # given at twice the side: area-resampled to 8 x 8 first
    assert weighted_mse(output, target, big).item() == pytest.approx(0.75)
