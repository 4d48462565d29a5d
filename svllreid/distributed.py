"""torch.distributed helpers: one process per device under torchrun, or a single process.

Training runs DDP on them; the commands that extract features (``extract``, ``index build``, ``eval``)
split their images over the processes of a launch (:func:`share`), agree on every failure
(:func:`run_everywhere`, :func:`run_on_main`) so that no process waits for one that stopped, and gather
rows (:func:`gather_rows`).
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, TypeVar, cast

import torch
import torch.distributed as dist
import torch.distributed.nn.functional as dist_nn

from svllreid.errors import ConfigError, LaunchError, SvllreidError

__all__ = [
    "INFERENCE_TIMEOUT",
    "DistInfo",
    "all_gather_objects",
    "barrier",
    "broadcast_flag",
    "broadcast_state",
    "describe_disagreement",
    "gather_rows",
    "gather_with_grad",
    "init_distributed",
    "launch_group",
    "require_same_everywhere",
    "resolve_device",
    "run_everywhere",
    "run_on_main",
    "share",
    "shutdown",
]

T = TypeVar("T")

#: How long a process of an extraction launch waits in a collective for the slowest one. torch's
#: defaults (30 min for gloo, 10 for NCCL) are too short: a process whose shard was written before a
#: restart has nothing to do and waits for the others' whole extraction. A crashed process never leaves
#: the others waiting this long: torchrun stops every process of a launch when one fails.
INFERENCE_TIMEOUT = timedelta(hours=24)


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


def init_distributed(device_type: str, *, timeout: timedelta | None = None) -> DistInfo:
    """Join the process group torchrun describes in the environment (no-op without torchrun).

    NCCL on CUDA, gloo otherwise (so DDP also runs, and is tested, on CPU).

    Args:
        timeout: how long a collective waits (None: torch's default for the backend).
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo()
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device_type == "cuda" else "gloo", timeout=timeout)
    return DistInfo(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))


@contextmanager
def launch_group(device: str, *, timeout: timedelta | None = None) -> Iterator[tuple[DistInfo, torch.device]]:
    """This process's place in a torchrun launch and its device, for the block: under torchrun the GPU
    of its local rank (one per process), else ``device`` as :func:`resolve_device` reads it. Outside
    torchrun (or with one process) a single process, exactly as without this block.

    The process group is left at the end unless it was joined before (a caller's own group stays).

    Raises:
        ConfigError: a GPU index (``cuda:1``) under a launch of several processes, which would put them
            all on one GPU.
    """
    local = DistInfo(local_rank=int(os.environ.get("LOCAL_RANK", "0")))
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and device.startswith("cuda:"):
        raise ConfigError(
            f"--device {device} under torchrun would put every process on one GPU; pass --device cuda (or auto): "
            "each process then takes the GPU of its local rank (CUDA_VISIBLE_DEVICES chooses which GPUs)"
        )
    target = resolve_device(device, local)  # before NCCL starts, so that it knows each process's GPU
    joined_before = dist.is_available() and dist.is_initialized()
    info = init_distributed(target.type, timeout=timeout)
    try:
        yield info, target
    finally:
        if not joined_before:
            shutdown(info)


def share(count: int, info: DistInfo) -> slice:
    """This process's contiguous share of ``count`` items in order: the shares of ranks 0, 1, ...
    concatenated are the items in order, and their sizes differ by at most one (the first ones larger)."""
    base, extra = divmod(count, info.world_size)
    start = info.rank * base + min(info.rank, extra)
    return slice(start, start + base + (1 if info.rank < extra else 0))


def all_gather_objects(value: Any, info: DistInfo) -> list[Any]:
    """Every process's picklable ``value``, in rank order (``[value]`` for a single process)."""
    if not info.enabled:
        return [value]
    gathered: list[Any] = [None] * info.world_size
    dist.all_gather_object(gathered, value)
    return gathered


def gather_rows(tensor: torch.Tensor, info: DistInfo) -> torch.Tensor:
    """Every process's rows ``[n_rank, D]`` (``n_rank`` may differ, and be 0) concatenated in rank order,
    on every process and on ``tensor``'s device. A 1-D empty tensor counts as no rows."""
    if not info.enabled:
        return tensor
    rows = tensor.shape[0]
    shape = torch.tensor([rows, tensor.shape[1] if tensor.ndim > 1 else 0], device=tensor.device)
    shapes = [torch.zeros_like(shape) for _ in range(info.world_size)]
    dist.all_gather(shapes, shape)
    counts = [int(s[0]) for s in shapes]
    dim = max(int(s[1]) for s in shapes)
    # all_gather takes equal shapes: each process sends its rows padded to the longest share.
    padded = tensor.new_zeros(max(counts), dim)
    padded[:rows] = tensor.reshape(rows, dim)
    parts = [torch.empty_like(padded) for _ in range(info.world_size)]
    dist.all_gather(parts, padded)
    return torch.cat([part[:count] for part, count in zip(parts, counts, strict=True)])


def _exit_code(err: BaseException) -> int:
    """The command line's exit code for ``err`` (as ``svllreid.cli.main`` maps it)."""
    if isinstance(err, SvllreidError):
        return err.exit_code
    return 2 if isinstance(err, ValueError | OSError) else 1


def run_everywhere(work: Callable[[], T], info: DistInfo) -> T:
    """``work()`` on every process, then a vote: if it raised on any process, it raises on every one,
    instead of leaving the others waiting in their next collective. ``work`` itself must not use
    collectives (a process that failed before one would leave the others in it).

    The main process raises its own error, or a :class:`LaunchError` with the first failing rank's
    message; the others raise a :class:`LaunchError` the command line does not print (the main process
    shows it once), except an unexpected error of their own, which is raised as it is (its traceback).
    """
    if not info.enabled:
        return work()
    result: T | None = None
    failure: Exception | None = None
    try:
        result = work()
    except Exception as err:  # KeyboardInterrupt and SystemExit are torchrun's to handle
        failure = err
    own = None if failure is None else (str(failure), _exit_code(failure))
    reports = all_gather_objects(own, info)
    failed = [(rank, report) for rank, report in enumerate(reports) if report is not None]
    if not failed:
        return cast(T, result)  # work() returned on this process
    first_rank, (message, code) = failed[0]
    if failure is not None and (info.is_main or not isinstance(failure, SvllreidError | ValueError | OSError)):
        raise failure
    if info.is_main:
        raise LaunchError(f"on rank {first_rank} of {info.world_size}: {message}", exit_code=code)
    main_report = reports[0]
    raise LaunchError(message, exit_code=main_report[1] if main_report else code, shown_by_main=True)


def run_on_main(work: Callable[[], T], info: DistInfo) -> T | None:
    """``work()`` on the main process only (None on the others), which all return once it has: the end
    of a launch, and a barrier. Raised there, it is raised on every process (:func:`run_everywhere`)."""
    return run_everywhere(lambda: work() if info.is_main else None, info)


def describe_disagreement(values: Sequence[str]) -> str | None:
    """None when every process's value (in rank order) is the same; else which ranks hold which value
    (``ranks 0, 2: A; rank 1: B``)."""
    if len(set(values)) <= 1:
        return None
    holders: dict[str, list[int]] = {}
    for rank, value in enumerate(values):
        holders.setdefault(value, []).append(rank)
    return "; ".join(
        f"rank{'s' if len(ranks) > 1 else ''} {', '.join(map(str, ranks))}: {value}" for value, ranks in holders.items()
    )


def require_same_everywhere(value: str, info: DistInfo, *, what: str, fix: str) -> None:
    """Raise on every process unless every process holds the same ``value`` (a collective; a no-op
    for a single process). The main process raises :class:`ConfigError` ("the processes of this launch
    see different ``what``: ...; ``fix``"); the others stop without repeating it.
    """
    if not info.enabled:
        return
    differences = describe_disagreement([str(v) for v in all_gather_objects(value, info)])
    if differences is None:
        return
    message = f"the {info.world_size} processes of this launch see different {what}: {differences}. {fix}"
    if info.is_main:
        raise ConfigError(message)
    raise LaunchError(message, exit_code=ConfigError.exit_code, shown_by_main=True)


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
