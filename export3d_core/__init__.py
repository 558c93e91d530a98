"""Export3D in PyTorch: the public API, what the editor and scripts import.

>>> from export3d_core import Export3D, ModelConfig, OrbitCamera, load_checkpoint, save_checkpoint
>>> from export3d_core import PortraitSession, view_image

Names are imported on first use, so a light sub-module (the corpus layout, the config) can be
imported without pulling in the whole model. Modules inside the package import each other
directly, never this one (tests/test_layers.py).

The editor (`app/`) imports the core only through this module: `from export3d_core import NAME`
with NAME in `__all__` below, never `export3d_core.<sub-module>` (tests/test_layers.py).
A name the editor needs is added here. Because each name loads its own sub-module on first use,
an import inside one of the editor's functions stays as lazy as it was (the editor starts before
torch's model code, the face detectors or the image decoders are loaded).
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
    # cameras and expression units
    "DEFAULT_FOV_DEG": "export3d_core.camera",
    "DEFAULT_RADIUS": "export3d_core.camera",
    "OrbitCamera": "export3d_core.camera",
    "MAX_ABS_LAMBDA": "export3d_core.lambda_units",
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
    # portraits and expressions read from them; a photo without a face is cropped by hand
    "load_image": "export3d_core.data.image_io",
    "NoFaceFoundError": "export3d_core.data.intake",
    "manual_crop": "export3d_core.data.intake",
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
    "MeshSettings": "export3d_core.mesh",
    # keyframe animation: keys of λ and the camera, sampled poses, rendered to MP4/GIF/PNGs
    "Animation": "export3d_core.animation",
    "AnimationKey": "export3d_core.animation",
    "CameraPose": "export3d_core.animation",
    "DEFAULT_EASING": "export3d_core.animation",
    "EASINGS": "export3d_core.animation",
    # driving from a video or live from a camera (a video file standing in for one)
    "DriveSettings": "export3d_core.drive",
    "FaceReader": "export3d_core.drive",
    "LatestFrameSource": "export3d_core.live",
    "LiveDriver": "export3d_core.live",
    "neutral_lambda": "export3d_core.drive",
    "AnimationExportSettings": "export3d_core.animation_export",
    "PoseRenderer": "export3d_core.animation_export",
    "export_animation": "export3d_core.animation_export",
    "export_head_mesh": "export3d_core.mesh_export",
    "mesh_progress_total": "export3d_core.mesh_export",
    "sweep_lambdas": "export3d_core.export",
    "turntable_cameras": "export3d_core.export",
    # the per-portrait fit, its file, the out-of-domain signal and paste-back into the photo
    "FitCancelled": "export3d_core.fit",
    "FitProgress": "export3d_core.fit",
    "FitSettings": "export3d_core.fit",
    "apply_tensors": "export3d_core.fit",
    "fit_portrait": "export3d_core.fit",
    "load_fit": "export3d_core.fit_file",
    "photo_digest": "export3d_core.fit_file",
    "file_digest": "export3d_core.fit_file",
    "save_fit": "export3d_core.fit_file",
    "out_of_domain": "export3d_core.domain",
    "Compositor": "export3d_core.paste_back",
    "photo_and_transform": "export3d_core.paste_back",
    "photo_compositor": "export3d_core.paste_back",
    "animation_paste_back_problem": "export3d_core.animation_export",
    "pose_supported": "export3d_core.paste_back",
    "turned_camera": "export3d_core.paste_back",
    # files and errors
    "write_json_atomic": "export3d_core.atomic",
    "path_for_project": "export3d_core.project_file",
    "write_text_atomic": "export3d_core.atomic",
    "Export3DError": "export3d_core.errors",
}
__all__ = sorted(_EXPORTS)


_RENAMED = {"AnimationKey": "Key"}  # public name -> the sub-module's (a bare "Key" says too little)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(import_module(_EXPORTS[name]), _RENAMED.get(name, name))
    raise AttributeError(f"module 'export3d_core' has no attribute {name!r}")
