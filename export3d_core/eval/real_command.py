"""The `export3d eval-real` sub-command: real photos -> `real_photo.evaluate_photo` -> table, JSON, sheet.

`--json OUT` writes:
```
{"checkpoint": str, "settings": {...RealEvalSettings},
 "photos": [{"photo": str, "method": str, "lam_source": "landmarks" | "image" | "neutral",
             "camera": {"yaw_deg", "pitch_deg"}, "lam": [n],
             "reconstruction": {"psnr", "ssim", "landmark_error_iod"},
             "identity": {"photo": float, "views": {"yaw-20", "yaw+20", "pitch-10", "pitch+10"}},
             "expression_response": {"per_vector": [n], "minus": [n], "plus": [n],
                                     "identity_minus": [n], "identity_plus": [n], "threshold_iod",
                                     "responding", "responding_vectors": [...], "identity_responding"},
             "depth_relief": float | null, "iod_px": float,
             ["fitted": {the same metrics, "fit_seconds", "fit_steps", "upscale"}]  (with --fit)}]}
```
Heavy imports happen in the handler, so `export3d --help` stays fast.
"""
from __future__ import annotations

import argparse
import sys
from dataclasses import asdict
from pathlib import Path

from export3d_core.errors import Export3DError


def add_eval_real_command(subparsers: argparse._SubParsersAction) -> None:
    """Register `export3d eval-real` on the `export3d` parser."""
    parser = subparsers.add_parser(
        "eval-real", help="measure a model on real photos: reconstruction, identity, expression response, depth",
        description="For each photo: crop it (dlib landmarks, PnP camera), read its own λ with the expression "
                    "estimator, render it at its camera, at yaw ±20° and pitch ±10°, and with each basis vector "
                    "at λ ± 10; report PSNR/SSIM against the photo, dlib identity distances (< 0.6: same person), "
                    "landmark motion per basis vector (/ inter-ocular distance) and the depth relief of the face.")
    parser.add_argument("photos", nargs="+", metavar="PHOTO", help="real portrait photos")
    parser.add_argument("--checkpoint", default=None, help="model checkpoint (default: the shipped demo model)")
    parser.add_argument("--neutral", action="store_true",
                        help="evaluate at λ = 0 instead of the photo's own λ (no attribute regressor needed)")
    parser.add_argument("--json", default=None, metavar="OUT", help="write every number as JSON")
    parser.add_argument("--sheet", default=None, metavar="PNG",
                        help="contact sheet: per photo, the photo and five views, then v_i at λ_i - 10 and + 10")
    parser.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    parser.add_argument("--fit", action="store_true",
                        help="also fit the model to each photo (as `export3d fit` does) and measure the fitted model")
    parser.add_argument("--fit-steps", type=int, default=None, metavar="N", help="steps of those fits (default: fit's)")
    parser.add_argument("--fit-upscale-steps", type=int, default=None, metavar="N",
                        help="training steps of those fits' 2x upscaler (0: none; default: fit's)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.set_defaults(handler=run_eval_real)


def _check_outputs(args: argparse.Namespace) -> None:
    """Fail before the slow part: missing photos, output folders, a sheet that is not a PNG."""
    for photo in args.photos:
        if not Path(photo).is_file():
            raise Export3DError(f"photo not found: {photo}")
    from export3d_core.atomic import check_writable

    if args.sheet is not None and Path(args.sheet).suffix.lower() != ".png":
        raise Export3DError(f"--sheet {args.sheet}: the contact sheet is a .png")
    for option, path in (("--json", args.json), ("--sheet", args.sheet)):
        if path is not None and not Path(path).resolve().parent.is_dir():
            raise Export3DError(f"{option} {path}: folder does not exist")
        if path is not None:
            check_writable(path)  # a read-only folder fails now, not after the slow evaluation


def _load(args: argparse.Namespace):
    from export3d_core.checkpoint import DEMO_CHECKPOINT, load_checkpoint
    from export3d_core.devices import parse_device

    device = parse_device(args.device)
    checkpoint = Path(args.checkpoint) if args.checkpoint else DEMO_CHECKPOINT
    if not checkpoint.is_file():
        raise Export3DError(f"no model at {checkpoint}; pass --checkpoint C")
    model, _ = load_checkpoint(checkpoint, device=device)
    return model, checkpoint


def run_eval_real(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from export3d_core.data.corpus import write_json_atomic
    from export3d_core.eval.real_photo import RealEvalSettings, contact_sheet, evaluate_photo, prepare_photo
    from export3d_core.fit import fit_crop_size

    _check_outputs(args)
    model, checkpoint = _load(args)
    cfg, settings = model.config, RealEvalSettings()
    fit_size = fit_crop_size(cfg, _fit_settings(args)) if args.fit else None
    photos = [prepare_photo(path, cfg.input_size, cfg.output_size, fit_size) for path in args.photos]  # all found first
    estimator = None
    if not args.neutral:
        from export3d_core.expression_estimate import ExpressionEstimator

        estimator = ExpressionEstimator.for_checkpoint(model, checkpoint)
    results, sheets = [], []
    total = len(photos) * (5 + 2 * cfg.n_basis) * (2 if args.fit else 1)
    with tqdm(total=total, desc="eval-real", unit="render", disable=args.no_progress, file=sys.stderr,
              leave=False) as bar:
        for photo in photos:
            estimate = None if estimator is None else estimator.estimate(photo.aligned)
            lam = [0.0] * cfg.n_basis if estimate is None else estimate.lam
            renders: dict = {}
            metrics = evaluate_photo(model, photo.aligned, photo.camera, lam, reference=photo.reference,
                                     settings=settings, renders=renders, step=lambda: bar.update(1))
            results.append({"photo": str(photo.path), "method": photo.method,
                            "lam_source": "neutral" if estimate is None else estimate.source, **metrics})
            sheets.append(contact_sheet(photo.reference, renders, cfg.n_basis))
            if args.fit:
                results[-1]["fitted"] = _fitted_metrics(args, model, photo, lam, settings, renders, bar)
                sheets.append(contact_sheet(photo.reference, renders, cfg.n_basis))
    report = {"checkpoint": str(checkpoint), "settings": asdict(settings), "photos": results}
    print(format_table(report))
    if args.json:
        write_json_atomic(Path(args.json), report)
        print(f"wrote {args.json}", file=sys.stderr)
    if args.sheet:
        _write_sheet(Path(args.sheet), _stacked(sheets))
        print(f"wrote {args.sheet}", file=sys.stderr)
    return 0


def _fitted_metrics(args: argparse.Namespace, model, photo, lam, settings, renders: dict, bar) -> dict:
    """Fit a copy of the model to one photo (`export3d_core.fit`) and measure the fitted copy."""
    from export3d_core.eval.real_photo import evaluate_photo
    from export3d_core.fit import fit_portrait

    fit_settings = _fit_settings(args)
    bar.set_postfix_str(f"fitting {Path(photo.path).name}")
    # the fit learns from (and is measured against) the crop made at the fit's size, as `export3d fit`'s
    result = fit_portrait(model, photo.fit_crop, photo.camera, lam, fit_settings, native_side=photo.native_side)
    bar.set_postfix_str("")
    metrics = evaluate_photo(result.model, photo.fit_crop, photo.camera, lam, reference=photo.fit_crop,
                             settings=settings, renders=renders, step=lambda: bar.update(1))
    return {**metrics, "fit_seconds": result.seconds, "fit_steps": fit_settings.steps,
            "upscale": result.upscale_note}


def _fit_settings(args: argparse.Namespace):
    from export3d_core.fit import FitSettings, with_upscale_steps

    settings = FitSettings() if args.fit_steps is None else FitSettings(steps=args.fit_steps)
    return with_upscale_steps(settings, args.fit_upscale_steps)


def _stacked(sheets: list):
    """The sheets one below the other, each scaled to the widest (a fitted upscaler's renders are larger)."""
    import numpy as np
    from PIL import Image

    width = max(sheet.shape[1] for sheet in sheets)
    scaled = [sheet if sheet.shape[1] == width else np.asarray(Image.fromarray(sheet).resize(
        (width, round(sheet.shape[0] * width / sheet.shape[1])), Image.Resampling.LANCZOS)) for sheet in sheets]
    return np.concatenate(scaled, axis=0)


def _write_sheet(path: Path, image) -> None:
    from PIL import Image

    from export3d_core.atomic import atomic_path

    with atomic_path(path) as tmp:
        Image.fromarray(image).save(tmp, format="PNG")


def _number(value: float | None, fmt: str) -> str:
    return "n/a" if value is None else format(value, fmt)


def format_table(report: dict) -> str:
    """The report as readable text, one block per photo."""
    lines = [f"eval-real: {report['checkpoint']}"]
    for item in report["photos"]:
        cam = item["camera"]
        lines += ["", f"{Path(item['photo']).name}  ({item['method']}, camera yaw {cam['yaw_deg']:+.1f}°, "
                      f"pitch {cam['pitch_deg']:+.1f}°, λ {item['lam_source']})"]
        lines += _metric_lines(item, report["settings"])
        if "fitted" in item:
            fitted = item["fitted"]
            lines += [f"  fitted ({fitted['fit_steps']} steps in {fitted['fit_seconds']:.1f} s; {fitted['upscale']}):"]
            lines += ["  " + line for line in _metric_lines(fitted, report["settings"])]
    return "\n".join(lines)


def _metric_lines(item: dict, settings: dict) -> list[str]:
    rec, ident, resp = item["reconstruction"], item["identity"], item["expression_response"]
    return [
        f"  reconstruction     PSNR {rec['psnr']:.2f} dB   SSIM {rec['ssim']:.3f}   "
        f"landmark error {rec['landmark_error_iod']:.3f} IOD",
        "  identity distance  (dlib, < 0.6 = same person)",
        "    " + "  ".join(f"{name} {value:.3f}" for name, value in
                           [("photo camera", ident["photo"])] + list(ident["views"].items())),
        f"  expression response  (mean landmark motion / IOD at own λ_i ± "
        f"{settings['lam_step']:g}; IOD {item['iod_px']:.1f} px)",
        "    vector   " + " ".join(f"{f'v{i + 1}':>6}" for i in range(len(resp["per_vector"]))),
        "    motion   " + " ".join(f"{v:6.3f}" for v in resp["per_vector"]),
        "    id -     " + " ".join(f"{v:6.3f}" for v in resp["identity_minus"]),
        "    id +     " + " ".join(f"{v:6.3f}" for v in resp["identity_plus"]),
        f"    {resp['responding']}/{len(resp['per_vector'])} vectors move the landmarks >= "
        f"{100 * resp['threshold_iod']:g} % IOD; identity distance under them "
        f"{_number(resp['identity_responding'], '.3f')}",
        f"  depth relief       {_number(item['depth_relief'], '.4f')} (p95 - p5 of rendered depth over the face, "
        "world units)",
    ]


__all__ = ["add_eval_real_command", "format_table", "run_eval_real"]
