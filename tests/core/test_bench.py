"""`export3d bench`: the report has the promised shape and its numbers are consistent."""
import json
import math

import torch

from export3d_core.bench import BenchSettings, ShapeSettings, bench_presets, blob_target
from export3d_core.metrics import psnr_db

KEYS = ("encode_ms", "triplane_ms", "render_ms", "sr_ms", "preview_ms", "full_ms", "lambda_change_ms",
        "reference_render_ms", "accelerated_render_ms", "speedup", "agreement_psnr_db", "peak_mem_mb")


def test_tiny_report_has_the_issue_shape(tmp_path):
    report = bench_presets(["tiny"], torch.device("cpu"), BenchSettings(warmup=0, repeats=1),
                           shape=ShapeSettings(steps=30, points=1024))
    path = tmp_path / "bench.json"
    path.write_text(json.dumps(report))
    loaded = json.loads(path.read_text())
    assert loaded["device"] == "cpu" and isinstance(loaded["threads"], int) and loaded["threads"] >= 1
    assert "random weights" in loaded["notes"][0]
    stats = loaded["presets"]["tiny"]
    for key in KEYS:  # identical images agree at infinite PSNR (a haze-filled random field takes the reference's samples)
        finite = math.isfinite(stats[key]) or (key.endswith("psnr_db") and stats[key] == math.inf)
        assert isinstance(stats[key], (int, float)) and finite and stats[key] > 0, key
    assert stats["speedup"] == round(stats["reference_render_ms"] / stats["accelerated_render_ms"], 3) or \
        abs(stats["speedup"] - stats["reference_render_ms"] / stats["accelerated_render_ms"]) < 0.01
    assert stats["render_ms"] == stats["accelerated_render_ms"]


def test_blob_target_is_opaque_inside_and_empty_outside():
    points = torch.tensor([[[0.0, 0.0, 0.05], [0.45, 0.45, 0.45]]])
    raw, colour = blob_target(points, 5)
    assert raw[0, 0, 0] > 30 and raw[0, 1, 0] < -10
    assert colour.shape == (1, 2, 5) and (colour >= 0).all() and (colour <= 1).all()


def test_psnr_of_images_in_minus_one_one():
    a = torch.zeros(1, 3, 4, 4)
    assert psnr_db(a, a) == float("inf")
    assert abs(psnr_db(a, a + 0.02) - 10 * math.log10(4 / 0.0004)) < 1e-6


def test_forward_report_counts_parameters(capsys):
    from export3d_core.cli import main
    from export3d_core import Export3D, ModelConfig

    assert main(["bench", "--forward", "--presets", "tiny", "--repeats", "1", "--warmup", "0"]) == 0
    out = capsys.readouterr().out
    expected = Export3D(ModelConfig.preset("tiny")).parameter_count()
    assert f"parameters {expected:>12,}" in out and "forward pass" in out


def test_agreement_sweep_reports_every_frame_and_exact_mode_agrees():
    from export3d_core import Export3D, ModelConfig
    from export3d_core.bench import agreement_sweep
    from export3d_core.portrait import default_portrait
    from export3d_core.acceleration import Acceleration

    torch.manual_seed(0)
    model = Export3D(ModelConfig.preset("tiny"))
    views = ((0.0, 0.0), (0.3, 0.1))
    exact = Acceleration(proposal_fraction=0, fine_divisor=1, grid_alpha=1e-4)  # skipping only
    sweep = agreement_sweep(model, torch.device("cpu"), exact, portraits=[default_portrait()], views=views)
    assert sweep["frames"] == 2 * len(views)  # λ = 0 and one basis vector, per view
    assert sweep["min_agreement_psnr_db"] <= sweep["median_agreement_psnr_db"]
    assert sweep["min_agreement_psnr_db"] >= 40
    assert abs(sweep["speedup"] - sweep["reference_render_ms"] / sweep["accelerated_render_ms"]) < 0.01


def test_shipped_demo_model_agrees_within_40_db_at_the_session_defaults():
    """The performance issue's promise on the model users get: a new release that needs other
    acceleration settings fails here (one with thinner surfaces did at 1/8 evenly spaced samples: 38.1 dB)."""
    from export3d_core.bench import agreement_sweep
    from export3d_core.checkpoint import DEMO_CHECKPOINT, load_checkpoint
    from export3d_core.portrait import default_portrait
    from export3d_core.acceleration import Acceleration

    model = load_checkpoint(DEMO_CHECKPOINT)[0]
    views = ((0.3, 0.1), (0.0, 0.0))  # the bench frame and the frontal view
    sweep = agreement_sweep(model, torch.device("cpu"), Acceleration(), portraits=[default_portrait()], views=views)
    assert sweep["frames"] == 4 and sweep["min_agreement_psnr_db"] >= 40, sweep
