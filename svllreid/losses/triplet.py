"""Batch-hard triplet loss on Euclidean distances (the CLIP-ReID / TransReID TripletLoss)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from svllreid.precision import at_least_fp32, without_autocast

__all__ = ["triplet_loss"]


def triplet_loss(
    features: torch.Tensor, labels: torch.Tensor, margin: float | None = 0.3, normalize: bool = False
) -> torch.Tensor:
    """Batch-hard triplet loss: for each anchor its farthest positive against its closest negative.

    Distances are ``sqrt(clamp(|x|^2 + |y|^2 - 2 x.y, min=1e-12))`` as in the reference. The anchor counts
    among its own positives (distance ~1e-6), so an identity seen once in the batch still gives a triplet.

    Args:
        features: embeddings ``[B, D]``.
        labels: identity of each embedding, ``[B]``.
        margin: ranking margin, ``mean(relu(d_ap - d_an + margin))``; ``None`` selects the soft margin
            ``mean(log(1 + exp(d_ap - d_an)))`` (SoftMarginLoss).
        normalize: L2-normalise the features first.

    Returns:
        Scalar loss. An anchor lacks a negative only when the whole batch is one identity; no triplet
        exists then and the loss is a zero that is still attached to the graph.

    Raises:
        ValueError: on inconsistent shapes.
    """
    if features.ndim != 2 or labels.shape != features.shape[:1]:
        raise ValueError(
            f"features must be [B, D] and labels [B], got {tuple(features.shape)} and {tuple(labels.shape)}"
        )
    # In at least fp32 and outside autocast (see svllreid.precision): fp16 squared norms overflow for
    # moderately large features, and a bf16 matmul errs by more than a tenth of the margin at norm 20.
    with without_autocast(features):
        features = at_least_fp32(features)
        if normalize:
            features = F.normalize(features, dim=1)
        sq_norms = features.pow(2).sum(dim=1)  # [B]
        # The clamp keeps sqrt and its gradient finite where the expanded form cancels to ~0 (the diagonal).
        dist = (sq_norms[:, None] + sq_norms[None, :] - 2 * (features @ features.T)).clamp(min=1e-12).sqrt()  # [B, B]

    same = labels[:, None] == labels[None, :]  # [B, B]
    # Every anchor is its own positive at distance >= 1e-6 > 0, so the zero filler never wins the max.
    dist_ap = torch.where(same, dist, 0.0).max(dim=1).values  # [B]
    # +inf only in a one-identity batch, where every row is masked out below.
    dist_an = torch.where(same, torch.inf, dist).min(dim=1).values  # [B]
    has_neg = ~same.all(dim=1)  # [B]

    # Soft margin: softplus(d_ap - d_an) is SoftMarginLoss(d_an - d_ap, 1), without its exp overflow for large gaps.
    gap = dist_ap - dist_an  # [B]
    per_anchor = F.softplus(gap) if margin is None else F.relu(gap + margin)
    # has_neg is all True or all False, so this is the plain mean or a zero, without a host-side branch.
    return torch.where(has_neg, per_anchor, 0.0).mean()
