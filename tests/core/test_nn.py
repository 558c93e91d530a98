"""Tests of export3d_core.nn: LeBS basis, ViT/EAdaLN blocks, generator, EMA, decoder, SR, D."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from export3d_core.config import ModelConfig
from export3d_core.errors import Export3DError
from export3d_core.nn import (
    DualDiscriminator,
    EAdaLNViTBlock,
    EfficientSelfAttention,
    HybridTriplaneGenerator,
    LeBS,
    ResNetSE18,
    SuperResolution,
    TriplaneDecoder,
    ViTBlock,
    modulate,
)
from export3d_core.nn.decoder import COLOUR_MARGIN


@pytest.fixture
def tiny() -> ModelConfig:
    return ModelConfig.preset("tiny")


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


def _source(cfg: ModelConfig, batch: int = 2) -> torch.Tensor:
    return torch.rand(batch, 3, cfg.input_size, cfg.input_size) * 2 - 1


# -- LeBS ---------------------------------------------------------------------------------------
def test_basis_is_orthonormal_and_differentiable(tiny: ModelConfig) -> None:
    lebs = LeBS(tiny)
    with torch.no_grad():  # a generic (non-orthogonal) weight: the QR must do the work
        lebs.basis_weight.copy_(torch.randn(tiny.expr_dim, tiny.n_basis) * 3)
    v = lebs.basis()
    assert v.shape == (tiny.n_basis, tiny.expr_dim)
    assert torch.allclose(v @ v.T, torch.eye(tiny.n_basis), atol=1e-5)
    (v * torch.randn_like(v)).sum().backward()
    assert lebs.basis_weight.grad is not None
    assert lebs.basis_weight.grad.abs().sum() > 0


def test_basis_sign_fix_is_deterministic(tiny: ModelConfig) -> None:
    lebs = LeBS(tiny)
    with torch.no_grad():
        lebs.basis_weight.copy_(torch.randn(tiny.expr_dim, tiny.n_basis))
        w = lebs.basis_weight.clone()
        v1 = lebs.basis()
        assert torch.equal(v1, lebs.basis())
        # V W = R with a positive diagonal: the sign convention that makes V unique.
        assert (torch.diagonal(v1 @ w) > 0).all()
        j = 3
        lebs.basis_weight[:, j].neg_()
        v2 = lebs.basis()
    expected = v1.clone()
    expected[j] = -expected[j]
    assert torch.allclose(v2, expected, atol=1e-5)


def test_lebs_coefficients_and_embedding(tiny: ModelConfig) -> None:
    lebs = LeBS(tiny)
    beta = torch.randn(4, tiny.beta_dim)
    lam = lebs.coefficients(beta)
    assert lam.shape == (4, tiny.n_basis)
    e = lebs.embed(lam)
    assert e.shape == (4, tiny.expr_dim)
    # The basis is orthonormal, so λ is recovered from e by projection.
    assert torch.allclose(e @ lebs.basis().T, lam, atol=1e-5)
    assert torch.allclose(lebs(beta), e)


def test_resnet_se18_shape(tiny: ModelConfig) -> None:
    enc = ResNetSE18(tiny)
    out = enc(_source(tiny, batch=2))
    assert out.shape == (2, tiny.expr_dim)
    assert torch.isfinite(out).all()


# -- ViT blocks ---------------------------------------------------------------------------------
def test_modulate() -> None:
    x = torch.randn(2, 5, 4)
    shift, scale = torch.randn(2, 4), torch.randn(2, 4)
    out = modulate(x, shift, scale)
    assert torch.allclose(out[1, 2], x[1, 2] * (1 + scale[1]) + shift[1])


def test_efficient_attention_reduces_kv_and_matches_fallback() -> None:
    attn = EfficientSelfAttention(dim=16, heads=2, sr_ratio=2)
    x = torch.randn(2, 64, 16)
    out = attn(x, hw=8)
    assert out.shape == (2, 64, 16)
    attn.flash = False  # the explicit softmax path must agree with SDPA
    assert torch.allclose(attn(x, hw=8), out, atol=1e-5)


def test_vit_block_shape() -> None:
    block = ViTBlock(dim=16, heads=2, hidden=32, sr_ratio=2)
    assert block(torch.randn(3, 16, 16), hw=4).shape == (3, 16, 16)


def test_eadaln_block_neutral_at_init_but_modulated_after() -> None:
    block = EAdaLNViTBlock(dim=16, heads=2, hidden=32, sr_ratio=1, cond_dim=8)
    block.reset_modulation()
    x = torch.randn(2, 16, 16)
    e1, e2 = torch.randn(2, 8), torch.randn(2, 8)
    assert torch.equal(block(x, e1, hw=4), block(x, e2, hw=4))
    with torch.no_grad():
        block.adaLN_modulation[-1].weight.normal_()
    assert not torch.allclose(block(x, e1, hw=4), block(x, e2, hw=4))


# -- generator ----------------------------------------------------------------------------------
def test_generator_shapes(tiny: ModelConfig) -> None:
    gen = HybridTriplaneGenerator(tiny).eval()
    app = gen.encode(_source(tiny))
    assert app.tokens.shape == (2, tiny.token_grid ** 2, tiny.expr_dim)
    assert app.skip is not None and app.skip.shape == (2, tiny.skip_channels, tiny.plane_res, tiny.plane_res)
    planes = gen.triplane(app, torch.randn(2, tiny.expr_dim))
    assert planes.shape == (2, *tiny.triplane_shape)
    assert torch.isfinite(planes).all()


def test_generator_expression_neutral_at_init_with_gradients(tiny: ModelConfig) -> None:
    gen = HybridTriplaneGenerator(tiny).eval()
    app = gen.encode(_source(tiny))
    e1, e2 = torch.randn(2, tiny.expr_dim), torch.randn(2, tiny.expr_dim)
    p1 = gen.triplane(app, e1)
    assert torch.equal(p1, gen.triplane(app, e2))
    (p1 * torch.randn_like(p1)).sum().backward()
    for block in gen.eadaln_blocks:
        grad = block.adaLN_modulation[-1].weight.grad
        assert grad is not None and grad.abs().sum() > 0


def test_skip_expression_starts_as_the_plain_fusion_then_carries_e(tiny: ModelConfig) -> None:
    grown_cfg = tiny.replace(skip_expression_channels=3)
    plain, grown = HybridTriplaneGenerator(tiny).eval(), HybridTriplaneGenerator(grown_cfg).eval()
    weights = grown.state_dict()
    for name, value in plain.state_dict().items():  # the plain weights, extra input channels kept
        weights[name] = value if weights[name].shape == value.shape else torch.cat(
            [value, weights[name][:, value.shape[1]:]], dim=1)
    grown.load_state_dict(weights)
    app = plain.encode(_source(tiny))
    e1, e2 = torch.randn(2, tiny.expr_dim), torch.randn(2, tiny.expr_dim)
    torch.testing.assert_close(grown.triplane(app, e1), plain.triplane(app, e1))  # zero-initialised: no change
    planes = grown.triplane(app, e1)
    (planes * torch.randn_like(planes)).sum().backward()
    assert grown.skip_expression.weight.grad.abs().sum() > 0  # and it can learn
    with torch.no_grad():
        grown.skip_expression.weight.normal_()
    # The EAdaLN modulation is still zero, so the fusion is now the only way e reaches the planes.
    assert not torch.allclose(grown.triplane(app, e1), grown.triplane(app, e2))
    with pytest.raises(ValueError, match="skip_expression_channels"):
        tiny.replace(skip_channels=0, skip_expression_channels=3)


def test_generator_rejects_wrong_source_size(tiny: ModelConfig) -> None:
    gen = HybridTriplaneGenerator(tiny)
    with pytest.raises(Export3DError):
        gen.encode(torch.zeros(1, 3, tiny.input_size * 2, tiny.input_size * 2))


def test_lowpass_keeps_constants_and_damps_checkerboard(tiny: ModelConfig) -> None:
    gen = HybridTriplaneGenerator(tiny)
    r = tiny.plane_res
    const = torch.full((1, 2, r, r), 0.7)
    assert torch.allclose(gen.low_pass(const), const, atol=1e-6)
    idx = torch.arange(r)
    checker = ((idx[:, None] + idx[None, :]) % 2 * 2 - 1).float().expand(1, 2, r, r)
    assert gen.low_pass(checker).abs().max() < 0.1 * checker.abs().max()


def test_ema_unchanged_in_eval_and_no_grad(tiny: ModelConfig) -> None:
    gen = HybridTriplaneGenerator(tiny)
    app = gen.encode(_source(tiny)).detach()
    e = torch.randn(2, tiny.expr_dim)
    with torch.no_grad():
        gen.triplane_ema.normal_()
    before = gen.triplane_ema.clone()
    gen.eval()
    gen.triplane(app, e)
    gen.train()
    with torch.no_grad():
        gen.triplane(app, e)
    assert torch.equal(gen.triplane_ema, before)


def test_ema_update_follows_eq2(tiny: ModelConfig) -> None:
    gen = HybridTriplaneGenerator(tiny)
    app = gen.encode(_source(tiny)).detach()
    e = torch.randn(2, tiny.expr_dim)
    with torch.no_grad():
        raw = gen.eval().triplane(app, e)  # EMA is zero at init: the output is T_raw
    assert torch.count_nonzero(gen.triplane_ema) == 0
    ema0 = torch.randn(tiny.triplane_shape)
    with torch.no_grad():
        gen.triplane_ema.copy_(ema0)
    out = gen.train().triplane(app, e)
    delta = tiny.ema_decay
    assert torch.allclose(out, raw + ema0, atol=1e-5)  # T = T_raw + T_EMA^{j-1}
    expected = delta * ema0 + (1 - delta) * raw.mean(dim=0)
    assert torch.allclose(gen.triplane_ema, expected, atol=1e-6)
    out2 = gen.triplane(app, e)  # the next step adds the updated EMA
    assert torch.allclose(out2, raw + expected, atol=1e-5)


def test_all_presets_build_and_paper_triplane_shape() -> None:
    for name in ("tiny", "demo"):
        cfg = ModelConfig.preset(name)
        for module in (HybridTriplaneGenerator, TriplaneDecoder, SuperResolution, LeBS, DualDiscriminator):
            module(cfg)
    paper = ModelConfig.preset("paper")
    gen = HybridTriplaneGenerator(paper).eval()
    with torch.no_grad():
        planes = gen(_source(paper, batch=1), torch.randn(1, paper.expr_dim))
    assert planes.shape == (1, 3, 32, 128, 128)


# -- decoder, SR, discriminator -----------------------------------------------------------------
def test_decoder_shapes_and_colour_range(tiny: ModelConfig) -> None:
    dec = TriplaneDecoder(tiny)
    feats = torch.randn(2, 50, tiny.plane_channels) * 1000  # saturate the sigmoid both ways
    density, colour = dec(feats)
    assert density.shape == (2, 50, 1)
    assert colour.shape == (2, 50, tiny.feature_channels)
    eps = 1e-6
    assert colour.min() >= -COLOUR_MARGIN - eps and colour.max() <= 1 + COLOUR_MARGIN + eps
    assert colour.min() < 0 and colour.max() > 1  # the EG3D margin is reachable
    assert (dec(torch.randn(2, 50, tiny.plane_channels))[0] < 0).any()  # density is not activated


def test_superres_shape_and_rgb_skip(tiny: ModelConfig) -> None:
    sr = SuperResolution(tiny)
    n = tiny.neural_size
    rgb, feats = torch.rand(2, 3, n, n) * 2 - 1, torch.randn(2, tiny.feature_channels, n, n)
    assert sr(rgb, feats).shape == (2, 3, tiny.output_size, tiny.output_size)
    with torch.no_grad():
        for block in sr.blocks:
            block.to_rgb.weight.zero_()
    # With silent toRGBs the output is the bilinearly upsampled raw RGB: it is the skip path.
    expected = F.interpolate(rgb, size=tiny.output_size, mode="bilinear", align_corners=False)
    assert torch.allclose(sr(rgb, feats), expected, atol=1e-6)


def test_superres_without_upsampling(tiny: ModelConfig) -> None:
    cfg = tiny.replace(output_size=tiny.neural_size)
    assert cfg.sr_stages == 0
    sr = SuperResolution(cfg)
    n = cfg.neural_size
    out = sr(torch.rand(1, 3, n, n), torch.randn(1, cfg.feature_channels, n, n))
    assert out.shape == (1, 3, n, n)


def test_discriminator_logits_depend_on_camera_and_raw(tiny: ModelConfig) -> None:
    disc = DualDiscriminator(tiny)
    out, n = tiny.output_size, tiny.neural_size
    image = torch.randn(3, 3, out, out)
    raw = torch.randn(3, 3, n, n, requires_grad=True)
    cams = torch.randn(3, tiny.camera_dim)
    logits = disc(image, raw, cams)
    assert logits.shape == (3,)
    assert not torch.allclose(logits, disc(image, raw, cams + torch.randn_like(cams)))
    logits.sum().backward()
    assert raw.grad is not None and raw.grad.abs().sum() > 0
    assert disc(image[:1], raw[:1], cams[:1]).shape == (1,)  # batch of one (mbstd group 1)
