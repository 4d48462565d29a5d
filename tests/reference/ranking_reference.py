"""A slow, per-query reference of :func:`svllreid.metrics.evaluate`, written to be obviously correct.

Used by the tests only: a float64 numpy loop that sorts the whole gallery for every query.
"""

from __future__ import annotations

import numpy as np

from svllreid.metrics.inputs import ArrayLike, check_pair, labels
from svllreid.metrics.ranking import RankingResult, make_result

__all__ = ["evaluate_reference", "text_to_image_reference"]


def _as_numpy(x: ArrayLike) -> np.ndarray:
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    return np.asarray(x, dtype=np.float64)


def evaluate_reference(
    query_feats: ArrayLike,
    gallery_feats: ArrayLike,
    query_pids: ArrayLike,
    gallery_pids: ArrayLike,
    query_camids: ArrayLike | None = None,
    gallery_camids: ArrayLike | None = None,
    *,
    query_keys: ArrayLike | None = None,
    gallery_keys: ArrayLike | None = None,
    max_rank: int = 50,
    topk: int = 0,
    distances: ArrayLike | None = None,
) -> RankingResult:
    """Same arguments and result as :func:`svllreid.metrics.evaluate` (without chunking).

    ``distances``: a ``[Q, G]`` matrix to rank by instead of the squared Euclidean distances of the
    features (e.g. :func:`tests.reference.rerank_reference.k_reciprocal_rerank_reference`'s).
    """
    qf, gf = _as_numpy(query_feats), _as_numpy(gallery_feats)
    full = None if distances is None else _as_numpy(distances)
    check_pair(query_camids, gallery_camids, "camids")
    check_pair(query_keys, gallery_keys, "keys")
    qp, gp = labels(query_pids, "query_pids", len(qf)), labels(gallery_pids, "gallery_pids", len(gf))
    assert qp is not None and gp is not None  # given (not None), so labels returns arrays
    qc, gc = labels(query_camids, "query_camids", len(qf)), labels(gallery_camids, "gallery_camids", len(gf))
    qk, gk = labels(query_keys, "query_keys", len(qf)), labels(gallery_keys, "gallery_keys", len(gf))
    aps, inps, first, evaluated = [], [], [], []
    ranked = np.full((len(qf), topk), -1, np.int64)
    for i in range(len(qf)):
        dist = ((gf - qf[i]) ** 2).sum(axis=1) if full is None else full[i]
        order = np.argsort(dist, kind="stable")  # ties: gallery order
        keep = np.ones(len(gf), dtype=bool)
        if qc is not None:
            keep &= ~((gp == qp[i]) & (gc == qc[i]))  # junk: same identity, same camera
        if qk is not None:
            keep &= gk != qk[i]  # the query's own image
        order = order[keep[order]]
        positions = np.flatnonzero(gp[order] == qp[i])  # 0-based ranks of the true matches
        if len(positions) == 0:
            continue  # skipped: no true match
        hits = np.arange(1, len(positions) + 1)
        aps.append(np.mean(hits / (positions + 1)))
        inps.append(len(positions) / (positions[-1] + 1))
        first.append(positions[0])
        evaluated.append(i)
        ranked[i, : min(topk, len(order))] = order[:topk]
    return make_result(
        np.array(aps, dtype=np.float64),
        np.array(inps, dtype=np.float64),
        np.array(first, dtype=np.int64),
        np.array(evaluated, dtype=np.int64),
        num_queries=len(qf),
        max_rank=max_rank,
        protocol="camera" if qc is not None else "no-camera",
        ranked=ranked if topk else None,
        reranked=distances is not None,
        keyed=qk is not None,
    )


def text_to_image_reference(
    text_feats: ArrayLike,
    image_feats: ArrayLike,
    caption_ids: ArrayLike,
    image_ids: ArrayLike,
    *,
    max_rank: int = 10,
) -> dict[str, float | np.ndarray]:
    """Text-to-image retrieval written out per caption: cosine similarities in float64, the whole
    gallery sorted (stable), then R@k, AP and INP of each caption from its list of matches.

    Returns ``{"cmc": [max_rank], "mAP", "mINP", "num_evaluated"}`` (captions without a matching
    image are skipped).
    """
    text, images = _as_numpy(text_feats), _as_numpy(image_feats)
    text = text / np.linalg.norm(text, axis=1, keepdims=True)
    images = images / np.linalg.norm(images, axis=1, keepdims=True)
    caption_ids, image_ids = np.asarray(caption_ids), np.asarray(image_ids)
    hits = np.zeros(max_rank)
    aps, inps = [], []
    for q in range(text.shape[0]):
        similarity = images @ text[q]
        order = np.argsort(-similarity, kind="stable")
        matches = [rank for rank, g in enumerate(order) if image_ids[g] == caption_ids[q]]
        if not matches:
            continue
        if matches[0] < max_rank:
            hits[matches[0] :] += 1
        aps.append(np.mean([(i + 1) / (rank + 1) for i, rank in enumerate(matches)]))
        inps.append(len(matches) / (matches[-1] + 1))
    evaluated = len(aps)
    return {
        "cmc": hits / max(evaluated, 1),
        "mAP": float(np.mean(aps)) if aps else 0.0,
        "mINP": float(np.mean(inps)) if inps else 0.0,
        "num_evaluated": evaluated,
    }
