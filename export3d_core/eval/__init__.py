"""Evaluation: `export3d eval`, the analogue of the paper's Table S1 on synthetic heads.

Modules, one job each:
- (`export3d_core.metrics`: PSNR, SSIM, L1 distance, cosine similarity; `data.synthetic_views`: the
  seed convention (held-out identities: corpus seed 10,000,000) and attribute targets;
  `faces.regressor`: the attribute regressor (β, pose, identity) standing in for the 3DMM
  extractor and ArcFace. They sit below `eval` because training and the editor use them too.)
- clips: the data an evaluation runs on (generated held-out heads or a corpus directory);
- runner: the model on evaluation items, and how images are resized;
- harness: the protocols (same / cross identity, novel views) and the result dict;
- basis: the basis response table and sweep grid (Fig. S3 analogue);
- report: one evaluation end to end and its printed table; commands: the CLI.

Names below are imported on first use so that `import export3d_core.eval.commands` (done for
every `export3d` invocation) stays light.
"""
from importlib import import_module

_EXPORTS = {
    "psnr": "export3d_core.metrics",
    "ssim": "export3d_core.metrics",
    "l1_distance": "export3d_core.metrics",
    "cosine_similarity": "export3d_core.metrics",
    "AttributeRegressor": "export3d_core.faces.regressor",
    "RegressorConfig": "export3d_core.faces.regressor",
    "build_or_load_regressor": "export3d_core.faces.regressor_training",
    "EvalConfig": "export3d_core.eval.harness",
    "Harness": "export3d_core.eval.harness",
    "evaluate": "export3d_core.eval.report",
    "format_table": "export3d_core.eval.report",
    "HELDOUT_SEED": "export3d_core.data.synthetic_views",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'export3d_core.eval' has no attribute {name!r}")
