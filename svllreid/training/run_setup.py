"""What every training run (ReID and CLIP pretraining) sets up the same way: its directory, new or
resumed, its seed, and its device, precision and fit loop."""

from __future__ import annotations

import logging
import random
import shutil
import time
from pathlib import Path

import numpy as np
import torch
import torch.distributed

from svllreid.config import Config, save_config
from svllreid.distributed import DistInfo, resolve_device
from svllreid.inference.checkpoint import Checkpoint, read_checkpoint, read_checkpoint_meta
from svllreid.precision import resolve_precision
from svllreid.training.cpu_memory import keep_freed_memory
from svllreid.training.trainer import MetricsLog, Trainer

__all__ = ["build_trainer", "holds_results", "new_run_dir", "prepare_run_dir", "seed_everything", "training_device"]

log = logging.getLogger(__name__)


def training_device(cfg: Config, dist: DistInfo) -> tuple[torch.device, torch.dtype | None]:
    """The device of this process (``run.device``) and the autocast dtype there (``run.precision``)."""
    device = resolve_device(cfg.run.device, dist)
    if device.type == "cpu":
        keep_freed_memory()  # the same numbers, without refaulting each step's memory (training/cpu_memory.py)
    return device, resolve_precision(cfg.run.precision, device)


def build_trainer(
    cfg: Config,
    *,
    device: torch.device,
    amp_dtype: torch.dtype | None,
    dist: DistInfo,
    metrics: MetricsLog,
    progress: bool,
) -> Trainer:
    """The fit loop of a run, logging every ``run.log_every`` steps into ``metrics``."""
    return Trainer(
        device, amp_dtype=amp_dtype, dist=dist, metrics=metrics, log_every=cfg.run.log_every, progress=progress
    )


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


#: How to continue a run of each kind (checkpoints record theirs as ``task``; ReID ones have none).
RESUME_COMMANDS = {"reid": "svllreid train --resume", "pretrain": "svllreid pretrain --resume"}


def prepare_run_dir(cfg: Config, dist: DistInfo, resume: str | None, task: str) -> tuple[Checkpoint | None, Path]:
    """The checkpoint to resume (of this ``task``: ``reid`` or ``pretrain``) and the run directory, made
    and holding ``config.yaml`` on the main process.

    A new run refuses a directory that holds a checkpoint or results, and reuses one that does not (an
    earlier run there stopped before its first checkpoint; its logs are dropped). ``resume`` is a run
    directory (its ``checkpoints/last.safetensors``, the training state) or a checkpoint file.
    """
    resume_ckpt = read_checkpoint(_resume_checkpoint(resume, task)) if resume else None
    if resume_ckpt is not None:
        found = resume_ckpt.meta.get("task", "reid")
        if found != task:
            raise ValueError(f"{resume_ckpt.path} is a {found} checkpoint; continue it with {RESUME_COMMANDS[found]}")
        assert resume is not None  # resume_ckpt was read from it
        run_dir = Path(resume).expanduser() if Path(resume).is_dir() else resume_ckpt.path.parent.parent
    else:
        run_dir = new_run_dir(cfg, dist)
    if dist.is_main:
        if resume_ckpt is None and run_dir.exists():
            if holds_results(run_dir):
                raise ValueError(
                    f"run directory {run_dir} already exists; choose another run.name, delete it, or continue "
                    f"it with --resume {run_dir}"
                )
            log.info("reusing %s: an earlier run there stopped before its first checkpoint", run_dir)
            (run_dir / "metrics.jsonl").unlink(missing_ok=True)
            shutil.rmtree(run_dir / "tensorboard", ignore_errors=True)
        run_dir.mkdir(parents=True, exist_ok=True)
        save_config(cfg, run_dir)
    return resume_ckpt, run_dir


def holds_results(run_dir: Path) -> bool:
    """Whether a run directory holds a checkpoint or an evaluation (anything a new run must not overwrite)."""
    return any((run_dir / "checkpoints").glob("*.safetensors")) or (run_dir / "eval.json").exists()


def check_resume_task(resume: str, task: str) -> None:
    """Refuse to continue another kind of run (its checkpoint's ``task``), reading only its metadata.

    Raises:
        ValueError: naming the command that continues it.
    """
    kind = (read_checkpoint_meta(_resume_checkpoint(resume, task)) or {}).get("task", "reid")
    if kind != task:
        raise ValueError(f"{resume} is a {kind} checkpoint; continue it with {RESUME_COMMANDS[kind]}")


def _resume_checkpoint(resume: str, task: str) -> Path:
    """The training state to resume: a run directory's ``checkpoints/last.safetensors``, or the file given.

    Raises:
        ValueError: a run directory without one (the run stopped before its first epoch ended).
    """
    path = Path(resume).expanduser()
    if not path.is_dir():
        return path
    last = path / "checkpoints" / "last.safetensors"
    if not last.is_file():
        command = "svllreid train CONFIG" if task == "reid" else "svllreid pretrain CONFIG"
        raise ValueError(
            f"{path} holds no checkpoint to continue (no {last.relative_to(path)}): that run stopped before its "
            f"first epoch ended. Start it again without --resume ({command} with run.name={path.name} and "
            f"run.output_dir={path.parent} reuses the folder)"
        )
    return last


def new_run_dir(cfg: Config, dist: DistInfo) -> Path:
    """``run.output_dir/run.name`` (default ``<dataset>-<arch>-<time>``), the same on every process."""
    name = cfg.run.name or f"{cfg.data.dataset}-{cfg.model.arch}-{time.strftime('%Y%m%d-%H%M%S')}"
    holder = [str(Path(cfg.run.output_dir).expanduser() / name)]
    if dist.enabled:
        torch.distributed.broadcast_object_list(holder, src=0)
    return Path(holder[0])
