"""Export3D in PyTorch: the public API (DESIGN.md §2).

>>> from export3d_core import Export3D, ModelConfig, OrbitCamera, load_checkpoint, save_checkpoint

Names are imported on first use, so a light sub-module (the corpus layout, the config) can be
imported without pulling in the whole model.
"""
from importlib import import_module

_EXPORTS = {
    "Appearance": "export3d_core.model",
    "Export3D": "export3d_core.model",
    "RenderOutput": "export3d_core.model",
    "Export3DError": "export3d_core.errors",
    "ModelConfig": "export3d_core.config",
    "RenderConfig": "export3d_core.config",
    "TrainConfig": "export3d_core.config",
    "OrbitCamera": "export3d_core.camera",
    "load_checkpoint": "export3d_core.checkpoint",
    "save_checkpoint": "export3d_core.checkpoint",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'export3d_core' has no attribute {name!r}")
