"""Contrastive pre-training of LeBS (CLeBS, supplementary §1.2 and §1.4).

Owns the InfoNCE loss, the choice of negatives, the pre-training loop that fits LeBS (the
coefficient MLP and the basis) jointly with the image encoder f_I, and saving / loading the LeBS
weights that the main trainer then freezes. The positive of a frame is the LeBS embedding of its
own β; its negatives are the embeddings of the β of *other frames of the same clip* (same person,
same background: only the expression tells them apart). A clip with fewer than K+1 frames gives
all its other frames and the missing slots are masked out of the softmax; a one-frame clip gives
no negative at all, so its term is log(1) = 0 and teaches nothing (it is simply carried along).

Optionally (`TrainConfig.clebs_beta_negatives`, not in the paper) each positive also gets hard
negatives made in β space: its own β with one parameter moved by at least a quarter of that
parameter's range. Clip negatives differ from the positive in many parameters at once, so the
salient ones (jaw, blinks) suffice to pick the positive and InfoNCE stops there; on the demo corpus
the 10 coefficients then kept almost nothing of a right-brow raise or a mouth shift (linear R²
0.19 and 0.10 of β from λ, see `code_information`) and the generator could not render them.
A negative that differs in exactly one parameter can only be told apart by reading it.
"""
from __future__ import annotations

import json
import math
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import nn
from tqdm import tqdm

from export3d_core.config import ModelConfig, TrainConfig
from export3d_core.data.dataset import CorpusDataset
from export3d_core.errors import Export3DError
from export3d_core.nn.code_information import code_information, min_expressions_for_information

CLEBS_FILE = "clebs.safetensors"  # LeBS weights, what `train --clebs` loads
ENCODER_FILE = "image_encoder.safetensors"  # f_I, kept for analysis; G never needs it
CLEBS_FORMAT = "export3d-clebs"


def info_nce(query: torch.Tensor, positive: torch.Tensor, negatives: torch.Tensor, tau: float,
             mask: torch.Tensor | None = None) -> torch.Tensor:
    """InfoNCE on cosine similarity: mean over b of -log softmax(sim / tau)[positive].

    query (B, d), positive (B, d), negatives (B, K, d); mask (B, K) bool, True where a negative is
    real (False slots are left out of the softmax).
    """
    q = F.normalize(query, dim=-1)  # (B, d)
    pos = (q * F.normalize(positive, dim=-1)).sum(-1, keepdim=True)  # (B, 1)
    neg = torch.einsum("bd,bkd->bk", q, F.normalize(negatives, dim=-1))  # (B, K)
    if mask is not None:
        neg = neg.masked_fill(~mask, float("-inf"))
    logits = torch.cat([pos, neg], dim=1) / tau  # (B, 1 + K)
    return -torch.log_softmax(logits, dim=1)[:, 0].mean()


def draw_negatives(dataset: CorpusDataset, indices: np.ndarray, k: int,
                   rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """For each frame, k other frames of its clip: (B, k) indices and a (B, k) mask of real slots."""
    chosen = np.zeros((len(indices), k), dtype=np.int64)
    mask = np.zeros((len(indices), k), dtype=bool)
    for row, index in enumerate(indices):
        siblings = dataset.clip_frames[dataset.frame_clip[index]]
        others = siblings[siblings != index]
        take = min(k, len(others))
        chosen[row, :take] = rng.choice(others, size=take, replace=False)
        chosen[row, take:] = index  # placeholder, masked out
        mask[row, :take] = True
    return chosen, mask


def one_parameter_negatives(betas: np.ndarray, k: int, low: np.ndarray, high: np.ndarray,
                            rng: np.random.Generator, min_gap: float = 0.25) -> np.ndarray:
    """Hard negatives (B, k, D) for betas (B, D): copies with one parameter each moved to a value
    uniform over [low, high] at least `min_gap` x (high - low) away from its own.

    Parameters with no range (high == low) are never chosen; with none left there is nothing to do.
    """
    span = high - low  # (D,)
    movable = np.flatnonzero(span > 0)
    if movable.size == 0:
        raise Export3DError("every β parameter is constant over the corpus: no β-space negatives can be made")
    batch = betas.shape[0]
    which = movable[rng.integers(movable.size, size=(batch, k))]  # (B, k)
    old = np.take_along_axis(betas, which, axis=1)  # (B, k)
    gap = min_gap * span[which]
    below = np.maximum(0.0, old - gap - low[which])  # length of [low, old - gap]
    above = np.maximum(0.0, high[which] - old - gap)  # length of [old + gap, high]
    u = rng.random((batch, k)) * (below + above)
    new = np.where(u < below, low[which] + u, old + gap + (u - below))
    negatives = np.repeat(betas[:, None, :], k, axis=1)  # (B, k, D)
    np.put_along_axis(negatives, which[..., None], new[..., None], axis=2)
    return negatives


def corpus_beta_range(dataset: CorpusDataset) -> tuple[np.ndarray, np.ndarray]:
    """Lowest and highest value of each β parameter over the corpus, (D,) each."""
    low, high = dataset.betas.double().aminmax(dim=0)
    return low.numpy(), high.numpy()


def embed_beta(lebs: nn.Module, beta: torch.Tensor) -> torch.Tensor:
    """β (..., beta_dim) -> e = Vᵀλ (..., d) through LeBS."""
    flat = beta.reshape(-1, beta.shape[-1])  # (M, beta_dim)
    e = lebs.embed(lebs.coefficients(flat))  # (M, d)
    return e.reshape(*beta.shape[:-1], e.shape[-1])


def clebs_step_loss(lebs: nn.Module, encoder: nn.Module, dataset: CorpusDataset, indices: np.ndarray,
                    k: int, tau: float, rng: np.random.Generator, device: torch.device,
                    beta_negatives: int = 0, beta_range: tuple[np.ndarray, np.ndarray] | None = None) -> torch.Tensor:
    """The InfoNCE loss of one batch of frames (images -> f_I queries, β -> LeBS keys), with k clip
    negatives and `beta_negatives` one-parameter negatives per frame, moved within `beta_range`
    (low, high; `corpus_beta_range`, computed once by the caller, not per step)."""
    negatives, mask = draw_negatives(dataset, indices, k, rng)
    images = torch.stack([dataset.source_image(int(i)) for i in indices]).to(device)  # (B, 3, in, in)
    query = encoder(images)  # (B, d)
    positive = embed_beta(lebs, dataset.betas[indices].to(device))  # (B, d)
    negative_betas = dataset.betas[negatives.reshape(-1)].view(*negatives.shape, -1)  # (B, K, D)
    mask = torch.from_numpy(mask)
    if beta_negatives > 0:
        low, high = beta_range
        hard = one_parameter_negatives(dataset.betas[indices].numpy().astype(np.float64), beta_negatives, low, high, rng)
        negative_betas = torch.cat([negative_betas, torch.from_numpy(hard).float()], dim=1)  # (B, K + K', D)
        mask = torch.cat([mask, torch.ones(len(indices), beta_negatives, dtype=torch.bool)], dim=1)
    negative = embed_beta(lebs, negative_betas.to(device))  # (B, K + K', d)
    return info_nce(query, positive, negative, tau, mask.to(device))


def save_lebs(lebs: nn.Module, path: Path, cfg: ModelConfig, extra: dict | None = None) -> None:
    """LeBS weights as safetensors with the model config in the header; atomic."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().cpu().contiguous().clone() for k, v in lebs.state_dict().items()}
    meta = {"format": CLEBS_FORMAT, "config": json.dumps(cfg.to_dict()), "extra": json.dumps(extra or {})}
    tmp = path.with_name(f".{path.name}.tmp")
    save_file(tensors, str(tmp), metadata=meta)
    tmp.replace(path)


def read_lebs_extra(path: Path) -> dict:
    """The `extra` record `save_lebs` wrote (steps, loss, code information), {} if there is none."""
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as handle:
        metadata = handle.metadata() or {}
    return json.loads(metadata.get("extra", "{}"))


def resolve_clebs_path(run_or_file: str | Path) -> Path:
    """`--clebs` accepts a pre-training run directory or the weights file itself."""
    path = Path(run_or_file)
    if path.is_dir():
        path = path / CLEBS_FILE
    if not path.is_file():
        raise Export3DError(f"CLeBS weights not found at {path} (run `export3d pretrain-clebs` first)")
    return path


def load_lebs_frozen(lebs: nn.Module, run_or_file: str | Path) -> Path:
    """Load pre-trained LeBS weights into `lebs` and freeze them (CLeBS is frozen after pre-training)."""
    path = resolve_clebs_path(run_or_file)
    try:
        state = load_file(str(path))
    except Exception as exc:
        raise Export3DError(f"cannot read CLeBS weights {path}: {exc}") from None
    own = lebs.state_dict()
    bad = [k for k in own if k not in state or state[k].shape != own[k].shape]
    if bad or set(state) - set(own):
        raise Export3DError(f"CLeBS weights {path} do not fit this model (e.g. {bad[:2] or sorted(set(state) - set(own))[:2]}); "
                            "pre-train with the same preset and corpus")
    lebs.load_state_dict(state)
    lebs.requires_grad_(False)
    return path


def build_clebs_modules(cfg: ModelConfig) -> tuple[nn.Module, nn.Module]:
    """A fresh LeBS and image encoder f_I (ResNetSE18 + one FC to d)."""
    from export3d_core.nn.lebs import LeBS, ResNetSE18  # deferred: keeps this module importable alone

    return LeBS(cfg), ResNetSE18(cfg)


def pretrain_clebs(dataset: CorpusDataset, cfg: ModelConfig, train_cfg: TrainConfig, out_dir: str | Path, *,
                   steps: int, batch_size: int | None = None, device: str | torch.device = "cpu",
                   seed: int | None = None, progress: bool = True) -> Path:
    """Fit LeBS and f_I jointly with Adam (lr_clebs) for `steps` steps; returns the LeBS weights path.

    Writes OUT/clebs.safetensors, OUT/image_encoder.safetensors and OUT/clebs_log.jsonl. Ctrl-C
    stops early and still writes the weights learned so far.
    """
    if cfg.beta_dim != dataset.beta_dim:
        raise Export3DError(f"model beta_dim {cfg.beta_dim} != corpus beta_dim {dataset.beta_dim}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    seed = train_cfg.seed if seed is None else seed
    batch_size = batch_size or train_cfg.batch_size
    device = torch.device(device)
    torch.manual_seed(seed)
    lebs, encoder = (m.to(device).train() for m in build_clebs_modules(cfg))
    params = list(lebs.parameters()) + list(encoder.parameters())
    optimizer = torch.optim.Adam(params, lr=train_cfg.lr_clebs)
    rng = np.random.default_rng(seed)
    beta_range = corpus_beta_range(dataset)
    log_path = out / "clebs_log.jsonl"
    step, loss_value = 0, math.nan
    bar = tqdm(total=steps, desc="pretrain-clebs", disable=not progress, dynamic_ncols=True)
    try:
        with log_path.open("a", encoding="utf-8") as log:
            while step < steps:
                start = time.perf_counter()
                indices = rng.integers(len(dataset), size=batch_size)
                loss = clebs_step_loss(lebs, encoder, dataset, indices, train_cfg.clebs_negatives,
                                       train_cfg.clebs_temperature, rng, device, train_cfg.clebs_beta_negatives,
                                       beta_range)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                step += 1
                loss_value = float(loss.detach())
                log.write(json.dumps({"step": step, "loss": loss_value,
                                      "seconds": time.perf_counter() - start}) + "\n")
                bar.set_postfix(loss=f"{loss_value:.4f}")
                bar.update(1)
    except KeyboardInterrupt:
        bar.write(f"interrupted at step {step}; saving CLeBS weights")
    finally:
        bar.close()
    path = out / CLEBS_FILE
    extra = {"steps": step, "loss": loss_value}
    if len(dataset.betas) >= min_expressions_for_information(cfg.n_basis):
        extra["code_r2"] = [round(v, 4) for v in code_information(lebs.eval(), dataset.betas).tolist()]
        extra["beta_names"] = list(dataset.info.beta_names)
    save_lebs(lebs, path, cfg, extra)
    save_file({k: v.detach().cpu().contiguous().clone() for k, v in encoder.state_dict().items()},
              str(out / ENCODER_FILE), metadata={"format": "export3d-image-encoder"})
    return path
