"""`export3d crop`: an existing output needs --overwrite, and the input photo is never written over."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from skimage.data import astronaut

from export3d_core.cli import main

pytestmark = pytest.mark.usefixtures("offline_hub")  # tests/conftest.py: no hub weights, no network


@pytest.fixture
def photo(tmp_path: Path) -> Path:
    path = tmp_path / "photo.png"
    Image.fromarray(astronaut()).save(path)
    return path


def _one_line(capsys: pytest.CaptureFixture) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    return err


def test_existing_output_needs_overwrite(photo: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "crop.png"
    out.write_bytes(b"an earlier crop the artist kept")
    assert main(["crop", str(photo), "-o", str(out), "--size", "64"]) == 2
    assert "exists; pass --overwrite" in _one_line(capsys)
    assert out.read_bytes() == b"an earlier crop the artist kept"
    assert main(["crop", str(photo), "-o", str(out), "--size", "64", "--overwrite"]) == 0
    assert np.asarray(Image.open(out)).shape == (64, 64, 3)


@pytest.mark.parametrize("overwrite", [[], ["--overwrite"]])
def test_the_input_photo_is_never_overwritten(photo: Path, capsys: pytest.CaptureFixture,
                                              overwrite: list[str]) -> None:
    original = photo.read_bytes()
    link = photo.with_name("alias.png")  # the same file under another name is still the photo
    link.symlink_to(photo)
    for output in (photo, link, photo.parent / "." / photo.name):
        assert main(["crop", str(photo), "-o", str(output), *overwrite]) == 2
        assert "is the input photo itself" in _one_line(capsys)
    assert photo.read_bytes() == original and link.is_symlink()


def test_output_onto_a_looping_symlink_is_refused(photo: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    first, second = tmp_path / "a.png", tmp_path / "b.png"
    first.symlink_to(second)
    second.symlink_to(first)
    assert main(["crop", str(photo), "-o", str(first), "--overwrite"]) == 2
    assert "leads nowhere" in _one_line(capsys)
    assert first.is_symlink()
