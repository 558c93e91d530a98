"""File ▸ Export mesh…: the mesh job in the background, with the sliders' names on the morph targets."""
from __future__ import annotations

import numpy as np
from PySide6.QtWidgets import QPushButton

from export3d_core.mesh import HeadField, MeshSettings, density_grid  # the test reaches inside; the editor does not
from export3d_core.mesh_io import validate_glb


def _finish(qtbot, job) -> None:
    qtbot.waitUntil(job.isFinished, timeout=60_000)
    qtbot.wait(20)  # deliver the job's queued signals


def _level(window) -> float:
    """A level the untrained tiny model's density crosses: its median over the box."""
    controller = window.controller
    field = HeadField.from_portrait(controller.loaded.model, controller.portrait_image)
    return float(np.median(density_grid(field.density(list(window.state.lam)), field.half, 24)))


def test_menu_exports_a_glb_with_one_target_per_slider(qtbot, window, tmp_path):
    assert "Export mesh…" in [action.text() for action in window.menuBar().actions()[0].menu().actions()]
    window.state.set_name(2, "smile")
    target = tmp_path / "head.glb"
    settings = MeshSettings(resolution=24, level=_level(window), morph_targets=True)
    job = window.run_export(window.controller.export_spec("mesh", target, mesh=settings, names=window.state.names))
    _finish(qtbot, job)
    summary = validate_glb(target)
    assert summary.targets == 10 and summary.target_names == window.state.names
    assert summary.target_names[2] == "smile"
    assert "wrote" in window.statusBar().currentMessage()


def test_cancelled_mesh_export_leaves_no_file(qtbot, window, tmp_path):
    target = tmp_path / "big.glb"
    settings = MeshSettings(resolution=512, level=1.0, morph_targets=True)
    job = window.run_export(window.controller.export_spec("mesh", target, mesh=settings))
    window.export_dialog.findChild(QPushButton).click()  # the progress dialog's Cancel
    _finish(qtbot, job)
    assert not target.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".big")]  # no temporary file left
    assert "cancelled" in window.statusBar().currentMessage()
