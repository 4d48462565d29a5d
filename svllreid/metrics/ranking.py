"""Retrieval metrics of re-identification: CMC (rank-k), mAP and mINP, computed in query chunks.

Protocol
    The gallery is ranked by Euclidean distance on the features as given (they are not normalised
    here), computed as ``||g||² - 2 q·g``: the squared distance less ``||q||²``, which is constant per
    query, so the order is the same (for L2-normalised features: descending cosine similarity). It runs
    on the features' device, in float64 if the features are float64 and in float32 otherwise (TF32 is
    switched off for it on CUDA). Equal distances keep gallery order (a stable sort); identical gallery
    features always get equal distances (see the algorithm). Distinct features at mathematically equal
    distances tie only if their computed distances are equal (always so for small-integer features).

    With camera ids (``protocol="camera"``, Market-1501 style) every gallery image of the query's
    identity taken by the query's camera is removed ("junk"); other identities seen by that camera
    stay. Without camera ids (``protocol="no-camera"``) nothing is removed. In both, ``query_keys`` /
    ``gallery_keys`` name images (equal keys = the same image), and a gallery image with the query's key
    is removed, so that a query set contained in the gallery does not retrieve itself.

    A query's true matches are the remaining gallery images of its identity. Queries without any are
    skipped and counted in :attr:`RankingResult.num_skipped`. Over the evaluated queries: CMC
    ``cmc[k-1]`` is the fraction with a true match in the first ``k``; AP is the mean over true matches
    of the precision at their position (not interpolated); INP is ``#matches / rank of the last match``.

Algorithm
    The gallery is never sorted. The rank of a true match ``j`` among the kept gallery items is the
    number of gallery items ordered before it by ``(distance, gallery index)`` minus the removed items
    ordered before it; removed items are all among the query's "candidates" (the gallery images of its
    identity and those with its key), which are few. Per chunk of queries:

    1. one GEMM gives the ``[c, G]`` distance block; repeated gallery features (found once, by hash
       then comparison) are computed once and copied, as a BLAS may round the same dot product
       differently in different output columns;
    2. only the items not farther than the query's hardest (farthest) true match can precede a true
       match: they are selected, and every true match's rank among all items is counted among them;
    3. the removed candidates ordered before each true match are subtracted (a sort of the candidates).

    Step 2 on CPU (numpy): per query, sort the selected distances and ``searchsorted`` the candidates'
    ones (exact ties are then counted by gallery index). On CUDA (torch): every selected item and
    candidate of the chunk gets an int64 key ``(row, distance, gallery index)`` (float32 distances by
    their order-preserving bits, float64 ones by their rank in the chunk), and one ``searchsorted`` of
    the items into the sorted true-match keys and a ``bincount`` give all the ranks at once.

    The plan lives in :mod:`svllreid.metrics.ranking_plan`, the kernels of one chunk in
    :mod:`svllreid.metrics.ranking_numpy` and :mod:`svllreid.metrics.ranking_torch`.

    Beyond the GEMM the work grows with the number of gallery items nearer than each query's hardest
    true match: a small part of the gallery for useful features, all of it for random ones (still
    exact, but slower; ``benchmarks/eval_speed.py`` measures both).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Literal, Protocol

import numpy as np
import torch

from svllreid.metrics import ranking_numpy, ranking_torch
from svllreid.metrics.inputs import Array, ArrayLike, as_feature_pair, pair_labels
from svllreid.metrics.ranking_plan import candidates, plan_queries

__all__ = ["RankingResult", "Reranker", "default_chunk_size", "evaluate"]

#: Automatic chunk size on CPU: working memory per chunk, at worst (every item nearer than the hardest
#: true match): distances, mask, selected positions and values.
CPU_CHUNK_BYTES = 256 * 2**20
#: Automatic chunk size of the torch path (CUDA): working memory per chunk, at most this and a quarter
#: of the free device memory.
TORCH_CHUNK_BYTES = 4 * 2**30
#: Bytes per (query, gallery item) pair of a torch chunk, at worst (every item nearer than the hardest
#: true match): distances, mask, selected positions, values and keys.
_TORCH_BYTES_PER_PAIR = 96


@dataclass(frozen=True, eq=False)
class RankingResult:
    """Retrieval metrics over the evaluated queries (fractions in [0, 1]).

    Attributes:
        mAP: mean average precision (non-interpolated).
        mINP: mean inverse negative penalty (``#matches / rank of the last match``).
        cmc: float64 ``[max_rank]``, ``cmc[k-1]`` = rank-k accuracy; entries past the gallery size
            repeat the last value.
        num_queries: queries given.
        num_evaluated: queries with at least one true match; the means are over these.
        num_skipped: queries without a true match (``num_queries - num_evaluated``).
        protocol: ``"camera"`` or ``"no-camera"``.
        query_ap: float64 ``[num_queries]``, each query's AP (NaN for skipped queries).
        query_first_rank: int64 ``[num_queries]``, 0-based rank of each query's first true match
            (-1 for skipped queries).
        ranked: int64 ``[num_queries, k]`` when :func:`evaluate` was asked for ``topk=k``: the gallery
            indices of each evaluated query's first ``k`` kept items in ranking order (junk and the
            query's own image left out; -1 pads rows with fewer items and the rows of skipped
            queries); else None.
        reranked: whether k-reciprocal re-ranking produced the distances.
        keyed: whether image keys were given (a gallery image with the query's key was excluded).

    When no query has a true match, mAP, mINP and the CMC are 0 and ``num_evaluated`` is 0.
    ``eq=False``: results hold arrays, compare their fields instead.
    """

    mAP: float  # noqa: N815 (the metrics' usual names)
    mINP: float  # noqa: N815
    cmc: np.ndarray
    num_queries: int
    num_evaluated: int
    num_skipped: int
    protocol: str
    query_ap: np.ndarray
    query_first_rank: np.ndarray
    ranked: np.ndarray | None = None
    reranked: bool = False
    keyed: bool = False

    @property
    def protocol_rule(self) -> str:
        """What the protocol excluded from the rankings, in words (the one place it is said)."""
        return protocol_rule(self.protocol, self.keyed)

    def rank(self, k: int) -> float:
        """Rank-k accuracy, ``cmc[k-1]``."""
        if not 1 <= k <= len(self.cmc):
            raise ValueError(f"rank k must be in [1, {len(self.cmc)}] (max_rank), got {k}")
        return float(self.cmc[k - 1])

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly summary; ``rankK`` is None when K exceeds ``max_rank``."""
        out: dict[str, Any] = {"mAP": float(self.mAP), "mINP": float(self.mINP)}
        for k in (1, 5, 10):
            out[f"rank{k}"] = self.rank(k) if k <= len(self.cmc) else None
        out["cmc"] = [float(v) for v in self.cmc]
        out.update(
            num_queries=int(self.num_queries),
            num_evaluated=int(self.num_evaluated),
            num_skipped=int(self.num_skipped),
            protocol=self.protocol,
            protocol_rule=self.protocol_rule,
            reranked=self.reranked,
        )
        return out

    def __repr__(self) -> str:
        r1 = f", rank1={self.cmc[0]:.4f}" if len(self.cmc) else ""
        return (
            f"RankingResult(mAP={self.mAP:.4f}, mINP={self.mINP:.4f}{r1}, evaluated={self.num_evaluated}/"
            f"{self.num_queries}, protocol={self.protocol!r})"
        )


def protocol_rule(protocol: str, keyed: bool) -> str:
    """The words for what a protocol excludes: with cameras, same-identity-same-camera gallery images;
    without, the query's own image where image keys say which it is, else nothing."""
    if protocol == "camera":
        return "same-identity-same-camera gallery images are junk"
    if keyed:
        return "no camera labels: only the query image itself is excluded"
    return "no camera labels: nothing is excluded"


def make_result(
    aps: np.ndarray,
    inps: np.ndarray,
    first_ranks: np.ndarray,
    evaluated: np.ndarray,
    *,
    num_queries: int,
    max_rank: int,
    protocol: str,
    ranked: np.ndarray | None = None,
    reranked: bool = False,
    keyed: bool = False,
) -> RankingResult:
    """Average per-query AP, INP and 0-based first-match ranks of the ``evaluated`` queries (their
    indices, ascending) into a result."""
    n = len(aps)
    query_ap = np.full(num_queries, np.nan)
    query_ap[evaluated] = aps
    query_first = np.full(num_queries, -1, np.int64)
    query_first[evaluated] = first_ranks
    for array in (query_ap, query_first, ranked):
        if array is not None:
            array.setflags(write=False)
    if n:
        # Past the last first-match rank (at most the gallery size) the CMC stays at 1: pad with it.
        top = min(max_rank, int(first_ranks.max()) + 1)
        hits = np.bincount(np.minimum(first_ranks, top), minlength=top + 1)[:top]
        cmc = np.pad(np.cumsum(hits, dtype=np.float64) / n, (0, max_rank - top), mode="edge")
        mean_ap, mean_inp = float(np.mean(aps)), float(np.mean(inps))
    else:
        cmc, mean_ap, mean_inp = np.zeros(max_rank), 0.0, 0.0
    cmc.setflags(write=False)
    return RankingResult(
        mean_ap,
        mean_inp,
        cmc,
        num_queries,
        n,
        num_queries - n,
        protocol,
        query_ap,
        query_first,
        ranked,
        reranked,
        keyed,
    )


# ----------------------------------------------------------------------------------------------------
# Ranked lists (top k of each query, removed items left out)
# ----------------------------------------------------------------------------------------------------


def _first_k(rows: np.ndarray, cols: np.ndarray, values: np.ndarray, c: int, k: int) -> np.ndarray:
    """``[c, k]`` gallery indices: per row the ``k`` smallest ``values`` (ties by gallery index), -1 pads."""
    order = np.lexsort((cols, values, rows))
    rows, cols = rows[order], cols[order]
    pos = np.arange(len(rows)) - np.searchsorted(rows, np.arange(c))[rows]
    keep = pos < k
    out = np.full((c, k), -1, np.int64)
    out[rows[keep], pos[keep]] = cols[keep]
    return out


def _topk(dist: Array, index: Array, kind: Array, k: int) -> np.ndarray:
    """Each query's first ``k`` kept gallery items, in ranking order (``dist`` is overwritten).

    The k-th smallest distance is found by a partition; every item not farther is then sorted by
    ``(distance, gallery index)``, so ties at the boundary follow gallery order like the metrics.
    """
    c, ng = dist.shape
    kk = min(k, ng)
    if isinstance(dist, np.ndarray):
        r, j = np.nonzero(kind == 2)
        dist[r, index[r, j]] = np.inf  # removed items: never listed
        bound = np.partition(dist, kk - 1, axis=1)[:, kk - 1]
        flat = np.flatnonzero(dist <= bound[:, None])
        values = dist.reshape(-1)[flat]
    else:
        r, j = (kind == 2).nonzero(as_tuple=True)
        dist[r, index[r, j]] = torch.inf
        bound = dist.kthvalue(kk, dim=1).values
        flat_t = (dist <= bound[:, None]).view(-1).nonzero().squeeze(1)
        values, flat = dist.view(-1)[flat_t].cpu().numpy(), flat_t.cpu().numpy()
    finite = np.isfinite(values)  # rows with fewer than k kept items
    flat, values = flat[finite], values[finite]
    return _first_k(flat // ng, flat % ng, values, c, k)


def _distinct_rows(g: Array) -> tuple[Array, Array | None]:
    """The distinct rows of ``g`` and, when some repeat, the index of each row among them (else None).

    BLAS kernels may compute the same dot product with a different rounding in different output
    columns, so identical gallery features could get distances an ulp apart and be ordered by that
    instead of by gallery index. Distances are therefore computed once per distinct row.
    """
    if not isinstance(g, np.ndarray):
        uniq, inverse = torch.unique(g, dim=0, return_inverse=True)
        return (g, None) if len(uniq) == len(g) else (uniq, inverse)
    values = g + 0.0  # -0.0 -> +0.0: rows equal as numbers hash alike
    bits = values.view(np.uint32 if g.dtype == np.float32 else np.uint64).astype(np.uint64)
    weights = np.random.default_rng(0).integers(1, 2**63, g.shape[1], dtype=np.uint64) | np.uint64(1)
    hashes = (bits * weights).sum(1)  # wraps modulo 2^64
    order = np.argsort(hashes, kind="stable")
    hashes = hashes[order]
    pairs = np.flatnonzero(hashes[1:] == hashes[:-1])
    pairs = pairs[(values[order[pairs]] == values[order[pairs + 1]]).all(1)]  # not a mere collision
    if not len(pairs):
        return g, None
    new = np.ones(len(g), bool)
    new[pairs + 1] = False  # same as the previous row in hash order
    inverse = np.empty(len(g), np.int64)
    inverse[order] = np.cumsum(new) - 1
    return g[order[new]], inverse


def _augment(qf: Array, gf: Array) -> tuple[Array, Array]:
    """``[q, 1]`` and ``[-2g, ||g||²]`` (numpy or torch), whose product is ``||g||² - 2 q·g``.

    Scaling by -2 is exact (a power of two). Raises ValueError when the distances could overflow.
    """
    is_np = isinstance(qf, np.ndarray)
    with np.errstate(over="ignore"):  # overflow is reported below
        g_sq = (gf * gf).sum(1, keepdims=True) if is_np else (gf * gf).sum(1, keepdim=True)
        q_max = float((qf * qf).sum(1).max())
    bound = (q_max**0.5 + float(g_sq.max()) ** 0.5) ** 2
    single = qf.dtype == (np.float32 if is_np else torch.float32)
    if not bound < np.finfo(np.float32 if single else np.float64).max:
        raise ValueError(f"feature norms too large for {qf.dtype} distances")
    if is_np:
        return np.concatenate([qf, np.ones_like(qf[:, :1])], 1), np.concatenate([gf * -2.0, g_sq], 1)
    return torch.cat([qf, torch.ones_like(qf[:, :1])], 1), torch.cat([gf * -2.0, g_sq], 1)


def _use_numpy(device: torch.device) -> bool:
    """Whether a device runs the numpy path (the tests switch it to check the torch path on CPU)."""
    return device.type == "cpu"


def default_chunk_size(
    num_queries: int, num_gallery: int, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32
) -> int:
    """Queries per chunk that :func:`evaluate` uses when ``chunk_size`` is None.

    The most that fit the working-memory budget (:data:`CPU_CHUNK_BYTES`, or :data:`TORCH_CHUNK_BYTES`
    and a quarter of the free CUDA memory), then evened out over the chunks that takes.
    """
    device = torch.device(device)
    if _use_numpy(device):
        rows = CPU_CHUNK_BYTES // ((2 * dtype.itemsize + 9) * num_gallery)
    else:
        budget = TORCH_CHUNK_BYTES
        if device.type == "cuda":
            budget = min(budget, torch.cuda.mem_get_info(device)[0] // 4)
        rows = min(budget // (_TORCH_BYTES_PER_PAIR * num_gallery), ranking_torch.max_rows(num_gallery))
    rows = min(max(1, rows), max(1, num_queries))
    chunks = -(-num_queries // rows)
    return max(1, -(-num_queries // chunks))


# ----------------------------------------------------------------------------------------------------
# Entry point
# ----------------------------------------------------------------------------------------------------


class Reranker(Protocol):
    """A source of re-ranked distances for :func:`evaluate` (:class:`svllreid.metrics.rerank.KReciprocal`)."""

    def blocks(
        self, query_feats: torch.Tensor, gallery_feats: torch.Tensor, chunk_size: int | None
    ) -> Iterator[tuple[int, torch.Tensor]]:
        """``(start, [c, G] distances)`` for consecutive chunks of queries, in query order."""
        ...


def evaluate(
    query_feats: ArrayLike,
    gallery_feats: ArrayLike,
    query_pids: ArrayLike,
    gallery_pids: ArrayLike,
    query_camids: ArrayLike | None = None,
    gallery_camids: ArrayLike | None = None,
    *,
    rerank: Reranker | Literal[False] | None = None,
    max_rank: int = 50,
    query_keys: ArrayLike | None = None,
    gallery_keys: ArrayLike | None = None,
    topk: int = 0,
    chunk_size: int | None = None,
) -> RankingResult:
    """CMC, mAP and mINP of ranking the gallery for every query (protocol in the module docstring).

    Memory: the features, and per chunk of ``c`` queries ``[c, G]`` distances, a mask and the selected
    items (no ``[Q, G]`` array; with ``rerank`` also the sparse state of
    :mod:`svllreid.metrics.rerank`).

    Args:
        query_feats, gallery_feats: ``[Q, D]`` and ``[G, D]`` features, numpy or torch on any device
            (both on the same); computed on that device, in float64 if the features are float64 and in
            float32 otherwise.
        query_pids, gallery_pids: identities (integers; no value is special).
        query_camids, gallery_camids: cameras; both or neither. Given: the camera protocol.
        rerank: rank by the distances of a re-ranker instead of Euclidean ones, e.g.
            ``KReciprocal(k1=20, k2=6, lambda_value=0.3)`` (:mod:`svllreid.metrics.rerank`); None or False: not.
        max_rank: length of the CMC; entries past the gallery size repeat the last value (1 when
            some query is evaluated).
        query_keys, gallery_keys: image keys (integers, equal = same image, e.g. indices into one
            feature table); both or neither. A gallery image with the query's key is never ranked.
        topk: also return each evaluated query's first ``topk`` ranked gallery items
            (:attr:`RankingResult.ranked`); 0 = not needed (faster).
        chunk_size: queries per chunk (an upper bound); None: :func:`default_chunk_size`, from a
            working-memory budget (with ``rerank``: that of :mod:`svllreid.metrics.rerank`). Results do
            not depend on it (but for the last-bit rounding of distinct features at nearly equal
            distances, which a BLAS may vary with the position).

    Returns:
        The metrics; queries without a true match are skipped and counted.

    Example:
        Two queries against a gallery of four images of identities 1, 1, 2, 3; the first query's match
        is ranked first, the second's second:

        >>> import numpy as np
        >>> from svllreid.metrics import evaluate
        >>> gallery = np.array([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.7, 0.7]])
        >>> result = evaluate(np.array([[1.0, 0.0], [0.6, 0.8]]), gallery, [1, 2], [1, 1, 2, 3])
        >>> round(result.mAP, 3), result.cmc[:2].tolist()
        (0.75, [0.5, 1.0])
    """
    if not isinstance(max_rank, int | np.integer) or max_rank < 1:
        raise ValueError(f"max_rank must be a positive integer, got {max_rank!r}")
    if chunk_size is not None and (not isinstance(chunk_size, int | np.integer) or chunk_size < 1):
        raise ValueError(f"chunk_size must be a positive integer or None, got {chunk_size!r}")
    if isinstance(topk, bool) or not isinstance(topk, int | np.integer) or topk < 0:
        raise ValueError(f"topk must be a non-negative integer, got {topk!r}")
    if rerank is False:  # "no re-ranking", as callers wrote it before re-rankers were objects
        rerank = None
    if rerank is not None and not callable(getattr(rerank, "blocks", None)):
        raise TypeError(
            f"rerank must be a re-ranker such as svllreid.metrics.rerank.KReciprocal(k1, k2, lambda_value) "
            f"or None, got {rerank!r}"
        )
    qf, gf = as_feature_pair(query_feats, gallery_feats)
    nq, ng = qf.shape[0], gf.shape[0]
    qp, gp, qc, gc, qk, gk = pair_labels(
        query_pids=query_pids,
        gallery_pids=gallery_pids,
        query_camids=query_camids,
        gallery_camids=gallery_camids,
        query_keys=query_keys,
        gallery_keys=gallery_keys,
        num_query=nq,
        num_gallery=ng,
    )
    protocol = "camera" if qc is not None else "no-camera"

    plan = plan_queries(qp, gp, qc, gc, qk=qk, gk=gk)
    evaluated = np.flatnonzero(plan.num_matches > 0)
    ranked = np.full((nq, topk), -1, np.int64) if topk else None
    device, use_numpy = qf.device, _use_numpy(qf.device)
    if rerank is not None:
        # Distance blocks come in query order; each is ranked (and dropped) as it arrives.
        chunks = _ranked_blocks(rerank.blocks(qf, gf, chunk_size), evaluated)
    else:
        # Queries with similar candidate counts together (less padding per chunk).
        evaluated = evaluated[np.argsort((plan.pid_count + plan.extra_count)[evaluated], kind="stable")]
        chunks = _distance_blocks(qf, gf, evaluated, chunk_size)
    ne = len(evaluated)
    aps, inps, first = np.zeros(ne), np.zeros(ne), np.zeros(ne, np.int64)
    num_matches = plan.num_matches.astype(np.float64)
    mask_buf: Any = None
    index: Array  # numpy candidates, or torch once moved to the device
    kind: Array
    out: tuple[np.ndarray, ...]
    done = 0
    for rows, dist in chunks:
        if mask_buf is None or len(mask_buf) < len(rows):
            shape = tuple(dist.shape)
            mask_buf = np.empty(shape, bool) if use_numpy else torch.empty(shape, dtype=torch.bool, device=device)
        index, kind = candidates(plan, rows, qc, gc, qk=qk, gk=gk)
        mask = mask_buf[: len(rows)]
        if use_numpy:
            out = ranking_numpy.rank(dist, index, kind, num_matches[rows], mask=mask)
        else:
            index_t, kind_t = torch.as_tensor(index, device=device), torch.as_tensor(kind, device=device)
            out_t = ranking_torch.rank(
                dist, index_t, kind_t, torch.as_tensor(num_matches[rows], device=device), mask=mask
            )
            out = tuple(t.cpu().numpy() for t in out_t)
            index, kind = index_t, kind_t
        aps[done : done + len(rows)], inps[done : done + len(rows)], first[done : done + len(rows)] = out
        if ranked is not None:
            ranked[rows] = _topk(dist, index, kind, topk)
        done += len(rows)
    # Means in query order, whatever the chunking.
    back = np.argsort(evaluated, kind="stable")
    return make_result(
        aps[back],
        inps[back],
        first[back],
        evaluated[back],
        num_queries=nq,
        max_rank=max_rank,
        protocol=protocol,
        ranked=ranked,
        reranked=rerank is not None,
        keyed=qk is not None,
    )


def _distance_blocks(
    qf: torch.Tensor, gf: torch.Tensor, evaluated: np.ndarray, chunk_size: int | None
) -> Iterator[tuple[np.ndarray, Array]]:
    """``(rows, [len(rows), G] distances)`` for chunks of the ``evaluated`` queries (buffers reused)."""
    ne, ng = len(evaluated), gf.shape[0]
    if not ne:
        return
    device, use_numpy = qf.device, _use_numpy(qf.device)
    g_distinct, expand = _distinct_rows(gf.numpy() if use_numpy else gf)
    q_aug, g_aug = _augment(qf.numpy() if use_numpy else qf, g_distinct)
    c = min(chunk_size or default_chunk_size(ne, ng, device, qf.dtype), ne)
    if not use_numpy:
        c = min(c, ranking_torch.max_rows(ng))  # the torch path's int64 keys
    xp: Any = np if use_numpy else torch
    kw: dict[str, Any] = {} if use_numpy else {"device": device}
    dist_buf = xp.empty((c, ng), dtype=g_aug.dtype, **kw)
    distinct_buf = None if expand is None else xp.empty((c, len(g_aug)), dtype=g_aug.dtype, **kw)
    with ranking_torch.no_tf32() if device.type == "cuda" else contextlib.nullcontext():
        for lo in range(0, ne, c):
            rows = evaluated[lo : lo + c]
            n = len(rows)
            distinct = None if distinct_buf is None else distinct_buf[:n]
            if use_numpy:
                yield (
                    rows,
                    ranking_numpy.distances(q_aug[rows], g_aug, dist_buf[:n], expand=expand, dist_distinct=distinct),
                )
            else:
                q_rows = q_aug.index_select(0, torch.as_tensor(rows, device=device))
                yield rows, ranking_torch.distances(q_rows, g_aug, dist_buf[:n], expand=expand, dist_distinct=distinct)


def _ranked_blocks(
    blocks: Iterator[tuple[int, torch.Tensor]], evaluated: np.ndarray
) -> Iterator[tuple[np.ndarray, Array]]:
    """The evaluated queries' rows of distance blocks that cover all queries in order."""
    for start, block in blocks:
        lo, hi = np.searchsorted(evaluated, [start, start + block.shape[0]])
        if hi == lo:
            continue
        rows = evaluated[lo:hi]
        local = rows - start
        if _use_numpy(block.device):
            yield rows, block.numpy()[local]
        else:
            yield rows, block.index_select(0, torch.as_tensor(local, device=block.device))
