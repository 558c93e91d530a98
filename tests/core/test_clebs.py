"""CLeBS: InfoNCE on a hand-made example, same-clip negatives, pre-training, frozen loading."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from test_dataset import write_toy_corpus

from export3d_core.config import ModelConfig, TrainConfig
from export3d_core.data.dataset import CorpusDataset
from export3d_core.errors import Export3DError
from export3d_core.model import Export3D
from export3d_core.nn.code_information import code_information
from export3d_core.nn.lebs import LeBS
from export3d_core.train.clebs import (CLEBS_FILE, ENCODER_FILE, draw_negatives, info_nce,
                                       load_lebs_frozen, one_parameter_negatives, pretrain_clebs, read_lebs_extra)
from export3d_core.train.logs import read_jsonl


def test_info_nce_hand_made_example() -> None:
    # d = 2, tau = 0.5. Query (2, 0) and positive (1, 0): cosine 1 -> logit 2.
    # Negatives (0, 3) (cosine 0 -> logit 0) and (-1, 0) (cosine -1 -> logit -2).
    # loss = -log(e^2 / (e^2 + e^0 + e^-2)) = log(1 + e^-2 + e^-4)
    #      = log(1 + 0.1353353 + 0.0183156) = log(1.1536509) = 0.1429323
    query = torch.tensor([[2.0, 0.0]])
    positive = torch.tensor([[1.0, 0.0]])
    negatives = torch.tensor([[[0.0, 3.0], [-1.0, 0.0]]])
    loss = info_nce(query, positive, negatives, tau=0.5)
    assert float(loss) == pytest.approx(0.1429323, abs=1e-6)
    # Swapping the positive with the worst negative: logit -2 vs {2, 0}:
    # loss = log(1 + e^4 + e^2) = log(1 + 54.59815 + 7.389056) = log(62.98721) = 4.1429323
    swapped = info_nce(query, torch.tensor([[-1.0, 0.0]]), torch.tensor([[[0.0, 3.0], [1.0, 0.0]]]), tau=0.5)
    assert float(swapped) == pytest.approx(4.1429323, abs=1e-5)
    # Batch mean: the two examples together average.
    both = info_nce(torch.cat([query, query]), torch.tensor([[1.0, 0.0], [-1.0, 0.0]]),
                    torch.cat([negatives, torch.tensor([[[0.0, 3.0], [1.0, 0.0]]])]), tau=0.5)
    assert float(both) == pytest.approx((0.1429323 + 4.1429323) / 2, abs=1e-5)


def test_info_nce_mask_removes_negatives() -> None:
    # Masking the (-1, 0) negative leaves log(1 + e^-2) = 0.1269280.
    query, positive = torch.tensor([[1.0, 0.0]]), torch.tensor([[1.0, 0.0]])
    negatives = torch.tensor([[[0.0, 1.0], [-1.0, 0.0]]])
    loss = info_nce(query, positive, negatives, 0.5, mask=torch.tensor([[True, False]]))
    assert float(loss) == pytest.approx(math.log1p(math.exp(-2)), abs=1e-6)
    # No negative at all (a one-frame clip): log(1) = 0, and no NaN.
    none = info_nce(query, positive, negatives, 0.5, mask=torch.zeros(1, 2, dtype=torch.bool))
    assert float(none) == 0.0


def test_negatives_come_from_other_frames_of_the_same_clip(tmp_path: Path) -> None:
    root = write_toy_corpus(tmp_path / "c", clips=3, frames=5, res=32)
    ds = CorpusDataset(root, 32, 16, 32)
    rng = np.random.default_rng(0)
    indices = np.arange(len(ds))
    chosen, mask = draw_negatives(ds, indices, k=3, rng=rng)
    assert chosen.shape == (15, 3) and mask.all()
    for row, index in enumerate(indices):
        assert index not in chosen[row]
        assert (ds.frame_clip[chosen[row]] == ds.frame_clip[index]).all()
        assert len(set(chosen[row])) == 3  # without replacement
    # Fewer frames than K + 1: all 4 others, the rest masked.
    chosen, mask = draw_negatives(ds, indices[:2], k=32, rng=rng)
    assert mask.sum(axis=1).tolist() == [4, 4]
    assert set(chosen[0][mask[0]]) == {1, 2, 3, 4}


def test_pretrain_clebs_writes_weights_that_load_frozen(tmp_path: Path) -> None:
    root = write_toy_corpus(tmp_path / "c", clips=2, frames=6, res=64)
    cfg = ModelConfig.preset("tiny")
    ds = CorpusDataset(root, cfg.input_size, cfg.neural_size, cfg.output_size)
    tcfg = TrainConfig(clebs_negatives=4, batch_size=4, lr_clebs=1e-3)
    path = pretrain_clebs(ds, cfg, tcfg, tmp_path / "run", steps=8, progress=False)
    assert path == tmp_path / "run" / CLEBS_FILE and (tmp_path / "run" / ENCODER_FILE).is_file()
    log = read_jsonl(tmp_path / "run" / "clebs_log.jsonl")
    assert [r["step"] for r in log] == list(range(1, 9))
    assert all(math.isfinite(r["loss"]) and r["loss"] >= 0 for r in log)

    torch.manual_seed(123)
    model = Export3D(cfg)
    before = model.lebs.basis_weight.detach().clone()
    load_lebs_frozen(model.lebs, tmp_path / "run")  # a run directory works as well as the file
    assert not any(p.requires_grad for p in model.lebs.parameters())
    assert not torch.equal(before, model.lebs.basis_weight)
    assert torch.allclose(model.basis() @ model.basis().T, torch.eye(cfg.n_basis), atol=1e-5)

    other = Export3D(cfg.replace(beta_dim=7))
    with pytest.raises(Export3DError, match="do not fit"):
        load_lebs_frozen(other.lebs, path)
    with pytest.raises(Export3DError, match="not found"):
        load_lebs_frozen(model.lebs, tmp_path / "missing")


def test_pretrain_clebs_learns(tmp_path: Path) -> None:
    """On a toy clip the InfoNCE loss falls clearly below its start within a few dozen steps."""
    root = write_toy_corpus(tmp_path / "c", clips=1, frames=9, res=64)
    cfg = ModelConfig.preset("tiny")
    ds = CorpusDataset(root, cfg.input_size, cfg.neural_size, cfg.output_size)
    tcfg = TrainConfig(clebs_negatives=8, batch_size=8, lr_clebs=1e-3)
    pretrain_clebs(ds, cfg, tcfg, tmp_path / "run", steps=40, progress=False)
    losses = [r["loss"] for r in read_jsonl(tmp_path / "run" / "clebs_log.jsonl")]
    assert np.mean(losses[-5:]) < 0.7 * np.mean(losses[:5])


def test_train_with_clebs_keeps_lebs_frozen_across_resume(tmp_path: Path) -> None:
    from export3d_core.checkpoint import load_checkpoint
    from export3d_core.train.__main__ import main as train_main
    from export3d_core.train.checkpointing import load_training_state

    root = write_toy_corpus(tmp_path / "c", clips=1, frames=4, res=64)
    assert train_main(["pretrain-clebs", "--data", str(root), "--out", str(tmp_path / "clebs"), "--steps", "2",
                       "--batch", "2", "--no-progress"]) == 0
    from safetensors.torch import load_file
    pretrained = load_file(str(tmp_path / "clebs" / CLEBS_FILE))
    common = ["--data", str(root), "--out", str(tmp_path / "run"), "--batch", "2", "--no-progress"]
    assert train_main([*common, "--steps", "2", "--clebs", str(tmp_path / "clebs")]) == 0
    assert train_main([*common, "--steps", "4", "--resume"]) == 0  # no --clebs: frozen from the checkpoint
    model, _ = load_checkpoint(tmp_path / "run")
    for name, value in pretrained.items():
        assert torch.equal(model.lebs.state_dict()[name], value), f"LeBS {name} moved during training"
    _, meta = load_training_state(tmp_path / "run")
    assert meta["extra"]["frozen_lebs"] is True and meta["step"] == 4
    optimised = meta["opt_g"]["param_groups"][0]["params"]  # the frozen LeBS is not in G's optimiser
    assert len(optimised) == len(list(model.parameters())) - len(list(model.lebs.parameters()))


def test_one_parameter_negatives_move_exactly_one_parameter_far_enough() -> None:
    rng = np.random.default_rng(0)
    low, high = np.array([0.0, -1.0, 0.5, 0.0]), np.array([1.0, 1.0, 0.5, 2.0])  # parameter 2 is constant
    betas = rng.uniform(low, high, size=(64, 4))
    negatives = one_parameter_negatives(betas, 16, low, high, rng, min_gap=0.25)
    assert negatives.shape == (64, 16, 4)
    moved = negatives != betas[:, None, :]  # (B, k, D)
    assert np.all(moved.sum(axis=-1) == 1)  # exactly one parameter each
    assert not moved[..., 2].any()  # never the constant one
    assert moved[..., [0, 1, 3]].any(axis=(0, 1)).all()  # every other parameter gets chosen
    gap = np.abs(negatives - betas[:, None, :]).max(axis=-1)  # (B, k)
    span = np.broadcast_to(high - low, moved.shape)[moved].reshape(gap.shape)
    assert np.all(gap >= 0.25 * span - 1e-12)
    assert np.all((negatives >= low - 1e-12) & (negatives <= high + 1e-12))
    with pytest.raises(Export3DError, match="constant"):
        one_parameter_negatives(betas, 2, low, low, rng)


def test_code_information_sees_which_parameters_the_coefficients_keep() -> None:
    cfg = ModelConfig.preset("tiny")  # beta_dim 12, 10 coefficients: at least 2 parameters must be lost
    lebs = LeBS(cfg)
    torch.manual_seed(0)
    with torch.no_grad():
        # λ = a (near-linear: small pre-activations) function of β[0..9]; β[10], β[11] are dropped
        lebs.mlp[0].weight.normal_(0, 0.01)
        lebs.mlp[0].weight[:, 10:] = 0
    betas = torch.rand(2000, cfg.beta_dim)
    r2 = code_information(lebs, betas)
    assert r2.shape == (cfg.beta_dim,)
    assert float(r2[:10].min()) > 0.95
    assert float(r2[10:].abs().max()) < 0.05
    with pytest.raises(Export3DError, match="at least"):
        code_information(lebs, betas[:10])


def test_pretrain_clebs_with_beta_negatives_records_code_information(tmp_path: Path,
                                                                      capsys: pytest.CaptureFixture) -> None:
    from export3d_core.train.__main__ import main as train_main

    root = write_toy_corpus(tmp_path / "c", clips=2, frames=10, res=64)
    common = ["pretrain-clebs", "--data", str(root), "--steps", "2", "--batch", "2", "--no-progress"]
    assert train_main([*common, "--out", str(tmp_path / "bad"), "--beta-negatives", "-1"]) == 2
    assert "--beta-negatives must be >= 0" in capsys.readouterr().err
    assert train_main([*common, "--out", str(tmp_path / "run"), "--beta-negatives", "4"]) == 0
    err = capsys.readouterr().err
    extra = read_lebs_extra(tmp_path / "run" / CLEBS_FILE)
    assert extra["steps"] == 2 and len(extra["code_r2"]) == 12 and extra["beta_names"][0] == "b0"
    assert f"mean {np.mean(extra['code_r2']):.2f}" in err
    # too few expressions to measure: said, not guessed
    small = write_toy_corpus(tmp_path / "small", clips=1, frames=4, res=64)
    assert train_main([*common[:2], str(small), *common[3:], "--out", str(tmp_path / "small_run")]) == 0
    assert "code information not measured" in capsys.readouterr().err
    assert "code_r2" not in read_lebs_extra(tmp_path / "small_run" / CLEBS_FILE)


def test_unfreeze_lebs_trains_the_source_lebs_in_a_new_run_and_keeps_doing_so(tmp_path: Path) -> None:
    from export3d_core.train.__main__ import main as train_main
    from export3d_core.train.checkpointing import load_training_state, split_prefix

    root = write_toy_corpus(tmp_path / "c", clips=1, frames=4, res=64)
    assert train_main(["pretrain-clebs", "--data", str(root), "--out", str(tmp_path / "clebs"), "--steps", "2",
                       "--batch", "2", "--no-progress"]) == 0
    common = ["--data", str(root), "--batch", "2", "--no-progress", "--lr-g", "1e-2"]
    assert train_main([*common, "--out", str(tmp_path / "src"), "--steps", "1", "--clebs", str(tmp_path / "clebs")]) == 0
    source = split_prefix(load_training_state(tmp_path / "src")[0], "model")
    grown = str(tmp_path / "grown")
    assert train_main([*common, "--out", grown, "--steps", "2", "--unfreeze-lebs"]) == 2  # needs --init-from
    assert train_main([*common, "--out", grown, "--steps", "2", "--init-from", str(tmp_path / "src"),
                       "--unfreeze-lebs"]) == 0
    tensors, meta = load_training_state(grown)
    assert meta["extra"]["frozen_lebs"] is False
    lebs_names = [k for k in source if k.startswith("lebs.")]
    moved = split_prefix(tensors, "model")
    assert all(not torch.equal(moved[k], source[k]) for k in lebs_names), "LeBS stayed frozen"
    assert train_main([*common, "--out", grown, "--steps", "3", "--resume"]) == 0  # resumed: still trained
    again = split_prefix(load_training_state(grown)[0], "model")
    assert any(not torch.equal(again[k], moved[k]) for k in lebs_names)


def _group_rates(run: Path) -> dict[str, float]:
    from export3d_core.train.checkpointing import load_training_state

    return {group.get("name"): group["lr"] for group in load_training_state(run)[1]["opt_g"]["param_groups"]}


def test_lr_lebs_gives_the_trained_lebs_its_own_rate_which_a_resumed_run_keeps(tmp_path: Path) -> None:
    from export3d_core.train.__main__ import main as train_main

    root = write_toy_corpus(tmp_path / "c", clips=1, frames=4, res=64)
    assert train_main(["pretrain-clebs", "--data", str(root), "--out", str(tmp_path / "clebs"), "--steps", "2",
                       "--batch", "2", "--no-progress"]) == 0
    common = ["--data", str(root), "--batch", "2", "--no-progress", "--lr-g", "1e-2"]
    src = tmp_path / "src"
    assert train_main([*common, "--out", str(src), "--steps", "1", "--clebs", str(tmp_path / "clebs")]) == 0
    assert _group_rates(src) == {"g": 1e-2}  # frozen: LeBS is in no group
    assert train_main([*common, "--out", str(src), "--steps", "2", "--resume", "--lr-lebs", "1e-3"]) == 2  # frozen
    grow = [*common, "--init-from", str(src), "--unfreeze-lebs", "--steps", "1"]
    own, follows = tmp_path / "own", tmp_path / "follows"
    assert train_main([*grow, "--out", str(own), "--lr-lebs", "5e-3"]) == 0
    assert train_main([*grow, "--out", str(follows)]) == 0
    assert _group_rates(own) == {"lebs": 5e-3, "g": 1e-2}
    assert _group_rates(follows) == {"lebs": 1e-2, "g": 1e-2}
    # A new rate for G on resume: LeBS keeps its own rate, or follows G's where it had none.
    for run in (own, follows):
        assert train_main([*common[:-1], "2e-3", "--out", str(run), "--steps", "2", "--resume"]) == 0
    assert _group_rates(own) == {"lebs": 5e-3, "g": 2e-3}
    assert _group_rates(follows) == {"lebs": 2e-3, "g": 2e-3}
    assert train_main([*common, "--out", str(follows), "--steps", "3", "--resume", "--lr-lebs", "4e-4"]) == 0
    assert _group_rates(follows) == {"lebs": 4e-4, "g": 1e-2}


def test_a_run_saved_with_one_optimiser_group_resumes_with_lebs_in_its_own(tmp_path: Path) -> None:
    """States written before LeBS had its own group (one group, G's rate) resume with their moments."""
    import json

    from export3d_core.train.__main__ import main as train_main
    from export3d_core.train.checkpointing import STATE_JSON, load_training_state

    root = write_toy_corpus(tmp_path / "c", clips=1, frames=4, res=64)
    common = ["--data", str(root), "--batch", "2", "--no-progress", "--lr-g", "1e-2"]
    run = tmp_path / "run"
    assert train_main([*common, "--out", str(run), "--steps", "2"]) == 0  # no --clebs: LeBS trains
    state_json = run / STATE_JSON
    meta = json.loads(state_json.read_text())
    groups = meta["opt_g"]["param_groups"]
    lebs_count = len(groups[0]["params"])
    assert [group["name"] for group in groups] == ["lebs", "g"]
    old = {k: v for k, v in groups[1].items() if k != "name"}
    old["params"] = groups[0]["params"] + groups[1]["params"]
    meta["opt_g"]["param_groups"] = [old]  # the single group of older runs
    del meta["extra"]["lr_lebs"]
    state_json.write_text(json.dumps(meta))
    assert train_main([*common, "--out", str(run), "--steps", "3", "--resume"]) == 0
    tensors, meta = load_training_state(run)
    groups = meta["opt_g"]["param_groups"]
    assert [(group["name"], len(group["params"])) for group in groups] == [("lebs", lebs_count),
                                                                          ("g", len(old["params"]) - lebs_count)]
    # Adam's step count of a LeBS parameter went on from the saved 2: its moments were carried over.
    assert float(tensors[f"opt_g.{groups[0]['params'][0]}.step"]) == 3
