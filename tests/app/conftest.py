"""Editor fixtures: a real window over a real tiny model saved as a checkpoint in tmp_path."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PySide6.QtCore import QSettings

from export3d_core.checkpoint import save_checkpoint

from app.main_window import MainWindow

TEST_REST_MS = 30  # short rest so the full frame follows quickly in tests


def portrait_pattern(size: int = 96, seed: int = 0) -> np.ndarray:
    """A deterministic colourful image: renders differ visibly when λ or the camera change."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size] / size
    base = np.stack([xx, yy, 1 - xx * yy], axis=-1) * 200
    return (base + rng.integers(0, 55, (size, size, 3))).astype(np.uint8)


MODULATION_STD = 0.5  # gives the untrained model's λ a visible effect


@pytest.fixture
def checkpoint(tmp_path, tiny_model):
    # A fresh model zero-initialises its EAdaLN modulation (DiT style), so λ would change nothing;
    # random modulation weights make λ matter, as in a trained model.
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, param in tiny_model.named_parameters():
            if "adaLN_modulation" in name:
                param.copy_(torch.randn(param.shape, generator=generator) * MODULATION_STD)
    return save_checkpoint(tiny_model, tmp_path / "tiny.safetensors")


@pytest.fixture
def window(qtbot, tmp_path, checkpoint, monkeypatch):
    # Errors go to a non-modal box; never let a test block on any other modal dialog.
    from PySide6.QtWidgets import QMessageBox

    monkeypatch.setattr(QMessageBox, "exec", lambda self: QMessageBox.StandardButton.Ok)
    settings = QSettings(str(tmp_path / "settings.ini"), QSettings.Format.IniFormat)
    win = MainWindow(settings=settings, rest_ms=TEST_REST_MS, explore_on_load=False)
    qtbot.addWidget(win)
    win.show()
    assert win.controller.load_model(checkpoint)
    win.controller.set_portrait_image(portrait_pattern(), None)
    assert win.controller.service.wait_until_idle(20)
    assert win.controller.last_frame is not None
    yield win
    win.controller.shutdown()


def _idle(win: MainWindow, timeout: float = 20.0) -> None:
    assert win.controller.service.wait_until_idle(timeout), "render service did not go idle"


@pytest.fixture
def idle():
    """`idle(window)`: process events until the render service has nothing left to do."""
    return _idle


@pytest.fixture
def make_portrait():
    """`make_portrait(size, seed)`: a deterministic colourful uint8 image."""
    return portrait_pattern
