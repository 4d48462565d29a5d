"""Optimisers and learning-rate schedules of both stages (METHOD.md 3.2 and 3.3).

Schedules are pure functions of the 1-based epoch: the learning rate is set at the start of
each epoch, as in the reference, so resuming needs no scheduler state.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Callable, Mapping, Sequence

import torch
from torch import nn

__all__ = ["Schedule", "apply_lr", "build_adam", "build_adamw", "cosine_with_warmup", "multistep_with_warmup"]

#: A schedule maps the 1-based epoch to a factor of each parameter group's base lr.
Schedule = Callable[[int], float]


def build_adam(
    params: Mapping[str, nn.Parameter],
    *,
    lr: float,
    weight_decay: float,
    bias_lr_factor: float = 1.0,
    bias_weight_decay: float | None = None,
) -> torch.optim.Adam:
    """Adam with one group for weights and one for biases (``lr * bias_lr_factor``).

    Each group records its ``base_lr`` so schedules can scale it.
    """
    weights = [p for name, p in params.items() if not name.endswith("bias")]
    biases = [p for name, p in params.items() if name.endswith("bias")]
    groups = []
    if weights:
        groups.append({"params": weights, "lr": lr, "base_lr": lr, "weight_decay": weight_decay, "name": "weights"})
    if biases:
        bias_lr = lr * bias_lr_factor
        bias_wd = weight_decay if bias_weight_decay is None else bias_weight_decay
        groups.append({"params": biases, "lr": bias_lr, "base_lr": bias_lr, "weight_decay": bias_wd, "name": "biases"})
    if not groups:
        raise ValueError("nothing to optimise: no trainable parameters")
    return torch.optim.Adam(groups, lr=lr)


def build_adamw(
    params: Mapping[str, nn.Parameter],
    *,
    lr: float,
    weight_decay: float,
    betas: tuple[float, float] = (0.9, 0.98),
    eps: float = 1e-6,
) -> torch.optim.AdamW:
    """AdamW as CLIP trains: decoupled weight decay on matrices only; gains, biases, norms, the
    class/positional embeddings' like (any tensor under 2 dimensions) and the logit scale undecayed.

    Each group records its ``base_lr`` so schedules can scale it.
    """
    decay = [p for name, p in params.items() if p.ndim >= 2 and "logit_scale" not in name]
    rest = [p for name, p in params.items() if not (p.ndim >= 2 and "logit_scale" not in name)]
    groups = []
    if decay:
        groups.append({"params": decay, "lr": lr, "base_lr": lr, "weight_decay": weight_decay, "name": "decay"})
    if rest:
        groups.append({"params": rest, "lr": lr, "base_lr": lr, "weight_decay": 0.0, "name": "no_decay"})
    if not groups:
        raise ValueError("nothing to optimise: no trainable parameters")
    return torch.optim.AdamW(groups, lr=lr, betas=betas, eps=eps)


def cosine_with_warmup(epochs: int, *, warmup_epochs: int, warmup_lr: float, min_lr: float, base_lr: float) -> Schedule:
    """Stage 1: linear warm-up from ``warmup_lr`` over ``warmup_epochs``, then cosine to ``min_lr``.

    Matches timm's ``CosineLRScheduler(t_initial=epochs, lr_min=min_lr, warmup_t=warmup_epochs,
    warmup_lr_init=warmup_lr)`` stepped with the 1-based epoch, as the reference does: the cosine
    is evaluated at the epoch itself (warm-up is not a prefix). ``base_lr`` is the optimiser's lr;
    the returned factor scales it.
    """

    def factor_at(epoch: int) -> float:
        if epoch < warmup_epochs:
            lr = warmup_lr + epoch * (base_lr - warmup_lr) / warmup_epochs
        elif epoch >= epochs:
            lr = min_lr
        else:
            lr = min_lr + 0.5 * (base_lr - min_lr) * (1 + math.cos(math.pi * epoch / epochs))
        return lr / base_lr

    return factor_at


def multistep_with_warmup(
    milestones: Sequence[int], gamma: float, warmup_epochs: int, warmup_factor: float
) -> Schedule:
    """Stage 2: CLIP-ReID's ``WarmupMultiStepLR`` (linear warm-up).

    At 1-based epoch ``e``: ``factor = warmup_factor * (1 - e / W) + e / W`` while ``e < W``, times
    ``gamma ** (number of milestones <= e)``.
    """
    milestones = list(milestones)

    def factor_at(epoch: int) -> float:
        warm = 1.0
        if epoch < warmup_epochs:
            alpha = epoch / warmup_epochs
            warm = warmup_factor * (1 - alpha) + alpha
        return warm * gamma ** bisect.bisect_right(milestones, epoch)

    return factor_at


def apply_lr(optimizer: torch.optim.Optimizer, factor: float) -> float:
    """Set every group's lr to ``base_lr * factor``; returns the first group's lr (for logging)."""
    for group in optimizer.param_groups:
        group["lr"] = group["base_lr"] * factor
    return optimizer.param_groups[0]["lr"]
