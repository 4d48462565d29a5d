"""SimCLR's NT-Xent loss between two views of a batch (SVLL-ReID's self-supervision)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from svllreid.precision import at_least_fp32, without_autocast

__all__ = ["nt_xent_loss"]


def nt_xent_loss(
    z1: torch.Tensor,
    z2: torch.Tensor,
    *,
    temperature: float = 0.1,
    labels: torch.Tensor | None = None,
    exclude_same_label: bool = False,
) -> torch.Tensor:
    """Normalised temperature-scaled cross-entropy over the ``2N`` projections of two views.

    The projections are L2-normalised here. Each of the ``2N`` rows is classified against all others
    (itself excluded) with its other view as the positive; the loss is the mean over the ``2N`` rows.

    Args:
        z1: projections of the first view, ``[N, D]`` with ``N >= 1``.
        z2: projections of the second view, ``[N, D]``; row ``i`` is the positive of ``z1[i]``.
        temperature: divides the cosine similarities.
        labels: identity of each sample, ``[N]``; only read with ``exclude_same_label``.
        exclude_same_label: also drop the views of other samples with the same label from the
            denominator (neither positive nor negative); the positive pair stays.

    Returns:
        Scalar loss. With ``N = 1`` the positive is the only other term, so the loss is 0.

    Raises:
        ValueError: on mismatched shapes, a non-positive temperature, or ``exclude_same_label`` without labels.
    """
    if z1.ndim != 2 or z1.shape != z2.shape or z1.shape[0] < 1:
        raise ValueError(
            f"z1 and z2 must both be [N, D] with N >= 1 and equal shapes, got {tuple(z1.shape)} and {tuple(z2.shape)}"
        )
    if temperature <= 0:
        raise ValueError(f"temperature must be positive, got {temperature}")
    if exclude_same_label and labels is None:
        raise ValueError("exclude_same_label=True needs labels ([N] identities of the samples)")
    if labels is not None and labels.shape != z1.shape[:1]:
        raise ValueError(f"labels must be [N] = [{z1.shape[0]}], got {tuple(labels.shape)}")

    n = z1.shape[0]
    # In at least fp32 and outside autocast (see svllreid.precision): fp16 squared norms overflow for
    # large projections, and a bf16 matmul rounds cosines that the temperature then multiplies by 10.
    with without_autocast(z1):
        z = F.normalize(at_least_fp32(torch.cat([z1, z2])), dim=1)  # [2N, D]
        sim = z @ z.T / temperature  # [2N, 2N]

    rows = torch.arange(2 * n, device=sim.device)  # [2N]
    positive = (rows + n) % (2 * n)  # [2N]: index of the other view
    is_positive = rows[None, :] == positive[:, None]  # [2N, 2N]
    if exclude_same_label:
        assert labels is not None  # checked above
        view_labels = labels.repeat(2)  # [2N]
        # Same label covers the row itself too (self is never the positive since 2N >= 2).
        excluded = (view_labels[:, None] == view_labels[None, :]) & ~is_positive  # [2N, 2N]
    else:
        excluded = rows[None, :] == rows[:, None]  # [2N, 2N], the diagonal
    # The positive is never excluded, so each row keeps a finite entry and log_softmax stays finite.
    log_prob = sim.masked_fill(excluded, -torch.inf).log_softmax(dim=1)  # [2N, 2N]
    return -log_prob.gather(1, positive[:, None]).mean()
