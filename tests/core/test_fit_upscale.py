"""The per-photo upscaler: it beats bicubic on the photo it learnt from, doubles the model's output
side, is reproducible from its seed, and refuses what it cannot use."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from PIL import Image

from export3d_core.camera import OrbitCamera
from export3d_core.errors import Export3DError
from export3d_core.fit_upscale import UpscaleSettings, bicubic, train_upscaler, upscale
from export3d_core.portrait import PORTRAITS_DIR
from export3d_core.session import PortraitSession, image_to_tensor

FAST = UpscaleSettings(width=8, layers=2, steps=40, lr=5e-3, patch=24, batch=2, renders=2, time_budget_s=600)


def photo(size: int) -> np.ndarray:
    image = Image.open(PORTRAITS_DIR / "synthetic_01.png").convert("RGB")
    return np.asarray(image.resize((size, size), Image.Resampling.LANCZOS))


def camera() -> np.ndarray:
    return OrbitCamera().params().numpy()


def trained(model, settings: UpscaleSettings = FAST):
    cfg = model.config
    return train_upscaler(model, photo(cfg.input_size), photo(cfg.output_size * settings.factor), camera(),
                          [0.0] * cfg.n_basis, settings)


def render(model):
    session = PortraitSession(model, renderer="reference")
    session.set_portrait(photo(model.config.input_size))
    return session.render([0.0] * model.config.n_basis, OrbitCamera())


def test_the_upscaler_beats_bicubic_at_twice_the_size(tiny_model):
    result = trained(tiny_model)
    out = render(tiny_model)
    side = 2 * tiny_model.config.output_size
    target = image_to_tensor(photo(side), side)
    sharp = upscale(tiny_model, result.upscaler, out)
    plain = bicubic(out.image, 2).clamp(-1, 1)
    assert sharp.shape == (1, 3, side, side)
    assert float(((sharp - target) ** 2).mean()) < 0.95 * float(((plain - target) ** 2).mean())
    assert len(result.losses) == FAST.steps and np.mean(result.losses[-5:]) < result.losses[0]


@pytest.mark.parametrize("changes", [{"factor": 4, "use_features": False}, {"high_band_only": True, "kernel": 1},
                                     {"columns": (0.0, 0.5)}], ids=["x4-image-only", "high-band-1x1", "left-half"])
def test_the_variants_train_and_keep_the_shape(tiny_model, changes):
    settings = dataclasses.replace(FAST, steps=3, **changes)
    result = trained(tiny_model, settings)
    image = upscale(tiny_model, result.upscaler, render(tiny_model))
    assert image.shape[-1] == settings.factor * tiny_model.config.output_size and bool(torch.isfinite(image).all())


def test_the_same_seed_gives_the_same_upscaler(tiny_model):
    settings = dataclasses.replace(FAST, steps=5)
    first, again = trained(tiny_model, settings), trained(tiny_model, settings)
    other = trained(tiny_model, dataclasses.replace(settings, seed=1))
    state, state_again, state_other = (r.upscaler.state_dict() for r in (first, again, other))
    assert all(torch.equal(state[name], state_again[name]) for name in state)
    assert not all(torch.equal(state[name], state_other[name]) for name in state)


def test_an_untrained_upscaler_is_bicubic(tiny_model):
    result = trained(tiny_model, dataclasses.replace(FAST, steps=1, lr=0.0))
    out = render(tiny_model)
    assert torch.allclose(upscale(tiny_model, result.upscaler, out), bicubic(out.image, 2).clamp(-1, 1))


def test_what_the_upscaler_refuses(tiny_model):
    cfg = tiny_model.config
    with pytest.raises(Export3DError, match="at least 128 px"):
        train_upscaler(tiny_model, photo(cfg.input_size), photo(cfg.output_size), camera(), [0.0] * cfg.n_basis, FAST)
    session = PortraitSession(tiny_model, renderer="reference")
    session.set_portrait(photo(cfg.input_size))
    preview = session.render([0.0] * cfg.n_basis, OrbitCamera(), quality="preview")
    with pytest.raises(Export3DError, match="full-quality render"):
        upscale(tiny_model, trained(tiny_model, dataclasses.replace(FAST, steps=1)).upscaler, preview)
    for bad in ({"factor": 3}, {"kernel": 2}, {"loss": "l2"}, {"steps": 0}, {"columns": (0.5, 0.5)}):
        with pytest.raises(Export3DError):
            dataclasses.replace(FAST, **bad)
