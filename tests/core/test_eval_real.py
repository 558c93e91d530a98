"""`export3d eval-real` on a real photo with the shipped demo model; its geometry helpers; its errors."""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from skimage.data import astronaut

from export3d_core.camera import OrbitCamera
from export3d_core.checkpoint import DEMO_CHECKPOINT
from export3d_core.cli import main
from export3d_core.data.face_pose import project_template
from export3d_core.eval.real_photo import (RealEvalSettings, basis_lambdas, depth_relief, face_mask,
                                           view_cameras)

pytestmark = pytest.mark.usefixtures("offline_hub")  # no face-alignment weights: dlib frames the photo

PHOTO_KEYS = {"photo", "method", "lam_source", "camera", "lam", "reconstruction", "identity",
              "expression_response", "depth_relief", "iod_px"}
RESPONSE_KEYS = {"per_vector", "minus", "plus", "identity_minus", "identity_plus", "threshold_iod", "responding",
                 "responding_vectors", "identity_responding"}
VIEWS = {"yaw-20", "yaw+20", "pitch-10", "pitch+10"}


@pytest.mark.skipif(not DEMO_CHECKPOINT.is_file(), reason="the demo model is not in this checkout")
def test_eval_real_writes_every_key(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    photo, out, sheet = tmp_path / "astronaut.png", tmp_path / "real.json", tmp_path / "sheet.png"
    Image.fromarray(astronaut()).save(photo)
    assert main(["eval-real", str(photo), "--json", str(out), "--sheet", str(sheet), "--no-progress"]) == 0
    report = json.loads(out.read_text(encoding="utf-8"))
    assert set(report) == {"checkpoint", "settings", "photos"} and len(report["photos"]) == 1
    item = report["photos"][0]
    assert set(item) == PHOTO_KEYS and item["method"] == "dlib" and item["lam_source"] == "estimate"
    n = len(item["lam"])
    assert set(item["reconstruction"]) == {"psnr", "ssim", "landmark_error_iod"}
    assert 5 < item["reconstruction"]["psnr"] < 60 and 0 < item["reconstruction"]["ssim"] < 1
    assert set(item["identity"]["views"]) == VIEWS and 0 < item["identity"]["photo"] < 2
    response = item["expression_response"]
    assert set(response) == RESPONSE_KEYS
    assert all(len(response[key]) == n for key in ("per_vector", "minus", "plus", "identity_minus", "identity_plus"))
    assert all(value > 0 for value in response["minus"] + response["plus"])  # every edit moves something
    assert response["responding"] == sum(v >= response["threshold_iod"] for v in response["per_vector"])
    assert item["depth_relief"] is not None and 0 < item["depth_relief"] < 1
    assert 20 < item["iod_px"] < 80  # outer eye corners at the 128 px output: about a third of the side
    size = 128
    assert np.asarray(Image.open(sheet)).shape == (3 * size, max(6, n) * size, 3)
    printed = capsys.readouterr().out
    assert "astronaut.png  (dlib" in printed and "PSNR" in printed and "depth relief" in printed


def test_eval_real_errors_are_one_line_and_write_nothing(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "real.json"
    assert main(["eval-real", str(tmp_path / "missing.png"), "--json", str(out)]) == 2
    assert "photo not found" in capsys.readouterr().err
    blank = tmp_path / "wall.png"
    Image.fromarray(np.full((200, 200, 3), 128, np.uint8)).save(blank)
    if DEMO_CHECKPOINT.is_file():
        assert main(["eval-real", str(blank), "--json", str(out), "--no-progress"]) == 2
        error = capsys.readouterr().err.strip().splitlines()
        assert error[-1].startswith("export3d eval-real: error: no face found in wall.png")
    assert main(["eval-real", str(blank), "--sheet", str(tmp_path / "sheet.jpg")]) == 2
    assert "is a .png" in capsys.readouterr().err
    assert not out.exists()


def test_views_and_basis_edits_around_the_photo() -> None:
    camera = OrbitCamera(yaw=0.1, pitch=-0.05).params().numpy()
    views = view_cameras(camera, RealEvalSettings())
    assert list(views) == ["photo", "yaw-20", "yaw+20", "pitch-10", "pitch+10"]
    assert math.isclose(views["yaw+20"].yaw - views["photo"].yaw, math.radians(20), abs_tol=1e-6)
    assert math.isclose(views["pitch-10"].pitch - views["photo"].pitch, math.radians(-10), abs_tol=1e-6)
    minus, plus = basis_lambdas([1.0, -2.0, 0.5], 10.0)[1]
    assert minus == [1.0, -12.0, 0.5] and plus == [1.0, 8.0, 0.5]


def test_depth_relief_sees_a_bump_and_not_a_flat_card() -> None:
    size = 64
    points = project_template(OrbitCamera().params().numpy(), 128)  # a frontal face in a 128 px frame
    mask = face_mask(points, 128, size)
    assert 300 < mask.sum() < 0.5 * size * size and not mask[:10].any()  # the face, not the frame
    alpha = np.ones((size, size), np.float32)
    flat = np.full((size, size), 2.7, np.float32)
    assert depth_relief(flat, alpha, mask, RealEvalSettings()) == pytest.approx(0.0)
    ys, xs = np.nonzero(mask)
    bump = flat.copy()
    centre = (int(ys.mean()), int(xs.mean()))
    bump[centre[0] - 6:centre[0] + 6, centre[1] - 6:centre[1] + 6] -= 0.2  # a nose 0.2 nearer the camera
    assert depth_relief(bump, alpha, mask, RealEvalSettings()) == pytest.approx(0.2, abs=1e-5)
    assert depth_relief(bump, np.zeros_like(alpha), mask, RealEvalSettings()) is None  # nothing opaque


def test_evaluate_photo_renders_through_a_given_session(tiny_model) -> None:
    """A session that already holds a (fitted) portrait is used as it is: nothing re-encodes it."""
    from export3d_core.data.face_pose import frontal_camera
    from export3d_core.eval.real_photo import evaluate_photo
    from export3d_core.session import PortraitSession

    synthetic = np.asarray(Image.open(Path(__file__).resolve().parents[2] / "resources" / "portraits"
                                      / "synthetic_01.png").convert("RGB"))
    session = PortraitSession(tiny_model)
    session.set_portrait(synthetic)
    renders: dict = {}
    n = tiny_model.config.n_basis
    metrics = evaluate_photo(session, synthetic, frontal_camera(), [0.0] * n, renders=renders)
    assert session.counters.encode == 1 and session.counters.render == 5 + 2 * n
    assert set(renders) == {"photo"} | VIEWS | {f"v{i + 1}{s}" for i in range(n) for s in "-+"}
    assert set(metrics) == PHOTO_KEYS - {"photo", "method", "lam_source"}
    assert len(metrics["expression_response"]["per_vector"]) == n
