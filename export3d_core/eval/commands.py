"""The `export3d eval` sub-command: options -> `report.evaluate` -> printed table, JSON, grid PNG.

`--json OUT` writes this shape (further keys are informative extras):
```
{"same_identity":  {"model": {"psnr", "ssim", "aed", "apd"}, "copy_source": {same keys}},
 "cross_identity": {"model": {"id_sim", "aed", "apd"}, "copy_source": {...}, "copy_driving": {...}},
 "novel_view":     {"model": {"psnr", "ssim"}},   # null values, with a "note", when skipped
 "basis":          {"meaningful": int, "response": [[beta_dim floats] * n_basis]},
 "n_identities": int, "checkpoint": "<path>"}
```
On real data (an `export3d prepare` corpus) both reenactment sections also carry
`"real_face": {"model": {"akd", "csim", "aed", "apd"}, "copy_source": {...}, ["copy_driving": {...},]
"missing": {metric: short reason}, "notes": [...]}` (no "akd" in the cross-identity block); a metric
whose model is missing is null, with its reason in "missing" and "notes" (see `real_metrics`).
Heavy imports (torch, the model, the renderer) happen in the handler, so `export3d --help` stays fast.
"""
from __future__ import annotations

import argparse
import dataclasses
import math
import sys
from pathlib import Path

from export3d_core.errors import Export3DError


def add_eval_command(subparsers: argparse._SubParsersAction) -> None:
    """Register `export3d eval` on the `export3d` parser."""
    parser = subparsers.add_parser(
        "eval", help="measure a checkpoint on held-out identities (Table S1 analogue)",
        description="Same- and cross-identity reenactment (PSNR, SSIM, AED, APD, id_sim), novel views and "
                    "the basis response, next to copy-the-source / copy-the-driving baselines. Without --data "
                    "it renders held-out synthetic identities (corpus seed 10,000,000; training corpora use seeds below it). "
                    "On a real corpus (`export3d prepare`) it adds AKD (face-alignment landmarks) and CSIM (--arcface); "
                    "a metric whose model is missing is reported as n/a with the reason.")
    parser.add_argument("--checkpoint", default=None, help="model checkpoint (default: the shipped demo model)")
    parser.add_argument("--data", default=None, help="evaluate this corpus directory instead of generated heads")
    parser.add_argument("--identities", type=int, default=8, help="identities (clips) to evaluate (default 8)")
    parser.add_argument("--frames", type=int, default=8, help="frames per generated identity (default 8)")
    parser.add_argument("--scales", default=None, metavar="A,B,...",
                        help="λ values of the basis sweep (default -10,-5,0,5,10,15,20, as the paper's Fig. S3 range)")
    parser.add_argument("--json", default=None, metavar="OUT", help="write the results as JSON")
    parser.add_argument("--regressor", default=None, metavar="PATH",
                        help="attribute regressor (default: resources/models/demo/attribute_regressor.safetensors, "
                             "trained on synthetic renders if absent)")
    parser.add_argument("--arcface", default=None, metavar="MODEL.onnx",
                        help="ArcFace ONNX model for CSIM on real data (insightface-style, 112x112 input; "
                             "needs onnxruntime: pip install onnxruntime)")
    parser.add_argument("--grid", default=None, metavar="OUT.png", help="write the basis sweep grid (rows v_i, columns λ)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    parser.set_defaults(handler=run_eval)


def run_eval(args: argparse.Namespace) -> int:
    from export3d_core.atomic import check_writable
    from export3d_core.checkpoint import DEMO_CHECKPOINT
    from export3d_core.eval.harness import EvalConfig
    from export3d_core.faces.regressor import DEFAULT_REGRESSOR
    from export3d_core.eval.report import evaluate, format_table
    from export3d_core.atomic import write_json_atomic

    if args.identities < 1:
        raise Export3DError("--identities must be at least 1")
    if args.frames < 2:
        raise Export3DError("--frames must be at least 2 (a source and a driving frame)")
    checkpoint = Path(args.checkpoint) if args.checkpoint else DEMO_CHECKPOINT
    if args.checkpoint is None and not DEMO_CHECKPOINT.is_file():
        raise Export3DError(f"the demo model is missing ({DEMO_CHECKPOINT}); pass --checkpoint")
    if args.data is not None and not Path(args.data).is_dir():
        raise Export3DError(f"--data {args.data} is not a directory")
    if args.arcface is not None:
        from export3d_core.eval.real_metrics import check_arcface_path

        check_arcface_path(args.arcface)  # before the slow part: a typo fails at once
    for output in (args.json, args.grid):  # before the slow part: a folder that refuses fails at once
        if output:
            check_writable(output)
    config = EvalConfig(identities=args.identities, frames=args.frames)
    if args.scales:
        config = dataclasses.replace(config, basis_scales=_scales(args.scales))
    result = evaluate(checkpoint, data=args.data, regressor=args.regressor or DEFAULT_REGRESSOR, config=config,
                      grid=args.grid, device=_device(args.device), progress=not args.no_progress,
                      arcface=args.arcface)
    print(format_table(result))
    if args.json:
        write_json_atomic(Path(args.json), result)
        print(f"wrote {args.json}", file=sys.stderr)
    return 0


def _scales(text: str) -> tuple[float, ...]:
    try:
        values = tuple(float(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise Export3DError(f"--scales {text!r}: expected comma-separated numbers, e.g. -10,0,10") from None
    if not values or not all(math.isfinite(v) for v in values):
        raise Export3DError(f"--scales {text!r}: expected finite numbers")
    return values


def _device(name: str) -> str:
    from export3d_core.devices import parse_device

    parse_device(name)
    return name


__all__ = ["add_eval_command", "run_eval"]
