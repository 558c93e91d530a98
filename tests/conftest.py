"""Shared test set-up: offscreen Qt, deterministic torch, small thread count."""
import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(min(2, torch.get_num_threads()))


@pytest.fixture
def tiny_model():
    from export3d_core import Export3D, ModelConfig

    torch.manual_seed(0)
    return Export3D(ModelConfig.preset("tiny")).eval()


@pytest.fixture
def offline_hub(tmp_path_factory, monkeypatch):
    """An empty torch hub (no face-alignment weights) and no network: the offline fallback path."""
    import socket
    import warnings

    from export3d_core.data import landmarks_fa

    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path_factory.mktemp("hub")))

    def no_network(*args, **kwargs):
        raise AssertionError("tried to reach the network")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    landmarks_fa.reset_cache()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        yield
    landmarks_fa.reset_cache()
