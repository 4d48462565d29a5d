"""One chunk of queries ranked on the CPU with numpy (the algorithm: :mod:`svllreid.metrics.ranking`)."""

from __future__ import annotations

import numpy as np

__all__ = ["distances", "rank"]


def distances(
    q_aug: np.ndarray,
    g_aug: np.ndarray,
    dist: np.ndarray,
    *,
    expand: np.ndarray | None,
    dist_distinct: np.ndarray | None,
) -> np.ndarray:
    """``[c, G]`` distance block into ``dist`` (numpy).

    Args:
        q_aug, g_aug: ``[c, D+1]`` queries ``[q, 1]`` and ``[G, D+1]`` gallery ``[-2g, ||g||²]``, so
            that one GEMM gives ``||g||² - 2 q·g``.
        expand, dist_distinct: when ``g_aug`` holds the distinct gallery rows only, the index of every
            gallery item among them, and a ``[c, G']`` buffer (:func:`_distinct_rows`).
    """
    if expand is None:
        return np.matmul(q_aug, g_aug.T, out=dist)
    return np.take(np.matmul(q_aug, g_aug.T, out=dist_distinct), expand, axis=1, out=dist, mode="clip")


def rank(
    dist: np.ndarray, index: np.ndarray, kind: np.ndarray, num_matches: np.ndarray, *, mask: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """AP, INP and 0-based first-match rank of the queries of a chunk, in numpy.

    numpy, not torch, on CPU: its BLAS, ufuncs and sorts measured 2-3x faster than the torch kernels
    for these shapes on the 2-core CPU of the targets, and torch's OpenMP kernels slow down by orders of
    magnitude when another process holds a core.

    Args:
        dist: ``[c, G]`` distances of the chunk's queries (not modified).
        index, kind: ``[c, K]`` candidates from :func:`_candidates`; every row has a true match.
        num_matches: ``[c]`` true matches per query (float64).
        mask: ``[c, G]`` bool scratch buffer.
    """
    c, ng = dist.shape
    cand_d = np.where(kind > 0, np.take_along_axis(dist, index, 1), np.inf)
    is_match = kind == 1
    hardest = np.where(is_match, cand_d, -np.inf).max(1)
    # The items that can precede a true match, row by row (flat positions are sorted).
    flat = np.flatnonzero(np.less_equal(dist, hardest[:, None], out=mask))
    near = dist.reshape(-1)[flat]
    bounds = np.searchsorted(flat, np.arange(c + 1) * ng)
    # before[r, k]: gallery items nearer than candidate k.
    before = np.empty(index.shape, np.int64)
    for r in range(c):
        row = near[bounds[r] : bounds[r + 1]]
        row.sort()
        before[r] = row.searchsorted(cand_d[r])
    # A true match is among the near items, at ``pos`` once sorted; another item at the same distance
    # would follow it there. Such exact ties are ordered by gallery index.
    pos = bounds[:-1, None] + before
    tied = is_match & (pos + 1 < bounds[1:, None]) & (near[np.minimum(pos + 1, len(near) - 1)] == cand_d)
    for r, k in zip(*np.nonzero(tied), strict=True):
        before[r, k] += np.count_nonzero(dist[r, : index[r, k]] == cand_d[r, k])
    # Candidates in ranking order (pads, at infinity, last); removed ones before a match are subtracted.
    order = np.lexsort((index, cand_d))
    kind = np.take_along_axis(kind, order, 1)
    is_match, is_removed = kind == 1, (kind == 2).astype(np.int64)
    rank = np.take_along_axis(before, order, 1) - (np.cumsum(is_removed, 1) - is_removed)
    nth = np.cumsum(is_match, 1)
    prec = np.divide(nth, rank + 1.0, out=np.zeros(rank.shape), where=is_match)
    rows = np.arange(c)
    first = rank[rows, is_match.argmax(1)]
    last = rank[rows, kind.shape[1] - 1 - is_match[:, ::-1].argmax(1)]
    return prec.sum(1) / num_matches, num_matches / (last + 1.0), first
