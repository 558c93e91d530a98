"""`export3d prepare`: a short MP4 made here -> a valid corpus; Deep3D coefficients; resume; bad inputs."""
from __future__ import annotations

import argparse
import math
from pathlib import Path

import imageio.v2 as imageio
import numpy as np
import pytest
from PIL import Image
from skimage.data import astronaut

from export3d_core.camera import OrbitCamera
from export3d_core.data import corpus, landmarks_dlib, landmarks_fa
from export3d_core.data.prepare import (PrepareOptions, add_prepare_command, fill_and_smooth, prepare_corpus,
                                        summary_lines)
from export3d_core.data.video_source import deep3d_view_angles
from export3d_core.errors import Export3DError

FRAMES = 8
SIDE = 160
RES = 48


pytestmark = pytest.mark.usefixtures("offline_hub")  # tests/conftest.py: no hub weights, no network


def _astronaut_frames(count: int = FRAMES) -> list[np.ndarray]:
    """The astronaut's head drifting right and growing slightly: a stand-in talking-head clip."""
    image = Image.fromarray(astronaut())
    frames = []
    for t in range(count):
        side = 230 - 3 * t
        x0, y0 = 110 - 2 * t, 20 + t
        crop = image.crop((x0, y0, x0 + side, y0 + side)).resize((SIDE, SIDE), Image.Resampling.LANCZOS)
        frames.append(np.asarray(crop))
    return frames


def _write_video(path: Path, frames: list[np.ndarray]) -> Path:
    imageio.mimwrite(path, frames, fps=10, format="FFMPEG", codec="libx264", quality=9, macro_block_size=16)
    return path


def _check_corpus(root: Path, clips: int, beta_dim: int) -> list[corpus.ClipMeta]:
    info = corpus.read_corpus_info(root)
    assert info.source == "video" and info.resolution == RES and info.beta_dim == beta_dim
    assert len(info.beta_names) == beta_dim and len(info.clips) == clips
    metas = [corpus.read_clip_meta(root / clip) for clip in info.clips]
    for meta in metas:
        for frame in meta.frames:
            assert len(frame.beta) == beta_dim and len(frame.camera) == 25
            assert Image.open(root / meta.clip / frame.file).size == (RES, RES)
    return metas


def test_video_becomes_a_clip_and_resumes(tmp_path: Path) -> None:
    video = _write_video(tmp_path / "talk.mp4", _astronaut_frames())
    out = tmp_path / "corpus"
    options = PrepareOptions(resolution=RES, detect_every=3)
    reports = prepare_corpus([video], out, options, progress=False)
    assert [r.status for r in reports] == ["done"]
    (meta,) = _check_corpus(out, clips=1, beta_dim=136)
    assert len(meta.frames) == FRAMES and meta.beta_source == "none"  # no face-alignment weights: no β
    assert all(len(frame.landmarks) == 68 for frame in meta.frames)  # dlib tracked every frame
    first = np.asarray(Image.open(out / meta.clip / meta.frames[0].file), dtype=np.float32)
    last = np.asarray(Image.open(out / meta.clip / meta.frames[-1].file), dtype=np.float32)
    # The crop follows the face, so the aligned frames look alike although the head moved and grew.
    raw_first, raw_last = (np.asarray(Image.fromarray(f).resize((RES, RES)), np.float32)
                           for f in _astronaut_frames()[::FRAMES - 1])
    assert np.abs(first - last).mean() < 0.6 * np.abs(raw_first - raw_last).mean()
    from export3d_core.data.dataset import CorpusDataset

    item = CorpusDataset(out, 64, 32, 64)[0]  # the training data set loads the prepared clip
    assert item["source"].shape == (3, 64, 64) and item["driving_raw"].shape == (3, 32, 32)
    assert item["beta"].shape == (136,) and item["camera"].shape == (25,)
    stamp = (out / meta.clip / corpus.CLIP_META_FILE).stat().st_mtime_ns
    again = prepare_corpus([video], out, options, progress=False)
    assert [r.status for r in again] == ["exists"]
    assert (out / meta.clip / corpus.CLIP_META_FILE).stat().st_mtime_ns == stamp
    assert "1 already done" in summary_lines(again)[0]


def test_deep3d_coefficients_and_frame_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(landmarks_dlib, "get_dlib_landmarker", lambda: None)  # no landmarks: Deep3D's angles
    folder = tmp_path / "speaker"
    folder.mkdir()
    for i, frame in enumerate(_astronaut_frames(5)):
        Image.fromarray(frame).save(folder / f"{i}.png")
    coeffs = np.random.default_rng(0).normal(size=(5, 257)).astype(np.float32)
    coeffs[:, 224:227] = [0.1, 0.3, 0.0]  # pitch 0.1 (head down), yaw 0.3
    np.save(folder / "coeffs.npy", coeffs)
    out = tmp_path / "corpus"
    reports = prepare_corpus([folder], out, PrepareOptions(resolution=RES, detect_every=2), progress=False)
    assert [r.status for r in reports] == ["done"]
    (meta,) = _check_corpus(out, clips=1, beta_dim=64)
    assert meta.beta_source == "deep3d"
    for i, frame in enumerate(meta.frames):
        assert np.allclose(frame.beta, coeffs[i, 80:144], atol=1e-6)
    camera = OrbitCamera.from_params(meta.frames[0].camera)
    assert math.isclose(camera.yaw, -0.3, abs_tol=0.02) and math.isclose(camera.pitch, 0.1, abs_tol=0.02)


def test_deep3d_angles_convention() -> None:
    coeffs = np.zeros(257, dtype=np.float32)
    assert np.allclose(deep3d_view_angles(coeffs), (0.0, 0.0))
    coeffs[225] = 0.4  # the head turns toward its left (world +x): the camera sees it from -x
    yaw, pitch = deep3d_view_angles(coeffs)
    assert math.isclose(yaw, -0.4, abs_tol=1e-6) and abs(pitch) < 1e-6


def test_bad_and_faceless_inputs_are_reported_not_fatal(tmp_path: Path) -> None:
    good = _write_video(tmp_path / "good.mp4", _astronaut_frames(4))
    broken = tmp_path / "broken.mp4"
    broken.write_text("not a video", encoding="utf-8")
    blank = _write_video(tmp_path / "blank.mp4", [np.full((SIDE, SIDE, 3), 120, np.uint8)] * 4)
    out = tmp_path / "corpus"
    reports = prepare_corpus([good, broken, blank], out, PrepareOptions(resolution=RES, workers=2), progress=False)
    status = {Path(r.source).name: r for r in reports}
    assert status["good.mp4"].status == "done"
    assert status["broken.mp4"].status == "skipped" and "video" in status["broken.mp4"].message
    assert status["blank.mp4"].status == "skipped" and "no face" in status["blank.mp4"].message
    _check_corpus(out, clips=1, beta_dim=136)
    assert not list(out.glob(".partial_*"))
    text = "\n".join(summary_lines(reports))
    assert "skipped broken.mp4" in text and "skipped blank.mp4" in text
    with pytest.raises(Export3DError, match="not found"):
        prepare_corpus([tmp_path / "missing.mp4"], out, PrepareOptions(resolution=RES))
    with pytest.raises(Export3DError, match="already holds a corpus at 48px"):
        prepare_corpus([good], out, PrepareOptions(resolution=64))


def test_fill_and_smooth_interpolates_short_gaps_only() -> None:
    quads = np.full((30, 4), np.nan)
    quads[0] = quads[4] = [10.0, 10.0, 5.0, 0.0]
    quads[4, 0] = 14.0
    filled, kept = fill_and_smooth(quads, max_gap=3, sigma=0.0)
    assert kept[:8].all() and not kept[8:].any()
    assert np.allclose(filled[2, 0], 12.0)  # linear between the two detections


def test_prepare_command(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    video = _write_video(tmp_path / "clip.mp4", _astronaut_frames(3))
    parser = argparse.ArgumentParser(prog="export3d")
    add_prepare_command(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["prepare", str(video), "-o", str(tmp_path / "c"), "--res", str(RES)])
    assert args.handler(args) == 0
    assert "1 video(s) prepared (3 frames)" in capsys.readouterr().out
    _check_corpus(tmp_path / "c", clips=1, beta_dim=136)


class _FakeLandmarker:
    """Stands in for face-alignment: frame t (encoded in pixel (0, 0)) shows the template at yaw_t."""

    def __init__(self, yaws: list[float], open_mouth: set[int]) -> None:
        self.yaws, self.open_mouth = yaws, open_mouth

    def _points(self, image: np.ndarray) -> np.ndarray:
        from export3d_core.data.face_pose import project_template

        t = int(image[0, 0, 0])
        points = project_template(OrbitCamera(yaw=self.yaws[t]).params().numpy(), 80) + np.array([30.0 + t, 20.0])
        if t in self.open_mouth:
            points[[56, 57, 58, 65, 66, 67], 1] += 6.0
        return points

    def detect(self, image: np.ndarray) -> list:
        points = self._points(image)
        return [landmarks_fa.FaLandmarks(box=np.r_[points.min(0), points.max(0)], score=1.0, landmarks=points)]

    def landmarks_in_box(self, image: np.ndarray, box: np.ndarray) -> np.ndarray:
        return self._points(image)


def test_landmark_path_gives_pnp_cameras_and_expressions(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    yaws = [math.radians(a) for a in (-20, -10, 0, 10, 20, 25)]
    fake = _FakeLandmarker(yaws, open_mouth={3})
    monkeypatch.setattr(landmarks_fa, "get_landmarker", lambda allow_download=False: fake)
    monkeypatch.setattr(landmarks_fa, "missing_weights", lambda: [])
    folder = tmp_path / "frames"
    folder.mkdir()
    for t in range(len(yaws)):
        frame = np.full((140, 140, 3), 100, np.uint8)
        frame[0, 0, 0] = t
        Image.fromarray(frame).save(folder / f"{t:03d}.png")
    out = tmp_path / "corpus"
    reports = prepare_corpus([folder], out, PrepareOptions(resolution=RES, detect_every=4), progress=False)
    assert [r.status for r in reports] == ["done"]
    (meta,) = _check_corpus(out, clips=1, beta_dim=136)
    assert meta.beta_source == "landmarks" and len(meta.frames) == len(yaws)
    for yaw, frame in zip(yaws, meta.frames):
        assert abs(OrbitCamera.from_params(frame.camera).yaw - yaw) < math.radians(3)
        assert np.asarray(frame.landmarks).shape == (68, 2)
    magnitude = [np.abs(frame.beta).max() for frame in meta.frames]
    assert magnitude[3] > 5 * max(magnitude[:3] + magnitude[4:])  # only the open mouth stands out
