"""PortraitSession: the three caches of docs/architecture.md, "The three caches", proven with stage counters."""
import numpy as np
import pytest
import torch

from export3d_core import OrbitCamera
from export3d_core.render.accelerated import AcceleratedRenderer
from export3d_core.acceleration import Acceleration
from export3d_core.display import RENDER_MODES, image_to_tensor, tensor_to_image
from export3d_core.session import PortraitSession


@pytest.fixture
def session(tiny_model):
    session = PortraitSession(tiny_model)
    rng = np.random.default_rng(0)
    session.set_portrait(rng.integers(0, 256, (80, 80, 3), dtype=np.uint8))
    return session


def test_lambda_change_reruns_only_the_triplane(session):
    lam = [0.0] * 10
    session.render(lam, OrbitCamera())
    assert (session.counters.encode, session.counters.triplane, session.counters.render) == (1, 1, 1)
    lam[3] = 2.5
    session.render(lam, OrbitCamera())
    assert (session.counters.encode, session.counters.triplane, session.counters.render) == (1, 2, 2)


def test_camera_change_reruns_only_rendering(session):
    lam = [1.0] * 10
    first = session.render(lam, OrbitCamera()).image
    second = session.render(lam, OrbitCamera(yaw=0.4)).image
    assert (session.counters.encode, session.counters.triplane, session.counters.render) == (1, 1, 2)
    assert not torch.equal(first, second)


def test_new_portrait_reencodes(session):
    session.render([0.0] * 10, OrbitCamera())
    session.set_portrait(np.zeros((64, 64, 3), np.uint8))
    session.render([0.0] * 10, OrbitCamera())
    assert (session.counters.encode, session.counters.triplane) == (2, 2)


def test_preview_is_smaller_and_close_to_full(session):
    lam = [0.0] * 10
    full = session.render(lam, OrbitCamera(), quality="full")
    preview = session.render(lam, OrbitCamera(), quality="preview")
    assert preview.image_raw.shape[-1] < full.image_raw.shape[-1]
    assert preview.image.shape == full.image.shape


def test_render_modes_give_rgb_images(session):
    for mode in RENDER_MODES:
        image = session.render_image([0.0] * 10, OrbitCamera(), mode)
        assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3
    with pytest.raises(ValueError, match="render mode"):
        session.render_image([0.0] * 10, OrbitCamera(), "xray")


def test_bad_lambda_is_rejected(session):
    with pytest.raises(ValueError, match="needs 10"):
        session.render([0.0] * 3, OrbitCamera())
    with pytest.raises(ValueError, match="finite"):
        session.render([float("nan")] + [0.0] * 9, OrbitCamera())


def test_image_tensor_round_trip():
    image = np.random.default_rng(1).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    assert np.array_equal(tensor_to_image(image_to_tensor(image, 32)), image)


def test_grid_is_built_once_per_triplane(session):
    lam = [0.0] * 10
    session.render(lam, OrbitCamera())
    session.render(lam, OrbitCamera(yaw=0.3), quality="preview")
    session.render(lam, OrbitCamera(yaw=-0.3))
    assert (session.counters.triplane, session.counters.grid, session.counters.render) == (1, 1, 3)
    lam[0] = 1.0
    session.render(lam, OrbitCamera())
    assert (session.counters.triplane, session.counters.grid) == (2, 2)


def test_reference_renderer_option_builds_no_grid_and_agrees(tiny_model):
    image = np.random.default_rng(2).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    sessions = {name: PortraitSession(tiny_model, renderer=name) for name in ("reference", "accelerated")}
    outputs = {}
    for name, s in sessions.items():
        s.set_portrait(image)
        outputs[name] = s.render([0.5] * 10, OrbitCamera(yaw=0.2)).image
    assert sessions["reference"].counters.grid == 0 and sessions["accelerated"].counters.grid == 1
    assert isinstance(sessions["accelerated"].accelerated_renderer, AcceleratedRenderer)
    mse = (outputs["reference"] - outputs["accelerated"]).square().mean().item()
    assert 10 * np.log10(4 / max(mse, 1e-12)) >= 30  # random-init haze: a loose bound; bench checks 40 dB on a surface
    with pytest.raises(ValueError, match="renderer"):
        PortraitSession(tiny_model, renderer="raytraced")


def test_sr_in_bf16_agrees_with_fp32_and_can_be_switched(tiny_model):
    from export3d_core.devices import native_bf16

    image = np.random.default_rng(4).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    frames = {}
    for sr_bf16 in (False, True):
        session = PortraitSession(tiny_model, acceleration=Acceleration(sr_bf16=sr_bf16))
        assert session.sr_bf16 is sr_bf16
        session.set_portrait(image)
        frames[sr_bf16] = session.render([0.3] * 10, OrbitCamera(yaw=0.1)).image
        assert frames[sr_bf16].dtype == torch.float32
    mse = (frames[True] - frames[False]).square().mean().item()
    assert 40 <= 10 * np.log10(4 / max(mse, 1e-12)) < float("inf")  # bf16 really ran, within 40 dB
    auto = PortraitSession(tiny_model)  # None: decided by the hardware
    assert auto.sr_bf16 == native_bf16(torch.device("cpu"))
    assert native_bf16(torch.device("meta")) is False


def test_cuda_graphs_are_a_cuda_only_path(tiny_model) -> None:
    from export3d_core.cuda_graph import GraphedCall

    session = PortraitSession(tiny_model, "cpu")
    assert Acceleration().cuda_graphs and not session.cuda_graphs  # asked for, but this is a CPU
    with pytest.raises(ValueError, match="CUDA tensors"):
        GraphedCall(lambda x: (x * 2,), torch.zeros(2))


def test_session_frames_are_export3d_render_frames(session):
    """One render path: the session's frame is `Export3D.render` with the session's renderer, grid
    and SR precision (the session adds only caches)."""
    lam = [0.5] * 10
    camera = OrbitCamera(yaw=0.2, pitch=-0.1)
    frame = session.render(lam, camera).image
    direct = session.model.render(session.planes(lam), camera.params()[None], renderer=session.accelerated_renderer,
                                  grid=session.grid(lam), sr_bf16=session.sr_bf16).image
    assert torch.equal(frame, direct)
