"""Batch: presets or a project's animation over a folder; a corrupt file is reported and skipped."""
import json

import imageio.v2 as imageio
import numpy as np
import pytest
from PIL import Image

from export3d_core.animation import CameraPose, two_key_animation
from export3d_core.checkpoint import save_checkpoint
from export3d_core.cli import main
from export3d_core.project_file import save_animation

from tests.core.lively_model import lively, pattern

N = 10


@pytest.fixture
def folder(tmp_path):
    faces = tmp_path / "faces"
    faces.mkdir()
    Image.fromarray(pattern(80)).save(faces / "a.png")
    Image.fromarray(pattern(64)[::-1].copy()).save(faces / "c.jpg")
    (faces / "b.png").write_bytes(b"\x89PNG\r\n\x1a\n this is not a picture")  # corrupt, sorted between them
    (faces / "notes.txt").write_text("not a portrait")
    return faces


@pytest.fixture
def checkpoint(tmp_path, tiny_model):
    return save_checkpoint(lively(tiny_model), tmp_path / "tiny.safetensors")


def two_presets(path, names=("smile wide", "turn")):
    """A presets file: the first preset smiles (v1 = 5), the second turns the head 25° to the side."""
    path.write_text(json.dumps({"format": "export3d-studio-presets", "presets": [
        {"name": names[0], "lambda": [5.0] + [0.0] * (N - 1)},
        {"name": names[1], "lambda": [0.0] * N, "camera": {"yaw_deg": 25.0, "pitch_deg": 0.0, "radius": 2.7,
                                                             "fov_deg": 18.837}}]}))
    return path


def test_presets_batch_survives_a_corrupt_file(tmp_path, folder, checkpoint, capsys):
    presets = two_presets(tmp_path / "presets.json")
    out = tmp_path / "out"
    code = main(["batch", "--preset", str(presets), "--portraits", str(folder), "-o", str(out),
                 "--checkpoint", str(checkpoint), "--aligned"])
    lines = capsys.readouterr().out.strip().splitlines()
    assert code == 1  # not every portrait was written, but the batch ran to the end
    assert lines[0].startswith("ok      a.png -> a_smile-wide.png, a_turn.png")
    assert lines[1].startswith("FAILED  b.png: ") and "\n" not in lines[1]
    assert lines[2].startswith("ok      c.jpg -> c_smile-wide.png, c_turn.png")
    assert lines[3].startswith("batch: 2 of 3 portraits written")
    assert "1 failed; 1 non-image file(s) ignored" in lines[3]
    written = sorted(p.name for p in out.iterdir())
    assert written == ["a_smile-wide.png", "a_turn.png", "c_smile-wide.png", "c_turn.png"]
    smile, turn = (np.asarray(Image.open(out / name)) for name in ("a_smile-wide.png", "a_turn.png"))
    assert smile.shape == (64, 64, 3) and not np.array_equal(smile, turn)


def test_project_batch_writes_an_animation_per_portrait_and_keeps_existing(tmp_path, folder, checkpoint, capsys):
    animation = two_key_animation([0.0] * N, [4.0] * N, 1.0, camera=CameraPose(yaw_deg=5), fps=3)
    project = save_animation(tmp_path / "p.e3d.json", animation, checkpoint=checkpoint)
    out = tmp_path / "out"
    args = ["batch", "--project", str(project), "--portraits", str(folder), "-o", str(out), "--format", "gif",
            "--aligned"]
    assert main(args) == 1
    assert sorted(p.name for p in out.iterdir()) == ["a.gif", "c.gif"]
    assert len(imageio.mimread(out / "a.gif")) == 4
    capsys.readouterr()
    (folder / "b.png").unlink()
    before = (out / "a.gif").read_bytes()
    assert main(args) == 1  # both outputs exist: each is reported, nothing replaced
    lines = capsys.readouterr().out.splitlines()
    assert sum("exists; pass --overwrite" in line for line in lines) == 2
    assert (out / "a.gif").read_bytes() == before
    assert main(args + ["--overwrite"]) == 0


def test_a_bad_presets_file_is_one_line_error(tmp_path, folder, capsys):
    presets = tmp_path / "presets.json"
    presets.write_text(json.dumps({"format": "export3d-studio-presets", "presets": [{"name": "x", "lambda": ["a"]}]}))
    assert main(["batch", "--preset", str(presets), "--portraits", str(folder), "-o", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert err == "export3d batch: error: presets.json: preset 'x': λ v1: 'a' is not a number"
    assert not (tmp_path / "o").exists()


def test_fit_batch_renders_each_portrait_with_its_own_fitted_model(tmp_path, folder, capsys):
    (folder / "b.png").unlink()
    presets = tmp_path / "presets.json"
    presets.write_text(json.dumps({"format": "export3d-studio-presets",
                                   "presets": [{"name": "still", "lambda": [0.0] * N}]}))
    plain, fitted = tmp_path / "plain", tmp_path / "fitted"
    common = ["batch", "--preset", str(presets), "--portraits", str(folder), "--random-init", "tiny", "--aligned"]
    assert main(common + ["-o", str(plain)]) == 0
    capsys.readouterr()
    assert main(common + ["-o", str(fitted), "--fit", "--fit-steps", "3", "--fit-upscale-steps", "2"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert sum("fitted in" in line for line in lines) == 2
    # a.png holds the face at 80 px (1.25 × the tiny model's 64): upscaled; c.jpg at 64 px: not, and says so
    assert "upscaled 2× (64² -> 128²)" in next(line for line in lines if line.startswith("ok      a.png"))
    assert "not upscaled: the photo holds the face at 64 px" in next(line for line in lines if "c.jpg" in line)
    for name, side in (("a.png", 128), ("c.png", 64)):
        before, after = (np.asarray(Image.open(folder_ / name)) for folder_ in (plain, fitted))
        assert after.shape == (side, side, 3) and before.shape == (64, 64, 3)
        assert not np.array_equal(before, after[::side // 64, ::side // 64])  # the fit changed the render


def test_fit_without_an_expression_estimator_stops_before_the_first_portrait(tmp_path, folder, checkpoint,
                                                                             capsys):
    presets = tmp_path / "presets.json"
    presets.write_text(json.dumps({"format": "export3d-studio-presets", "presets": [{"lambda": [0.0] * N}]}))
    assert main(["batch", "--preset", str(presets), "--portraits", str(folder), "--checkpoint", str(checkpoint),
                 "--aligned", "--fit", "-o", str(tmp_path / "out")]) == 2
    captured = capsys.readouterr()
    assert "expression estimates need one" in captured.err and "FAILED" not in captured.out
    assert not (tmp_path / "out").exists()


def test_paste_back_batch_writes_each_image_at_its_photos_size(tmp_path, folder, checkpoint, capsys):
    wide = folder / "wide.png"  # not square, not the crop's size: the outputs must take the photo's shape
    Image.fromarray(np.pad(pattern(80), ((10, 10), (40, 0), (0, 0)), mode="edge")).save(wide)
    presets = two_presets(tmp_path / "presets.json", ("smile", "far"))
    out = tmp_path / "out"
    code = main(["batch", "--preset", str(presets), "--portraits", str(folder), "-o", str(out),
                 "--checkpoint", str(checkpoint), "--aligned", "--paste-back"])
    lines = capsys.readouterr().out.strip().splitlines()
    assert code == 1 and lines[1].startswith("FAILED  b.png: ")  # the corrupt file still only skips itself
    assert "warning:" in lines[0] and "25° yaw" in lines[0]  # the far pose is beyond the measured limit
    photo = np.asarray(Image.open(wide).convert("RGB"))
    for name in ("wide_smile.png", "wide_far.png"):
        pasted = np.asarray(Image.open(out / name))
        assert pasted.shape == photo.shape
        assert np.array_equal(pasted[:8, :8], photo[:8, :8]) and np.array_equal(pasted[-8:, -8:], photo[-8:, -8:])
        assert not np.array_equal(pasted, photo)  # the head went in
    assert main(["batch", "--preset", str(presets), "--portraits", str(folder), "-o", str(tmp_path / "o2"),
                 "--checkpoint", str(checkpoint), "--paste-back", "--size", "64"]) == 2
    assert "drop --size" in capsys.readouterr().err
