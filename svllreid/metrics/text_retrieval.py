"""Text-to-image retrieval, the protocol of text-based person search (CUHK-PEDES and its kin).

Every caption of the evaluation split is a query that ranks all of the split's images by cosine
similarity; a match is an image of the caption's identity (of the caption's own image where
identities are unknown). Reported: R@1, R@5, R@10 (the CMC at those ranks), mAP and mINP. No
image is excluded from any ranking: captions and images are different modalities, so there is no
"same image" or "same camera" junk.

The ranking itself is :func:`svllreid.metrics.ranking.evaluate` on L2-normalised features, whose
Euclidean order is the cosine order.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from svllreid.metrics.ranking import RankingResult, evaluate

__all__ = ["format_retrieval", "retrieval_summary", "text_to_image"]

#: Ranks reported by :func:`retrieval_summary`.
RECALL_AT = (1, 5, 10)


def text_to_image(
    text_feats: torch.Tensor,
    image_feats: torch.Tensor,
    caption_ids: np.ndarray | torch.Tensor,
    image_ids: np.ndarray | torch.Tensor,
    *,
    max_rank: int = 10,
    topk: int = 0,
) -> RankingResult:
    """Rank ``image_feats`` ``[G, D]`` for each caption of ``text_feats`` ``[Q, D]`` by cosine similarity.

    Both are L2-normalised here (any scale is fine). Returns the ranking metrics, whose CMC at
    ranks 1, 5, 10 are R@1, R@5, R@10.
    """
    if text_feats.shape[1] != image_feats.shape[1]:
        raise ValueError(
            f"text features are {text_feats.shape[1]}-d but image features {image_feats.shape[1]}-d; "
            "they must live in one space (CLIP's projection)"
        )
    queries = F.normalize(text_feats.float(), dim=1)
    gallery = F.normalize(image_feats.float(), dim=1)
    return evaluate(queries, gallery, caption_ids, image_ids, max_rank=max_rank, topk=topk)


def retrieval_summary(result: RankingResult, dataset: str, split: str, num_images: int) -> dict[str, Any]:
    """JSON-ready metrics (fractions in 0..1) of one text-to-image evaluation."""
    out: dict[str, Any] = {"dataset": dataset, "split": split}
    for k in RECALL_AT:
        out[f"R@{k}"] = result.rank(k)
    out.update(mAP=float(result.mAP), mINP=float(result.mINP), captions=int(result.num_queries), images=num_images)
    return out


def format_retrieval(rows: dict[str, dict[str, Any]]) -> str:
    """An aligned table of named :func:`retrieval_summary` results, in %."""
    columns = [f"R@{k}" for k in RECALL_AT] + ["mAP", "mINP"]
    width = max(len(name) for name in rows) + 2
    lines = [" " * width + "".join(c.rjust(9) for c in columns)]
    for name, summary in rows.items():
        lines.append(name.rjust(width) + "".join(f"{100 * summary[c]:9.2f}" for c in columns))
    return "\n".join(lines)
