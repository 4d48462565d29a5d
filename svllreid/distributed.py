"""torch.distributed helpers: one process per device under torchrun, or a single process."""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass

import torch
import torch.distributed as dist
import torch.distributed.nn.functional as dist_nn

__all__ = [
    "DistInfo",
    "barrier",
    "broadcast_flag",
    "broadcast_state",
    "gather_with_grad",
    "init_distributed",
    "resolve_device",
    "shutdown",
]


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init_distributed(device_type: str) -> DistInfo:
    """Join the process group torchrun describes in the environment (no-op without torchrun).

    NCCL on CUDA, gloo otherwise (so DDP also runs, and is tested, on CPU).
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo()
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device_type == "cuda" else "gloo")
    return DistInfo(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))


def gather_with_grad(tensor: torch.Tensor) -> torch.Tensor:
    """Every process's ``tensor`` concatenated along dim 0, in rank order (all must have one shape).

    Gradients flow back to each process's own rows, summed over the processes that used them: a
    loss computed over the gathered rows on every process, with DDP's gradient averaging, then
    trains exactly as that loss on one process over the whole global batch. Without a process
    group the tensor is returned as it is.
    """
    if not dist.is_available() or not dist.is_initialized() or dist.get_world_size() == 1:
        return tensor
    if not tensor.requires_grad:
        parts = [torch.empty_like(tensor) for _ in range(dist.get_world_size())]
        dist.all_gather(parts, tensor.contiguous())
        return torch.cat(parts)
    with warnings.catch_warnings():
        # Deprecated in favour of a private API; still the public autograd-aware all-gather.
        warnings.filterwarnings("ignore", message=".*all_gather is deprecated.*", category=FutureWarning)
        return torch.cat(dist_nn.all_gather(tensor))


def barrier(info: DistInfo) -> None:
    if info.enabled:
        dist.barrier()


def broadcast_flag(flag: bool, info: DistInfo) -> bool:
    """The main process's ``flag`` on every process (a decision only the main process could make)."""
    if not info.enabled:
        return flag
    holder = [flag]
    dist.broadcast_object_list(holder, src=0)
    return bool(holder[0])


def broadcast_state(module: torch.nn.Module, info: DistInfo) -> None:
    """Copy the main process's parameters and buffers into ``module`` on every process (the network the
    main process chose to deliver), with no shared file system needed."""
    if not info.enabled:
        return
    with torch.no_grad():
        for tensor in module.state_dict().values():
            dist.broadcast(tensor, src=0)


def shutdown(info: DistInfo) -> None:
    if info.enabled and dist.is_initialized():
        dist.destroy_process_group()


def resolve_device(name: str, info: DistInfo) -> torch.device:
    """``auto`` picks CUDA (this process's local rank) when available, else the CPU."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(name)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError("run.device=cuda but no CUDA device is available; use run.device=cpu or auto")
        if device.index is None:
            device = torch.device("cuda", info.local_rank)
        torch.cuda.set_device(device)
    return device
