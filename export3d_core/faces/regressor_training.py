"""Training the attribute regressor on freshly rendered synthetic heads with known attributes.

Render sets of the regressor's own identities (corpus seed `REGRESSOR_SEED`, never a training or
evaluation identity), blur and noise augmentation (model outputs are softer and noisier than clean
renders), the fit, its held-out accuracy, and `build_or_load_regressor` (train one when the file
is absent).
"""
from __future__ import annotations

import dataclasses
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from export3d_core.data import synthetic_views as views
from export3d_core.faces.regressor import (DEFAULT_REGRESSOR, AttributeRegressor, RegressorConfig, load_regressor,
                                           save_regressor, to_float, two_views)
from export3d_core.metrics import cosine_similarity, l1_distance


# -- data -------------------------------------------------------------------------------------------
@dataclass
class RenderSet:
    inputs: np.ndarray  # (N, 6, res, res) uint8: the two views the CNN reads
    targets: np.ndarray  # (N, out_dim) float32: β, pose, identity
    identity_index: np.ndarray  # (N,) which identity of the set each render shows
    identity_names: list[str] = field(default_factory=list)


def render_set(config: RegressorConfig, first: int, count: int, progress: bool = True, label: str = "") -> RenderSet:
    """Render `frames_per_identity` frames of the regressor's identities `first .. first+count-1`
    (of corpus seed `REGRESSOR_SEED`), with their attribute targets."""
    from export3d_core.data.synthetic import HeadRenderer

    images, targets, owners = [], [], []
    names: list[str] = []
    bar = _progress(count * config.frames_per_identity, f"rendering {label}", progress)
    with HeadRenderer(config.render_resolution) as renderer:
        for index in range(first, first + count):
            head = views.draw_head(views.REGRESSOR_SEED, index, config.frames_per_identity)
            identity = views.identity_vector(head.identity)
            names = names or views.identity_keys(head.identity)
            for image, beta, camera in zip(views.render_head(renderer, head), head.betas, head.cameras):
                images.append(two_views(image, config))
                targets.append(np.concatenate([beta, views.pose_of(camera), identity]).astype(np.float32))
                owners.append(index)
                bar.update(1)
    bar.close()
    return RenderSet(np.stack(images), np.stack(targets), np.asarray(owners), names)


def _progress(total: int, desc: str, enabled: bool):
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, disable=not enabled, leave=False, file=sys.stderr)


def _augment(batch: Tensor, config: RegressorConfig, generator: torch.Generator) -> Tensor:
    """Random blur and noise: model outputs are softer and noisier than clean renders."""
    b = batch.shape[0]
    sigma = torch.rand(b, generator=generator) * config.blur_max  # (B,)
    radius = max(1, int(np.ceil(2 * config.blur_max)))
    coords = torch.arange(-radius, radius + 1, dtype=torch.float32)  # (k,)
    kernel = torch.exp(-coords[None] ** 2 / (2 * sigma[:, None].clamp_min(1e-3) ** 2))  # (B, k)
    kernel = kernel / kernel.sum(dim=1, keepdim=True)
    c, h, w = batch.shape[1:]
    x = batch.reshape(1, b * c, h, w)
    k = kernel.repeat_interleave(c, dim=0)  # (B*C, k)
    x = F.conv2d(F.pad(x, (radius, radius, 0, 0), mode="replicate"), k[:, None, None, :], groups=b * c)
    x = F.conv2d(F.pad(x, (0, 0, radius, radius), mode="replicate"), k[:, None, :, None], groups=b * c)
    noise = torch.randn(batch.shape, generator=generator) * torch.rand(b, 1, 1, 1, generator=generator) * config.noise_max
    return x.reshape(b, c, h, w) + noise


# -- training ---------------------------------------------------------------------------------------
def train_regressor(config: RegressorConfig, progress: bool = True, device: str | torch.device = "cpu",
                    log: Callable[[str], None] | None = None) -> AttributeRegressor:
    """Render training and test heads, fit the CNN, and record its test accuracy in `model.meta`."""
    started = time.perf_counter()
    first_test = config.first_identity + config.train_identities
    train = render_set(config, config.first_identity, config.train_identities, progress, "regressor training heads")
    test = render_set(config, first_test, config.test_identities, progress, "regressor test heads")
    config = dataclasses.replace(config, identity_dim=train.targets.shape[1] - config.beta_dim - views.POSE_DIM,
                                 identity_names=tuple(train.identity_names))
    return fit_regressor(config, train, test, progress=progress, device=device, log=log, started=started)


def fit_regressor(config: RegressorConfig, train: RenderSet, test: RenderSet, progress: bool = True,
                  device: str | torch.device = "cpu", log: Callable[[str], None] | None = None,
                  started: float | None = None) -> AttributeRegressor:
    """Fit the CNN on rendered `train` (inputs made by `two_views` with this config) and record its
    accuracy on `test` in `model.meta`. `config.identity_dim` must be set."""
    log = log or (lambda message: print(message, file=sys.stderr))
    started = time.perf_counter() if started is None else started
    torch.manual_seed(config.seed)
    model = AttributeRegressor(config).to(device)
    targets = torch.from_numpy(train.targets)  # (N, out_dim)
    model.target_mean.copy_(targets.mean(dim=0))
    model.target_std.copy_(targets.std(dim=0).clamp_min(1e-6))  # constant entries stay finite
    images = torch.from_numpy(train.inputs)  # (N, 6, res, res) uint8
    standardised = (targets - model.target_mean.cpu()) / model.target_std.cpu()

    loss_weights = torch.ones(config.out_dim, device=device)
    loss_weights[:config.beta_dim] = config.expression_weight
    loss_weights = loss_weights / loss_weights.mean()  # the same loss scale for any weight
    optimiser = torch.optim.Adam(model.parameters(), lr=config.lr)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimiser, T_max=max(1, config.steps))
    generator = torch.Generator().manual_seed(config.seed)
    model.train()
    bar = _progress(config.steps, "training attribute regressor", progress)
    for _ in range(config.steps):
        index = torch.randint(len(images), (min(config.batch_size, len(images)),), generator=generator)
        batch = _augment(to_float(images[index]), config, generator)
        loss = ((model(batch.to(device)) - standardised[index].to(device)).square() * loss_weights).mean()
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
        schedule.step()
        bar.set_postfix(loss=f"{loss.item():.3f}", refresh=False)
        bar.update(1)
    bar.close()
    model.eval()
    model.meta = {"accuracy": evaluate_regressor(model, test), "train_renders": len(images),
                  "test_renders": len(test.inputs), "train_seconds": round(time.perf_counter() - started, 1)}
    log("attribute regressor held-out accuracy: " + format_accuracy(model.meta["accuracy"]))
    return model


def evaluate_regressor(model: AttributeRegressor, test: RenderSet) -> dict[str, float]:
    """Accuracy on renders of unseen identities, next to the "predict the mean" baseline.

    expression_mae / pose_mae: mean L1 error (β units / radians); *_baseline: the same error of
    always predicting the training mean; identity_cos_same / _other: mean cosine of the identity
    embedding of a render with the true standardised identity of the same / of another identity;
    expression_corr: Pearson r of predicted and true β, one per parameter.
    """
    with torch.no_grad():
        device = model.target_mean.device
        found = model.split(torch.cat([model(to_float(torch.from_numpy(test.inputs[i:i + 64])).to(device)).cpu()
                                       for i in range(0, len(test.inputs), 64)]))
    cfg = model.config
    truth = torch.from_numpy(test.targets).double()
    mean = model.target_mean.cpu().double()
    b, p = cfg.beta_dim, cfg.pose_dim
    true_id = (truth[:, b + p:] - mean[b + p:]) / model.target_std.cpu().double()[b + p:]
    other = torch.roll(true_id, shifts=cfg.frames_per_identity, dims=0)  # a render of the next identity
    return {
        "expression_mae": float(l1_distance(found.expression, truth[:, :b]).mean()),
        "expression_mae_baseline": float(l1_distance(mean[:b].expand(len(truth), b), truth[:, :b]).mean()),
        "pose_mae": float(l1_distance(found.pose, truth[:, b:b + p]).mean()),
        "pose_mae_baseline": float(l1_distance(mean[b:b + p].expand(len(truth), p), truth[:, b:b + p]).mean()),
        "identity_cos_same": float(cosine_similarity(found.identity_embedding, true_id).mean()),
        "identity_cos_other": float(cosine_similarity(found.identity_embedding, other).mean()),
        "expression_corr": [round(_correlation(found.expression[:, k], truth[:, k]), 3) for k in range(b)],
    }


def _correlation(a: Tensor, b: Tensor) -> float:
    """Pearson r of two 1-D samples (0 when either is constant)."""
    a, b = a.double() - a.double().mean(), b.double() - b.double().mean()
    return float((a * b).sum() / (a.norm() * b.norm()).clamp_min(1e-12))


def format_accuracy(acc: dict[str, float]) -> str:
    return (f"expression MAE {acc['expression_mae']:.3f} (mean-guess {acc['expression_mae_baseline']:.3f}), "
            f"pose MAE {np.degrees(acc['pose_mae']):.2f} deg (mean-guess {np.degrees(acc['pose_mae_baseline']):.2f}), "
            f"identity cosine {acc['identity_cos_same']:.3f} same / {acc['identity_cos_other']:.3f} other")


def build_or_load_regressor(path: str | os.PathLike = DEFAULT_REGRESSOR, *, config: RegressorConfig | None = None,
                            device: str | torch.device = "cpu", progress: bool = True,
                            log: Callable[[str], None] | None = None) -> AttributeRegressor:
    """Load the regressor at `path`; when the file is absent, train one on fresh renders and save it."""
    path = Path(path)
    log = log or (lambda message: print(message, file=sys.stderr))
    if path.is_file():
        return load_regressor(path, device)
    log(f"attribute regressor {path} not found: training one on synthetic renders "
        "(with the default config about 40 min on 2 CPU cores)")
    model = train_regressor(config or RegressorConfig(), progress=progress, device=device, log=log)
    save_regressor(model, path)
    log(f"saved attribute regressor to {path}")
    return model


__all__ = ["RenderSet", "render_set", "train_regressor", "fit_regressor", "evaluate_regressor", "format_accuracy",
           "build_or_load_regressor"]
