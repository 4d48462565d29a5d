"""The one training loop, shared by both stages.

A stage is a task (batch -> dict of named losses), an optimiser over its parameters, a schedule
and a number of epochs. The loop handles precision, DDP, gradient clipping, logging (progress
bar, JSON lines, TensorBoard) and end-of-epoch callbacks (checkpoints). Losses stay on the device
and are read back once per ``log_every`` steps, which is also when non-finite values are caught.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Callable, Iterable, Sized
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

from svllreid.distributed import DistInfo
from svllreid.errors import TrainingDiverged
from svllreid.fileio import atomic_write_text
from svllreid.precision import autocast
from svllreid.training.optim import Schedule, apply_lr

__all__ = ["MetricsLog", "StagePlan", "Trainer"]

log = logging.getLogger(__name__)


@dataclass
class StagePlan:
    """What one stage runs."""

    name: str
    epochs: int
    schedule: Schedule
    grad_clip: float | None = None
    #: Let DDP tolerate parameters that get no gradient in some steps.
    find_unused_parameters: bool = False


class MetricsLog:
    """JSON lines and TensorBoard scalars (main process only).

    A resumed run (``resume_step``: the global step of the checkpoint it continues) first drops what was
    logged after that checkpoint, which the run is about to log again, so that no step appears twice:
    every record after that step, and validation and dynamics records of that step whose epoch is not among
    ``validated`` (the epochs the checkpoint knows the validation result of) or ``dynamics`` (the stage-2
    epochs it logged the dynamics of: a stage-1 checkpoint knows none, though the start's record of stage 2
    shares its step).
    """

    def __init__(
        self,
        run_dir: Path | None,
        resume_step: int | None = None,
        validated: Iterable[int] = (),
        dynamics: Iterable[int] = (),
    ):
        self.file = None
        self.writer = None
        if run_dir is not None:
            path = run_dir / "metrics.jsonl"
            if resume_step is not None and path.is_file():
                known = {"validation": set(validated), "dynamics": set(dynamics)}
                lines = path.read_text().splitlines(keepends=True)
                kept = [line for line in lines if _logged_by(line, resume_step, known)]
                atomic_write_text(path, "".join(kept))
            self.file = path.open("a")
            try:
                from tensorboardX import SummaryWriter

                # purge_step hides the events an interrupted run wrote after its checkpoint.
                purge = None if resume_step is None else resume_step + 1
                self.writer = SummaryWriter(str(run_dir / "tensorboard"), purge_step=purge)
            except ImportError:  # pragma: no cover (a declared dependency)
                log.warning("tensorboardX is not installed; no TensorBoard events are written")

    def write(self, record: dict[str, Any], step: int) -> None:
        if self.file is not None:
            self.file.write(json.dumps(record) + "\n")
            self.file.flush()
        if self.writer is not None:
            for key, value in record.items():
                if isinstance(value, float) and key not in ("epoch", "step"):
                    self.writer.add_scalar(f"{record['stage']}/{key}", value, step)

    def close(self) -> None:
        """Flush and close (again: nothing)."""
        if self.file is not None:
            self.file.close()
            self.file = None
        if self.writer is not None:
            self.writer.close()
            self.writer = None


def _logged_by(line: str, step: int, known: dict[str, set[int]]) -> bool:
    """Whether a metrics.jsonl line belongs to a checkpoint of global ``step`` (see :class:`MetricsLog`); a
    line that is not a record (one cut short by the interruption) does not."""
    try:
        record = json.loads(line)
    except json.JSONDecodeError:
        return False
    if not isinstance(record, dict) or not isinstance(record.get("step"), int) or record["step"] > step:
        return False
    stage = record.get("stage")
    return record["step"] < step or stage not in known or record.get("epoch") in known[stage]


class Trainer:
    """Runs stages. One instance per run; ``global_step`` counts optimiser steps over stages."""

    def __init__(
        self,
        device: torch.device,
        *,
        amp_dtype: torch.dtype | None,
        dist: DistInfo,
        metrics: MetricsLog,
        log_every: int = 20,
        progress: bool = True,
    ):
        self.device = device
        self.amp_dtype = amp_dtype
        self.dist = dist
        self.metrics = metrics
        self.log_every = log_every
        self.progress = progress and dist.is_main
        self.global_step = 0

    def fit(
        self,
        task: nn.Module,
        optimizer: torch.optim.Optimizer,
        plan: StagePlan,
        batches: Callable[[int], Iterable[dict[str, torch.Tensor]]],
        *,
        start_epoch: int = 1,
        on_epoch_end: Callable[[int], bool | None] | None = None,
        on_first_step: Callable[[int, dict[str, torch.Tensor]], None] | None = None,
    ) -> None:
        """Train ``task`` for epochs ``start_epoch..plan.epochs``; ``on_epoch_end(epoch)`` returning True
        stops after that epoch (early stopping). ``on_first_step(epoch, terms)`` sees the loss terms of each
        epoch's first batch before they are backpropagated (it must keep the graph: ``retain_graph``).

        Raises:
            TrainingDiverged: a loss term became NaN/Inf (the message names the step and term).
        """
        model = task
        if self.dist.enabled:
            ids = [self.device.index] if self.device.type == "cuda" else None
            model = DistributedDataParallel(task, device_ids=ids, find_unused_parameters=plan.find_unused_parameters)
        scaler = torch.amp.GradScaler(self.device.type, enabled=self.amp_dtype == torch.float16)
        params = [p for group in optimizer.param_groups for p in group["params"]]
        for epoch in range(start_epoch, plan.epochs + 1):
            lr = apply_lr(optimizer, plan.schedule(epoch))
            task.train()
            pending: list[tuple[int, list[str], torch.Tensor, int]] = []
            started, images = time.perf_counter(), 0
            epoch_batches = batches(epoch)
            total = len(cast(Sized, epoch_batches)) if hasattr(epoch_batches, "__len__") else None
            bar = tqdm(
                epoch_batches,
                total=total,
                desc=f"{plan.name} {epoch}/{plan.epochs}",
                disable=not self.progress,
                leave=False,
                dynamic_ncols=True,
                mininterval=1.0,
            )
            for number, batch in enumerate(bar):
                batch = {k: v.to(self.device, non_blocking=True) for k, v in batch.items()}
                with autocast(self.device, self.amp_dtype):
                    terms = model(batch)
                if number == 0 and on_first_step is not None:
                    on_first_step(epoch, terms)
                loss = sum(terms.values())
                optimizer.zero_grad(set_to_none=True)
                scaler.scale(loss).backward()
                if plan.grad_clip:
                    scaler.unscale_(optimizer)
                    torch.nn.utils.clip_grad_norm_(params, plan.grad_clip)
                scaler.step(optimizer)
                scaler.update()
                self.global_step += 1
                size = next(iter(batch.values())).shape[0]
                values = torch.stack([t.detach().float() for t in terms.values()])  # stays on the device
                pending.append((self.global_step, list(terms), values, size))
                if len(pending) >= self.log_every:
                    images += self._flush(pending, plan, epoch, lr, started, images, bar)
            images += self._flush(pending, plan, epoch, lr, started, images, bar)
            bar.close()
            elapsed = time.perf_counter() - started
            if self.dist.is_main:
                log.info(
                    "%s epoch %d/%d done in %.1f s (%.1f images/s)",
                    plan.name,
                    epoch,
                    plan.epochs,
                    elapsed,
                    images / max(elapsed, 1e-9),
                )
            if on_epoch_end is not None and on_epoch_end(epoch) is True:
                break

    def _flush(
        self,
        pending: list[tuple[int, list[str], torch.Tensor, int]],
        plan: StagePlan,
        epoch: int,
        lr: float,
        started: float,
        images_before: int,
        bar: tqdm,
    ) -> int:
        """Read logged losses back to the host (one transfer), check them, log means; returns images."""
        if not pending:
            return 0
        # One device-to-host transfer for all pending steps (steps may log different terms).
        flat = torch.cat([p[2] for p in pending]).cpu().tolist()
        values, start = [], 0
        for p in pending:
            values.append(flat[start : start + p[2].shape[0]])
            start += p[2].shape[0]
        for (step, names, _, _), row in zip(pending, values, strict=True):
            for name, value in zip(names, row, strict=True):
                if not math.isfinite(value):
                    raise TrainingDiverged(
                        f"{plan.name}, epoch {epoch}, step {step}: loss term '{name}' is {value}. Training stopped; "
                        "the last checkpoint written before this epoch is intact. Lower the learning rate or use "
                        "fp32 (run.precision=fp32) to investigate."
                    )
        images = sum(p[3] for p in pending)
        seconds = max(time.perf_counter() - started, 1e-9)
        # Each term's mean over the steps that had it: a term skipped in some steps (language SSL in a
        # batch of one identity) would read too low averaged over all of them.
        sums: dict[str, float] = {}
        counts: dict[str, int] = {}
        for (_, names, _, _), row in zip(pending, values, strict=True):
            for name, value in zip(names, row, strict=True):
                sums[name] = sums.get(name, 0.0) + value
                counts[name] = counts.get(name, 0) + 1
        means = {name: total / counts[name] for name, total in sums.items()}
        record = {
            "stage": plan.name,
            "epoch": epoch,
            "step": pending[-1][0],
            "lr": float(lr),
            "loss": float(sum(means.values())),
            **{f"loss_{k}": float(v) for k, v in means.items()},
            "images_per_s": float((images_before + images) * self.dist.world_size / seconds),
        }
        if self.dist.is_main:
            self.metrics.write(record, pending[-1][0])
            bar.set_postfix(loss=f"{record['loss']:.3f}", lr=f"{lr:.2e}", img_s=f"{record['images_per_s']:.0f}")
        pending.clear()
        return images
