"""Synthetic heads: determinism, cameras and landmarks, the effect of every β, the corpus and the CLI."""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pytest

from export3d_core.camera import OrbitCamera
from export3d_core.data.corpus import read_clip_meta, read_corpus_info
from export3d_core.data.head_landmarks import BETA_RANGES, HEAD_CENTRE, project_points
from export3d_core.data.head_mesh import identity_geometry, pose_mesh
from export3d_core.data.synth_command import add_synth_command, generate_corpus
from export3d_core.data.synthetic import (
    BETA_DIM, BETA_NAMES, HeadRenderer, Identity, sample_expression, sample_identity,
)
from export3d_core.errors import Export3DError

RES = 64
NOSE_TIP = 30  # iBUG index of the nose tip
NOSE_BASE = 33  # iBUG index of the base of the nose (centre)


@pytest.fixture(scope="module")
def renderer():
    with HeadRenderer(RES) as r:
        yield r


@pytest.fixture(scope="module")
def person() -> Identity:
    return sample_identity(np.random.default_rng(7))


def frontal() -> np.ndarray:
    return OrbitCamera().params().numpy().astype(np.float64)


def one_hot(name: str) -> np.ndarray:
    beta = np.zeros(BETA_DIM)
    beta[BETA_NAMES.index(name)] = BETA_RANGES[name][1]
    return beta


def test_beta_names_are_the_contract() -> None:
    assert BETA_DIM == 12 and len(BETA_NAMES) == 12
    assert BETA_NAMES[:11] == ("jaw_open", "smile", "pucker", "blink_left", "blink_right", "brow_raise_left",
                               "brow_raise_right", "brow_furrow", "cheek_puff", "gaze_yaw", "gaze_pitch")
    rng = np.random.default_rng(0)
    for _ in range(20):
        beta = sample_expression(rng)
        assert beta.shape == (12,)
        for value, name in zip(beta, BETA_NAMES):
            lo, hi = BETA_RANGES[name]
            assert lo <= value <= hi


def test_pivot_projects_to_image_centre_and_nose_tip_near_it(renderer, person) -> None:
    camera = frontal()
    centre = project_points(np.array([[0.0, 0.0, 0.2]]), camera, RES)[0]
    np.testing.assert_allclose(centre, [RES / 2, RES / 2], atol=1e-4)
    out = renderer.render(person, np.zeros(BETA_DIM), camera, (0.5, 0.5, 0.5))
    assert out.image.shape == (RES, RES, 3) and out.image.dtype == np.uint8
    assert out.landmarks2d.shape == (68, 2) and out.landmarks3d.shape == (68, 3)
    np.testing.assert_allclose(out.landmarks2d, project_points(out.landmarks3d, camera, RES))
    assert np.abs(out.landmarks2d[NOSE_TIP] - RES / 2).max() < 0.12 * RES
    # The GL image agrees with the camera math: the head is where its landmarks project.
    background = np.array([127, 127, 127])
    face = np.abs(out.image.astype(int) - background).sum(-1) > 30  # (R, R)
    x, y = np.round(out.landmarks2d[[NOSE_TIP, 8, 36, 45]]).astype(int).T
    assert face[np.clip(y, 0, RES - 1), np.clip(x, 0, RES - 1)].all()
    rows = np.nonzero(face.any(1))[0]  # the head (with hair and neck) fills the frame vertically
    assert rows.min() < 0.15 * RES


def test_face_fills_the_frame_like_ffhq(renderer, person) -> None:
    out = renderer.render(person, np.zeros(BETA_DIM), frontal())
    brow_to_chin = out.landmarks2d[8, 1] - out.landmarks2d[17:27, 1].min()
    assert 0.4 * RES < brow_to_chin < 0.65 * RES  # the face (hairline to chin) ~ 60-70 %


def test_landmarks_inside_image_for_random_views(renderer) -> None:
    rng = np.random.default_rng(3)
    for _ in range(4):
        ident = sample_identity(rng)
        cam = OrbitCamera(yaw=float(rng.uniform(-0.61, 0.61)), pitch=float(rng.uniform(-0.35, 0.35))).params()
        out = renderer.render(ident, sample_expression(rng), cam.numpy(), (0.3, 0.4, 0.5))
        assert np.all(out.landmarks2d > 0) and np.all(out.landmarks2d < RES)


def test_head_fits_the_triplane_box() -> None:
    rng = np.random.default_rng(11)
    extreme = Identity(head_width=1.1, head_height=1.06, head_depth=1.05, nose_size=1.25, chin=1.0,
                       cheeks=1.0, hair_style="bun")
    for ident in [extreme] + [sample_identity(rng) for _ in range(3)]:
        mesh = pose_mesh(identity_geometry(ident), ident, one_hot("pucker") + one_hot("cheek_puff"))
        head = mesh.head_grid.reshape(-1, 3) + HEAD_CENTRE
        assert np.abs(head).max() < 0.5


def test_jaw_open_changes_only_the_lower_face(renderer, person) -> None:
    neutral = renderer.render(person, np.zeros(BETA_DIM), frontal())
    opened = renderer.render(person, one_hot("jaw_open"), frontal())
    diff = np.abs(opened.image.astype(int) - neutral.image.astype(int)).sum(-1)  # (R, R)
    nose_line = int(np.floor(neutral.landmarks2d[NOSE_BASE, 1]))
    assert diff.sum() > 0
    assert diff[nose_line:].sum() / diff.sum() > 0.97
    gap_closed = neutral.landmarks2d[66, 1] - neutral.landmarks2d[62, 1]
    gap_open = opened.landmarks2d[66, 1] - opened.landmarks2d[62, 1]
    assert gap_open - gap_closed > 0.02 * RES  # the inner lip points part
    assert opened.landmarks2d[8, 1] > neutral.landmarks2d[8, 1]  # the chin drops


def test_every_beta_changes_the_image_distinctly(renderer, person) -> None:
    base = renderer.render(person, np.zeros(BETA_DIM), frontal()).image.astype(int)
    diffs = []
    for name in BETA_NAMES:
        image = renderer.render(person, one_hot(name), frontal()).image.astype(int)
        diff = np.abs(image - base).sum(-1)
        assert diff.sum() > 100, f"{name} has no visible effect"
        diffs.append(diff.reshape(-1) / np.linalg.norm(diff))
    similarity = np.stack(diffs) @ np.stack(diffs).T  # cosine of the change maps
    off_diagonal = similarity[~np.eye(BETA_DIM, dtype=bool)]
    assert off_diagonal.max() < 0.98


def test_left_and_right_follow_the_subject(renderer, person) -> None:
    """'left' is the subject's left (world +x): the image right in a frontal view."""
    base = renderer.render(person, np.zeros(BETA_DIM), frontal()).image.astype(int)
    for name in ("blink_left", "brow_raise_left"):
        diff = np.abs(renderer.render(person, one_hot(name), frontal()).image.astype(int) - base).sum(-1)
        assert diff[:, RES // 2:].sum() > 4 * diff[:, : RES // 2].sum(), name
    blink = renderer.render(person, one_hot("blink_left"), frontal()).landmarks2d
    open_eye = renderer.render(person, np.zeros(BETA_DIM), frontal()).landmarks2d
    assert blink[44, 1] - open_eye[44, 1] > 0.01 * RES  # the left upper lid comes down
    np.testing.assert_allclose(blink[36:42], open_eye[36:42])  # the right eye does not move


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_corpus_is_deterministic_resumable_and_reads_back(tmp_path: Path) -> None:
    a, b, c = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    generate_corpus(a, identities=2, frames=3, resolution=RES, seed=5, progress=False)
    generate_corpus(b, identities=2, frames=3, resolution=RES, seed=5, progress=False, workers=2)
    files = _files(a)
    assert files == _files(b)  # same seed, same bytes, also when rendered by two processes
    assert len([f for f in files if f.endswith(".png")]) == 6
    info = read_corpus_info(a)
    assert info.resolution == RES and info.beta_dim == BETA_DIM and info.beta_names == list(BETA_NAMES)
    assert info.clips == ["clip_00000", "clip_00001"] and info.source == "synthetic"
    meta = read_clip_meta(a / info.clips[1])
    assert meta.beta_source == "synthetic" and len(meta.frames) == 3 and len(meta.background) == 3
    Identity.from_dict(meta.identity)  # round-trips
    for frame in meta.frames:
        assert len(frame.beta) == BETA_DIM and len(frame.camera) == 25
        assert np.asarray(frame.landmarks).shape == (68, 2) and np.asarray(frame.landmarks3d).shape == (68, 3)
        assert (a / meta.clip / frame.file).is_file()
    # Clip i depends only on (seed, i): a corpus with more clips starts with the same ones.
    generate_corpus(c, identities=1, frames=3, resolution=RES, seed=6, progress=False)
    assert _files(c)["clip_00000/meta.json"] != files["clip_00000/meta.json"]
    # Resume: a clip without meta.json is redone, identical; finished clips are not touched.
    (a / "clip_00001" / "meta.json").unlink()
    (a / "clip_00001" / "frames" / "000002.png").unlink()
    stamp = (a / "clip_00000" / "frames" / "000000.png").stat().st_mtime_ns
    generate_corpus(a, identities=2, frames=3, resolution=RES, seed=5, progress=False)
    assert _files(a) == files
    assert (a / "clip_00000" / "frames" / "000000.png").stat().st_mtime_ns == stamp


def test_synth_command(tmp_path: Path, capsys) -> None:
    parser = argparse.ArgumentParser(prog="export3d")
    add_synth_command(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["synth", "-o", str(tmp_path / "x"), "--identities", "1", "--frames", "2",
                              "--res", "32", "--seed", "1", "--no-progress"])
    assert args.handler(args) == 0
    assert read_corpus_info(tmp_path / "x").clips == ["clip_00000"]
    for bad in (["--res", "16"], ["--identities", "0"], ["--frames", "0"], ["--seed", "-1"]):
        args = parser.parse_args(["synth", "-o", str(tmp_path / "y")] + bad)
        with pytest.raises(Export3DError):
            args.handler(args)
    with pytest.raises(SystemExit):
        parser.parse_args(["synth", "--help"])
    assert "--identities" in capsys.readouterr().out


def test_synth_refuses_held_out_seeds():
    from export3d_core.data.synth_command import TRAINING_SEED_LIMIT, validate
    from export3d_core.errors import Export3DError

    validate(1, 1, 64, TRAINING_SEED_LIMIT - 1)
    with pytest.raises(Export3DError, match="held-out"):
        validate(1, 1, 64, TRAINING_SEED_LIMIT)


def test_synth_into_a_corpus_of_another_shape_is_refused(tmp_path: Path, capsys) -> None:
    """Finished clips are skipped on resume, so another shape would mix corpora or shrink corpus.json."""
    from export3d_core.cli import main

    out = tmp_path / "corpus"
    base = ["synth", "-o", str(out), "--res", "32", "--workers", "1", "--no-progress"]
    assert main([*base, "--identities", "2", "--frames", "2", "--seed", "3"]) == 0
    before = (out / "corpus.json").read_bytes()
    capsys.readouterr()
    for change, message in ((["--identities", "1", "--frames", "2", "--seed", "3"], "already holds 2 clips"),
                            (["--identities", "2", "--frames", "4", "--seed", "3"], "holds clips of 2 frames"),
                            (["--identities", "3", "--frames", "2", "--seed", "4"], "made with another --seed")):
        assert main([*base, *change]) == 2
        captured = capsys.readouterr()
        assert "wrote" not in captured.out
        assert len(captured.err.strip().splitlines()) == 1 and message in captured.err, captured.err
        assert (out / "corpus.json").read_bytes() == before
    assert sorted(p.name for p in out.iterdir()) == ["clip_00000", "clip_00001", "corpus.json"]
    assert main([*base, "--identities", "3", "--frames", "2", "--seed", "3"]) == 0  # extending is fine
    assert read_corpus_info(out).clips == ["clip_00000", "clip_00001", "clip_00002"]
