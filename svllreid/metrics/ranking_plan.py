"""The host-side plan of :func:`svllreid.metrics.ranking.evaluate`: each query's candidates (the gallery
images of its identity, and the images with its key), from which its true matches and removed items
are known without looking at a distance."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["QueryPlan", "candidates", "plan_queries"]


def _group(values: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """CSR grouping: ``order`` (stable sort), and the sorted unique values with their start and count."""
    order = np.argsort(values, kind="stable")
    uniq, start, count = np.unique(values[order], return_index=True, return_counts=True)
    return order, uniq, start, count


def _lookup(uniq: np.ndarray, start: np.ndarray, count: np.ndarray, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Start and count of each value of ``x`` in a :func:`_group` (count 0 when absent)."""
    pos = np.minimum(np.searchsorted(uniq, x), len(uniq) - 1)
    hit = uniq[pos] == x
    return np.where(hit, start[pos], 0), np.where(hit, count[pos], 0)


def _expand(starts: np.ndarray, counts: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Flatten ranges: for each element, its owner (range number), offset in the range and position."""
    owner = np.repeat(np.arange(len(counts)), counts)
    offset = np.arange(len(owner)) - np.repeat(np.cumsum(counts) - counts, counts)
    return owner, offset, starts[owner] + offset


@dataclass
class QueryPlan:
    pid_order: np.ndarray  # gallery indices sorted by pid
    pid_start: np.ndarray  # per query: range of its identity in pid_order
    pid_count: np.ndarray
    extra_start: np.ndarray  # per query: range in extra_gallery (same key, other identity)
    extra_count: np.ndarray
    extra_gallery: np.ndarray
    num_matches: np.ndarray  # per query: true matches


def plan_queries(
    qp: np.ndarray,
    gp: np.ndarray,
    qc: np.ndarray | None,
    gc: np.ndarray | None,
    *,
    qk: np.ndarray | None,
    gk: np.ndarray | None,
) -> QueryPlan:
    nq = len(qp)
    pid_order, uniq, start, count = _group(gp)
    pid_start, pid_count = _lookup(uniq, start, count, qp)
    num_junk = np.zeros(nq, np.int64)
    if qc is not None and gc is not None:
        # (pid, camera) pairs as one code over the ids and cameras of both sides.
        ids, cams = np.unique(np.concatenate([qp, gp])), np.unique(np.concatenate([qc, gc]))
        code_q = np.searchsorted(ids, qp) * len(cams) + np.searchsorted(cams, qc)
        code_g = np.searchsorted(ids, gp) * len(cams) + np.searchsorted(cams, gc)
        _, uniq_pc, start_pc, count_pc = _group(code_g)
        num_junk = _lookup(uniq_pc, start_pc, count_pc, code_q)[1]
    extra_count = np.zeros(nq, np.int64)
    extra_gallery = np.zeros(0, np.int64)
    num_keyed = np.zeros(nq, np.int64)  # same identity and key, not already junk
    if qk is not None and gk is not None:
        key_order, uniq_k, start_k, count_k = _group(gk)
        owner, _, pos = _expand(*_lookup(uniq_k, start_k, count_k, qk))
        gi = key_order[pos]
        same = gp[gi] == qp[owner]
        keyed = same & (gc[gi] != qc[owner]) if qc is not None and gc is not None else same
        num_keyed = np.bincount(owner[keyed], minlength=nq)
        extra_count = np.bincount(owner[~same], minlength=nq)
        extra_gallery = gi[~same]  # grouped by query, in query order
    return QueryPlan(
        pid_order=pid_order,
        pid_start=pid_start,
        pid_count=pid_count,
        extra_start=np.cumsum(extra_count) - extra_count,
        extra_count=extra_count,
        extra_gallery=extra_gallery,
        num_matches=pid_count - num_junk - num_keyed,
    )


def candidates(
    plan: QueryPlan,
    rows: np.ndarray,
    qc: np.ndarray | None,
    gc: np.ndarray | None,
    *,
    qk: np.ndarray | None,
    gk: np.ndarray | None,
) -> tuple[np.ndarray, np.ndarray]:
    """Gallery indices ``[c, K]`` of the candidates of queries ``rows`` and their kind (0 pad, 1 true
    match, 2 removed)."""
    n_pid, n_extra = plan.pid_count[rows], plan.extra_count[rows]
    width = int((n_pid + n_extra).max())
    index = np.zeros((len(rows), width), np.int64)
    kind = np.zeros((len(rows), width), np.int8)
    owner, offset, pos = _expand(plan.pid_start[rows], n_pid)
    gi = plan.pid_order[pos]
    removed = np.zeros(len(gi), bool)
    if qc is not None and gc is not None:
        removed |= gc[gi] == qc[rows[owner]]
    if qk is not None and gk is not None:
        removed |= gk[gi] == qk[rows[owner]]
    index[owner, offset] = gi
    kind[owner, offset] = np.where(removed, 2, 1)
    owner, offset, pos = _expand(plan.extra_start[rows], n_extra)
    index[owner, n_pid[owner] + offset] = plan.extra_gallery[pos]
    kind[owner, n_pid[owner] + offset] = 2
    return index, kind
