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
