"""Export3D composition: shapes, staged API == forward, gradients, expression neutrality at init."""
import pytest
import torch

from export3d_core import Export3D, ModelConfig, OrbitCamera


def _inputs(cfg, batch=2):
    torch.manual_seed(1)
    source = torch.rand(batch, 3, cfg.input_size, cfg.input_size) * 2 - 1
    cameras = torch.stack([OrbitCamera(yaw=0.2 * i).params() for i in range(batch)])
    return source, cameras


def test_tiny_shapes(tiny_model):
    cfg = tiny_model.config
    source, cameras = _inputs(cfg)
    with torch.no_grad():
        out = tiny_model(source, cameras, lam=torch.zeros(2, cfg.n_basis))
    n, s = cfg.neural_size, cfg.output_size
    assert out.image.shape == (2, 3, s, s)
    assert out.image_raw.shape == (2, 3, n, n)
    assert out.depth.shape == (2, 1, n, n) and out.alpha.shape == (2, 1, n, n)
    assert out.features.shape == (2, cfg.feature_channels, n, n)
    assert torch.isfinite(out.image).all()


def test_staged_api_equals_forward(tiny_model):
    cfg = tiny_model.config
    source, cameras = _inputs(cfg)
    beta = torch.randn(2, cfg.beta_dim)
    with torch.no_grad():
        one_shot = tiny_model(source, cameras, beta=beta)
        appearance = tiny_model.encode(source)
        e = tiny_model.expression(lam=tiny_model.coefficients(beta))
        staged = tiny_model.render(tiny_model.triplane(appearance, e), cameras)
    for name in ("image", "image_raw", "depth", "alpha"):
        torch.testing.assert_close(getattr(staged, name), getattr(one_shot, name), rtol=0, atol=0)


def test_expression_has_no_effect_at_init(tiny_model):
    cfg = tiny_model.config
    source, cameras = _inputs(cfg, batch=1)
    with torch.no_grad():
        a = tiny_model(source, cameras, lam=torch.zeros(1, cfg.n_basis))
        b = tiny_model(source, cameras, lam=torch.full((1, cfg.n_basis), 7.0))
    torch.testing.assert_close(a.image, b.image, rtol=0, atol=0)


def test_backward_reaches_every_trainable_parameter():
    """One Adam step first: at init the zero-initialised modulation hides e from G (DiT-style),
    so LeBS only receives gradients once the modulation has moved off zero."""
    torch.manual_seed(0)
    cfg = ModelConfig.preset("tiny")
    model = Export3D(cfg).train()
    source, cameras = _inputs(cfg)
    beta = torch.randn(2, cfg.beta_dim)
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-3)

    def backward() -> None:
        optimiser.zero_grad()
        out = model(source, cameras, beta=beta)
        (out.image.square().mean() + out.image_raw.square().mean()).backward()

    backward()
    optimiser.step()
    backward()
    missing = [name for name, p in model.named_parameters()
               if p.requires_grad and (p.grad is None or not p.grad.abs().sum() > 0)]
    assert missing == []


def test_bad_inputs_are_rejected(tiny_model):
    cfg = tiny_model.config
    with pytest.raises(ValueError, match="source must be"):
        tiny_model.encode(torch.zeros(1, 3, cfg.input_size + 1, cfg.input_size))
    with pytest.raises(ValueError, match="exactly one"):
        tiny_model.expression()
    with pytest.raises(ValueError, match="lam must be"):
        tiny_model.expression(lam=torch.zeros(1, cfg.n_basis + 1))


def test_paper_preset_triplane_shape():
    cfg = ModelConfig.preset("paper")
    assert cfg.triplane_shape == (3, 32, 128, 128)
    with torch.device("meta"):
        model = Export3D(cfg)
        appearance = model.encode(torch.zeros(1, 3, 512, 512))
        planes = model.triplane(appearance, model.expression(lam=torch.zeros(1, 10)))
    assert tuple(planes.shape) == (1, 3, 32, 128, 128)
    assert model.basis().shape == (10, 256)


def test_bf16_planes_render_at_fp32_sample_points(tiny_model):
    """The renderer places the samples of bf16 planes (autocast training) where it places those of
    fp32 planes: only the field's values may differ, never the geometry."""
    import torch

    from export3d_core.camera import OrbitCamera

    model = tiny_model.eval()
    planes = torch.randn(1, 3, model.config.plane_channels, model.config.plane_res, model.config.plane_res,
                         generator=torch.Generator().manual_seed(0))
    cameras = OrbitCamera(yaw=0.3, pitch=0.1).params()[None]
    seen: dict[torch.dtype, list[torch.Tensor]] = {}

    def recording_field(planes_: torch.Tensor, decoder=None):
        field = type(model).field(model, planes_, decoder)

        def evaluate(points: torch.Tensor):
            seen.setdefault(planes_.dtype, []).append(points)
            return field(points)
        return evaluate

    model.field = recording_field
    with torch.no_grad():
        model.render(planes, cameras)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            model.render(planes.bfloat16(), cameras)
    del model.field
    exact, mixed = seen[torch.float32], seen[torch.bfloat16]
    assert [p.dtype for p in mixed] == [torch.float32] * len(exact)
    torch.testing.assert_close(mixed[0], exact[0], atol=0, rtol=0)  # the coarse samples: deterministic


def test_rays_are_rendered_in_passes_of_bounded_size_with_the_same_image(tiny_model, monkeypatch):
    """Export3D.render splits the rays into passes of `rays_per_pass` (bounded temporaries): the
    image is the one a single pass gives."""
    import torch

    from export3d_core.camera import OrbitCamera
    from export3d_core.render import renderer as renderer_module

    model = tiny_model.eval()
    render = model.config.render
    planes = torch.randn(2, 3, model.config.plane_channels, model.config.plane_res, model.config.plane_res,
                         generator=torch.Generator().manual_seed(1))
    cameras = OrbitCamera(yaw=0.2).params()[None].expand(2, -1)
    with torch.no_grad():
        whole = model.render(planes, cameras, chunk=None)
        monkeypatch.setattr(renderer_module, "RENDER_PASS_POINTS", 2 * 10 * (render.num_coarse + render.num_fine))
        passes: list[int] = []
        render_rays = model.renderer.render_rays
        monkeypatch.setattr(model.renderer, "render_rays",
                            lambda field, origins, directions, **kw: passes.append(origins.shape[1])
                            or render_rays(field, origins, directions, **kw))
        split = model.render(planes, cameras)
    n_rays = model.config.neural_size ** 2
    assert passes == [10] * (n_rays // 10) + ([n_rays % 10] if n_rays % 10 else [])
    torch.testing.assert_close(split.image, whole.image, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(split.depth, whole.depth, atol=1e-5, rtol=1e-5)
