"""The small shared modules of the render path: device choice, display conversion, atomic JSON."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from export3d_core.atomic import write_json_atomic
from export3d_core.devices import pick_device
from export3d_core.display import opacity_to_alpha, tensor_to_image
from export3d_core.errors import Export3DError


def test_pick_device_names_bad_choices_in_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    assert pick_device("cpu") == torch.device("cpu")
    with pytest.raises(Export3DError, match="unknown device 'toaster'"):
        pick_device("toaster")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert pick_device(None) == torch.device("cpu")
    with pytest.raises(Export3DError, match="CUDA was asked for but is not available"):
        pick_device("cuda:0")


def test_choosing_the_cpu_leaves_the_tf32_flags_alone() -> None:
    before = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    pick_device("cpu")
    assert (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32) == before


def test_opacity_becomes_a_uint8_alpha_channel() -> None:
    alpha = torch.tensor([[[[0.0, 0.5], [1.0, 1.2]]]])  # (1, 1, 2, 2); opacity may overshoot by rounding
    assert opacity_to_alpha(alpha).tolist() == [[0, 128], [255, 255]]
    assert opacity_to_alpha(alpha).dtype == np.uint8
    assert tensor_to_image(torch.full((3, 2, 2), -1.0)).max() == 0


def test_write_json_atomic_round_trips_and_leaves_no_temporary(tmp_path) -> None:
    path = tmp_path / "sub" / "numbers.json"
    write_json_atomic(path, {"a": [1, 2.5], "b": "λ"})
    assert json.loads(path.read_text(encoding="utf-8")) == {"a": [1, 2.5], "b": "λ"}
    assert [p.name for p in path.parent.iterdir()] == ["numbers.json"]
