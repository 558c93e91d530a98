"""One evaluation end to end (checkpoint + regressor + data -> result dict) and its printed table.

Owns `evaluate` (what `export3d eval` runs, usable from Python and tests) and `format_table`.
The result dict is the JSON of `export3d eval --json` (shape documented in `commands`).
"""
from __future__ import annotations

import os
import sys
from typing import Any, Callable

import torch

from export3d_core.checkpoint import load_checkpoint, resolve_checkpoint_path
from export3d_core.eval.basis import save_grid
from export3d_core.eval.clips import EvalClip, generate_heldout, load_corpus
from export3d_core.eval.harness import EvalConfig, Harness
from export3d_core.eval.real_metrics import beta_sources, build_real_metrics, is_real_data
from export3d_core.faces.regressor import DEFAULT_REGRESSOR, RegressorConfig
from export3d_core.faces.regressor_training import build_or_load_regressor
from export3d_core.eval.runner import ModelRunner
from export3d_core.nn.code_information import describe_code_information

PROXY_NOTE = ("real data: the AED/APD/id_sim columns come from the synthetic-head attribute regressor (a proxy); "
              "the real-face metrics are in each section's \"real_face\" block")


def evaluate(checkpoint: str | os.PathLike, *, data: str | os.PathLike | None = None,
             regressor: str | os.PathLike = DEFAULT_REGRESSOR, config: EvalConfig = EvalConfig(),
             regressor_config: RegressorConfig | None = None, grid: str | os.PathLike | None = None,
             device: str | torch.device = "cpu", progress: bool = True,
             log: Callable[[str], None] | None = None, clips: list[EvalClip] | None = None,
             arcface: str | os.PathLike | None = None, real: bool | None = None) -> dict[str, Any]:
    """Evaluate a checkpoint on held-out synthetic identities (or the corpus at `data`).

    `clips` short-circuits data loading (tests reuse one rendered set). `grid` writes the basis
    sweep PNG. The regressor at `regressor` is trained first when the file is absent. On real data
    (`real`, by default detected from the corpus, see `real_metrics.is_real_data`) the reenactment
    sections also carry real-face metrics; `arcface` is the ArcFace ONNX model CSIM needs.
    """
    log = log or (lambda message: print(message, file=sys.stderr))
    path = resolve_checkpoint_path(checkpoint)
    model, _ = load_checkpoint(path, device=device)
    attribute_model = build_or_load_regressor(regressor, config=regressor_config, device=device,
                                              progress=progress, log=log)
    if clips is None:
        if data is not None:
            clips = load_corpus(data, limit=config.identities)
        else:
            clips = generate_heldout(config.identities, config.frames, config.resolution,
                                     seed=config.heldout_seed, progress=progress)
    real_metrics = None
    if real if real is not None else is_real_data(data, clips):
        real_metrics = build_real_metrics(arcface, beta_sources(data, [clip.name for clip in clips]))
    elif arcface is not None:
        log("--arcface is used on real data only (a `export3d prepare` corpus); ignored for synthetic heads")
    runner = ModelRunner(model, device=device, batch_size=config.batch_size, progress=progress)
    result, basis = Harness(runner, attribute_model, config, real=real_metrics).run(clips)
    seeds = sorted({clip.corpus_seed for clip in clips if clip.corpus_seed is not None})
    result.update({
        "real_data": real_metrics is not None,
        "checkpoint": str(path),
        "data": str(data) if data is not None else None,
        "corpus_seeds": seeds,  # synthetic corpus seeds of the clips; held-out ones are >= 10,000,000
        "regressor": {"path": str(regressor), "accuracy": getattr(attribute_model, "meta", {}).get("accuracy")},
    })
    if real_metrics is not None:
        result["notes"] = [PROXY_NOTE]
    if grid is not None:
        result["basis"]["grid"] = str(save_grid(basis.grid, grid))
    return result


def _cell(value: Any, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


_REAL_LABELS = {"akd": "AKD (px)", "csim": "CSIM", "aed": "AED", "apd": "APD"}


def _real_face_lines(title: str, block: dict[str, Any]) -> list[str]:
    """One line per metric: the rows' values, or "n/a (reason)" when the metric has no model."""
    rows = [name for name in ("model", "copy_source", "copy_driving") if name in block]
    lines = [f"{title:<26}" + "".join(f"{name:>14}" for name in rows)]
    missing = block.get("missing", {})
    for metric in block[rows[0]]:
        label = f"  {_REAL_LABELS.get(metric, metric):<24}"
        values = [block[name].get(metric) for name in rows]
        if all(v is None for v in values):
            lines.append(label + f"n/a ({missing.get(metric) or 'no value'})")
        else:
            lines.append(label + "".join(f"{_cell(v):>14}" for v in values))
    lines.extend(f"  note: {note}" for note in block.get("notes", []))
    return lines


def format_table(result: dict[str, Any]) -> str:
    """The result as an aligned plain-text table (what `export3d eval` prints)."""
    data = result.get("data") or f"generated held-out heads (corpus seed {result.get('corpus_seeds')})"
    lines = [f"checkpoint: {result.get('checkpoint')}   identities: {result['n_identities']}   data: {data}"]
    same, cross, novel = result["same_identity"], result["cross_identity"], result["novel_view"]
    lines.append(f"{'same identity':<26}{'PSNR':>8}{'SSIM':>8}{'AED':>8}{'APD':>8}")
    for name in ("model", "copy_source", "model_from_driving"):
        row = same[name]
        lines.append(f"  {name:<24}{_cell(row['psnr'], 2):>8}{_cell(row['ssim']):>8}{_cell(row['aed']):>8}"
                     f"{_cell(row['apd']):>8}")
    ratio = same.get("aed_ratio")
    if ratio:
        error = ratio["standard_error"]
        spread = (f" ± {error:.3f} (one standard error, {ratio['identities']} identities resampled)"
                  if error is not None else " (no standard error from one identity)")
        lines.append(f"  AED of the model / copy the source: {ratio['model_over_copy_source']:.3f}{spread}")
    check = same.get("regressor_check")
    if check:
        lines.append(f"  regressor on the driving frames: AED {check['driving_aed']:.3f} and APD "
                     f"{check['driving_apd']:.3f} against the true β and pose; true copy-source AED "
                     f"{check['true_copy_source_aed']:.3f}")
    lines.append(f"{'cross identity':<26}{'id_sim':>8}{'AED':>8}{'APD':>8}")
    for name in ("model", "copy_source", "copy_driving"):
        row = cross[name]
        lines.append(f"  {name:<24}{_cell(row['id_sim']):>8}{_cell(row['aed']):>8}{_cell(row['apd']):>8}")
    if cross.get("note"):
        lines.append(f"  note: {cross['note']}")
    lines.extend(f"  note: {note}" for note in result.get("notes", []))
    for title, section in (("real-face, same identity", same), ("real-face, cross identity", cross)):
        if "real_face" in section:
            lines.extend(_real_face_lines(title, section["real_face"]))
    lines.append(f"{'novel views':<26}{'PSNR':>8}{'SSIM':>8}")
    for name in ("model", "copy_source"):
        if name in novel:
            lines.append(f"  {name:<24}{_cell(novel[name]['psnr'], 2):>8}{_cell(novel[name]['ssim']):>8}")
    if novel.get("note"):
        lines.append(f"  note: {novel['note']}")
    basis = result["basis"]
    lines.append(f"basis: {basis['meaningful']} of {len(basis['response'])} vectors meaningful "
                 f"{basis.get('meaningful_vectors', '')}; strength (std units) "
                 + " ".join(_cell(s, 2) for s in basis.get("strength", [])))
    if basis.get("code_information"):
        r2 = basis["code_information"]
        lines.append("  " + describe_code_information(list(r2.values()), list(r2)))
    return "\n".join(lines)


__all__ = ["evaluate", "format_table"]
