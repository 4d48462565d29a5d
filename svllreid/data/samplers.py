"""Batch samplers, DDP-aware and seeded: the P×K identity sampler of stage 2 (METHOD.md 3.3), and
plain random batches for language-image pretraining.

Each batch holds ``ids_per_batch`` (P) identities with ``images_per_id`` (K) images each.
Identities with fewer than K images are sampled with replacement; an epoch ends when fewer than
P identities have unused images.

Under DDP the batch is either global or per process:

- ``global_batch=True`` (the reference): P is the global batch. The P×K batches are drawn as on
  one process, and each of the W processes takes P/W of each batch's identities, so W processes
  together see exactly the batches one process would.
- ``global_batch=False``: every process draws its own P×K batches from a disjoint share of the
  identities, so the global batch is W·P identities.

Either way all processes yield the same number of batches.
"""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Iterator, Sequence

import torch
from torch.utils.data import Sampler

__all__ = ["PKSampler", "RandomBatchSampler", "global_batch_error", "pk_sampling_error"]


def global_batch_error(key: str, size: int, world_size: int, what: str) -> str:
    """The message for a global batch size (``key`` = ``size``) that ``world_size`` processes cannot
    share evenly; stage 1's batches and the run's early check say it the same way."""
    return (
        f"{key}={size} is the global batch under run.batch_semantics=global, and each of the {world_size} "
        f"processes takes 1/{world_size} of its {what}: use a multiple of {world_size}, or "
        f"run.batch_semantics=per_process for {key} on every process"
    )


def pk_sampling_error(num_ids: int, ids_per_batch: int, world_size: int = 1, global_batch: bool = True) -> str | None:
    """Why P×K batches of ``ids_per_batch`` identities cannot be drawn from ``num_ids`` (None: they can);
    the sampler and the run's early check say it the same way."""
    if global_batch and num_ids < ids_per_batch:
        return (
            f"P×K sampling needs at least P={ids_per_batch} identities; the training set has {num_ids}. "
            "Lower stage2.ids_per_batch."
        )
    if not global_batch and num_ids // world_size < ids_per_batch:
        return (
            f"P×K sampling needs at least P={ids_per_batch} identities per process; the training set has "
            f"{num_ids} identities for {world_size} process(es). Lower stage2.ids_per_batch."
        )
    return None


class PKSampler(Sampler[list[int]]):
    """Yields lists of dataset indices, one P×K batch each (use as a DataLoader ``batch_sampler``).

    The order depends only on ``(seed, epoch, rank, world_size)``: call :meth:`set_epoch` before
    each epoch; resuming at an epoch boundary reproduces the same batches.
    """

    def __init__(
        self,
        pids: Sequence[int],
        *,
        ids_per_batch: int,
        images_per_id: int,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        global_batch: bool = True,
    ):
        if ids_per_batch < 1 or images_per_id < 1:
            raise ValueError(f"ids_per_batch and images_per_id must be positive; got {ids_per_batch}, {images_per_id}")
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} is outside 0..{world_size - 1}")
        if global_batch and ids_per_batch % world_size:
            raise ValueError(global_batch_error("stage2.ids_per_batch", ids_per_batch, world_size, "identities"))
        self.index_by_pid: dict[int, list[int]] = defaultdict(list)
        for index, pid in enumerate(pids):
            self.index_by_pid[pid].append(index)
        problem = pk_sampling_error(len(self.index_by_pid), ids_per_batch, world_size, global_batch)
        if problem:
            raise ValueError(problem)
        self.ids_per_batch = ids_per_batch
        self.images_per_id = images_per_id
        self.seed = seed
        self.rank = rank
        self.world_size = world_size
        self.global_batch = global_batch
        self.epoch = 0
        self._cache: tuple[int, list[list[int]]] | None = None

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _draw(self, epoch: int, share: int, shares: int) -> list[list[int]]:
        """P×K batches from identity share ``share`` of ``shares`` (one share: all identities)."""
        ids = sorted(self.index_by_pid)
        random.Random(f"pk-shuffle-{self.seed}-{epoch}").shuffle(ids)  # same on every rank
        rng = random.Random(f"pk-{self.seed}-{epoch}-{share}")
        k = self.images_per_id
        chunks: dict[int, list[list[int]]] = {}
        for pid in ids[share::shares]:
            indices = list(self.index_by_pid[pid])
            if len(indices) < k:
                indices = rng.choices(indices, k=k)
            rng.shuffle(indices)
            chunks[pid] = [indices[i : i + k] for i in range(0, len(indices) - k + 1, k)]
        available = sorted(chunks)
        batches = []
        while len(available) >= self.ids_per_batch:
            batch: list[int] = []
            for pid in rng.sample(available, self.ids_per_batch):
                batch.extend(chunks[pid].pop())
                if not chunks[pid]:
                    available.remove(pid)
            batches.append(batch)
        return batches

    def batches(self) -> list[list[int]]:
        """This process's batches of the current epoch (all processes get the same number)."""
        if self._cache is None or self._cache[0] != self.epoch:
            if self.global_batch:
                # The batches of one process; this one takes its P/W identities (K images each) of every batch.
                width = self.ids_per_batch // self.world_size * self.images_per_id
                start = self.rank * width
                mine = [batch[start : start + width] for batch in self._draw(self.epoch, 0, 1)]
            else:
                mine = self._draw(self.epoch, self.rank, self.world_size)
                if self.world_size > 1:
                    shortest = min(len(self._draw(self.epoch, r, self.world_size)) for r in range(self.world_size))
                    mine = mine[:shortest]
            self._cache = (self.epoch, mine)
        return self._cache[1]

    def __iter__(self) -> Iterator[list[int]]:
        return iter(self.batches())

    def __len__(self) -> int:
        return len(self.batches())

    def state_dict(self) -> dict[str, int]:
        return {"seed": self.seed, "epoch": self.epoch}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.seed, self.epoch = int(state["seed"]), int(state["epoch"])


class RandomBatchSampler(Sampler[list[int]]):
    """Random batches of ``batch_size`` indices, the incomplete last one dropped (pretraining).

    The order depends only on ``(seed, epoch)``: call :meth:`set_epoch` before each epoch. Under
    DDP with ``global_batch``, ``batch_size`` is the batch of all processes together and each
    process takes its 1/W slice of it (the W slices of a step are the batch one process would
    take); otherwise each process takes whole batches from its own 1/W share of the indices.
    """

    def __init__(
        self,
        size: int,
        batch_size: int,
        *,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        global_batch: bool = True,
    ):
        if batch_size < 1:
            raise ValueError(f"batch size must be positive; got {batch_size}")
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} is outside 0..{world_size - 1}")
        if global_batch and batch_size % world_size:
            raise ValueError(global_batch_error("pretrain.batch_size", batch_size, world_size, "pairs"))
        share = size if global_batch else size // world_size
        if share < batch_size:
            raise ValueError(
                f"a batch of {batch_size} needs at least that many pairs{' per process' if not global_batch else ''}; "
                f"there are {share}. Lower pretrain.batch_size"
            )
        self.size, self.batch_size, self.seed = size, batch_size, seed
        self.rank, self.world_size, self.global_batch = rank, world_size, global_batch
        self.epoch = 1

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        share = self.size if self.global_batch else self.size // self.world_size
        return share // self.batch_size

    def __iter__(self) -> Iterator[list[int]]:
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        order = torch.randperm(self.size, generator=generator)
        if self.global_batch:
            width = self.batch_size // self.world_size
            for step in range(len(self)):
                batch = order[step * self.batch_size : (step + 1) * self.batch_size]
                yield batch[self.rank * width : (self.rank + 1) * width].tolist()
            return
        share = order[self.rank :: self.world_size]
        for step in range(len(self)):
            yield share[step * self.batch_size : (step + 1) * self.batch_size].tolist()
