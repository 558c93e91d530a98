"""A real photo opened in the editor: the status line names the landmarker that framed it."""
from __future__ import annotations

import pytest
from PIL import Image
from skimage.data import astronaut

pytestmark = pytest.mark.usefixtures("offline_hub")  # no face-alignment weights: dlib is the landmarker


def test_status_line_says_dlib_framed_the_photo(qtbot, window, tmp_path, idle):
    photo = tmp_path / "astronaut.png"
    Image.fromarray(astronaut()).save(photo)
    assert window.controller.open_portrait(photo)
    idle(window)
    assert window.state.portrait_path == photo
    assert "astronaut.png (dlib)" in window.statusBar().currentMessage()
