"""How spread out a set of features is, and whether it has collapsed.

A ReID network whose features all point the same way ranks by the last few per cent of each vector:
every score reads ~1.000 and small noise reorders the gallery. Three numbers show it:

- the mean pairwise cosine similarity of the L2-normalised features (exact, from their sum:
  ``(|sum f|^2 - n) / (n (n - 1))``);
- the share of the variance of the centred features along their first principal direction;
- their effective rank (Roy and Vetterli, 2007): ``exp`` of the entropy of the normalised spectrum,
  the number of directions the features really use.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F

__all__ = ["COLLAPSE_MEAN_COSINE", "collapse_warning", "feature_spread"]

#: Mean pairwise cosine similarity above which the features count as collapsed (see docs/RESULTS.md):
#: at 0.99 the part of each unit vector that differs from the others' common direction is about a tenth
#: of it (sqrt(1 - 0.99)), and the scores of a whole gallery fit within ~0.02.
COLLAPSE_MEAN_COSINE = 0.99
#: Rows the spectrum is computed from (a seeded sample of larger sets; the mean cosine uses every row).
SPECTRUM_ROWS = 4096


def feature_spread(features: torch.Tensor, *, seed: int = 0) -> dict[str, Any]:
    """``{"mean_cosine", "top_direction_share", "effective_rank", "images"}`` of ``[N, D]`` features
    (any norm; they are L2-normalised first). Needs at least 2 rows."""
    if features.ndim != 2 or features.shape[0] < 2:
        raise ValueError(f"feature_spread needs [N, D] features with N >= 2; got {tuple(features.shape)}")
    unit = F.normalize(features.detach().to(torch.float64), dim=1)  # [N, D]
    n = unit.shape[0]
    total = unit.sum(dim=0)  # [D]
    mean_cosine = float((total @ total - n) / (n * (n - 1)))
    rows = unit
    if n > SPECTRUM_ROWS:
        generator = torch.Generator().manual_seed(seed)
        rows = unit[torch.randperm(n, generator=generator)[:SPECTRUM_ROWS].to(unit.device)]
    centred = rows - rows.mean(dim=0, keepdim=True)
    spectrum = torch.linalg.svdvals(centred) ** 2
    energy = float(spectrum.sum())
    if energy <= 0:  # every feature identical
        share, rank = 1.0, 1.0
    else:
        p = spectrum / energy
        p = p[p > 0]
        share, rank = float(p.max()), math.exp(float(-(p * p.log()).sum()))
    return {"mean_cosine": mean_cosine, "top_direction_share": share, "effective_rank": rank, "images": n}


def collapse_warning(spread: dict[str, Any], where: str) -> str | None:
    """A warning naming the likely causes and what to try when ``spread`` (:func:`feature_spread`) has
    collapsed (mean cosine above :data:`COLLAPSE_MEAN_COSINE`); None otherwise."""
    cosine = float(spread["mean_cosine"])
    if cosine <= COLLAPSE_MEAN_COSINE:
        return None
    return (
        f"the features of {where} have collapsed: their mean pairwise cosine similarity is {cosine:.4f} (above "
        f"{COLLAPSE_MEAN_COSINE}; effective rank {float(spread['effective_rank']):.1f}), so every score reads "
        "about 1 and the ranking rests on a sliver of each feature. Likely causes: a stage-2 learning rate too "
        "high for this data (try stage2.lr 3-10x lower, or 'svllreid tune'), too few images per identity for "
        "the triplet and identity losses (the P×K sampler repeats them), or an input too small or of the wrong "
        "shape for the photos (data.image_size=auto follows their shape). The best checkpoint on the validation "
        "split is what the run delivers."
    )
