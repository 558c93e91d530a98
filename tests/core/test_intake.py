"""Portrait intake: detection, FFHQ alignment, PnP cameras, offline fallback, bad inputs, `export3d crop`."""
from __future__ import annotations

import argparse
import math
import logging
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from skimage.data import astronaut

from export3d_core.camera import OrbitCamera
from export3d_core.data import landmarks_dlib, landmarks_fa
from export3d_core.data.face_pose import estimate_camera, landmark_expression, project_template
from export3d_core.data.face_template import LEFT_EYE, MOUTH_LEFT, MOUTH_RIGHT, RIGHT_EYE, build_template, load_template
from export3d_core.data.intake import (FaceDetection, NoFaceFoundError, add_crop_command, crop_face, crop_portrait,
                                       detect_faces, manual_crop)
from export3d_core.errors import Export3DError

SIZE = 128
# Measured by eye on skimage's astronaut (512 x 512): pupils and mouth centre, in pixels.
ASTRONAUT_EYES = np.array([[204.0, 101.0], [245.0, 102.0]])
ASTRONAUT_MOUTH = np.array([226.0, 141.0])


pytestmark = pytest.mark.usefixtures("offline_hub")  # tests/conftest.py: no hub weights, no network


@pytest.fixture
def no_dlib(monkeypatch: pytest.MonkeyPatch) -> None:
    """dlib unavailable too: intake's last resort, OpenCV's cascades (no landmarks)."""
    monkeypatch.setattr(landmarks_dlib, "get_dlib_landmarker", lambda: None)


def _canonical(size: int) -> tuple[np.ndarray, np.ndarray]:
    """Eye centres (2, 2) and mouth centre (2,) of the template seen by the frontal camera."""
    points = project_template(OrbitCamera().params().numpy(), size)
    eyes = np.stack([points[LEFT_EYE].mean(0), points[RIGHT_EYE].mean(0)])
    return eyes, (points[MOUTH_LEFT] + points[MOUTH_RIGHT]) / 2


def _to_crop(transform: np.ndarray, points: np.ndarray) -> np.ndarray:
    return np.asarray(points) @ transform[:, :2].T + transform[:, 2]


def test_template_is_the_synthetic_mean_head_and_frames_it_like_a_render() -> None:
    """Real crops must look like synthetic renders: same head, same framing, same frontal camera."""
    # The asset must follow synthetic.py (regenerate: python -m export3d_core.data.face_template);
    # 5 mm-ish slack (0.005 world units, under a pixel at 128) tolerates cosmetic retouches of the head.
    assert np.allclose(load_template(), build_template(), atol=5e-3)
    frontal = OrbitCamera().params().numpy()
    points = project_template(frontal, SIZE)  # where a frontal synthetic render has its landmarks
    face = FaceDetection(box=np.r_[points.min(0), points.max(0)], score=1.0, landmarks=points, eyes=None,
                         method="face-alignment")
    result = crop_face(np.zeros((SIZE, SIZE, 3), np.uint8), face, size=SIZE)
    assert np.allclose(result.transform, [[1, 0, 0], [0, 1, 0]], atol=1e-4)  # the render is already framed
    assert np.allclose(result.camera, frontal, atol=1e-4)
    eyes, mouth = _canonical(SIZE)
    assert np.isclose(eyes[0, 1], eyes[1, 1]) and np.isclose(eyes.mean(0)[0], SIZE / 2)  # level, centred
    assert eyes[0, 1] < mouth[1]


def test_astronaut_is_found_and_centred_by_opencv(no_dlib) -> None:
    faces = detect_faces(astronaut())
    assert len(faces) == 1 and faces[0].method == "opencv" and faces[0].landmarks is None
    x0, y0, x1, y1 = faces[0].box
    assert x0 < ASTRONAUT_EYES[0, 0] < ASTRONAUT_EYES[1, 0] < x1 and y0 < ASTRONAUT_EYES[0, 1] < y1
    result = crop_portrait(astronaut(), size=SIZE)
    assert result.image.shape == (SIZE, SIZE, 3) and result.image.dtype == np.uint8
    assert result.method == "opencv" and result.face_index == 0 and result.landmarks is None
    assert np.allclose(result.camera, OrbitCamera().params().numpy(), atol=1e-6)  # frontal default
    eyes, mouth = _canonical(SIZE)
    assert np.abs(_to_crop(result.transform, ASTRONAUT_EYES) - eyes).max() < 0.05 * SIZE
    assert np.abs(_to_crop(result.transform, ASTRONAUT_MOUTH) - mouth).max() < 0.1 * SIZE  # she smiles


def test_fallback_is_reported_without_network_or_download(monkeypatch: pytest.MonkeyPatch,
                                                          caplog: pytest.LogCaptureFixture) -> None:
    import face_alignment

    def forbidden(*args, **kwargs):
        raise AssertionError("FaceAlignment must not be built without its weights")

    monkeypatch.setattr(face_alignment, "FaceAlignment", forbidden)
    landmarks_fa.reset_cache()
    with caplog.at_level(logging.WARNING, logger=landmarks_fa.__name__):
        assert landmarks_fa.get_landmarker() is None
        assert landmarks_fa.get_landmarker() is None
    said = [r.getMessage() for r in caplog.records if "face-alignment weights not found" in r.getMessage()]
    assert len(said) == 1  # said once only
    assert crop_portrait(astronaut(), size=64).method == "dlib"  # face-alignment absent -> dlib
    monkeypatch.setattr(landmarks_dlib, "get_dlib_landmarker", lambda: None)
    assert crop_portrait(astronaut(), size=64).method == "opencv"  # both absent -> OpenCV


def test_dlib_path_when_face_alignment_is_absent(monkeypatch: pytest.MonkeyPatch) -> None:
    """68 dlib landmarks give the FFHQ crop and a PnP camera, as face-alignment's do."""
    monkeypatch.setattr(landmarks_fa, "get_landmarker", lambda allow_download=False: None)
    faces = detect_faces(astronaut())
    assert faces and faces[0].method == "dlib" and faces[0].landmarks.shape == (68, 2)
    assert [f.score for f in faces] == sorted((f.score for f in faces), reverse=True)
    result = crop_portrait(astronaut(), size=SIZE)
    assert result.method == "dlib" and result.landmarks.shape == (68, 2)
    eyes, mouth = _canonical(SIZE)
    assert np.abs(_to_crop(result.transform, ASTRONAUT_EYES) - eyes).max() < 0.03 * SIZE
    assert np.abs(_to_crop(result.transform, ASTRONAUT_MOUTH) - mouth).max() < 0.06 * SIZE
    found = OrbitCamera.from_params(result.camera)  # by PnP against dlib's template: she faces the camera
    assert abs(math.degrees(found.yaw)) < 6 and abs(math.degrees(found.pitch)) < 6
    assert not np.allclose(result.camera, OrbitCamera().params().numpy(), atol=1e-4)


@pytest.mark.parametrize("yaw_deg,pitch_deg", [(0, 0), (30, 0), (-30, 10), (20, -20), (-15, 20), (30, 20)])
def test_pnp_recovers_known_cameras(yaw_deg: float, pitch_deg: float) -> None:
    truth = OrbitCamera(yaw=math.radians(yaw_deg), pitch=math.radians(pitch_deg))
    noise = np.random.default_rng(abs(yaw_deg * 100 + pitch_deg)).normal(0.0, 0.5, (68, 2))
    landmarks = project_template(truth.params().numpy(), 256) + noise
    camera = estimate_camera(landmarks, 256)
    assert camera.shape == (25,) and camera.dtype == np.float32
    found = OrbitCamera.from_params(camera)
    assert abs(math.degrees(found.yaw) - yaw_deg) < 2.0 and abs(math.degrees(found.pitch) - pitch_deg) < 2.0
    assert np.isclose(found.radius, 2.7, atol=1e-4) and np.isclose(found.fov_deg, 18.837, atol=1e-3)


def test_landmark_expression_ignores_pose_and_sees_the_mouth() -> None:
    frontal = project_template(OrbitCamera().params().numpy(), 256)
    turned = project_template(OrbitCamera(yaw=0.4, pitch=-0.2).params().numpy(), 256)
    assert np.abs(landmark_expression(frontal, 256)).max() < 1e-4
    assert np.abs(landmark_expression(turned, 256)).max() < 1e-4
    opened = frontal.copy()
    opened[[56, 57, 58, 65, 66, 67], 1] += 12.0  # drop the lower lip by 12 px
    expression = landmark_expression(opened, 256).reshape(68, 2)
    assert expression[57, 1] < -0.01  # the lip moved down (world y is up)
    assert np.abs(np.delete(expression, [56, 57, 58, 65, 66, 67], axis=0)).max() < 0.5 * abs(expression[57, 1])


def test_landmark_path_aligns_rotated_face() -> None:
    """A face given by landmarks (as face-alignment returns them) is rotated level and framed."""
    canvas = np.full((300, 400, 3), 90, dtype=np.uint8)
    frontal = project_template(OrbitCamera().params().numpy(), 100)
    angle = math.radians(25)
    rotation = np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
    landmarks = (frontal - 50) @ rotation.T * 1.7 + np.array([220.0, 140.0])  # tilted, scaled, moved
    face = FaceDetection(box=np.r_[landmarks.min(0), landmarks.max(0)], score=1.0, landmarks=landmarks,
                         eyes=None, method="face-alignment")
    result = crop_face(canvas, face, size=SIZE)
    assert result.method == "face-alignment"
    assert np.allclose(result.landmarks, project_template(OrbitCamera().params().numpy(), SIZE), atol=1e-6)
    found = OrbitCamera.from_params(result.camera)
    assert abs(found.yaw) < 0.01 and abs(found.pitch) < 0.01


def _two_astronauts() -> np.ndarray:
    face = astronaut()[20:240, 110:330]  # 220 px around the face
    group = np.full((260, 520, 3), 200, dtype=np.uint8)
    group[20:240, 10:230] = face
    small = np.asarray(Image.fromarray(face).resize((160, 160), Image.Resampling.LANCZOS))
    group[50:210, 320:480] = small
    return group


def test_dlib_counts_faces_most_confident_first() -> None:
    with pytest.raises(NoFaceFoundError, match="no face"):
        crop_portrait(np.full((200, 200, 3), 128, dtype=np.uint8))
    faces = detect_faces(_two_astronauts())
    assert len(faces) == 2 and {f.method for f in faces} == {"dlib"} and faces[0].score >= faces[1].score
    with pytest.raises(Export3DError, match="out of range: 2 face.*most confident first"):
        crop_portrait(_two_astronauts(), size=64, face_index=2)


def test_no_face_and_face_index(tmp_path: Path, no_dlib) -> None:
    with pytest.raises(NoFaceFoundError, match="no face"):
        crop_portrait(np.full((200, 200, 3), 128, dtype=np.uint8))
    noise = np.random.default_rng(0).integers(0, 256, (256, 256, 3), dtype=np.uint8)
    with pytest.raises(NoFaceFoundError):
        crop_portrait(noise)
    group = _two_astronauts()
    faces = detect_faces(group)
    assert len(faces) == 2 and faces[0].box[0] < 230 < faces[1].box[0]  # the larger one first
    assert crop_portrait(group, size=64, face_index=1).transform[0, 0] > crop_portrait(group, size=64).transform[0, 0]
    with pytest.raises(Export3DError, match="out of range: 2 face"):
        crop_portrait(group, size=64, face_index=2)


def test_manual_crop_is_an_axis_aligned_square() -> None:
    image = np.random.default_rng(3).integers(0, 256, (100, 120, 3), dtype=np.uint8)
    result = manual_crop(image, center_xy=(60.0, 40.0), side=32, size=32)
    assert result.method == "manual" and result.landmarks is None and result.face_index is None
    assert np.array_equal(result.image, image[24:56, 44:76])  # exact pixels: same scale, no rotation
    with pytest.raises(Export3DError):
        manual_crop(image, center_xy=(60.0, 40.0), side=0, size=32)


def _save_variants(folder: Path) -> dict[str, Path]:
    rgb = astronaut()
    paths = {}
    rgba = np.dstack([rgb, np.full(rgb.shape[:2], 255, np.uint8)])
    paths["rgba"] = folder / "rgba.png"
    Image.fromarray(rgba).save(paths["rgba"])
    paths["gray16"] = folder / "gray16.png"
    gray = np.asarray(Image.fromarray(rgb).convert("L"), dtype=np.uint16) * 257
    Image.fromarray(gray).save(paths["gray16"])
    paths["cmyk"] = folder / "cmyk.jpg"
    Image.fromarray(rgb).convert("CMYK").save(paths["cmyk"], quality=90)
    paths["exif"] = folder / "exif.jpg"
    exif = Image.Exif()
    exif[0x0112] = 8  # stored turned 90 degrees clockwise; the viewer turns it back
    Image.fromarray(rgb).transpose(Image.Transpose.ROTATE_270).save(paths["exif"], exif=exif, quality=90)
    paths["gif"] = folder / "anim.gif"
    frames = [Image.fromarray(rgb), Image.new("RGB", (512, 512), (0, 0, 0))]
    frames[0].save(paths["gif"], save_all=True, append_images=frames[1:], duration=100)
    paths["unicode"] = folder / "астронавт 宇宙.png"
    Image.fromarray(rgb).save(paths["unicode"])
    return paths


@pytest.mark.parametrize("detector", ["dlib", "opencv"])
def test_awkward_files_give_a_crop_or_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                    detector: str) -> None:
    if detector == "opencv":
        monkeypatch.setattr(landmarks_dlib, "get_dlib_landmarker", lambda: None)
    for kind, path in _save_variants(tmp_path).items():
        result = crop_portrait(path, size=64)
        assert result.method == detector, kind
        eyes, _ = _canonical(64)
        assert np.abs(_to_crop(result.transform, ASTRONAUT_EYES) - eyes).max() < 0.08 * 64, kind
    (tmp_path / "empty.png").write_bytes(b"")
    (tmp_path / "text.png").write_text("hello", encoding="utf-8")
    full = tmp_path / "rgba.png"
    (tmp_path / "cut.png").write_bytes(full.read_bytes()[:2000])
    for name in ("missing.png", "empty.png", "text.png", "cut.png"):
        with pytest.raises(Export3DError) as info:
            crop_portrait(tmp_path / name)
        assert "\n" not in str(info.value)


def test_crop_command_writes_the_crop(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    parser = argparse.ArgumentParser(prog="export3d")
    add_crop_command(parser.add_subparsers(dest="command"))
    source, out = tmp_path / "in.png", tmp_path / "out" / "crop.png"
    Image.fromarray(astronaut()).save(source)
    args = parser.parse_args(["crop", str(source), "-o", str(out), "--size", "96"])
    assert args.handler(args) == 0
    assert np.asarray(Image.open(out)).shape == (96, 96, 3)
    assert "with dlib (68 landmarks, camera by PnP)" in capsys.readouterr().out
    bad = parser.parse_args(["crop", str(source), "-o", str(out), "--face-index", "3", "--overwrite"])
    with pytest.raises(Export3DError, match="out of range"):
        bad.handler(bad)


def test_face_alignment_path_when_weights_exist(monkeypatch: pytest.MonkeyPatch) -> None:
    truth = OrbitCamera(yaw=math.radians(15), pitch=math.radians(-10))
    points = project_template(truth.params().numpy(), 120) + np.array([40.0, 30.0])

    class Fake:
        def detect(self, image: np.ndarray) -> list:
            return [landmarks_fa.FaLandmarks(box=np.r_[points.min(0), points.max(0)], score=0.9, landmarks=points)]

    monkeypatch.setattr(landmarks_fa, "get_landmarker", lambda allow_download=False: Fake())
    result = crop_portrait(np.zeros((200, 200, 3), np.uint8), size=SIZE)
    assert result.method == "face-alignment" and result.landmarks.shape == (68, 2)
    found = OrbitCamera.from_params(result.camera)
    assert abs(math.degrees(found.yaw) - 15) < 3 and abs(math.degrees(found.pitch) + 10) < 3
