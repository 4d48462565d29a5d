"""Supervised contrastive loss between two sets of embeddings (CLIP-ReID's image-text alignment)."""

from __future__ import annotations

import torch

from svllreid.precision import at_least_fp32, without_autocast

__all__ = ["supcon_loss"]


def supcon_loss(
    anchors: torch.Tensor,
    contrasts: torch.Tensor,
    anchor_labels: torch.Tensor,
    contrast_labels: torch.Tensor,
    *,
    temperature: float = 1.0,
) -> torch.Tensor:
    """Supervised contrastive loss of every anchor against all contrasts, on raw dot products.

    Contrasts sharing an anchor's label are its positives; the loss is the mean over anchors of the
    negative log-softmax averaged over their positives. Image-to-text is
    ``supcon_loss(image, text, labels, labels)``, text-to-image swaps the two feature tensors.

    Args:
        anchors: ``[A, D]``, used as given (CLIP-ReID does not normalise them).
        contrasts: ``[C, D]``.
        anchor_labels: identity of each anchor, ``[A]``.
        contrast_labels: identity of each contrast, ``[C]``.
        temperature: divides the logits; CLIP-ReID uses 1.

    Returns:
        Scalar loss. Anchors without any positive are left out of the mean; when no anchor has one the
        loss is a zero that is still attached to the graph.

    Raises:
        ValueError: on inconsistent shapes or a non-positive temperature.
    """
    if anchors.ndim != 2 or contrasts.ndim != 2 or anchors.shape[1] != contrasts.shape[1]:
        raise ValueError(
            f"anchors and contrasts must be [A, D] and [C, D], got {tuple(anchors.shape)} and {tuple(contrasts.shape)}"
        )
    if anchor_labels.shape != anchors.shape[:1] or contrast_labels.shape != contrasts.shape[:1]:
        raise ValueError(
            f"labels must be [A] and [C] = {anchors.shape[0]} and {contrasts.shape[0]}, "
            f"got {tuple(anchor_labels.shape)} and {tuple(contrast_labels.shape)}"
        )
    if temperature <= 0:
        raise ValueError(f"temperature must be positive, got {temperature}")

    # The logits in at least fp32 and outside autocast (see svllreid.precision): raw dot products of
    # unnormalised features are large, and a bf16 matmul would round them before the softmax.
    with without_autocast(anchors):
        logits = at_least_fp32(anchors) @ at_least_fp32(contrasts).T / temperature  # [A, C]
    log_prob = logits.log_softmax(dim=1)  # [A, C]
    positives = anchor_labels[:, None] == contrast_labels[None, :]  # [A, C]
    num_pos = positives.sum(dim=1)  # [A]
    # where() rather than a product with the mask, so that a -inf log-prob off the positives cannot make 0 * inf.
    mean_pos_log_prob = torch.where(positives, log_prob, 0.0).sum(dim=1) / num_pos.clamp(min=1)  # [A]
    has_pos = num_pos > 0
    # Masked mean over anchors with a positive, computed on device (no data-dependent Python branch).
    return -torch.where(has_pos, mean_pos_log_prob, 0.0).sum() / has_pos.sum().clamp(min=1)
