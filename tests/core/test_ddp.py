"""A real 2-process DDP run on CPU (gloo): both ranks end with identical weights, see different
data, and only rank 0 writes logs and checkpoints."""
from __future__ import annotations

import os
import shutil
import socket
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp
from safetensors.torch import load_file, save_file
from test_dataset import write_toy_corpus

from export3d_core.train import checkpointing as ckpt
from export3d_core.train.commands import build_trainer
from export3d_core.train.ddp import cleanup_distributed, setup_distributed
from export3d_core.train.run_config import RunConfig
from export3d_core.train.logs import LOG_FILE, read_jsonl

WORLD = 2


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def worker(rank: int, port: int, corpus: str, out: str) -> None:
    """One rank, set up exactly as torchrun would (environment variables)."""
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(WORLD), LOCAL_RANK=str(rank),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)  # two ranks share the two cores
    info = setup_distributed("cpu")
    assert info.distributed and info.rank == rank
    run = RunConfig(preset="tiny", data=corpus, out=str(Path(out) / "run"), steps=2, adv_steps=2, batch=2,
                    seed=5, checkpoint_every=0, sample_every=0, device="cpu", no_progress=True)
    seen: list[int] = []
    trainer = build_trainer(run, info, hooks=[lambda t, r: seen.extend(t._last[0]["index"].tolist())])
    initial = {f"model.{k}": v.clone() for k, v in trainer.model.state_dict().items()}
    assert trainer.train() == "done"
    tensors = {f"model.{k}": v for k, v in trainer.model.state_dict().items()}
    tensors.update({f"disc.{k}": v for k, v in trainer.disc.state_dict().items()})
    tensors["seen"] = torch.tensor(seen)
    if rank == 0:
        save_file({k: v.contiguous() for k, v in initial.items()}, str(Path(out) / "initial.safetensors"))
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(Path(out) / f"rank{rank}.safetensors"))
    cleanup_distributed()


@pytest.mark.timeout(120)
def test_two_process_gloo_ddp_keeps_ranks_identical(tmp_path: Path) -> None:
    corpus = write_toy_corpus(tmp_path / "corpus", clips=2, frames=4, res=64)
    mp.spawn(worker, args=(free_port(), str(corpus), str(tmp_path)), nprocs=WORLD, join=True)
    rank0 = load_file(str(tmp_path / "rank0.safetensors"))
    rank1 = load_file(str(tmp_path / "rank1.safetensors"))
    initial = load_file(str(tmp_path / "initial.safetensors"))
    weights = [k for k in rank0 if k != "seen"]
    assert any(k.startswith("disc.") for k in weights)
    for name in weights:
        assert torch.equal(rank0[name], rank1[name]), f"ranks differ in {name}"
    changed = [k for k in initial if not torch.equal(initial[k], rank0[k])]
    assert len(changed) > len(initial) // 2, "training should have moved most weights"
    # DistributedSampler: the two ranks' batches of one epoch are disjoint.
    per_step = rank0["seen"].view(-1, 2), rank1["seen"].view(-1, 2)
    assert not set(per_step[0][0].tolist()) & set(per_step[1][0].tolist())
    # Rank 0 alone writes: one log line per step, one checkpoint, the inference weights.
    run = tmp_path / "run"
    assert [r["step"] for r in read_jsonl(run / LOG_FILE)] == [1, 2, 3, 4]
    tensors, meta = ckpt.load_training_state(run)
    assert meta["world_size"] == WORLD and meta["step"] == 4
    assert torch.equal(ckpt.split_prefix(tensors, "model")["generator.triplane_ema"],
                       rank0["model.generator.triplane_ema"])
    assert (run / "model.safetensors").is_file()


@pytest.mark.timeout(240)
def test_torchrun_launches_the_train_module(tmp_path: Path) -> None:
    """`torchrun --nproc_per_node 2 -m export3d_core.train ...` end to end (the sub-command name omitted)."""
    import subprocess
    import sys

    corpus = write_toy_corpus(tmp_path / "corpus", clips=1, frames=4, res=64)
    run = tmp_path / "run"
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(WORLD),
               "--master_port", str(free_port()), "-m", "export3d_core.train", "--preset", "tiny",
               "--data", str(corpus), "--out", str(run), "--steps", "2", "--batch", "2", "--no-progress"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(command, capture_output=True, text=True, timeout=110, env=env,
                            cwd=Path(__file__).resolve().parents[2])
    if result.returncode != 0 and "(SIGABRT)" in result.stderr:
        # Once in about ten full runs on a shared 2-core machine a gloo child aborted in C++ before
        # training (not reproduced in 8 runs alone and under load); a second launch tells that
        # apart from a broken launch path, which fails both times.
        shutil.rmtree(run, ignore_errors=True)
        command[command.index("--master_port") + 1] = str(free_port())
        result = subprocess.run(command, capture_output=True, text=True, timeout=110, env=env,
                                cwd=Path(__file__).resolve().parents[2])
    assert result.returncode == 0, result.stderr[:3000] + "\n…\n" + result.stderr[-2000:]
    assert [r["step"] for r in read_jsonl(run / LOG_FILE)] == [1, 2]
    assert ckpt.load_training_state(run)[1]["world_size"] == WORLD
    assert (run / "model.safetensors").is_file()


def test_one_named_gpu_for_every_torchrun_process_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    """--device cuda:1 under torchrun would put all ranks on one GPU (NCCL fails on duplicates):
    refused with a message before any process group is joined."""
    from export3d_core.errors import Export3DError

    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("LOCAL_RANK", "0")
    with pytest.raises(Export3DError, match="each takes its own"):
        setup_distributed("cuda:1")
    assert not torch.distributed.is_initialized()
