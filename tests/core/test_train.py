"""Trainer: a tiny model overfits a clip; resume repeats an uninterrupted run; Ctrl-C checkpoints;
the `train` command writes inference weights and reports user errors."""
from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from test_dataset import write_toy_corpus

from export3d_core.checkpoint import load_checkpoint
from export3d_core.config import ModelConfig, TrainConfig
from export3d_core.data.dataset import CorpusDataset
from export3d_core.lambda_units import LAMBDA_SPAN, SPAN_QUANTILE
from export3d_core.model import Export3D
from export3d_core.nn.discriminator import DualDiscriminator
from export3d_core.train import checkpointing as ckpt
from export3d_core.train.__main__ import main as train_main
from export3d_core.train.logs import LOG_FILE, read_jsonl
from export3d_core.train.loop import Trainer

CFG = ModelConfig.preset("tiny")


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_toy_corpus(tmp_path_factory.mktemp("corpus"), clips=2, frames=4, res=64)


def make_trainer(corpus: Path, run: Path, tcfg: TrainConfig, hooks=None) -> Trainer:
    dataset = CorpusDataset(corpus, CFG.input_size, CFG.neural_size, CFG.output_size, seed=tcfg.seed)
    torch.manual_seed(tcfg.seed)
    model = Export3D(CFG)
    disc = DualDiscriminator(CFG) if tcfg.adv_steps else None
    return Trainer(model, dataset, tcfg, run, discriminator=disc, hooks=hooks, progress=False)


def test_tiny_model_overfits_one_clip(tmp_path: Path) -> None:
    """One clip of the real synthetic generator (rendered heads, a new camera per frame)."""
    from export3d_core.data.synth_command import generate_corpus

    root = generate_corpus(tmp_path / "one", identities=1, frames=4, resolution=64, seed=0, progress=False)
    # lr 3e-3 instead of the paper's 1e-4: the test checks that the graph can learn, quickly.
    tcfg = TrainConfig(batch_size=2, recon_steps=20, adv_steps=0, checkpoint_every=0, sample_every=10, lr_g=3e-3)
    trainer = make_trainer(root, tmp_path / "run", tcfg)
    assert trainer.train() == "done"
    losses = [r["loss"] for r in read_jsonl(tmp_path / "run" / LOG_FILE)]
    assert len(losses) == 20 and all(math.isfinite(x) for x in losses)
    assert np.mean(losses[-5:]) < 0.5 * np.mean(losses[:3]), losses
    assert (tmp_path / "run" / "samples" / "step_00000020.png").is_file()
    model, meta = load_checkpoint(tmp_path / "run" / "model.safetensors")
    assert meta["step"] == 20
    live = trainer.model.state_dict()
    assert all(torch.equal(value, live[name]) for name, value in model.state_dict().items())


def test_resume_repeats_an_uninterrupted_run(corpus: Path, tmp_path: Path) -> None:
    """Both phases: 4 reconstruction steps then 3 adversarial; stop after 3 (phase 1) and 5 (phase 2)."""
    tcfg = TrainConfig(batch_size=2, recon_steps=4, adv_steps=3, checkpoint_every=0, sample_every=0, seed=3)
    reference = make_trainer(corpus, tmp_path / "ref", tcfg)
    assert reference.train() == "done"
    expected = read_jsonl(tmp_path / "ref" / LOG_FILE)
    assert [r["phase"] for r in expected] == [1, 1, 1, 1, 2, 2, 2]

    def stop_at(step: int):
        def hook(trainer: Trainer, record: dict) -> None:
            if trainer.step == step:
                raise KeyboardInterrupt  # as Ctrl-C would, between two steps
        return hook

    run = tmp_path / "resumed"
    assert make_trainer(corpus, run, tcfg, hooks=[stop_at(3)]).train() == "interrupted"
    for stop in (5, None):
        torch.manual_seed(999)  # whatever the process did since, resume restores the RNG state
        trainer = make_trainer(corpus, run, tcfg, hooks=[stop_at(stop)] if stop else None)
        trainer.resume()
        trainer.train()
    got = read_jsonl(run / LOG_FILE)
    assert [r["step"] for r in got] == list(range(1, 8))
    for mine, theirs in zip(got, expected):
        for key in ("loss", "l2", "l2_raw", "g_adv", "d_loss", "r1"):
            if key in theirs:
                assert mine[key] == pytest.approx(theirs[key], abs=1e-6), (mine["step"], key)
    final_ref = reference.model.state_dict()
    for name, value in trainer.model.state_dict().items():
        assert torch.allclose(value, final_ref[name], atol=1e-6), name
    for name, value in trainer.disc.state_dict().items():
        assert torch.allclose(value, reference.disc.state_dict()[name], atol=1e-6), name


def test_interrupted_run_leaves_a_valid_checkpoint(corpus: Path, tmp_path: Path) -> None:
    tcfg = TrainConfig(batch_size=2, recon_steps=10, adv_steps=0, checkpoint_every=0, sample_every=0)

    def interrupt(trainer: Trainer, record: dict) -> None:
        if trainer.step == 2:
            raise KeyboardInterrupt

    trainer = make_trainer(corpus, tmp_path / "run", tcfg, hooks=[interrupt])
    assert trainer.train() == "interrupted"
    tensors, meta = ckpt.load_training_state(tmp_path / "run")
    assert meta["step"] == 2 and meta["phase"] == 1 and meta["batch_in_epoch"] == 2
    assert ModelConfig.from_dict(meta["model_config"]) == CFG
    assert all(not p.name.startswith(".") for p in (tmp_path / "run").iterdir()), "temporary files left behind"
    state = ckpt.split_prefix(tensors, "model")
    assert set(state) == set(trainer.model.state_dict())
    assert torch.equal(state["generator.triplane_ema"], trainer.model.generator.triplane_ema)
    assert not (tmp_path / "run" / "model.safetensors").exists()  # only a finished run ships weights
    # The optimiser state survives the JSON + safetensors round trip.
    opt = ckpt.unflatten_optimizer(tensors, meta["opt_g"], "opt_g")
    live = trainer.opt_g.state_dict()
    assert opt["param_groups"] == live["param_groups"]
    assert all(torch.equal(opt["state"][0][k], live["state"][0][k]) for k in live["state"][0])


def test_checkpoint_is_atomic(tmp_path: Path) -> None:
    ckpt.save_training_state(tmp_path, 1, {"a": torch.ones(2)}, {"x": 1})
    ckpt.save_training_state(tmp_path, 2, {"a": torch.full((2,), 2.0)}, {"x": 2})
    tensors, meta = ckpt.load_training_state(tmp_path)
    assert meta["x"] == 2 and torch.equal(tensors["a"], torch.full((2,), 2.0))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["train_state-00000002.safetensors", "train_state.json"]
    # A crash before the JSON commit leaves the previous checkpoint readable.
    (tmp_path / "train_state-00000003.safetensors").write_bytes(b"half a file")
    assert ckpt.load_training_state(tmp_path)[1]["step"] == 2


def test_train_command(corpus: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    run = tmp_path / "run"
    common = ["--preset", "tiny", "--data", str(corpus), "--out", str(run), "--batch", "2", "--no-progress"]
    args = [*common, "--steps", "2", "--adv-steps", "1", "--checkpoint-every", "1"]
    assert train_main(args) == 0
    model, meta = load_checkpoint(run / "model.safetensors")
    assert model.config == CFG.replace(lambda_scale=model.config.lambda_scale) and meta["step"] == 3
    # λ is calibrated on the corpus' expressions: their 99th percentile |λ| is the slider scale.
    betas = CorpusDataset(corpus, CFG.input_size, CFG.neural_size, CFG.output_size).betas
    with torch.no_grad():
        reach = torch.quantile(model.coefficients(betas).abs().flatten(), SPAN_QUANTILE).item()
    assert model.config.lambda_scale != 1.0 and reach == pytest.approx(LAMBDA_SPAN, rel=1e-4)
    assert train_main(args) == 2  # a second run into the same directory needs --resume
    assert "--resume" in capsys.readouterr().err
    assert train_main(["train", *common, "--steps", "4", "--adv-steps", "1", "--resume"]) == 0
    assert [r["step"] for r in read_jsonl(run / LOG_FILE)] == [1, 2, 3, 4, 5]
    assert train_main(["--data", str(tmp_path / "nothing"), "--out", str(tmp_path / "r2")]) == 2
    assert "corpus.json is missing" in capsys.readouterr().err
    assert train_main(["--data", str(corpus), "--out", str(tmp_path / "r3"), "--resume"]) == 2


def test_corpus_beta_dim_overrides_the_preset(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    root = write_toy_corpus(tmp_path / "c", clips=1, frames=3, res=64, beta_dim=5)
    assert train_main(["--data", str(root), "--out", str(tmp_path / "run"), "--steps", "1", "--batch", "2",
                       "--no-progress"]) == 0
    assert "beta_dim 12 of preset 'tiny' replaced by the corpus' 5" in capsys.readouterr().err
    model, _ = load_checkpoint(tmp_path / "run" / "model.safetensors")
    assert model.config == dataclasses.replace(CFG, beta_dim=5, lambda_scale=model.config.lambda_scale)
    state = json.loads((tmp_path / "run" / "train_state.json").read_text())
    assert state["model_config"]["beta_dim"] == 5


def test_sigint_finishes_the_step_then_checkpoints(corpus: Path, tmp_path: Path) -> None:
    import os
    import signal

    tcfg = TrainConfig(batch_size=2, recon_steps=10, adv_steps=0, checkpoint_every=0, sample_every=0)

    def press_ctrl_c(trainer: Trainer, record: dict) -> None:
        if trainer.step == 3:
            os.kill(os.getpid(), signal.SIGINT)  # a real SIGINT: the handler asks the loop to stop

    before = signal.getsignal(signal.SIGINT)
    trainer = make_trainer(corpus, tmp_path / "run", tcfg, hooks=[press_ctrl_c])
    assert trainer.train() == "interrupted"
    assert signal.getsignal(signal.SIGINT) is before  # the handler is removed again
    assert ckpt.load_training_state(tmp_path / "run")[1]["step"] == 3
    assert len(read_jsonl(tmp_path / "run" / LOG_FILE)) == 3


def test_learning_rate_flag_on_resume_changes_the_run(corpus: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    common = ["--preset", "tiny", "--data", str(corpus), "--out", str(run), "--batch", "2", "--no-progress",
              "--checkpoint-every", "1"]
    assert train_main([*common, "--steps", "1", "--lr-g", "3e-4"]) == 0
    state = ckpt.load_training_state(run)[1]
    assert state["opt_g"]["param_groups"][0]["lr"] == pytest.approx(3e-4)
    assert train_main([*common, "--steps", "2", "--resume"]) == 0  # no flag: the run's rate is kept
    assert ckpt.load_training_state(run)[1]["opt_g"]["param_groups"][0]["lr"] == pytest.approx(3e-4)
    assert train_main([*common, "--steps", "3", "--resume", "--lr-g", "5e-4"]) == 0
    assert ckpt.load_training_state(run)[1]["opt_g"]["param_groups"][0]["lr"] == pytest.approx(5e-4)
    assert train_main([*common, "--steps", "4", "--resume", "--lr-g", "7"]) == 2


def test_distortion_weight_enters_the_loss_and_the_log(corpus: Path, tmp_path: Path) -> None:
    logs = {}
    for weight in (0.0, 5.0):
        tcfg = TrainConfig(batch_size=2, recon_steps=1, adv_steps=0, checkpoint_every=0, sample_every=0,
                           lambda_distortion=weight)
        trainer = make_trainer(corpus, tmp_path / f"run{weight}", tcfg)
        torch.manual_seed(0)
        trainer.train()
        logs[weight] = read_jsonl(tmp_path / f"run{weight}" / LOG_FILE)[0]
    assert logs[0.0]["distortion"] == pytest.approx(logs[5.0]["distortion"]) and logs[0.0]["distortion"] > 0
    assert logs[0.0]["loss"] == pytest.approx(logs[0.0]["rec"])
    assert logs[5.0]["loss"] == pytest.approx(logs[5.0]["rec"] + 5.0 * logs[5.0]["distortion"], rel=1e-5)
    assert train_main(["--data", str(corpus), "--out", str(tmp_path / "bad"), "--distortion", "-1"]) == 2


def test_feature_weight_flag_trains_on_landmarked_frames_only(corpus: Path, tmp_path: Path,
                                                                 capsys: pytest.CaptureFixture) -> None:
    from export3d_core.data.synth_command import generate_corpus

    heads = generate_corpus(tmp_path / "heads", identities=1, frames=3, resolution=64, seed=0, progress=False)
    common = ["--batch", "2", "--steps", "1", "--no-progress", "--feature-weight", "6"]
    assert train_main(["--data", str(heads), "--out", str(tmp_path / "run"), *common]) == 0
    record = read_jsonl(tmp_path / "run" / LOG_FILE)[0]
    assert math.isfinite(record["l2"]) and record["l2"] > 0
    assert train_main(["--data", str(corpus), "--out", str(tmp_path / "toy"), *common]) == 2
    assert "has no landmarks" in capsys.readouterr().err
    assert train_main(["--data", str(heads), "--out", str(tmp_path / "r"), "--feature-weight", "0.5"]) == 2


def six_quick_steps(corpus: Path, run: Path, **loss_weights: float) -> tuple[Trainer, list[dict]]:
    """Six reconstruction steps at lr 3e-3 with the given TrainConfig loss weights: the trainer and its log."""
    tcfg = TrainConfig(batch_size=2, recon_steps=6, adv_steps=0, checkpoint_every=0, sample_every=0, lr_g=3e-3,
                       **loss_weights)
    trainer = make_trainer(corpus, run, tcfg)
    trainer.train()
    return trainer, read_jsonl(run / LOG_FILE)


def test_sparsity_weight_enters_the_loss_and_empties_free_space(corpus: Path, tmp_path: Path) -> None:
    from export3d_core.render.sparsity import free_space_opacity

    logs, fog = {}, {}
    for weight in (0.0, 20.0):
        trainer, logs[weight] = six_quick_steps(corpus, tmp_path / f"run{weight}", lambda_sparsity=weight)
        planes = trainer.model.triplane(trainer.model.encode(torch.zeros(1, 3, CFG.input_size, CFG.input_size)),
                                        trainer.model.expression(lam=torch.zeros(1, CFG.n_basis)))
        with torch.no_grad():
            fog[weight] = free_space_opacity(trainer.model.field(planes), CFG.render, 1, 20000,
                                             generator=torch.Generator().manual_seed(0)).item()
    assert "sparsity" not in logs[0.0][0]  # off: not even computed
    first = logs[20.0][0]
    assert 0 < first["sparsity"] < 1
    assert first["loss"] == pytest.approx(first["rec"] + 20.0 * first["sparsity"], rel=1e-5)
    assert fog[20.0] < 0.5 * fog[0.0], fog
    assert train_main(["--data", str(corpus), "--out", str(tmp_path / "bad"), "--sparsity", "-1"]) == 2


def test_opacity_weight_enters_the_loss_and_makes_rays_opaque(corpus: Path, tmp_path: Path) -> None:
    logs, alpha = {}, {}
    for weight in (0.0, 20.0):
        trainer, logs[weight] = six_quick_steps(corpus, tmp_path / f"run{weight}", lambda_opacity=weight)
        batch = trainer.next_batch()
        with torch.no_grad():
            alpha[weight] = trainer.model.eval()(batch["source"], batch["camera"], beta=batch["beta"]).alpha.mean().item()
    assert "transparency" not in logs[0.0][0]
    first = logs[20.0][0]
    assert 0 < first["transparency"] < 1
    assert first["loss"] == pytest.approx(first["rec"] + 20.0 * first["transparency"], rel=1e-5)
    assert alpha[20.0] > alpha[0.0] + 0.15, alpha  # six steps: 0.32 -> 0.55 measured
    assert train_main(["--data", str(corpus), "--out", str(tmp_path / "bad"), "--opacity", "-0.5"]) == 2


def test_neural_size_flag_sets_a_new_runs_rendering_side(corpus: Path, tmp_path: Path,
                                                        capsys: pytest.CaptureFixture) -> None:
    common = ["--preset", "tiny", "--data", str(corpus), "--batch", "2", "--no-progress"]
    source, grown = tmp_path / "source", tmp_path / "grown"
    assert train_main([*common, "--out", str(source), "--steps", "1"]) == 0
    side = CFG.output_size  # the tiny preset renders at half its output side; here at the full side
    assert train_main([*common, "--out", str(grown), "--steps", "1", "--init-from", str(source),
                       "--neural-size", str(side)]) == 0
    tensors, meta = ckpt.load_training_state(grown)
    assert meta["model_config"]["neural_size"] == side
    source_tensors = ckpt.load_training_state(source)[0]
    assert all(tensors[name].shape == value.shape for name, value in source_tensors.items()
               if name.startswith("model."))  # the same weights: only the rendering side changed
    assert train_main([*common, "--out", str(grown), "--steps", "2", "--resume"]) == 0  # raw targets at its side
    assert ckpt.load_training_state(grown)[1]["step"] == 2
    assert train_main([*common, "--out", str(grown), "--steps", "3", "--resume", "--neural-size", "16"]) == 2
    assert "--neural-size sets a new run's architecture" in capsys.readouterr().err
    assert train_main([*common, "--out", str(tmp_path / "bad"), "--neural-size", "48"]) == 2
    assert "--neural-size" in capsys.readouterr().err and not (tmp_path / "bad").exists()


def test_init_from_starts_a_grown_run_where_the_source_stopped(corpus: Path, tmp_path: Path,
                                                               capsys: pytest.CaptureFixture) -> None:
    from export3d_core.train.init_from import initial_config, load_grown

    source, grown = tmp_path / "source", tmp_path / "grown"
    common = ["--preset", "tiny", "--data", str(corpus), "--batch", "2", "--no-progress"]
    assert train_main([*common, "--out", str(source), "--steps", "2", "--adv-steps", "1"]) == 0
    before = {name: value.clone() for name, value in ckpt.load_training_state(source)[0].items()}
    assert train_main([*common, "--out", str(grown), "--steps", "0", "--adv-steps", "0",
                       "--init-from", str(source), "--skip-expression-channels", "3"]) == 0
    assert "skip_expression.weight" in capsys.readouterr().err  # says what starts at its initialisation
    tensors, meta = ckpt.load_training_state(grown)
    source_meta = ckpt.load_training_state(source)[1]
    assert meta["model_config"]["skip_expression_channels"] == 3 and meta["step"] == 0
    assert meta["model_config"]["expression_gain"] == source_meta["model_config"]["expression_gain"]
    for name, value in before.items():
        if not name.startswith(("model.", "disc.")):  # the weights; optimisers start afresh
            continue
        if name == "model.generator.fuse.0.weight":  # grown: the source's channels first, then new ones
            assert torch.equal(tensors[name][:, :value.shape[1]], value) and tensors[name].shape[1] == value.shape[1] + 3
        else:
            assert torch.equal(tensors[name], value), name
    assert not tensors["model.generator.skip_expression.weight"].any()
    assert train_main([*common, "--out", str(grown), "--steps", "1", "--resume"]) == 0  # the run keeps its shape
    assert "opt_d" in ckpt.load_training_state(grown)[1]  # and its discriminator, through phase-1 steps
    assert train_main([*common, "--out", str(grown), "--steps", "2", "--resume", "--skip-expression-channels", "3"]) == 2
    assert train_main([*common, "--out", str(tmp_path / "x"), "--init-from", str(tmp_path / "nowhere")]) == 2
    assert "no training run there" in capsys.readouterr().err
    assert train_main([*common, "--out", str(grown), "--resume", "--init-from", str(source)]) == 2
    with pytest.raises(Exception, match="preset 'tiny'"):
        initial_config(ModelConfig.preset("demo"), source_meta)
    with pytest.raises(Exception, match="5 β parameters|this corpus has 5"):
        initial_config(CFG.replace(beta_dim=5), source_meta)
    model = Export3D(CFG)
    kept = {name: value.clone() for name, value in model.state_dict().items()}
    wrong = {"decoder.density.0.weight": torch.zeros(5, 5)}
    with pytest.raises(Exception, match="do not fit"):
        load_grown(model, wrong)
    assert all(torch.equal(value, kept[name]) for name, value in model.state_dict().items())  # nothing changed


def test_a_run_whose_model_config_this_version_cannot_build_is_refused_clearly(
        corpus: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    run = tmp_path / "run"
    common = ["--preset", "tiny", "--data", str(corpus), "--batch", "2", "--no-progress"]
    assert train_main([*common, "--out", str(run), "--steps", "1"]) == 0
    state = run / ckpt.STATE_JSON
    meta = json.loads(state.read_text(encoding="utf-8"))
    meta["model_config"]["plane_upsampler"] = 2  # a field from another version of export3d
    state.write_text(json.dumps(meta), encoding="utf-8")
    capsys.readouterr()
    assert train_main([*common, "--out", str(run), "--steps", "2", "--resume"]) == 2
    assert train_main([*common, "--out", str(tmp_path / "grown"), "--init-from", str(run)]) == 2
    err = capsys.readouterr().err
    assert err.count("cannot build") == 2 and "plane_upsampler" in err and "Traceback" not in err
    assert not (tmp_path / "grown").exists()  # refused before anything was written
    assert ckpt.load_training_state(run)[1]["step"] == 1  # the run is untouched


class _Killed(BaseException):
    """Stands in for kill -9 inside the process: neither the loop's Ctrl-C path nor its final
    checkpoint runs, so the run folder is left as a killed run leaves it."""


def test_resume_after_a_kill_cleans_temporaries_and_logs_each_step_once(corpus: Path, tmp_path: Path,
                                                                         capsys: pytest.CaptureFixture) -> None:
    run = tmp_path / "run"
    tcfg = TrainConfig(batch_size=2, recon_steps=8, adv_steps=0, checkpoint_every=3, sample_every=0)

    def kill_at_5(trainer: Trainer, record: dict) -> None:
        if trainer.step == 5:
            raise _Killed()

    with pytest.raises(_Killed):
        make_trainer(corpus, run, tcfg, hooks=[kill_at_5]).train()
    assert ckpt.load_training_state(run)[1]["step"] == 3
    assert [r["step"] for r in read_jsonl(run / LOG_FILE)] == [1, 2, 3, 4, 5]
    # What a kill during the next checkpoint leaves: the tensor file half written (as large as a
    # whole one in a real run), the JSON's temporary, and a torn last log line.
    stale = [run / f".train_state-00000006.safetensors{ckpt.TMP_SUFFIX}", run / f".{ckpt.STATE_JSON}.k3x9q1.json"]
    for path in stale:
        path.write_bytes(b"\0" * 100_000)
    with (run / LOG_FILE).open("a") as log:
        log.write('{"step": 6, "pha')
    keep = run / "notes.txt"
    keep.write_text("mine")
    common = ["--preset", "tiny", "--data", str(corpus), "--out", str(run), "--batch", "2", "--no-progress",
              "--checkpoint-every", "3"]
    assert train_main([*common, "--steps", "8", "--resume"]) == 0
    assert [r["step"] for r in read_jsonl(run / LOG_FILE)] == list(range(1, 9))
    assert not any(path.exists() for path in stale)
    assert keep.read_text() == "mine"  # only the run's own temporaries are removed
    assert all(not p.name.startswith(".") for p in run.iterdir())


@pytest.mark.parametrize("damaged", ["train_state.json", "tensors"])
def test_resume_from_a_truncated_state_file_is_one_line(corpus: Path, tmp_path: Path, damaged: str,
                                                        capsys: pytest.CaptureFixture) -> None:
    run = tmp_path / "run"
    common = ["--preset", "tiny", "--data", str(corpus), "--out", str(run), "--batch", "2", "--no-progress"]
    assert train_main([*common, "--steps", "1"]) == 0
    capsys.readouterr()
    path = run / ckpt.STATE_JSON
    if damaged == "tensors":
        path = run / json.loads(path.read_text())["tensors"]
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    assert train_main([*common, "--steps", "2", "--resume"]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert "truncated or corrupt" in err and str(path.name) in err
    assert path.read_bytes() == data[: len(data) // 2]  # nothing overwritten
