"""Evaluation harness: metrics against hand values, held-out seeds, the regressor file, the JSON shape,
the copy-source baseline, the basis grid and the `export3d eval` command."""
import argparse
import json
import math

import cv2
import numpy as np
import pytest
import torch
from PIL import Image
from skimage.metrics import structural_similarity

from export3d_core import Export3DError, save_checkpoint
from export3d_core.data.corpus import ClipMeta, CorpusInfo, FrameRecord, clip_name, frame_file, write_clip_meta, \
    write_corpus_info
from export3d_core.data.dataset import resize_rgb
from export3d_core.data import synthetic_views as views
from export3d_core.eval.basis import meaningful_vectors, sweep_grid
from export3d_core.eval.clips import generate_heldout, load_corpus
from export3d_core.eval.commands import add_eval_command
from export3d_core.eval.harness import EvalConfig
from export3d_core.metrics import cosine_similarity, l1_distance, psnr, ratio_over_groups, ssim, to_unit
from export3d_core.faces.regressor import RegressorConfig, load_regressor
from export3d_core.faces.regressor_training import build_or_load_regressor
from export3d_core.eval.report import evaluate, format_table

RES = 64  # side of the test heads (= the tiny model's input and output side)
TINY_REGRESSOR = RegressorConfig(resolution=32, render_resolution=RES, widths=(8, 16), hidden=16,
                                 train_identities=3, frames_per_identity=3, test_identities=2, steps=3, batch_size=8)
TINY_EVAL = EvalConfig(identities=3, frames=3, resolution=RES, driving_per_clip=2, novel_views=((0.3, 0.0), (0.0, 0.2)),
                       basis_scales=(-5.0, 0.0, 10.0), basis_sources=1)


# -- metrics -----------------------------------------------------------------------------------------
def _pair(seed=0, shape=(32, 40, 3), noise=30):
    rng = np.random.default_rng(seed)
    a = rng.integers(0, 256, shape, dtype=np.uint8)
    b = np.clip(a.astype(int) + rng.integers(-noise, noise + 1, shape), 0, 255).astype(np.uint8)
    return a, b


def test_psnr_of_a_known_mse():
    a = np.full((16, 16, 3), 100, np.uint8)
    b = a + np.uint8(10)  # every pixel off by 10/255: MSE = (10/255)^2
    assert float(psnr(a, b)) == pytest.approx(20 * math.log10(25.5), abs=1e-9)
    assert float(psnr(a, a)) == pytest.approx(100.0)  # identical images: capped, finite


def test_float_and_uint8_inputs_agree():
    a, b = _pair()
    ta = torch.from_numpy(a).permute(2, 0, 1).double() / 127.5 - 1  # (3, H, W) in [-1, 1]
    tb = torch.from_numpy(b).permute(2, 0, 1).double() / 127.5 - 1
    assert torch.allclose(to_unit(ta), to_unit(a))
    assert float(psnr(ta, tb)) == pytest.approx(float(psnr(a, b)), abs=1e-9)
    assert float(ssim(ta, tb)) == pytest.approx(float(ssim(a, b)), abs=1e-9)


def test_ssim_identity_and_reference():
    a, b = _pair(noise=40)
    assert float(ssim(a, a)) == pytest.approx(1.0, abs=1e-12)
    reference = structural_similarity(a / 255.0, b / 255.0, gaussian_weights=True, sigma=1.5,
                                      use_sample_covariance=False, data_range=1.0, channel_axis=-1)
    assert float(ssim(a, b)) == pytest.approx(reference, abs=1e-9)
    _, worse = _pair(noise=90)
    assert float(ssim(a, worse)) < float(ssim(a, b)) < 1.0
    batch = ssim(np.stack([a, a]), np.stack([a, b]))  # one value per image
    assert batch.shape == (2,) and batch[0] == pytest.approx(1.0) and batch[1] < 1


def test_vector_metrics_hand_values():
    assert l1_distance([[1.0, 2.0, 3.0]], [[2.0, 0.0, 3.0]]).item() == pytest.approx(1.0)  # (1 + 2 + 0) / 3
    assert cosine_similarity([1.0, 0.0], [0.0, 2.0]).item() == pytest.approx(0.0)
    assert cosine_similarity([1.0, 1.0], [2.0, 2.0]).item() == pytest.approx(1.0)
    assert cosine_similarity([1.0, 0.0], [-3.0, 0.0]).item() == pytest.approx(-1.0)
    with pytest.raises(ValueError):
        psnr(np.zeros((8, 8, 3), np.uint8), np.zeros((9, 8, 3), np.uint8))


# -- seeds and identities ----------------------------------------------------------------------------
def test_ratio_over_groups_and_its_standard_error_over_resampled_groups():
    rng = np.random.default_rng(3)
    copy = rng.uniform(0.1, 0.3, 40)
    groups = np.repeat(np.arange(8), 5)  # 8 identities, 5 pairs each
    model = copy * 0.5  # every identity at exactly half: any resample gives 0.5
    ratio, error = ratio_over_groups(model, copy, groups)
    assert ratio == pytest.approx(0.5) and error == pytest.approx(0.0, abs=1e-12)
    model = copy * rng.uniform(0.2, 0.8, 8).repeat(5)  # identities differ
    ratio, error = ratio_over_groups(model, copy, groups)
    assert ratio == pytest.approx(model.sum() / copy.sum()) and error > 0.02
    # four times the identities (copies with their own labels): the error halves, the ratio stays
    ratio4, error4 = ratio_over_groups(np.tile(model, 4), np.tile(copy, 4), np.arange(160) // 5)
    assert ratio4 == pytest.approx(ratio) and error4 == pytest.approx(error / 2, rel=0.15)
    assert ratio_over_groups(model[:5], copy[:5], groups[:5])[1] is None  # one identity: no error
    assert ratio_over_groups(model, copy, groups) == (ratio, error)  # seeded: reproducible


def test_heldout_seeds_are_disjoint_from_training_and_regressor_seeds(clips):
    from export3d_core.data.synth_command import clip_rng
    from export3d_core.data.synthetic import sample_identity

    assert not views.is_training_seed(views.HELDOUT_SEED) and not views.is_training_seed(views.REGRESSOR_SEED)
    assert views.is_training_seed(0) and views.REGRESSOR_SEED != views.HELDOUT_SEED
    assert all(clip.corpus_seed == views.HELDOUT_SEED for clip in clips)
    with pytest.raises(Export3DError, match="training range"):
        generate_heldout(1, 2, RES, seed=0, progress=False)
    # the held-out clips are the corpus `export3d synth --seed 10000000` writes, not a training corpus'
    for index, clip in enumerate(clips):
        identity = views.identity_from_dict(views.identity_to_dict(clip.identity))
        assert identity == sample_identity(clip_rng(views.HELDOUT_SEED, index))
        assert identity != sample_identity(clip_rng(0, index))  # the default training corpus
        assert identity != views.draw_head(views.REGRESSOR_SEED, index, 1).identity


def test_identity_vector_is_continuous_params_and_round_trips():
    head = views.draw_head(views.HELDOUT_SEED, 0, frames=3)
    vector, keys = views.identity_vector(head.identity), views.identity_keys(head.identity)
    assert vector.shape == (len(keys),) and "hair_style" not in " ".join(keys)
    assert "skin_color[2]" in keys and "nose_size" in keys
    rebuilt = views.identity_from_dict(json.loads(json.dumps(head.identity.to_dict())))
    assert rebuilt == head.identity
    assert np.array_equal(views.identity_vector(rebuilt), vector)
    other = views.draw_head(views.HELDOUT_SEED, 1, frames=3)
    assert not np.array_equal(views.identity_vector(other.identity), vector)
    assert head.betas.shape == (3, 12) and head.cameras.shape == (3, 25)


# -- fixtures: one rendered held-out set, one tiny regressor, one tiny checkpoint ----------------------
@pytest.fixture(scope="module")
def clips():
    return generate_heldout(TINY_EVAL.identities, TINY_EVAL.frames, RES, progress=False)


@pytest.fixture(scope="module")
def regressor_path(tmp_path_factory):
    path = tmp_path_factory.mktemp("regressor") / "attribute_regressor.safetensors"
    messages = []
    build_or_load_regressor(path, config=TINY_REGRESSOR, progress=False, log=messages.append)
    assert path.is_file() and any("not found" in m for m in messages)
    return path


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    from export3d_core import Export3D, ModelConfig

    torch.manual_seed(0)
    return save_checkpoint(Export3D(ModelConfig.preset("tiny")), tmp_path_factory.mktemp("ckpt") / "m.safetensors")


@pytest.fixture(scope="module")
def result(checkpoint, regressor_path, clips, tmp_path_factory):
    grid = tmp_path_factory.mktemp("grid") / "grid.png"
    return evaluate(checkpoint, regressor=regressor_path, config=TINY_EVAL, grid=grid, progress=False, clips=clips,
                    log=lambda m: None)


# -- regressor ----------------------------------------------------------------------------------------
def test_regressor_loads_what_was_built(regressor_path, clips):
    model = load_regressor(regressor_path)
    again = build_or_load_regressor(regressor_path, log=lambda m: pytest.fail("must load, not train"))
    images = clips[0].frames
    a, b = model.predict(images), again.predict(images)
    assert torch.equal(a.expression, b.expression) and torch.equal(a.identity_embedding, b.identity_embedding)
    cfg = model.config
    assert a.expression.shape == (len(images), cfg.beta_dim) and a.pose.shape == (len(images), 2)
    assert cfg.identity_dim == len(views.identity_vector(clips[0].identity)) == len(cfg.identity_names)
    accuracy = model.meta["accuracy"]
    assert {"expression_mae", "expression_mae_baseline", "pose_mae", "identity_cos_same"} <= set(accuracy)
    # any side is accepted: inputs are resized to the regressor's resolution
    big = model.predict([cv2.resize(images[0], (2 * RES, 2 * RES))])
    assert big.expression.shape == (1, cfg.beta_dim)


def test_expression_weight_trades_fit_between_the_heads():
    import dataclasses

    from export3d_core.faces.regressor_training import RenderSet, fit_regressor

    rng = np.random.default_rng(0)
    cfg = dataclasses.replace(TINY_REGRESSOR, identity_dim=5, identity_names=tuple("abcde"), steps=60,
                              batch_size=16, blur_max=0.0, noise_max=0.0)
    data = RenderSet(rng.integers(0, 256, (16, 6, 32, 32), dtype=np.uint8),
                     rng.normal(size=(16, cfg.beta_dim + 2 + 5)).astype(np.float32), np.arange(16))

    def training_errors(weight):
        model = fit_regressor(dataclasses.replace(cfg, expression_weight=weight), data, data, progress=False,
                              log=lambda m: None)
        with torch.no_grad():
            error = (model(torch.from_numpy(data.inputs).float() / 127.5 - 1) -
                     (torch.from_numpy(data.targets) - model.target_mean) / model.target_std).square().mean(dim=0)
        return float(error[:cfg.beta_dim].mean()), float(error[cfg.beta_dim:].mean())

    beta_even, rest_even = training_errors(1.0)
    beta_heavy, rest_heavy = training_errors(30.0)
    assert beta_heavy < beta_even and rest_heavy > rest_even


def test_regressor_rejects_other_files(tmp_path, checkpoint):
    with pytest.raises(Export3DError, match="not an attribute regressor"):
        load_regressor(checkpoint)
    (tmp_path / "bad.safetensors").write_bytes(b"garbage")
    with pytest.raises(Export3DError):
        load_regressor(tmp_path / "bad.safetensors")


# -- harness -----------------------------------------------------------------------------------------
def _numbers(section, keys):
    assert set(keys) <= set(section)
    for key in keys:
        assert isinstance(section[key], float) and math.isfinite(section[key]), (key, section[key])


def test_result_has_the_required_keys_and_types(result, checkpoint):
    json.loads(json.dumps(result, allow_nan=False))  # standard JSON
    _numbers(result["same_identity"]["model"], ["psnr", "ssim", "aed", "apd"])
    _numbers(result["same_identity"]["copy_source"], ["psnr", "ssim", "aed", "apd"])
    for name in ("model", "copy_source", "copy_driving"):
        _numbers(result["cross_identity"][name], ["id_sim", "aed", "apd"])
    _numbers(result["novel_view"]["model"], ["psnr", "ssim"])
    basis = result["basis"]
    n, beta_dim = 10, 12  # tiny preset: n_basis 10, synthetic β has 12 parameters
    assert isinstance(basis["meaningful"], int) and 0 <= basis["meaningful"] <= n
    assert len(basis["response"]) == n and all(len(row) == beta_dim for row in basis["response"])
    assert result["n_identities"] == TINY_EVAL.identities and result["checkpoint"] == str(checkpoint)
    # baselines that are exact by construction
    assert result["cross_identity"]["copy_source"]["id_sim"] == pytest.approx(1.0)
    assert result["cross_identity"]["copy_driving"]["aed"] == 0.0 == result["cross_identity"]["copy_driving"]["apd"]
    assert result["same_identity"]["pairs"] == TINY_EVAL.identities * TINY_EVAL.driving_per_clip
    assert "copy_source" in format_table(result)
    same = result["same_identity"]
    ratio = same["aed_ratio"]
    assert ratio["model_over_copy_source"] == pytest.approx(same["model"]["aed"] / same["copy_source"]["aed"])
    assert ratio["identities"] == TINY_EVAL.identities and ratio["standard_error"] > 0
    assert f"{ratio['model_over_copy_source']:.3f} ± {ratio['standard_error']:.3f}" in format_table(result)


def test_aed_splits_by_parameter_and_reconstruction_row_is_reported(result):
    from export3d_core.data.head_landmarks import BETA_NAMES

    same = result["same_identity"]
    _numbers(same["model_from_driving"], ["psnr", "ssim", "aed", "apd"])
    for name in ("model", "copy_source", "model_from_driving"):
        split = same[name]["aed_per_parameter"]
        assert list(split) == list(BETA_NAMES)
        assert np.mean(list(split.values())) == pytest.approx(same[name]["aed"], abs=1e-4)
    # the reconstruction starts from the driving frame, the re-enactment from the source frame
    assert same["model_from_driving"]["psnr"] != same["model"]["psnr"]
    assert "model_from_driving" in format_table(result)


def test_code_information_is_the_models_own_on_fresh_synthetic_draws(result, checkpoint):
    from export3d_core.checkpoint import load_checkpoint
    from export3d_core.data.head_landmarks import BETA_NAMES
    from export3d_core.data.synthetic import sample_expression
    from export3d_core.eval.harness import CODE_BETAS, CODE_BETAS_SEED
    from export3d_core.nn.code_information import code_information

    found = result["basis"]["code_information"]
    assert list(found) == list(BETA_NAMES)
    rng = np.random.default_rng(CODE_BETAS_SEED)
    betas = torch.tensor(np.stack([sample_expression(rng) for _ in range(CODE_BETAS)]), dtype=torch.float32)
    expected = code_information(load_checkpoint(checkpoint)[0].lebs, betas)
    assert list(found.values()) == pytest.approx(expected.tolist(), abs=1e-4)
    assert f"mean {np.mean(list(found.values())):.2f}" in format_table(result)


def test_regressor_check_reads_the_driving_frames_against_their_true_beta(result, clips, regressor_path):
    regressor = load_regressor(regressor_path)
    true_copy, driving_error = [], []
    for clip in clips:
        source = clip.source_index()
        drivers = clip.driving_indices(TINY_EVAL.driving_per_clip)
        found = regressor.predict([resize_rgb(clip.frames[d], RES) for d in drivers]).expression.numpy()
        for row, d in zip(found, drivers):
            true_copy.append(np.abs(clip.betas[source] - clip.betas[d]).mean())
            driving_error.append(np.abs(row - clip.betas[d]).mean())
    check = result["same_identity"]["regressor_check"]
    assert check["true_copy_source_aed"] == pytest.approx(np.mean(true_copy), rel=1e-5) and check["true_copy_source_aed"] > 0
    assert check["driving_aed"] == pytest.approx(np.mean(driving_error), rel=1e-4)
    assert check["driving_apd"] >= 0 and "regressor on the driving frames" in format_table(result)


def test_copy_source_psnr_matches_a_direct_computation(result, clips):
    from export3d_core import OrbitCamera

    values = []
    for clip in clips:
        poses = [OrbitCamera.from_params(camera) for camera in clip.cameras]
        source = int(np.argmin([p.yaw ** 2 + p.pitch ** 2 for p in poses]))  # the most frontal frame
        drivers = [i for i in range(len(clip.frames)) if i != source][:TINY_EVAL.driving_per_clip]
        for d in drivers:
            a, b = resize_rgb(clip.frames[source], RES).astype(float), resize_rgb(clip.frames[d], RES).astype(float)
            values.append(10 * math.log10(255.0 ** 2 / np.mean((a - b) ** 2)))
    assert len(values) == result["same_identity"]["pairs"]
    assert result["same_identity"]["copy_source"]["psnr"] == pytest.approx(np.mean(values), abs=1e-9)


def test_basis_grid_png_has_rows_by_columns_cells(result):
    with Image.open(result["basis"]["grid"]) as image:
        assert image.size == (len(TINY_EVAL.basis_scales) * RES, 10 * RES)  # (width, height)
        assert image.mode == "RGB"


def test_cross_identity_needs_two_identities(clips):
    from export3d_core.eval.harness import Harness

    section = Harness(None, None, TINY_EVAL).cross_identity(clips[:1])  # skipped before any model call
    assert section["model"] == {"id_sim": None, "aed": None, "apd": None} and "2 identities" in section["note"]


def test_sweep_grid_places_cells():
    cells = [np.full((4, 5, 3), i, np.uint8) for i in range(6)]
    grid = sweep_grid(cells, rows=2, columns=3)
    assert grid.shape == (8, 15, 3) and grid[4, 10, 0] == 5 and grid[0, 5, 0] == 1


def test_meaningful_counts_moving_distinct_responses():
    response = np.array([
        [1.0, 0.0, 0.0],  # moves the first parameter
        [0.98, 0.1, 0.0],  # nearly the same direction as row 0: duplicate
        [0.0, 1.0, 0.0],  # a new direction
        [0.0, 0.0, 1.0],  # new, but too weak to count
        [0.5, 0.5, 0.0],  # cosine 0.71 with rows 0 and 2: distinct
    ])
    strength = np.array([2.0, 2.0, 1.0, 0.1, 0.8])
    assert meaningful_vectors(response, strength, move_threshold=0.5, duplicate_cosine=0.9) == [0, 2, 4]
    assert meaningful_vectors(response, strength, move_threshold=1.5, duplicate_cosine=0.9) == [0]


# -- the command ---------------------------------------------------------------------------------------
def _write_corpus(root, clips):
    """The clips in the corpus layout, without identities (as a video corpus would be)."""
    names = []
    for c, clip in enumerate(clips):
        records = []
        for f, frame in enumerate(clip.frames):
            path = root / clip_name(c) / frame_file(f)
            path.parent.mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(path), cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
            records.append(FrameRecord(frame_file(f), clip.betas[f].tolist(), clip.cameras[f].tolist()))
        write_clip_meta(root / clip_name(c), ClipMeta(clip_name(c), records, beta_source="landmarks"))
        names.append(clip_name(c))
    write_corpus_info(root, CorpusInfo(RES, clips[0].betas.shape[1], [f"b{i}" for i in range(12)], names, "video"))


def _run(argv):
    parser = argparse.ArgumentParser(prog="export3d")
    add_eval_command(parser.add_subparsers(dest="command"))
    args = parser.parse_args(argv)
    return args.handler(args)


def test_eval_command_on_a_corpus_dir(tmp_path, clips, checkpoint, regressor_path, capsys):
    _write_corpus(tmp_path / "corpus", clips[:2])
    assert len(load_corpus(tmp_path / "corpus")) == 2
    out = tmp_path / "eval.json"
    code = _run(["eval", "--checkpoint", str(checkpoint), "--data", str(tmp_path / "corpus"), "--regressor",
                 str(regressor_path), "--json", str(out), "--no-progress", "--identities", "5", "--scales", "0,10"])
    assert code == 0
    data = json.loads(out.read_text())
    assert data["n_identities"] == 2 and data["checkpoint"] == str(checkpoint)
    assert data["novel_view"]["model"] == {"psnr": None, "ssim": None} and "skipped" in data["novel_view"]["note"]
    _numbers(data["same_identity"]["model"], ["psnr", "ssim", "aed", "apd"])
    # a corpus' own β measure the code (no synthetic draws); two short clips are too few for it
    assert sum(len(c.frames) for c in clips[:2]) < 16 and data["basis"]["code_information"] is None
    assert "same identity" in capsys.readouterr().out


def test_eval_command_errors(tmp_path, monkeypatch):
    import export3d_core.checkpoint as ckpt

    monkeypatch.setattr(ckpt, "DEMO_CHECKPOINT", tmp_path / "missing.safetensors")
    with pytest.raises(Export3DError, match="demo model is missing"):
        _run(["eval"])
    with pytest.raises(Export3DError, match="--identities"):
        _run(["eval", "--identities", "0"])
    with pytest.raises(Export3DError, match="--scales"):
        _run(["eval", "--checkpoint", "x", "--scales", "1,two"])
    with pytest.raises(Export3DError, match="not a directory"):
        _run(["eval", "--checkpoint", "x", "--data", str(tmp_path / "nope")])
