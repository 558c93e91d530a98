"""Per-portrait fit: it lowers the reconstruction error, its file reloads bit-identically, a fit for
another photo or checkpoint is refused, a cancelled fit writes nothing."""
from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from export3d_core import save_checkpoint
from export3d_core.camera import OrbitCamera
from export3d_core.checkpoint import load_checkpoint
from export3d_core.errors import Export3DError
from export3d_core.fit import FitCancelled, FitSettings, apply_tensors, fit_portrait
from export3d_core.fit_file import load_fit, read_fit, save_fit
from export3d_core.fit_upscale import UpscaleSettings
from export3d_core.portrait import PORTRAITS_DIR
from export3d_core.session import PortraitSession, image_to_tensor

TINY_UPSCALE = UpscaleSettings(width=8, layers=2, steps=4, patch=24, batch=2, renders=1, time_budget_s=600)
FAST = FitSettings(steps=6, lr_planes=0.5, side_views=2, side_size=8, samples=6, preview_every=3, upscale=TINY_UPSCALE)


def small_photo(name: str = "synthetic_01.png", size: int = 64) -> np.ndarray:
    image = Image.open(PORTRAITS_DIR / name).convert("RGB")
    return np.asarray(image.resize((size, size), Image.Resampling.LANCZOS))


@pytest.fixture
def tiny_checkpoint(tmp_path, tiny_model):
    return save_checkpoint(tiny_model, tmp_path / "tiny.safetensors")


def frontal_camera() -> np.ndarray:
    return OrbitCamera().params().numpy()


def reconstruction_error(model, photo, lam) -> float:
    session = PortraitSession(model, renderer="reference")
    session.set_portrait(photo)
    out = session.render(lam, OrbitCamera())
    return float(((out.image - image_to_tensor(photo, model.config.output_size)) ** 2).mean())


GENERATOR_TOO = dataclasses.replace(FAST, lr_appearance=1e-3, lr_triplane_head=1e-3)


@pytest.mark.parametrize("settings", [FAST, GENERATOR_TOO], ids=["offset-decoder-sr", "with-generator"])
def test_fit_lowers_the_error_and_reloads_bit_identically(tmp_path, tiny_checkpoint, settings):
    model, _ = load_checkpoint(tiny_checkpoint)
    photo, lam = small_photo(), [0.0] * model.config.n_basis
    before = {k: v.clone() for k, v in model.state_dict().items()}
    reports = []
    result = fit_portrait(model, photo, frontal_camera(), lam, settings, progress=reports.append)
    assert [r.step for r in reports] == list(range(1, settings.steps + 1)) and reports[-1].eta_s == 0
    assert [r.step for r in reports if r.preview is not None] == [3, 6]
    early = apply_tensors(load_checkpoint(tiny_checkpoint)[0], reports[2].preview)  # an intermediate preview
    assert reconstruction_error(early, photo, lam) < reconstruction_error(model, photo, lam)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # the input model is untouched
    assert reconstruction_error(result.model, photo, lam) < 0.8 * reconstruction_error(model, photo, lam)

    path = save_fit(tmp_path / "portrait.fit.safetensors", result, tiny_checkpoint, photo)
    tensors, meta = read_fit(path)
    assert set(tensors) == set(result.changed) and meta["steps"] == settings.steps
    assert any(name.startswith("generator.vit_blocks") for name in tensors) == (settings.lr_appearance > 0)
    exact = {"generator.expression_flow.pivot", "generator.expression_flow.to_lam"}  # λ's readout stays float32
    assert all(t.dtype == (torch.float32 if name in exact else torch.float16) for name, t in tensors.items())
    reloaded, _ = load_checkpoint(tiny_checkpoint)
    load_fit(path, reloaded, tiny_checkpoint, photo)
    camera = OrbitCamera(yaw=math.radians(15))
    images = []
    for fitted in (result.model, reloaded):
        session = PortraitSession(fitted)
        session.set_portrait(photo)
        images.append(session.render(lam, camera).image)
    assert torch.equal(images[0], images[1])


def test_a_fit_of_a_large_photo_renders_at_twice_the_size_and_reloads_bit_identically(tmp_path, tiny_checkpoint):
    model, _ = load_checkpoint(tiny_checkpoint)
    side = model.config.output_size
    photo, lam = small_photo(size=2 * side), [0.0] * model.config.n_basis
    reports = []
    result = fit_portrait(model, photo, frontal_camera(), lam, FAST, progress=reports.append)
    assert result.upscaled and result.upscale_note.startswith("upscaled 2×") and model.upscaler is None
    total = FAST.steps + TINY_UPSCALE.steps
    assert [r.step for r in reports] == list(range(1, total + 1)) and {r.total for r in reports} == {total}
    assert [r.stage for r in reports] == ["fit"] * FAST.steps + ["upscale"] * TINY_UPSCALE.steps
    assert reports[-1].eta_s == 0 and len(result.upscale_losses) == TINY_UPSCALE.steps
    assert "upscaler.to_rgb.weight" not in model.state_dict()  # the checkpoint's model has no upscaler

    path = save_fit(tmp_path / "big.fit.safetensors", result, tiny_checkpoint, photo)
    tensors, meta = read_fit(path)
    assert meta["upscaled"] and tensors["upscaler.to_rgb.weight"].dtype == torch.float16
    reloaded, _ = load_checkpoint(tiny_checkpoint)
    load_fit(path, reloaded, tiny_checkpoint, photo)
    camera = OrbitCamera(yaw=math.radians(15))
    images, previews = [], []
    for fitted in (result.model, reloaded):
        session = PortraitSession(fitted)
        session.set_portrait(photo)
        images.append(session.render(lam, camera).image)
        previews.append(session.render(lam, camera, "preview").image)
    assert images[0].shape == (1, 3, 2 * side, 2 * side) and torch.equal(images[0], images[1])
    assert previews[0].shape == (1, 3, side, side)  # previews stay at the model's size
    target = image_to_tensor(photo, 2 * side)
    session = PortraitSession(result.model, renderer="reference")
    session.set_portrait(photo)
    sharp = session.render(lam, OrbitCamera()).image
    plain = F.interpolate(session.render(lam, OrbitCamera(), "full").image_raw, size=2 * side, mode="bilinear")
    assert torch.isfinite(sharp).all() and float(((sharp - target) ** 2).mean()) < float(((plain - target) ** 2).mean())
    # an upscaler this model cannot run (a damaged or foreign file) is refused before the model is touched
    bad = dataclasses.replace(result, changed={**result.changed, "upscaler.to_rgb.weight": torch.zeros(5, 8, 3, 3)})
    save_fit(tmp_path / "bad.fit.safetensors", bad, tiny_checkpoint, photo)
    untouched, _ = load_checkpoint(tiny_checkpoint)
    with pytest.raises(Export3DError, match="does not match this model's architecture"):
        load_fit(tmp_path / "bad.fit.safetensors", untouched, tiny_checkpoint, photo)
    assert untouched.upscaler is None and untouched.generator.expression_flow is None


def test_a_photo_too_small_to_upscale_gives_a_fit_that_says_so(tiny_checkpoint):
    model, _ = load_checkpoint(tiny_checkpoint)
    lam, side = [0.0] * model.config.n_basis, model.config.output_size
    settings = dataclasses.replace(FAST, steps=1, preview_every=0)
    small = fit_portrait(model, small_photo(size=side), frontal_camera(), lam, settings)
    assert not small.upscaled and small.model.upscaler is None
    assert small.upscale_note == (f"not upscaled: the photo crop is {side} px and a 2× upscaler learns from "
                                  f"{2 * side} px or more; renders stay {side}²")
    assert not any(name.startswith("upscaler.") for name in small.changed)
    # a crop made large from a small face: the photo holds too little detail to learn from
    enlarged = fit_portrait(model, small_photo(size=2 * side), frontal_camera(), lam, settings, native_side=side)
    assert not enlarged.upscaled and f"holds the face at {side} px" in enlarged.upscale_note
    off = fit_portrait(model, small_photo(size=2 * side), frontal_camera(), lam,
                       dataclasses.replace(settings, upscale=None))
    assert not off.upscaled and "off in the fit settings" in off.upscale_note


def test_a_fit_cancelled_while_it_learns_the_upscaler_leaves_no_file(tmp_path, tiny_checkpoint):
    model, _ = load_checkpoint(tiny_checkpoint)
    reports = []

    def cancel() -> bool:
        return any(r.stage == "upscale" for r in reports)

    with pytest.raises(FitCancelled):
        fit_portrait(model, small_photo(size=128), frontal_camera(), [0.0] * model.config.n_basis, FAST,
                     progress=reports.append, cancel=cancel)
    assert [r.stage for r in reports][-2:] == ["fit", "upscale"]
    assert list(tmp_path.iterdir()) == [tiny_checkpoint] and model.upscaler is None


def test_a_fit_for_another_photo_or_checkpoint_is_refused(tmp_path, tiny_checkpoint):
    model, _ = load_checkpoint(tiny_checkpoint)
    photo = small_photo()
    result = fit_portrait(model, photo, frontal_camera(), [0.0] * model.config.n_basis,
                          FitSettings(steps=1, side_weight=0, samples=4))
    path = save_fit(tmp_path / "a.safetensors", result, tiny_checkpoint, photo)
    with pytest.raises(Export3DError, match="another photo"):
        load_fit(path, model, tiny_checkpoint, small_photo("synthetic_02.png"))
    shifted = np.roll(photo, 6, axis=1)  # the same photo cropped 10 % to the side
    with pytest.raises(Export3DError, match="another photo"):
        load_fit(path, model, tiny_checkpoint, shifted)
    # the same crop at another size (the editor keeps 256 px portraits, the CLI crops at the model's size)
    load_fit(path, load_checkpoint(tiny_checkpoint)[0], tiny_checkpoint, small_photo(size=256))
    torch.manual_seed(1)
    other = save_checkpoint(type(model)(model.config), tmp_path / "other.safetensors")
    with pytest.raises(Export3DError, match="another checkpoint"):
        load_fit(path, model, other, photo)
    (tmp_path / "junk.safetensors").write_bytes(b"not a fit")
    with pytest.raises(Export3DError, match="not a valid fit"):
        load_fit(tmp_path / "junk.safetensors", model, tiny_checkpoint, photo)


def test_a_cancelled_fit_leaves_no_file(tmp_path, tiny_checkpoint):
    model, _ = load_checkpoint(tiny_checkpoint)
    steps = []

    def cancel() -> bool:
        return len(steps) >= 2

    with pytest.raises(FitCancelled):
        fit_portrait(model, small_photo(), frontal_camera(), [0.0] * model.config.n_basis, FAST,
                     progress=steps.append, cancel=cancel)
    assert len(steps) == 2
    assert list(tmp_path.iterdir()) == [tiny_checkpoint]


def test_paste_back_keeps_the_photo_outside_the_feathered_mask():
    from export3d_core.paste_back import paste_back, paste_weight

    rng = np.random.default_rng(0)
    original = rng.integers(0, 256, (300, 420, 3), dtype=np.uint8)  # not square, not the crop's size
    # the face square: centre (200, 150), half-side 100 px -> a 128 crop
    transform = np.array([[0.64, 0.0, 128 / 2 - 0.64 * 200], [0.0, 0.64, 128 / 2 - 0.64 * 150]])
    rendered = np.full((64, 64, 3), 20, np.uint8)  # rendered at another size than the crop
    alpha = np.ones((32, 32), np.float32)
    camera = OrbitCamera().params().numpy()
    out = paste_back(original, transform, 128, rendered, alpha, camera)
    weight = paste_weight(original.shape[:2], transform, 128, 64, alpha, camera)
    assert out.shape == original.shape and out.dtype == np.uint8
    outside, inside = weight == 0, weight > 0.99
    assert 0.5 < outside.mean() < 0.95 and inside.sum() > 2000  # a face-sized mask, not all or nothing
    assert np.array_equal(out[outside], original[outside])
    assert np.abs(out[inside].astype(int) - original[inside]).mean() > 40  # the render replaced the face
    ys, xs = np.nonzero(inside)
    assert 130 < xs.mean() < 270 and 90 < ys.mean() < 230  # ... where the face square was
    transparent = paste_back(original, transform, 128, rendered, np.zeros_like(alpha), camera)
    assert np.array_equal(transparent, original)  # nothing rendered, nothing pasted


@pytest.mark.usefixtures("offline_hub")  # tests/conftest.py: no hub weights, no network
def test_out_of_domain_for_a_real_photo_not_for_a_synthetic_portrait():
    from export3d_core.checkpoint import DEMO_CHECKPOINT
    from export3d_core.domain import out_of_domain
    from export3d_core.portrait import load_portrait

    model, _ = load_checkpoint(DEMO_CHECKPOINT)
    synthetic = load_portrait(PORTRAITS_DIR / "synthetic_01.png", model.config.input_size)
    real = np.asarray(Image.open(PORTRAITS_DIR / "astronaut.png").convert("RGB"))
    from export3d_core.data.intake import crop_portrait

    crop = crop_portrait(real, size=model.config.input_size)
    assert out_of_domain(model, crop.image, crop.camera)[0]
    assert not out_of_domain(model, synthetic.image, frontal_camera())[0]


def _median_density(photo) -> float:
    """A density level with surface in it for the model `--random-init tiny` builds (it has no head)."""
    from export3d_core import Export3D, ModelConfig
    from export3d_core.mesh import HeadField, density_grid
    from export3d_core.portrait import load_portrait

    torch.manual_seed(0)
    model = Export3D(ModelConfig.preset("tiny")).eval()
    field = HeadField.from_portrait(model, load_portrait(photo, 64).image)
    return float(np.median(density_grid(field.density([0.0] * 10), field.half, 16)))


@pytest.mark.usefixtures("offline_hub")
def test_fit_and_render_commands_with_paste_back(tmp_path, capsys):
    from export3d_core.cli import main

    photo = PORTRAITS_DIR / "astronaut.png"
    fit = tmp_path / "astronaut.fit.safetensors"
    assert main(["fit", str(photo), "-o", str(fit), "--random-init", "tiny", "--steps", "2",
                 "--upscale-steps", "3"]) == 0
    out = capsys.readouterr().out
    assert fit.is_file() and "PSNR at the photo's camera" in out and "dB (64²) -> " in out and "dB (128²)" in out
    assert "upscaled 2× (64² -> 128²)" in out  # the command crops the photo at twice the tiny model's 64
    assert main(["fit", str(photo), "-o", str(fit), "--random-init", "tiny"]) == 2  # exists: not overwritten
    still, plain = tmp_path / "still.png", tmp_path / "plain.png"
    assert main(["render", "--random-init", "tiny", "--portrait", str(photo), "--fit", str(fit), "-o", str(plain)]) == 0
    assert Image.open(plain).size == (128, 128)  # the fitted portrait renders at twice the model's size
    assert main(["render", "--random-init", "tiny", "--portrait", str(photo), "--fit", str(fit),
                 "--paste-back", "-o", str(still)]) == 0
    assert Image.open(still).size == Image.open(photo).size
    other = PORTRAITS_DIR / "synthetic_01.png"
    assert main(["render", "--random-init", "tiny", "--portrait", str(other), "--fit", str(fit),
                 "-o", str(tmp_path / "other.png")]) == 2
    assert "made for another photo" in capsys.readouterr().err
    mesh = ["mesh", "--random-init", "tiny", "--resolution", "16", "--level", repr(_median_density(photo))]
    assert main([*mesh, "--portrait", str(other), "--fit", str(fit), "-o", str(tmp_path / "other.ply")]) == 2
    assert "made for another photo" in capsys.readouterr().err
    heads = [tmp_path / "unfitted.ply", tmp_path / "fitted.ply"]
    assert main([*mesh, "--portrait", str(photo), "-o", str(heads[0])]) == 0
    assert main([*mesh, "--portrait", str(photo), "--fit", str(fit), "-o", str(heads[1])]) == 0
    assert heads[0].read_bytes() != heads[1].read_bytes()  # the mesh is the fitted head's


@pytest.mark.usefixtures("offline_hub")
def test_eval_real_with_fit_measures_the_fitted_model_too(tmp_path, capsys):
    import json

    from export3d_core.cli import main

    out = tmp_path / "real.json"
    sheet = tmp_path / "sheet.png"
    assert main(["eval-real", str(PORTRAITS_DIR / "astronaut.png"), "--fit", "--fit-steps", "4", "--json", str(out),
                 "--fit-upscale-steps", "3", "--sheet", str(sheet), "--no-progress"]) == 0
    item = json.loads(out.read_text(encoding="utf-8"))["photos"][0]
    fitted = item["fitted"]
    assert fitted["fit_steps"] == 4 and fitted["fit_seconds"] > 0
    assert set(fitted) == set(item) - {"photo", "method", "lam_source", "fitted"} | {"fit_seconds", "fit_steps",
                                                                                      "upscale"}
    assert fitted["upscale"].startswith("upscaled 2× (128² -> 256²)")  # measured at 256² against a 256 px crop
    assert fitted["reconstruction"]["psnr"] > item["reconstruction"]["psnr"] + 2  # 4 steps already help
    assert "fitted (4 steps in" in capsys.readouterr().out
    assert Image.open(sheet).size[0] == 10 * 256  # v1..v10 at 256²: the unfitted rows scaled up to the fitted ones


def test_the_offset_penalty_keeps_the_paint_smaller(tiny_checkpoint):
    model, _ = load_checkpoint(tiny_checkpoint)
    photo, lam = small_photo(), [0.0] * model.config.n_basis
    sizes = []
    for weight in (0.0, 1000.0):
        settings = dataclasses.replace(FAST, preview_every=0, offset_weight=weight)
        offset = fit_portrait(model, photo, frontal_camera(), lam, settings).model.generator.expression_flow.offset
        sizes.append(float(offset.float().pow(2).mean().sqrt()))
    assert sizes[1] < 0.5 * sizes[0]
