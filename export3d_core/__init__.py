"""Export3D in PyTorch: the public API, what the editor and scripts import.

>>> from export3d_core import Export3D, ModelConfig, OrbitCamera, load_checkpoint, save_checkpoint
>>> from export3d_core import PortraitSession, view_image

Names are imported on first use, so a light sub-module (the corpus layout, the config) can be
imported without pulling in the whole model. Modules inside the package import each other
directly, never this one (tests/test_layers.py).
"""
from importlib import import_module

_EXPORTS = {
    # the model, its settings and weights
    "Appearance": "export3d_core.model",
    "Export3D": "export3d_core.model",
    "RenderOutput": "export3d_core.model",
    "ModelConfig": "export3d_core.config",
    "RenderConfig": "export3d_core.config",
    "TrainConfig": "export3d_core.config",
    "DEMO_CHECKPOINT": "export3d_core.checkpoint",
    "load_checkpoint": "export3d_core.checkpoint",
    "read_header": "export3d_core.checkpoint",
    "save_checkpoint": "export3d_core.checkpoint",
    # cameras
    "OrbitCamera": "export3d_core.camera",
    # rendering a portrait: the cached session, its speed settings, devices, display conversion
    "PortraitSession": "export3d_core.session",
    "Acceleration": "export3d_core.acceleration",
    "PreviewSettings": "export3d_core.acceleration",
    "native_bf16": "export3d_core.devices",
    "pick_device": "export3d_core.devices",
    "RENDER_MODES": "export3d_core.display",
    "image_to_tensor": "export3d_core.display",
    "opacity_to_alpha": "export3d_core.display",
    "tensor_to_image": "export3d_core.display",
    "view_image": "export3d_core.display",
    # portraits and expressions read from them
    "default_portrait": "export3d_core.portrait",
    "load_portrait": "export3d_core.portrait",
    "ExpressionEstimator": "export3d_core.expression_estimate",
    # exports
    "ExportCancelled": "export3d_core.export",
    "TurntableSettings": "export3d_core.export",
    "sweep_frames": "export3d_core.export",
    "turntable_frames": "export3d_core.export",
    "write_animation": "export3d_core.export",
    "write_png": "export3d_core.export",
    # files and errors
    "write_json_atomic": "export3d_core.atomic",
    "write_text_atomic": "export3d_core.atomic",
    "Export3DError": "export3d_core.errors",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'export3d_core' has no attribute {name!r}")
