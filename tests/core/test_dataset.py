"""CorpusDataset: pairs from one clip, determinism per (seed, epoch, index), clear corpus errors.

`write_toy_corpus` (simple numpy drawings in the corpus layout) is shared with the other training
tests: it is fast and needs no OpenGL.
"""
from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from export3d_core.data.corpus import (ClipMeta, CorpusInfo, FrameRecord, clip_name, frame_file,
                                       write_clip_meta, write_corpus_info)
from export3d_core.data.dataset import CorpusDataset
from export3d_core.errors import Export3DError

TOY_BETA_DIM = 12
FRONTAL_CAMERA = [1, 0, 0, 0, 0, -1, 0, 0, 0, 0, -1, 2.7, 0, 0, 0, 1,  # cam2world (OpenCV axes)
                  4.2647, 0, 0.5, 0, 4.2647, 0.5, 0, 0, 1]  # normalised intrinsics


def write_toy_corpus(root: Path, clips: int = 2, frames: int = 5, res: int = 64, seed: int = 0,
                     beta_dim: int = TOY_BETA_DIM) -> Path:
    """A face-like disc per clip (its colour = identity) whose size and mouth follow β."""
    rng = np.random.default_rng(seed)
    names = []
    for c in range(clips):
        name = clip_name(c)
        names.append(name)
        colour = tuple(int(x) for x in rng.integers(60, 230, size=3))
        records = []
        for f in range(frames):
            beta = rng.normal(size=beta_dim)
            image = np.full((res, res, 3), 25 + 20 * c, np.uint8)
            radius = int(res * (0.25 + 0.05 * np.tanh(beta[0])))
            cv2.circle(image, (res // 2, res // 2), radius, colour, -1)
            mouth = (res // 8, max(1, int(res * 0.04 * (1 + np.tanh(beta[1])))))
            cv2.ellipse(image, (res // 2, int(res * 0.62)), mouth, 0, 0, 360, (200, 40, 40), -1)
            path = root / name / frame_file(f)
            path.parent.mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(path), image[:, :, ::-1])
            records.append(FrameRecord(file=frame_file(f), beta=beta.tolist(), camera=list(FRONTAL_CAMERA)))
        write_clip_meta(root / name, ClipMeta(clip=name, frames=records))
    write_corpus_info(root, CorpusInfo(resolution=res, beta_dim=beta_dim,
                                       beta_names=[f"b{i}" for i in range(beta_dim)], clips=names))
    return root


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    return write_toy_corpus(tmp_path / "corpus", clips=3, frames=4, res=48)


def test_items_pair_two_frames_of_one_clip(corpus: Path) -> None:
    ds = CorpusDataset(corpus, input_size=32, neural_size=16, output_size=64)
    assert len(ds) == 12 and ds.num_clips == 3 and ds.beta_dim == TOY_BETA_DIM
    for epoch in range(3):
        ds.set_epoch(epoch)
        for i in range(len(ds)):
            item = ds[i]
            assert int(item["index"]) == i
            src = int(item["source_index"])
            assert src != i, "source and driving must be different frames"
            assert ds.frame_clip[src] == ds.frame_clip[i] == int(item["clip"]), "pair crosses clips"
    item = ds[5]
    assert item["source"].shape == (3, 32, 32)
    assert item["driving"].shape == (3, 64, 64)  # upsampled from 48 (bilinear)
    assert item["driving_raw"].shape == (3, 16, 16)  # area-downsampled
    assert item["beta"].shape == (TOY_BETA_DIM,) and item["camera"].shape == (25,)
    for key in ("source", "driving", "driving_raw"):
        assert item[key].min() >= -1 and item[key].max() <= 1 and item[key].dtype == torch.float32
    meta = json.loads((corpus / "clip_00001" / "meta.json").read_text())
    assert torch.allclose(item["beta"], torch.tensor(meta["frames"][1]["beta"], dtype=torch.float32))
    # The driving image is frame 5's picture: mean colour matches the file's.
    png = cv2.cvtColor(cv2.imread(str(corpus / "clip_00001" / "frames" / "000001.png")), cv2.COLOR_BGR2RGB)
    assert abs(float(item["driving"].mean()) - (png.mean() / 127.5 - 1)) < 0.02


def test_draws_depend_only_on_seed_epoch_index(corpus: Path) -> None:
    a = CorpusDataset(corpus, 32, 16, 32, seed=7)
    b = CorpusDataset(corpus, 32, 16, 32, seed=7, in_memory=False)
    for epoch in (0, 3):
        a.set_epoch(epoch)
        b.set_epoch(epoch)
        order = list(range(len(a)))
        first = [int(a[i]["source_index"]) for i in order]
        again = [int(b[i]["source_index"]) for i in reversed(order)][::-1]  # other order, other instance
        assert first == again
        assert torch.equal(a[3]["source"], b[3]["source"])  # in-memory decoding equals on-demand
    draws = set()
    for epoch in range(6):
        a.set_epoch(epoch)
        draws.add(tuple(a.draw_source(i) for i in range(len(a))))
    assert len(draws) > 1, "epochs should draw different sources"


def test_single_frame_clip_pairs_with_itself(tmp_path: Path) -> None:
    root = write_toy_corpus(tmp_path / "c", clips=2, frames=3, res=32)
    meta = json.loads((root / "clip_00001" / "meta.json").read_text())
    meta["frames"] = meta["frames"][:1]
    (root / "clip_00001" / "meta.json").write_text(json.dumps(meta))
    ds = CorpusDataset(root, 32, 16, 32)
    assert len(ds) == 4 and int(ds[3]["source_index"]) == 3


@pytest.mark.parametrize("damage, message", [
    ("no_corpus_json", "corpus.json is missing"),
    ("beta_dim", "beta has"),
    ("camera", "camera has"),
    ("missing_frame", "cannot read frame"),
    ("single_frames", "single frame"),
])
def test_bad_corpus_raises_clear_error(tmp_path: Path, damage: str, message: str) -> None:
    root = write_toy_corpus(tmp_path / "c", clips=1, frames=3, res=32)
    meta_path = root / "clip_00000" / "meta.json"
    meta = json.loads(meta_path.read_text())
    if damage == "no_corpus_json":
        (root / "corpus.json").unlink()
    elif damage == "beta_dim":
        meta["frames"][1]["beta"] = meta["frames"][1]["beta"][:5]
    elif damage == "camera":
        meta["frames"][0]["camera"] = [0.0] * 16
    elif damage == "missing_frame":
        (root / "clip_00000" / "frames" / "000002.png").unlink()
    elif damage == "single_frames":
        meta["frames"] = meta["frames"][:1]
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(Export3DError, match=message) as info:
        CorpusDataset(root, 32, 16, 32)
    assert "\n" not in str(info.value)


def test_feature_weight_marks_the_driving_frames_features(tmp_path: Path) -> None:
    from export3d_core.data.synth_command import generate_corpus

    root = generate_corpus(tmp_path / "heads", identities=1, frames=3, resolution=64, seed=0, progress=False)
    plain = CorpusDataset(root, 64, 32, 64)
    assert "weight" not in plain[0]
    weighted = CorpusDataset(root, 64, 32, 64, feature_weight=4.0)
    item = weighted[1]
    weight = item["weight"]
    assert weight.shape == (1, 64, 64) and set(weight.unique().tolist()) == {1.0, 4.0}
    assert 0.03 < (weight > 1).float().mean().item() < 0.25  # the inner face, not the whole frame
    landmarks = weighted.landmarks[1] * 64  # pixels of the 64-pixel driving frame
    for point in (landmarks[30], landmarks[36], landmarks[62]):  # nose tip, an eye corner, the lips
        x, y = (int(v) for v in point)
        assert weight[0, y, x] == 4.0
    assert weight[0, 0, 0] == weight[0, 63, 63] == 1.0  # background corners
    torch.testing.assert_close(item["driving"], plain[1]["driving"])


def test_feature_weight_needs_landmarks_and_a_sane_value(corpus: Path) -> None:
    with pytest.raises(Export3DError, match="has no landmarks"):
        CorpusDataset(corpus, 48, 24, 48, feature_weight=3.0)
    with pytest.raises(Export3DError, match=">= 1"):
        CorpusDataset(corpus, 48, 24, 48, feature_weight=0.5)
