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
