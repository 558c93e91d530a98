"""Exports: real files on disk, atomic writes, cancel leaves nothing, no silent overwrite."""
import imageio.v2 as imageio
import numpy as np
import pytest
from PIL import Image

from export3d_core import Export3DError, OrbitCamera
from export3d_core.export import (ExportCancelled, TurntableSettings, sweep_frames, turntable_cameras,
                                  turntable_frames, write_animation, write_png)
from export3d_core.session import PortraitSession


@pytest.fixture
def session(tiny_model):
    session = PortraitSession(tiny_model)
    session.set_portrait(np.full((64, 64, 3), 128, np.uint8))
    return session


def test_gif_has_requested_frames_and_size(tmp_path, session):
    settings = TurntableSettings(frames=5, fps=10)
    path = write_animation(tmp_path / "t.gif", turntable_frames(session, [0.0] * 10, OrbitCamera(), settings), settings.fps)
    frames = imageio.mimread(path)
    assert len(frames) == 5
    assert frames[0].shape[:2] == (session.config.output_size,) * 2


def test_mp4_is_written(tmp_path, session):
    frames = list(sweep_frames(session, [0.0] * 10, OrbitCamera(), 2, -3, 3, 4))
    path = write_animation(tmp_path / "s.mp4", frames, 8)
    reader = imageio.get_reader(path)
    assert reader.count_frames() == 4


def test_cancel_leaves_no_file(tmp_path, session):
    calls = iter(range(100))
    with pytest.raises(ExportCancelled):
        write_animation(tmp_path / "c.gif", (np.zeros((16, 16, 3), np.uint8) for _ in range(10)), 10,
                        should_cancel=lambda: next(calls) >= 3)
    assert list(tmp_path.iterdir()) == []


def test_failure_midway_leaves_no_file(tmp_path):
    def frames():
        yield np.zeros((16, 16, 3), np.uint8)
        raise RuntimeError("model exploded")

    with pytest.raises(RuntimeError):
        write_animation(tmp_path / "f.gif", frames(), 10)
    assert list(tmp_path.iterdir()) == []


def test_no_overwrite_without_asking(tmp_path):
    target = tmp_path / "still.png"
    target.write_bytes(b"precious")
    with pytest.raises(Export3DError, match="exists"):
        write_png(target, np.zeros((8, 8, 3), np.uint8))
    assert target.read_bytes() == b"precious"
    write_png(target, np.zeros((8, 8, 3), np.uint8), overwrite=True)
    assert Image.open(target).size == (8, 8)


def test_png_with_alpha(tmp_path):
    alpha = np.tile(np.arange(8, dtype=np.uint8) * 30, (8, 1))
    path = write_png(tmp_path / "a.png", np.zeros((8, 8, 3), np.uint8), alpha)
    image = np.asarray(Image.open(path))
    assert image.shape == (8, 8, 4) and np.array_equal(image[..., 3], alpha)


def test_wrong_suffix_is_refused(tmp_path):
    with pytest.raises(Export3DError, match="must end in"):
        write_animation(tmp_path / "x.avi", [], 10)


def test_yaw_path_keeps_pitch():
    cams = turntable_cameras(OrbitCamera(pitch=0.1), TurntableSettings(frames=4, path="yaw"))
    assert all(abs(c.pitch - 0.1) < 1e-12 for c in cams)
    assert len({round(c.yaw, 6) for c in cams}) > 1


# -- a write that fails: the disk refuses the bytes ------------------------------------------------
# RLIMIT_FSIZE in a child process makes every write past the limit fail with EFBIG ("File too
# large"), for Python's writes and for the ffmpeg it starts alike (with SIGXFSZ ignored, which an
# exec keeps): a real full disk for this file, no root needed, nothing else on the machine touched.
FULL_DISK_SCRIPT = """
import resource, signal, sys
import numpy as np
from pathlib import Path
from export3d_core.cli import run_handler
from export3d_core.export import write_animation, write_png
from argparse import Namespace

path, limit = Path(sys.argv[1]), int(sys.argv[2])
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
rng = np.random.default_rng(0)
frames = [rng.integers(0, 256, (96, 96, 3), dtype=np.uint8) for _ in range(12)]

def handler(args):
    if path.suffix == ".png":
        write_png(path, frames[0], overwrite=True)
    else:
        write_animation(path, iter(frames), 10, overwrite=True)
    print("wrote", path)
    return 0

sys.exit(run_handler(Namespace(command="export", handler=handler)))
"""


def _export_with_file_limit(path, limit: int):
    import os
    import subprocess
    import sys
    from pathlib import Path

    repo = Path(__file__).resolve().parents[2]
    return subprocess.run([sys.executable, "-c", FULL_DISK_SCRIPT, str(path), str(limit)], capture_output=True,
                          text=True, cwd=repo, env={**os.environ, "OMP_NUM_THREADS": "1"}, timeout=300)


@pytest.mark.parametrize("name", ["old.png", "old.gif", "old.mp4"])
def test_full_disk_keeps_the_old_file_and_says_why(tmp_path, name):
    target = tmp_path / name
    target.write_bytes(b"the artist's good export")
    result = _export_with_file_limit(target, 20_000)  # far below what 12 noisy frames need
    assert result.returncode != 0, result.stdout
    assert "wrote" not in result.stdout
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    assert lines[0].startswith("export3d export: error: ") and str(target) in lines[0]
    assert "File too large" in lines[0] or "video encoder (ffmpeg) failed" in lines[0]
    assert target.read_bytes() == b"the artist's good export"
    assert [p.name for p in tmp_path.iterdir()] == [name]  # no temporary file left behind


@pytest.mark.parametrize("name", ["new.png", "new.gif", "new.mp4"])
def test_the_same_export_succeeds_with_room(tmp_path, name):
    """The limit above is what fails, not the script: with room the file is written and readable."""
    result = _export_with_file_limit(tmp_path / name, 50_000_000)
    assert result.returncode == 0 and result.stderr == "", result.stderr
    if name.endswith(".png"):
        assert Image.open(tmp_path / name).size == (96, 96)
    else:
        assert len(imageio.mimread(tmp_path / name)) == 12


def test_mp4_whose_encoder_failed_is_refused(tmp_path, monkeypatch):
    """ffmpeg exits without finishing the file (its status is never read by imageio): the probe
    of the finished temporary file catches it and the target keeps its old contents."""
    import os

    from export3d_core import export

    target = tmp_path / "clip.mp4"
    target.write_bytes(b"good")
    real_finish = export._Mp4Writer.finish

    def finish_then_truncate(self, count, path):
        self.writer.close()
        size = os.path.getsize(self.tmp)
        with open(self.tmp, "r+b") as handle:  # what a full disk leaves: the end (the moov index) missing
            handle.truncate(size // 2)
        real_finish(self, count, path)

    monkeypatch.setattr(export._Mp4Writer, "finish", finish_then_truncate)
    with pytest.raises(Export3DError, match="video encoder"):
        write_animation(target, (np.zeros((32, 32, 3), np.uint8) for _ in range(4)), 8, overwrite=True)
    assert target.read_bytes() == b"good"
    assert [p.name for p in tmp_path.iterdir()] == ["clip.mp4"]


def test_gif_frames_are_streamed_to_disk(tmp_path):
    """Each frame is on disk before the next one is drawn: memory does not grow with the frame count."""
    sizes = []

    def frames():
        rng = np.random.default_rng(1)
        for _ in range(6):
            temporaries = [p for p in tmp_path.iterdir() if p.name.startswith(".t.gif.")]
            sizes.append(temporaries[0].stat().st_size if temporaries else 0)
            yield rng.integers(0, 256, (48, 48, 3), dtype=np.uint8)

    write_animation(tmp_path / "t.gif", frames(), 10)
    assert sizes[0] == 0 and all(b > a for a, b in zip(sizes[1:], sizes[2:])), sizes
    assert sizes[1] > 0
    assert len(imageio.mimread(tmp_path / "t.gif")) == 6


def test_gif_loops_and_keeps_its_timing(tmp_path):
    frames = [np.full((16, 16, 3), v, np.uint8) for v in (0, 120, 250)]
    write_animation(tmp_path / "loop.gif", iter(frames), 20)
    write_animation(tmp_path / "once.gif", iter(frames), 20, loop=False)
    looping = Image.open(tmp_path / "loop.gif")
    assert looping.n_frames == 3 and looping.info["loop"] == 0 and looping.info["duration"] == 50
    assert "loop" not in Image.open(tmp_path / "once.gif").info
    assert [int(f[0, 0, 0]) for f in imageio.mimread(tmp_path / "loop.gif")] == [0, 120, 250]


def test_frame_limits(tmp_path):
    from export3d_core.export import MAX_ANIMATION_FRAMES

    with pytest.raises(Export3DError, match="2 to"):
        TurntableSettings(frames=MAX_ANIMATION_FRAMES + 1)
    with pytest.raises(Export3DError, match="finite"):
        TurntableSettings(yaw_amplitude=float("nan"))
    with pytest.raises(Export3DError, match="fps"):
        write_animation(tmp_path / "x.gif", iter([np.zeros((8, 8, 3), np.uint8)] * 2), 0)
    assert list(tmp_path.iterdir()) == []
