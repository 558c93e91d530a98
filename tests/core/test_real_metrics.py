"""Real-face metrics of `export3d eval`: null + notes when models are missing, AKD and CSIM against hand
computations with stand-in models, and the one-line errors of --arcface."""
import argparse
import json
import sys
import types

import cv2
import numpy as np
import pytest
import torch

from export3d_core import Export3D, Export3DError, ModelConfig, OrbitCamera, load_checkpoint, save_checkpoint
from export3d_core.data.corpus import ClipMeta, CorpusInfo, FrameRecord, clip_name, frame_file, write_clip_meta, \
    write_corpus_info
from export3d_core.eval import real_metrics
from export3d_core.eval.clips import load_corpus
from export3d_core.eval.commands import add_eval_command
from export3d_core.eval.harness import EvalConfig
from export3d_core.faces.regressor import RegressorConfig
from export3d_core.faces.regressor_training import build_or_load_regressor
from export3d_core.eval.report import evaluate, format_table
from export3d_core.eval.runner import ModelRunner

RES = 64  # corpus side = the tiny model's input and output side
CLIPS, FRAMES = 2, 3
TINY_REGRESSOR = RegressorConfig(resolution=32, render_resolution=RES, widths=(8, 16), hidden=16,
                                 train_identities=2, frames_per_identity=2, test_identities=1, steps=2, batch_size=4)
TINY_EVAL = EvalConfig(identities=CLIPS, frames=FRAMES, resolution=RES, driving_per_clip=2, novel_views=(),
                       basis_scales=(0.0,), basis_sources=1)


# -- fixtures: a tiny model, a tiny regressor, a real-like corpus without β ----------------------------
@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    torch.manual_seed(0)
    return save_checkpoint(Export3D(ModelConfig.preset("tiny")), tmp_path_factory.mktemp("ckpt") / "m.safetensors")


@pytest.fixture(scope="module")
def regressor_path(tmp_path_factory):
    path = tmp_path_factory.mktemp("regressor") / "attribute_regressor.safetensors"
    build_or_load_regressor(path, config=TINY_REGRESSOR, progress=False, log=lambda m: None)
    return path


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """An `export3d prepare`-like corpus: source "video", beta_source "none" (zero β), smooth random frames."""
    root = tmp_path_factory.mktemp("video_corpus")
    rng = np.random.default_rng(0)
    beta_dim = ModelConfig.preset("tiny").beta_dim
    names = []
    for c in range(CLIPS):
        records = []
        for f in range(FRAMES):
            small = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)
            frame = cv2.resize(small, (RES, RES), interpolation=cv2.INTER_CUBIC)  # a blurry "face"
            path = root / clip_name(c) / frame_file(f)
            path.parent.mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(path), cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
            camera = OrbitCamera(yaw=0.1 * f, pitch=0.0).params()
            records.append(FrameRecord(frame_file(f), [0.0] * beta_dim, [float(v) for v in camera]))
        write_clip_meta(root / clip_name(c), ClipMeta(clip_name(c), records, beta_source="none"))
        names.append(clip_name(c))
    write_corpus_info(root, CorpusInfo(RES, beta_dim, [f"b{i}" for i in range(beta_dim)], names, "video"))
    return root


@pytest.fixture
def empty_hub(tmp_path):
    """A torch hub folder without face-alignment's weights (the real 'missing' path, no download)."""
    before = torch.hub.get_dir()
    torch.hub.set_dir(str(tmp_path / "hub"))
    yield tmp_path / "hub" / "checkpoints"
    torch.hub.set_dir(before)


def _same_identity_pairs(checkpoint, corpus):
    """(sources, drivings, outputs) of the same-identity protocol, rebuilt here from the corpus."""
    model, _ = load_checkpoint(checkpoint)
    runner = ModelRunner(model, batch_size=TINY_EVAL.batch_size, progress=False)
    sources, drivings, frames, betas, cameras = [], [], [], [], []
    for clip in load_corpus(corpus):
        s = clip.source_index()
        for d in clip.driving_indices(TINY_EVAL.driving_per_clip):
            frames.append(clip.frames[s])
            betas.append(clip.betas[d])
            cameras.append(clip.cameras[d])
            sources.append(runner.target(clip.frames[s]))
            drivings.append(runner.target(clip.frames[d]))
    outputs = runner.generate(frames, np.stack(cameras), betas=np.stack(betas))
    return sources, drivings, outputs


def _run(argv):
    parser = argparse.ArgumentParser(prog="export3d")
    add_eval_command(parser.add_subparsers(dest="command"))
    args = parser.parse_args(argv)
    return args.handler(args)


# -- stand-in models -----------------------------------------------------------------------------------
BASE_POINTS = np.stack([np.linspace(10, 50, 68), np.linspace(20, 40, 68)], axis=1)  # (68, 2)


def fake_points(image):
    """Landmarks that move with the image: the base layout shifted by the mean red and green levels."""
    return BASE_POINTS + np.array([image[..., 0].mean(), image[..., 1].mean()]) / 16.0  # (68, 2)


class FakeLandmarker:
    def __init__(self):
        self.seen = 0

    def detect(self, image):
        self.seen += 1
        low = types.SimpleNamespace(landmarks=np.zeros((68, 2)), score=0.1)  # a weaker face: must be ignored
        return [low, types.SimpleNamespace(landmarks=fake_points(image), score=0.9)]


def fake_embedding(batch):
    """(1, 3, 112, 112) -> (1, 3 * 7 * 7): block means, plus an offset so no vector is zero."""
    return batch.reshape(1, 3, 7, 16, 7, 16).mean(axis=(3, 5)).reshape(1, -1) + 0.25


class FakeSession:
    def __init__(self):
        self.shapes = []

    def get_inputs(self):
        return [types.SimpleNamespace(name="data", shape=[1, 3, 112, 112])]

    def run(self, output_names, feeds):
        batch = feeds["data"]
        self.shapes.append((batch.shape, batch.dtype))
        return [fake_embedding(batch)]


def arcface_input(image):
    """The preprocessing the spec asks for, written out: 112x112 RGB, (x - 127.5) / 127.5, NCHW."""
    resized = cv2.resize(image, (112, 112), interpolation=cv2.INTER_LINEAR).astype(np.float32)  # 64 -> 112: enlarge
    return ((resized - 127.5) / 127.5).transpose(2, 0, 1)[None]


def _cosine(a, b):
    return float(np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b)))


# -- tests ---------------------------------------------------------------------------------------------
def test_missing_models_give_null_and_notes(tmp_path, corpus, checkpoint, regressor_path, empty_hub, capsys):
    out = tmp_path / "eval.json"
    code = _run(["eval", "--checkpoint", str(checkpoint), "--data", str(corpus), "--regressor", str(regressor_path),
                 "--json", str(out), "--no-progress", "--identities", str(CLIPS), "--scales", "0"])
    assert code == 0
    data = json.loads(out.read_text())
    assert data["real_data"] is True and data["notes"]
    same = data["same_identity"]["real_face"]
    for row in ("model", "copy_source"):
        assert same[row] == {"akd": None, "csim": None, "aed": None, "apd": None}
    notes = " | ".join(same["notes"])
    assert "face-alignment weights" in notes and str(empty_hub) in notes  # says where the weights belong
    assert "CSIM needs --arcface MODEL.onnx" in notes
    assert "not bundled" in notes and "driving side" not in notes  # beta_source "none": no coefficients at all
    cross = data["cross_identity"]["real_face"]
    assert cross["model"] == {"csim": None, "aed": None, "apd": None} and "copy_driving" in cross
    # the synthetic-proxy keys stay numbers
    assert isinstance(data["same_identity"]["model"]["psnr"], float)
    table = capsys.readouterr().out
    assert "AKD (px)" in table and "n/a (AKD needs the face-alignment weights)" in table
    assert "n/a (CSIM needs --arcface MODEL.onnx)" in table


def test_akd_and_csim_with_stand_in_models(tmp_path, corpus, checkpoint, regressor_path, monkeypatch):
    landmarker, session = FakeLandmarker(), FakeSession()
    monkeypatch.setattr(real_metrics, "build_landmarker", lambda: (landmarker, None))
    monkeypatch.setattr(real_metrics, "onnx_session", lambda path: session)
    model_file = tmp_path / "arcface.onnx"
    model_file.write_bytes(b"stand-in")
    result = evaluate(checkpoint, data=corpus, regressor=regressor_path, config=TINY_EVAL, progress=False,
                      arcface=model_file, log=lambda m: None)
    same = result["same_identity"]["real_face"]
    sources, drivings, outputs = _same_identity_pairs(checkpoint, corpus)
    assert len(outputs) == result["same_identity"]["pairs"] == CLIPS * TINY_EVAL.driving_per_clip
    # AKD: mean over pairs of the mean |Δ| over the 136 landmark coordinates, in output pixels
    expected_akd = np.mean([np.abs(fake_points(o) - fake_points(d)).mean() for o, d in zip(outputs, drivings)])
    copy_akd = np.mean([np.abs(fake_points(s) - fake_points(d)).mean() for s, d in zip(sources, drivings)])
    assert same["model"]["akd"] == pytest.approx(expected_akd, rel=1e-6)
    assert same["copy_source"]["akd"] == pytest.approx(copy_akd, rel=1e-6)
    assert expected_akd != pytest.approx(copy_akd)  # the two rows measure different images
    # CSIM: cosine of ArcFace embeddings of source and generated image
    expected_csim = np.mean([_cosine(fake_embedding(arcface_input(s))[0], fake_embedding(arcface_input(o))[0])
                             for s, o in zip(sources, outputs)])
    assert same["model"]["csim"] == pytest.approx(expected_csim, rel=1e-6)
    assert same["copy_source"]["csim"] == pytest.approx(1.0)
    assert set(session.shapes) == {((1, 3, 112, 112), np.dtype(np.float32))}
    # AED/APD stay null with their note; AKD/CSIM have no "missing" reason any more
    assert same["model"]["aed"] is None and set(same["missing"]) == {"aed", "apd"}
    cross = result["cross_identity"]["real_face"]
    assert cross["copy_source"]["csim"] == pytest.approx(1.0) and cross["model"]["csim"] < 1.0
    assert "akd" not in cross["model"]
    table = format_table(result)
    assert f"{same['model']['akd']:.3f}" in table and "n/a (AED/APD" in table


def test_arcface_errors_are_one_line(tmp_path, corpus, checkpoint, monkeypatch):
    with pytest.raises(Export3DError, match="--arcface .*missing.onnx: no such file") as caught:
        _run(["eval", "--checkpoint", str(checkpoint), "--data", str(corpus), "--arcface",
              str(tmp_path / "missing.onnx")])
    assert "\n" not in str(caught.value)
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not a model")

    class BrokenRuntime(types.ModuleType):
        @staticmethod
        def InferenceSession(path, providers=None):
            raise RuntimeError("[ONNXRuntimeError] : 7 : INVALID_PROTOBUF : Load model failed\nmore detail")

    monkeypatch.setitem(sys.modules, "onnxruntime", BrokenRuntime("onnxruntime"))
    with pytest.raises(Export3DError, match="cannot load the ArcFace model .*INVALID_PROTOBUF") as caught:
        real_metrics.build_embedder(bad)
    assert "\n" not in str(caught.value)
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # not installed: import raises ImportError
    embedder, note = real_metrics.build_embedder(bad)
    assert embedder is None and "pip install onnxruntime" in note


def test_deep3d_corpora_say_only_the_driving_side_has_coefficients(empty_hub):
    metrics = real_metrics.build_real_metrics(None, {"deep3d"})
    assert "only the driving side" in metrics.notes["aed"] and metrics.notes["apd"] == metrics.notes["aed"]
    assert "only the driving side" not in real_metrics.build_real_metrics(None, {"landmarks"}).notes["aed"]
    assert metrics.landmarker is None and "face-alignment weights" in metrics.notes["akd"]


def test_real_data_detection(corpus):
    clips = load_corpus(corpus)
    assert real_metrics.is_real_data(corpus, clips)
    assert real_metrics.is_real_data(None, clips)  # no synthetic identity on any clip
    clips[0].identity = object()
    assert not real_metrics.is_real_data(None, clips)
    assert real_metrics.beta_sources(corpus, [c.name for c in clips]) == {"none"}
