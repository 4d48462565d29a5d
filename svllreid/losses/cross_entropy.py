"""Identity classification loss with label smoothing (CrossEntropyLabelSmooth of the ReID baselines)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from svllreid.precision import at_least_fp32

__all__ = ["cross_entropy_label_smooth"]


def cross_entropy_label_smooth(logits: torch.Tensor, targets: torch.Tensor, epsilon: float = 0.1) -> torch.Tensor:
    """Cross-entropy against targets smoothed to ``(1 - epsilon) * onehot + epsilon / K``.

    Args:
        logits: classifier outputs ``[B, K]``; ``K`` is the number of classes.
        targets: class indices ``[B]``.
        epsilon: smoothing weight in ``[0, 1]``; 0 gives plain cross-entropy.

    Returns:
        Scalar loss, the batch mean of the per-sample smoothed cross-entropy.

    Raises:
        ValueError: on inconsistent shapes or ``epsilon`` outside ``[0, 1]``.
    """
    if logits.ndim != 2 or targets.shape != logits.shape[:1]:
        raise ValueError(f"logits must be [B, K] and targets [B], got {tuple(logits.shape)} and {tuple(targets.shape)}")
    if not 0.0 <= epsilon <= 1.0:
        raise ValueError(f"epsilon must lie in [0, 1], got {epsilon}")
    # Half-precision logits (autocast) lose too much in the softmax: take it in at least fp32.
    logits = at_least_fp32(logits)
    # torch smooths to exactly (1 - ε)·onehot + ε/K over the K = logits.shape[1] classes, as the reference does.
    return F.cross_entropy(logits, targets, label_smoothing=epsilon)
