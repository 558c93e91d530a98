"""Checkpoints: bit-identical round trip, and clear errors for every way a file can be wrong."""
import json

import pytest
import torch
from safetensors.torch import save_file

from export3d_core import Export3DError, OrbitCamera, load_checkpoint, save_checkpoint
from export3d_core.checkpoint import read_header


def _rewrite_header(path, change) -> None:
    """Apply `change` to a checkpoint's header dict in place, keeping its tensors."""
    from safetensors import safe_open

    with safe_open(str(path), "pt") as handle:
        tensors = {k: handle.get_tensor(k) for k in handle.keys()}
        header = dict(handle.metadata())
    change(header)
    save_file(tensors, str(path), metadata=header)


def _render(model):
    cfg = model.config
    torch.manual_seed(3)
    source = torch.rand(1, 3, cfg.input_size, cfg.input_size) * 2 - 1
    with torch.no_grad():
        return model(source, OrbitCamera(yaw=0.3).params()[None], lam=torch.randn(1, cfg.n_basis))


def test_round_trip_is_bit_identical(tmp_path, tiny_model):
    with torch.no_grad():  # make the EMA buffer non-trivial so it must be saved too
        tiny_model.generator.triplane_ema.normal_()
    path = save_checkpoint(tiny_model, tmp_path / "m.safetensors", meta={"steps": 12})
    loaded, meta = load_checkpoint(path)
    assert meta["steps"] == 12 and meta["config_name"] == "tiny"
    assert loaded.config == tiny_model.config
    a, b = _render(tiny_model), _render(loaded)
    assert torch.equal(a.image, b.image) and torch.equal(a.depth, b.depth)
    save_checkpoint(tiny_model, tmp_path / "run")  # a directory gets model.safetensors inside
    config, _ = read_header(tmp_path / "run")
    assert config.name == "tiny"


def test_missing_file(tmp_path):
    with pytest.raises(Export3DError, match="not found"):
        load_checkpoint(tmp_path / "nope.safetensors")


@pytest.mark.parametrize("damage", ["empty", "truncated", "garbage"])
def test_corrupt_files(tmp_path, tiny_model, damage):
    path = save_checkpoint(tiny_model, tmp_path / "m.safetensors")
    data = path.read_bytes()
    path.write_bytes({"empty": b"", "truncated": data[: len(data) // 2], "garbage": b"\x00not a checkpoint" * 50}[damage])
    with pytest.raises(Export3DError, match="corrupt|truncated|not a valid"):
        load_checkpoint(path)


def test_plain_safetensors_without_config(tmp_path):
    path = tmp_path / "plain.safetensors"
    save_file({"x": torch.zeros(2)}, str(path))
    with pytest.raises(Export3DError, match="not an Export3D checkpoint"):
        load_checkpoint(path)


def test_mismatched_weights_name_the_tensors(tmp_path, tiny_model):
    path = save_checkpoint(tiny_model, tmp_path / "m.safetensors")

    def wider_decoder(header):  # the config now claims a wider decoder than the weights have
        config = json.loads(header["config"])
        config["decoder_hidden"] = 24
        header["config"] = json.dumps(config)

    _rewrite_header(path, wider_decoder)
    with pytest.raises(Export3DError, match=r"decoder.*shape mismatch|shape mismatch.*decoder"):
        load_checkpoint(path)


def test_newer_format_version_is_refused(tmp_path, tiny_model):
    path = save_checkpoint(tiny_model, tmp_path / "m.safetensors")
    _rewrite_header(path, lambda header: header.update(format_version="99"))
    with pytest.raises(Export3DError, match="format version 99"):
        load_checkpoint(path)


def test_fp16_shipping_checkpoint_loads_as_float32(tmp_path, tiny_model):
    path = save_checkpoint(tiny_model, tmp_path / "m.safetensors", dtype=torch.float16)
    loaded, _ = load_checkpoint(path)
    assert all(p.dtype == torch.float32 for p in loaded.parameters())
    a, b = _render(tiny_model), _render(loaded)
    assert (a.image - b.image).abs().max() < 0.05


# -- untrusted configs and weights ------------------------------------------------------------------
def _set(*keys, value):
    """A header change that sets config[keys...] = value (json.dumps writes NaN as the bare token
    NaN, which json.loads reads back, as a hand-edited or hostile file could hold)."""
    def change(header):
        config = json.loads(header["config"])
        node = config
        for key in keys[:-1]:
            node = node[key]
        node[keys[-1]] = value
        header["config"] = json.dumps(config)
    return change


@pytest.mark.parametrize("keys, value, message", [
    (("neural_size",), 8192, "neural_size must be between 8 and 512"),
    (("output_size",), 8192, "output_size must be between 8 and 2048"),
    (("render", "num_coarse"), 10 ** 9, "num_coarse must be between 1 and 512"),
    (("render", "num_fine"), 10 ** 7, "num_fine must be between 0 and 512"),
    (("neural_size",), 0, "neural_size must be between"),
    (("input_size",), -64, "input_size must be between"),
    (("neural_size",), True, "neural_size must be an integer, got True"),
    (("plane_res",), 64.0, "plane_res must be an integer"),
    (("num_heads",), 0, "num_heads must be between 1"),
    (("render", "ray_start"), float("nan"), "ray_start must be a finite number"),
    (("render", "ray_end"), 1.0, "0 < ray_start < ray_end"),
    (("render", "box_warp"), 0, "box_warp must be positive"),
    (("render", "density_shift"), float("nan"), "density_shift must be a finite number"),
    (("render", "num_coarse"), "48", "num_coarse must be an integer"),
    (("expression_gain",), float("inf"), "expression_gain must be a finite number"),
    (("encoder_widths",), [16, True, 64, 128], "encoder_widths must hold integers"),
    (("sr_channels",), [], "sr_channels must be a list of 1..16 widths"),
    (("render",), 5, "render must be a table"),
    (("render", "rays_per_texel"), 3, "unknown render fields"),
    (("lowpass_sigma",), 0.0, "lowpass_sigma must be positive"),
])
def test_absurd_configs_are_refused_before_the_model_is_built(tmp_path, tiny_model, monkeypatch, keys, value, message):
    from export3d_core import model as model_module

    path = save_checkpoint(tiny_model, tmp_path / "m.safetensors")
    _rewrite_header(path, _set(*keys, value=value))

    def no_model(*args, **kwargs):
        raise AssertionError("the model was built from an invalid config")

    monkeypatch.setattr(model_module.Export3D, "__init__", no_model)
    for read in (read_header, load_checkpoint):
        with pytest.raises(Export3DError, match="invalid config") as info:
            read(path)
        assert message in str(info.value) and "\n" not in str(info.value)


def test_presets_fit_the_limits():
    """The limits leave the paper's sizes (and the shipped demo model) usable."""
    from export3d_core.checkpoint import DEMO_CHECKPOINT
    from export3d_core.config import PRESETS, ModelConfig

    for preset in PRESETS.values():
        assert ModelConfig.from_dict(preset.to_dict()) == preset
    paper = ModelConfig.preset("paper")
    assert (paper.input_size, paper.neural_size, paper.output_size, paper.render.num_coarse) == (512, 128, 512, 48)
    assert read_header(DEMO_CHECKPOINT)[0].name == "demo"


def _rewrite_tensors(path, change) -> None:
    from safetensors import safe_open

    with safe_open(str(path), "pt") as handle:
        tensors = {k: handle.get_tensor(k) for k in handle.keys()}
        header = dict(handle.metadata())
    change(tensors)
    save_file(tensors, str(path), metadata=header)


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_non_finite_weights_are_refused(tmp_path, tiny_model, bad):
    path = save_checkpoint(tiny_model, tmp_path / "m.safetensors")
    name = "decoder.density.0.weight" if "decoder.density.0.weight" in tiny_model.state_dict() else \
        next(k for k, v in tiny_model.state_dict().items() if v.is_floating_point())

    def poison(tensors):
        tensors[name] = tensors[name].clone()
        tensors[name].view(-1)[0] = bad

    _rewrite_tensors(path, poison)
    with pytest.raises(Export3DError, match=f"{name} holds NaN or infinite values"):
        load_checkpoint(path)


def test_non_float_weights_are_refused(tmp_path, tiny_model):
    path = save_checkpoint(tiny_model, tmp_path / "m.safetensors")
    name = next(k for k, v in tiny_model.state_dict().items() if v.is_floating_point())
    _rewrite_tensors(path, lambda tensors: tensors.update({name: tensors[name].round().to(torch.int8)}))
    with pytest.raises(Export3DError, match=f"{name} is int8; the model needs floating-point"):
        load_checkpoint(path)


def test_cli_refuses_an_absurd_checkpoint_in_one_line(tmp_path, tiny_model, capsys):
    from export3d_core.cli import main

    path = save_checkpoint(tiny_model, tmp_path / "m.safetensors")
    _rewrite_header(path, _set("render", "num_coarse", value=10 ** 9))
    assert main(["render", "--checkpoint", str(path), "-o", str(tmp_path / "out.png")]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "num_coarse must be between 1 and 512" in err
    assert not (tmp_path / "out.png").exists()
