"""The Export3D training loop (supplementary §1.3-1.4): phase 1 reconstruction, phase 2 + adversarial.

Owns `Trainer`: batching with a resumable sampler, one optimisation step per phase, the
discriminator step with R1, checkpoints (every K steps, at the end and on Ctrl-C), logs, sample
grids and the final inference weights. The model, discriminator, perceptual loss and process
group come from outside (see `commands.py`); the trainer only drives them.

Exact resume: every source of randomness is either saved (torch / numpy / python RNG states) or
a pure function of saved numbers (the sampler's permutation of (seed, epoch), each item's source
draw of (seed, epoch, index)); a resumed single-process run on the CPU repeats an uninterrupted
one bit for bit (on CUDA the backward passes of grid_sample and index_add are not deterministic,
so a resumed run follows the same data but not the same bits). Under DDP only rank 0's RNG
states are saved; other ranks re-seed from (seed, rank, step).
"""
from __future__ import annotations

import signal
import threading
import time
from pathlib import Path
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DistributedSampler, default_collate
from tqdm import tqdm

from export3d_core.config import ModelConfig, TrainConfig
from export3d_core.data.dataset import CorpusDataset
from export3d_core.errors import Export3DError
from export3d_core.render.sparsity import SPARSITY_POINTS
from export3d_core.train import checkpointing as ckpt
from export3d_core.train.ddp import DistInfo, all_reduce_mean, autocast, average_buffers, wrap_ddp
from export3d_core.train.logs import LOG_FILE, SAMPLES_DIR, JsonlLog, save_sample_grid, truncate_jsonl
from export3d_core.train.losses import PerceptualLoss, generator_adv_loss, r1_penalty, reconstruction_loss

MODEL_FILE = "model.safetensors"  # the inference weights (export3d_core.checkpoint format)
Hook = Callable[["Trainer", dict[str, Any]], None]


def generator_param_groups(model: nn.Module, train_cfg: TrainConfig) -> list[dict[str, Any]]:
    """G's Adam groups: LeBS first at `lr_lebs` when it trains, then the rest at `lr_g`.

    A frozen CLeBS stays out. LeBS is the first module of Export3D, so the groups list the
    parameters in the model's order, as the single group of older runs did (`split_single_group`).
    """
    lebs = getattr(model, "lebs", None)
    lebs_ids = {id(p) for p in lebs.parameters()} if lebs is not None else set()
    trained_lebs = [p for p in model.parameters() if p.requires_grad and id(p) in lebs_ids]
    rest = [p for p in model.parameters() if p.requires_grad and id(p) not in lebs_ids]
    if not trained_lebs:
        return [{"params": rest, "name": "g"}]
    lr_lebs = train_cfg.lr_g if train_cfg.lr_lebs is None else train_cfg.lr_lebs
    return [{"params": trained_lebs, "lr": lr_lebs, "name": "lebs"}, {"params": rest, "name": "g"}]


def split_single_group(saved: dict[str, Any], optimizer: torch.optim.Optimizer) -> dict[str, Any]:
    """A G optimiser state saved with one group (runs from before LeBS had its own rate) in the
    groups `optimizer` has now: the same parameters in the same order, cut where the groups meet;
    every group keeps the saved hyper-parameters (so LeBS its old rate, G's). Other states pass."""
    groups = optimizer.param_groups
    if len(saved["param_groups"]) != 1 or len(groups) == 1:
        return saved
    ids = saved["param_groups"][0]["params"]
    if len(ids) != sum(len(group["params"]) for group in groups):
        return saved  # does not fit: load_state_dict says so
    split, start = [], 0
    for group in groups:
        count = len(group["params"])
        split.append({**saved["param_groups"][0], "params": ids[start:start + count], "name": group["name"]})
        start += count
    return {"state": saved["state"], "param_groups": split}


class Trainer:
    """Trains `model` on `dataset` for train_cfg.recon_steps + train_cfg.adv_steps steps."""

    def __init__(self, model: nn.Module, dataset: CorpusDataset, train_cfg: TrainConfig, run_dir: str | Path, *,
                 discriminator: nn.Module | None = None, perceptual: PerceptualLoss | None = None,
                 expression: nn.Module | None = None,
                 dist: DistInfo | None = None, hooks: list[Hook] | None = None, progress: bool = True,
                 extra_meta: dict[str, Any] | None = None) -> None:
        self.cfg = train_cfg
        self.dist = dist or DistInfo()
        self.device = self.dist.device
        self.run_dir = Path(run_dir)
        self.dataset = dataset
        self.perceptual = perceptual
        self.expression = expression  # optional expression term (train/face_features.py)
        self.hooks = list(hooks or [])
        self.extra_meta = dict(extra_meta or {})  # saved with every checkpoint (e.g. frozen_lebs)
        self.progress = progress and self.dist.is_main
        self.model = model.to(self.device).train()
        self.net = wrap_ddp(self.model, self.dist)  # what forward goes through (DDP or the model)
        self.opt_g = torch.optim.Adam(generator_param_groups(self.model, train_cfg), lr=train_cfg.lr_g)
        if train_cfg.adv_steps > 0 and discriminator is None:
            raise ValueError("adv_steps > 0 needs a discriminator")
        self.disc = discriminator.to(self.device).train() if discriminator is not None else None
        self.disc_net = wrap_ddp(self.disc, self.dist) if self.disc is not None else None
        self.opt_d = torch.optim.Adam(self.disc.parameters(), lr=train_cfg.lr_d) if self.disc is not None else None
        if len(dataset) < train_cfg.batch_size * self.dist.world_size:
            raise Export3DError(f"the corpus has {len(dataset)} frames, fewer than one global batch "
                                f"({train_cfg.batch_size} x {self.dist.world_size} processes)")
        # DistributedSampler also serves one process (num_replicas 1): one code path, one permutation.
        self.sampler = DistributedSampler(dataset, num_replicas=self.dist.world_size, rank=self.dist.rank,
                                          shuffle=True, seed=train_cfg.seed, drop_last=True)
        self.step = 0
        self.epoch = 0
        self.batch_in_epoch = 0
        self._epoch_indices: list[int] | None = None
        self._stop_requested = False

    # -- properties ------------------------------------------------------------------------------
    @property
    def total_steps(self) -> int:
        return self.cfg.recon_steps + self.cfg.adv_steps

    @property
    def phase(self) -> int:
        return 1 if self.step < self.cfg.recon_steps else 2

    @property
    def model_config(self) -> ModelConfig | None:
        return getattr(self.model, "config", None)

    # -- data ------------------------------------------------------------------------------------
    def next_batch(self) -> dict[str, torch.Tensor]:
        """The next batch of this rank; epochs roll over, the position is part of the checkpoint."""
        per_epoch = len(self.sampler) // self.cfg.batch_size
        if self._epoch_indices is None or self.batch_in_epoch >= per_epoch:
            if self._epoch_indices is not None:
                self.epoch, self.batch_in_epoch = self.epoch + 1, 0
            self.sampler.set_epoch(self.epoch)
            self._epoch_indices = list(self.sampler)
        self.dataset.set_epoch(self.epoch)
        start = self.batch_in_epoch * self.cfg.batch_size
        indices = self._epoch_indices[start:start + self.cfg.batch_size]
        self.batch_in_epoch += 1
        batch = default_collate([self.dataset[i] for i in indices])
        return {k: v.to(self.device, non_blocking=True) for k, v in batch.items()}

    # -- one step ----------------------------------------------------------------------------------
    def train_step(self) -> dict[str, Any]:
        """One optimisation step of G (and of D in phase 2); returns the log record."""
        start = time.perf_counter()
        phase = self.phase
        batch = self.next_batch()
        sparsity_points = SPARSITY_POINTS if self.cfg.lambda_sparsity > 0 else 0
        with autocast(self.device):
            out = self.net(batch["source"], batch["camera"], beta=batch["beta"], sparsity_points=sparsity_points)
        rec, parts = reconstruction_loss(_as_float(out), batch, self.perceptual, self.expression)
        loss_g = self.cfg.lambda_rec * rec
        record: dict[str, Any] = {"step": self.step + 1, "phase": phase, "rec": float(rec.detach()), **parts}
        if out.distortion is not None:
            distortion = out.distortion.float().mean()
            record["distortion"] = float(distortion.detach())
            if self.cfg.lambda_distortion > 0:  # pulls fog-like density into surfaces (faster rendering)
                loss_g = loss_g + self.cfg.lambda_distortion * distortion
        if out.sparsity is not None:  # empties fog around the head, see render/sparsity.py
            sparsity = out.sparsity.float().mean()
            record["sparsity"] = float(sparsity.detach())
            loss_g = loss_g + self.cfg.lambda_sparsity * sparsity
        if self.cfg.lambda_opacity > 0:  # opaque rays stop early in the accelerated renderer
            transparency = (1.0 - out.alpha.float()).mean()
            record["transparency"] = float(transparency.detach())
            loss_g = loss_g + self.cfg.lambda_opacity * transparency
        if phase == 2:
            # G step: D frozen and called unwrapped, so DDP expects no D gradients from it.
            self.disc.requires_grad_(False)
            with autocast(self.device):
                fake_logits = self.disc(out.image, out.image_raw, batch["camera"])
            g_adv = generator_adv_loss(fake_logits.float())
            loss_g = loss_g + self.cfg.lambda_adv * g_adv
            record["g_adv"] = float(g_adv.detach())
        self.opt_g.zero_grad(set_to_none=True)
        loss_g.backward()
        self.opt_g.step()
        average_buffers(self.model, self.dist)
        if phase == 2:
            record.update(self.discriminator_step(out, batch))
        self.step += 1
        record["loss"] = all_reduce_mean(float(loss_g.detach()), self.dist)
        seconds = time.perf_counter() - start
        record["seconds"] = seconds
        record["images_per_s"] = self.cfg.batch_size * self.dist.world_size / seconds
        # Kept for the sample grid: detached, so the step's autograd graph is freed now.
        self._last = (batch, out.image_raw.detach(), out.image.detach())
        return record

    def discriminator_step(self, out: Any, batch: dict[str, torch.Tensor]) -> dict[str, float]:
        """D on fakes, then on reals with R1; gradients accumulate over the two backward passes.

        Two forwards, not one on the concatenation: D's minibatch-stddev would mix reals and
        fakes in one group. Each forward has its own backward, as DDP requires.
        """
        self.disc.requires_grad_(True)
        self.opt_d.zero_grad(set_to_none=True)
        with autocast(self.device):
            fake_logits = self.disc_net(out.image.detach(), out.image_raw.detach(), batch["camera"]).float()  # (B,)
        loss_fake = F.softplus(fake_logits).mean()
        loss_fake.backward()
        real = batch["driving"].detach().requires_grad_(True)
        real_raw = batch["driving_raw"].detach().requires_grad_(True)
        with autocast(self.device):
            real_logits = self.disc_net(real, real_raw, batch["camera"]).float()  # (B,)
        loss_real = F.softplus(-real_logits).mean()
        r1 = r1_penalty(real_logits, [real, real_raw])
        (loss_real + 0.5 * self.cfg.r1_gamma * r1).backward()
        self.opt_d.step()
        return {"d_loss": float(loss_fake.detach() + loss_real.detach()), "r1": float(r1.detach())}

    # -- checkpoints -------------------------------------------------------------------------------
    def state(self) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        tensors = ckpt.with_prefix(self.model.state_dict(), "model")
        g_tensors, g_meta = ckpt.flatten_optimizer(self.opt_g.state_dict(), "opt_g")
        tensors.update(g_tensors)
        meta: dict[str, Any] = {"phase": self.phase, "epoch": self.epoch, "batch_in_epoch": self.batch_in_epoch,
                                "world_size": self.dist.world_size, "train_config": vars(self.cfg).copy(),
                                "opt_g": g_meta, "extra": self.extra_meta}
        if self.model_config is not None:
            meta["model_config"] = self.model_config.to_dict()
        if self.disc is not None:
            tensors.update(ckpt.with_prefix(self.disc.state_dict(), "disc"))
            d_tensors, meta["opt_d"] = ckpt.flatten_optimizer(self.opt_d.state_dict(), "opt_d")
            tensors.update(d_tensors)
        rng_tensors, meta["rng"] = ckpt.capture_rng()
        tensors.update(rng_tensors)
        return tensors, meta

    def save_checkpoint(self) -> Path | None:
        """Rank 0 writes the training state (atomically); other ranks write nothing."""
        if not self.dist.is_main:
            return None
        tensors, meta = self.state()
        return ckpt.save_training_state(self.run_dir, self.step, tensors, meta)

    def resume(self) -> None:
        """Continue from the run directory's last checkpoint (model, optimisers, RNG, sampler)."""
        tensors, meta = ckpt.load_training_state(self.run_dir)
        if self.model_config is not None and "model_config" in meta:
            if ckpt.saved_model_config(meta, self.run_dir) != self.model_config:
                raise Export3DError(f"{self.run_dir} was trained with another model config; resume with the same preset")
        try:
            self.model.load_state_dict(ckpt.split_prefix(tensors, "model"))
            saved_g = ckpt.unflatten_optimizer(tensors, meta["opt_g"], "opt_g")
            self.opt_g.load_state_dict(split_single_group(saved_g, self.opt_g))
            if self.disc is not None and "opt_d" in meta:
                self.disc.load_state_dict(ckpt.split_prefix(tensors, "disc"))
                self.opt_d.load_state_dict(ckpt.unflatten_optimizer(tensors, meta["opt_d"], "opt_d"))
        except (RuntimeError, ValueError, KeyError) as exc:
            raise Export3DError(f"the checkpoint in {self.run_dir} does not fit this model: {str(exc).splitlines()[0]}") from None
        self.step, self.epoch, self.batch_in_epoch = meta["step"], meta["epoch"], meta["batch_in_epoch"]
        self._epoch_indices = None if self.batch_in_epoch == 0 else self._indices_of(self.epoch)
        if self.dist.is_main:
            ckpt.restore_rng(tensors, meta["rng"])
        else:
            torch.manual_seed(hash((self.cfg.seed, self.dist.rank, self.step)) % (2 ** 31))

    def _indices_of(self, epoch: int) -> list[int]:
        self.sampler.set_epoch(epoch)
        return list(self.sampler)

    # -- the run ---------------------------------------------------------------------------------
    def train(self) -> str:
        """Run to total_steps; returns "done" or "interrupted" (a checkpoint is on disk either way)."""
        if self.dist.is_main:  # what a killed run left: temporaries, and log lines past its checkpoint
            ckpt.remove_stale_temp_files(self.run_dir)
            truncate_jsonl(self.run_dir / LOG_FILE, self.step)
        log = JsonlLog(self.run_dir / LOG_FILE) if self.dist.is_main else None
        bar = tqdm(total=self.total_steps, initial=self.step, desc="train", disable=not self.progress,
                   dynamic_ncols=True, unit="step")
        previous = self._install_sigint()
        status = "done"
        try:
            while self.step < self.total_steps:
                record = self.train_step()
                if log is not None:
                    log.write(record)
                bar.set_postfix(phase=record["phase"], loss=f"{record['loss']:.4f}")
                bar.update(1)
                if self.dist.is_main and self.cfg.sample_every and self.step % self.cfg.sample_every == 0:
                    self.save_samples()
                for hook in self.hooks:
                    hook(self, record)
                if self.cfg.checkpoint_every and self.step % self.cfg.checkpoint_every == 0:
                    self.save_checkpoint()
                if self._stop_requested:
                    raise KeyboardInterrupt
        except KeyboardInterrupt:
            status = "interrupted"
            bar.write(f"interrupted at step {self.step}; saving a checkpoint to {self.run_dir}")
        finally:
            self._restore_sigint(previous)
            bar.close()
            if log is not None:
                log.close()
        self.save_checkpoint()
        if status == "done" and self.dist.is_main:
            self.save_inference_weights()
        return status

    def save_samples(self) -> Path | None:
        """source | driving | raw | final of the last batch, as RUN/samples/step_XXXXXXXX.png."""
        batch, image_raw, image = self._last
        size = batch["driving"].shape[-1]
        columns = [batch["source"], batch["driving"], image_raw, image]
        return save_sample_grid(self.run_dir / SAMPLES_DIR / f"step_{self.step:08d}.png", columns, size)

    def save_inference_weights(self) -> Path:
        """RUN/model.safetensors, with λ calibrated to the slider scale on the corpus' expressions."""
        from export3d_core.checkpoint import save_checkpoint  # the lead's format; deferred import
        from export3d_core.lambda_units import calibrated_scale, with_lambda_scale

        path = self.run_dir / MODEL_FILE
        model = self.model
        if hasattr(model, "lebs") and len(self.dataset.betas) >= 2:
            model = with_lambda_scale(model, calibrated_scale(model, self.dataset.betas))
        save_checkpoint(model, path, meta={"step": self.step, "phase": self.phase,
                                           "train_config": vars(self.cfg).copy()})
        return path

    # -- Ctrl-C ------------------------------------------------------------------------------------
    def _install_sigint(self) -> Any:
        """First Ctrl-C: finish the step, checkpoint, stop. Second: stop at once (still checkpoint)."""
        if threading.current_thread() is not threading.main_thread():
            return None

        def request_stop(signum: int, frame: Any) -> None:
            if self._stop_requested:
                raise KeyboardInterrupt
            self._stop_requested = True

        return signal.signal(signal.SIGINT, request_stop)

    @staticmethod
    def _restore_sigint(previous: Any) -> None:
        if previous is not None:
            signal.signal(signal.SIGINT, previous)


def _as_float(out: Any) -> Any:
    """Under bf16 autocast the images come back in bf16; losses are taken in fp32."""
    if out.image.dtype == torch.float32:
        return out
    return type(out)(**{k: (v.float() if torch.is_tensor(v) else v) for k, v in vars(out).items()})


