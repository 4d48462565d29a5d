"""k-reciprocal re-ranking (Zhong et al., CVPR 2017, "Re-ranking Person Re-identification with
k-reciprocal Encoding"), exact and memory-bounded.

Definition (that of the authors' widely used code, :mod:`tests.reference.rerank_reference`)
    Over all ``N = Q + G`` images (queries first): ``B[i, j] = d(i, j) / max_k d(i, k)`` with ``d`` the
    squared Euclidean distance, and ``rank(i)`` the images sorted by ``B[i]`` (ties by index).
    ``R(i, k)`` = the ``j`` among the first ``k + 1`` of ``rank(i)`` that have ``i`` among their first
    ``k + 1``. ``R(i, k1)`` is expanded by every ``R(c, round(k1 / 2))``, ``c`` in ``R(i, k1)``, that
    shares more than 2/3 of its members with ``R(i, k1)``; over the expanded set ``E(i)``,
    ``V[i, j] = exp(-B[i, j]) / sum_{j' in E(i)} exp(-B[i, j'])``. With ``k2 != 1`` every row of ``V`` is
    replaced by the mean of the rows of the first ``k2`` of ``rank(i)`` (local query expansion). With
    ``t = sum_c min(V[i, c], V[j, c])`` the Jaccard distance is ``1 - t / (2 - t)``, and the result is
    ``(1 - lambda) * jaccard + lambda * B`` on the query rows and gallery columns.

Algorithm
    Nothing ``N x N`` is formed. Rows of ``N`` images at a time, one GEMM of centred features gives
    ``||b||^2 - 2 a.b`` (the squared distance less ``||a||^2``), of which only the row maximum and the
    smallest few (``max(k1 + 1, k2)`` plus a margin) are kept. The kept candidates' distances are then
    recomputed exactly in float64 from the feature differences and sorted by ``(B, index)``; a row whose
    list could still be wrong (more ties or near-ties at its boundary than the margin, judged with a
    bound on the GEMM's rounding error) is redone with twice the candidates, up to the whole row. So the
    neighbour lists are those of exact distances, and duplicate images tie exactly.

    The reciprocal sets, their expansion, ``V`` and the query expansion work on these lists: ``V`` is
    sparse (CSR; a row has at most ``(k1 + 1) * (round(k1 / 2) + 2)`` entries, a few dozen in practice,
    and at most ``k2`` times as many after the query expansion). The Jaccard sums only visit pairs that
    share a column, through an inverted index of the gallery rows of ``V`` (column -> gallery rows);
    every other pair has ``t = 0``. The ``lambda * B`` term is recomputed by a GEMM per chunk of queries.

    On CPU the GEMMs and sorts run in numpy (measured 2-4x faster than torch's here); all else runs
    in torch on the features' device: float64 up to ``V``, float32 for the Jaccard sums and the result.

Memory (besides the result)
    The sparse ``V`` (on the MSMT17-sized benchmark about 50 entries a row after the query expansion,
    0.1 GB), a few ``[N, k1 + 1]`` neighbour lists, a ``[c, N]`` block of distances per chunk of ``c``
    rows (``chunk_size=None``: 256 MB, see :data:`CHUNK_BYTES`), at most :data:`MAX_TRIPLES` Jaccard
    terms at once, and 64 MB of Jaccard sums. :func:`k_reciprocal_rerank` returns ``[Q, G]`` float32
    (MSMT17-sized: 3.8 GB); :func:`iter_rerank_chunks` yields it in chunks of queries instead, so that
    a caller can rank each chunk and drop it. ``benchmarks/rerank_speed.py`` measures time and peak RSS.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch

from svllreid.metrics.inputs import ArrayLike, as_feature_pair

__all__ = [
    "CHUNK_BYTES",
    "MAX_TRIPLES",
    "KReciprocal",
    "default_chunk_size",
    "iter_rerank_chunks",
    "k_reciprocal_rerank",
]

#: Automatic chunk size: bytes of one ``[c, N]`` float32 block of distances.
CHUNK_BYTES = 256 * 2**20
#: Most (query, column, gallery image) terms of the Jaccard sums handled at once (about 60 bytes each).
MAX_TRIPLES = 1 << 22
#: Bytes of the float64 feature differences formed at once by the exact distance recomputation.
_PAIR_BYTES = 32 * 2**20
#: Candidates kept beyond the needed neighbour-list length, so that ties and near-ties at the end of a
#: list rarely need a second pass.
_MARGIN = 16
#: Bytes of the float32 Jaccard sums of one batch of query rows (``[rows, G]``).
_ACC_BYTES = 64 * 2**20
#: Rows per chunk of the sparse steps (bounded small tensors: ``[rows, k1 + 1, k1 / 2 + 1]`` at most).
_ROWS = 16384


# ----------------------------------------------------------------------------------------------------
# Inputs
# ----------------------------------------------------------------------------------------------------


def _positive_int(value: object, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def _check_parameters(k1: int, k2: int, lambda_value: float) -> None:
    _positive_int(k1, "k1")
    _positive_int(k2, "k2")
    if (
        isinstance(lambda_value, bool)
        or not isinstance(lambda_value, int | float | np.integer | np.floating)
        or not 0 <= lambda_value <= 1
    ):
        raise ValueError(f"lambda_value must be a number in [0, 1], got {lambda_value!r}")


def _check(
    query_feats: ArrayLike, gallery_feats: ArrayLike, k1: int, k2: int, lambda_value: float, chunk_size: int | None
) -> tuple[torch.Tensor, torch.Tensor]:
    _check_parameters(k1, k2, lambda_value)
    if chunk_size is not None:
        _positive_int(chunk_size, "chunk_size")
    qf, gf = as_feature_pair(query_feats, gallery_feats)
    max_sq = max(float((qf.double() ** 2).sum(1).max()), float((gf.double() ** 2).sum(1).max()))
    if not 4 * max_sq < torch.finfo(qf.dtype).max:  # (|a| + |b|)^2 must not overflow
        raise ValueError(f"feature norms too large for {qf.dtype} distances")
    return qf, gf


def default_chunk_size(num_images: int) -> int:
    """Rows per chunk that ``chunk_size=None`` picks for ``num_images = Q + G`` (from :data:`CHUNK_BYTES`)."""
    return max(1, CHUNK_BYTES // (4 * num_images))


# ----------------------------------------------------------------------------------------------------
# Distances
# ----------------------------------------------------------------------------------------------------


class _Gemm:
    """GEMMs of the centred features, for ``s = ||b||^2 - 2 a.b`` (the squared distance less
    ``||a||^2``) and for scaled squared distances.

    Centring changes no distance but keeps the GEMM's cancellation error small for features far from
    the origin. ``sq`` holds ``||a||^2`` of the centred features (float64), ``err`` per row a bound on
    the absolute error of ``s + ||a||^2`` against the exact squared distance.
    """

    def __init__(self, x: torch.Tensor) -> None:
        x64 = x.double()
        self.xc = (x64 - x64.mean(0)).to(x.dtype)
        self.sq = (self.xc.double() ** 2).sum(1)
        self.use_numpy = _use_numpy(x.device)
        self.dtype = x.dtype
        # [a, 1] . [-2 b, ||b||^2] = ||b||^2 - 2 a.b: one GEMM, no broadcast pass.
        self.lhs = torch.cat([self.xc, torch.ones_like(self.xc[:, :1])], 1)
        self.rhs = torch.cat([self.xc * -2.0, self.sq.to(x.dtype)[:, None]], 1)
        # Rounding: dot products and norms (gamma_{D+2} each, times |a|^2 + 2|b|^2), the cast of the
        # centred features (4u (|a| + |b|)^2); doubled for safety.
        u = torch.finfo(x.dtype).eps / 2
        self.err = 4 * (x.shape[1] + 8) * u * (self.sq + self.sq.max()) + 1e-300

    def matmul(self, lhs: torch.Tensor, rhs: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
        """``lhs @ rhs.T`` (into ``out`` if given): numpy's BLAS on CPU, measured about twice as fast as
        torch's for these shapes on the 2-core CPU of the targets."""
        if self.use_numpy:
            res = np.matmul(lhs.numpy(), rhs.numpy().T, out=None if out is None else out.numpy())
            return torch.from_numpy(res)
        # Full float32 precision on CUDA: TF32 (10-bit mantissa) would break the error bound.
        allowed = torch.backends.cuda.matmul.allow_tf32
        torch.backends.cuda.matmul.allow_tf32 = False
        try:
            return torch.mm(lhs, rhs.T, out=out)
        finally:
            torch.backends.cuda.matmul.allow_tf32 = allowed

    def scaled_distances(self, lo: int, hi: int, cols: slice, scale: torch.Tensor, out: torch.Tensor) -> None:
        """``out = scale[a] * d(a, b)`` for the rows ``lo:hi`` and ``cols``: the scale folded into one
        GEMM, ``[s a, s, s ||a||^2] . [-2 b, ||b||^2, 1]``."""
        w = scale.to(self.dtype)[:, None]
        xc, sq = self.xc[lo:hi], self.sq[lo:hi].to(self.dtype)[:, None]
        lhs = torch.cat([xc * w, w, sq * w], 1)
        rhs = torch.cat([self.rhs[cols], torch.ones_like(self.rhs[cols, :1])], 1)
        if out.dtype == self.dtype:
            self.matmul(lhs, rhs, out)
        else:
            out.copy_(self.matmul(lhs, rhs))

    def buffer(self, rows: int, cols: int) -> torch.Tensor:
        """A reusable output block (fresh large allocations each chunk cost page faults)."""
        return torch.empty((rows, cols), dtype=self.dtype, device=self.xc.device)


def _pair_sqdist(x64: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
    """Squared distances ``||x[rows[p]] - x[cols[p]]||^2`` (1-D index tensors) in float64 from the
    differences: exact for duplicates, and symmetric."""
    out = torch.empty(rows.shape, dtype=torch.float64, device=x64.device)
    step = max(1, min(len(rows), _PAIR_BYTES // (8 * x64.shape[1])))
    # Small reused buffers: fresh large allocations cost page faults, and these stay in cache.
    a = torch.empty((step, x64.shape[1]), dtype=torch.float64, device=x64.device)
    b = torch.empty_like(a)
    for lo in range(0, len(rows), step):
        hi = min(len(rows), lo + step)
        diff = torch.index_select(x64, 0, rows[lo:hi], out=a[: hi - lo])
        diff.sub_(torch.index_select(x64, 0, cols[lo:hi], out=b[: hi - lo])).square_()
        torch.sum(diff, 1, out=out[lo:hi])
    return out


def _row_sqdist(x64: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
    """``[r, t]`` squared distances ``||x[cols[i, j]] - x[rows[i]]||^2`` in float64 (as :func:`_pair_sqdist`,
    gathering each row's features once)."""
    (r, t), dim = cols.shape, x64.shape[1]
    out = torch.empty((r, t), dtype=torch.float64, device=x64.device)
    step = max(1, min(r, _PAIR_BYTES // (8 * dim * t)))
    buf = torch.empty((step * t, dim), dtype=torch.float64, device=x64.device)
    for lo in range(0, r, step):
        hi = min(r, lo + step)
        g = torch.index_select(x64, 0, cols[lo:hi].reshape(-1), out=buf[: (hi - lo) * t]).view(hi - lo, t, dim)
        g.sub_(x64[rows[lo:hi], None, :]).square_()
        torch.sum(g, 2, out=out[lo:hi])
    return out


def _use_numpy(device: torch.device) -> bool:
    """Whether GEMMs and sorts on ``device`` run in numpy (the tests switch it to check torch's on CPU)."""
    return device.type == "cpu"


def _sort(x: torch.Tensor) -> torch.Tensor:
    """``x`` sorted along its last dimension. On CPU by numpy, measured 3-4x faster than torch here."""
    if _use_numpy(x.device):
        return torch.from_numpy(np.sort(x.numpy(), axis=-1))
    return x.sort(dim=-1).values


def _argsort(x: torch.Tensor, stable: bool = False) -> torch.Tensor:
    """Indices sorting ``x`` along its last dimension (int64; on CPU by numpy, as :func:`_sort`)."""
    if _use_numpy(x.device):
        return torch.from_numpy(np.argsort(x.numpy(), axis=-1, kind="stable" if stable else None).astype(np.int64))
    return x.sort(dim=-1, stable=stable).indices


# ----------------------------------------------------------------------------------------------------
# Neighbour lists
# ----------------------------------------------------------------------------------------------------


def _sorted_candidates(
    x64: torch.Tensor, rows: torch.Tensor, cand: torch.Tensor, rowmax: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Candidates of ``rows`` sorted by ``(B, index)`` with their exact squared distances."""
    cand = _sort(cand)  # index order first, so that the stable sort breaks ties by index
    d = _row_sqdist(x64, rows, cand)
    order = _argsort(d / rowmax[rows, None], stable=True)
    return cand.gather(1, order), d.gather(1, order)


def _candidates(
    gemm: _Gemm, rows: torch.Tensor | None, n: int, t: int, chunk: int, rowmax: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``t`` smallest ``s`` of each row (all rows, or the index tensor ``rows``): their columns and
    the largest of their values (float64); fills ``rowmax`` with each row's largest ``s`` if given."""
    num = n if rows is None else len(rows)
    dev = gemm.sq.device
    cand = torch.empty((num, t), dtype=torch.int64, device=dev)
    smax = torch.empty(num, dtype=torch.float64, device=dev)
    buf = gemm.buffer(min(chunk, num), n)
    for lo in range(0, num, chunk):
        hi = min(num, lo + chunk)
        s = gemm.matmul(gemm.lhs[lo:hi] if rows is None else gemm.lhs[rows[lo:hi]], gemm.rhs, buf[: hi - lo])
        vals, idx = s.topk(t, dim=1, largest=False, sorted=False)
        cand[lo:hi], smax[lo:hi] = idx, vals.amax(1)
        if rowmax is not None:
            rowmax[lo:hi] = s.amax(1)
    return cand, smax


def _neighbours(gemm: _Gemm, x64: torch.Tensor, m: int, chunk: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The first ``m`` of ``rank(i)`` of every image ``[N, m]``, and ``max_k d(i, k)`` ``[N]`` (float64)."""
    n, dev = x64.shape[0], x64.device
    t = min(n, m + _MARGIN)
    rowmax = torch.empty(n, dtype=torch.float64, device=dev)
    cand, smax = _candidates(gemm, None, n, t, chunk, rowmax)
    rowmax = (rowmax + gemm.sq).clamp_(min=0)
    rowmax = torch.where(rowmax > 0, rowmax, 1.0)  # all images identical: every B is 0
    nbr = torch.empty((n, m), dtype=torch.int64, device=dev)
    rows = torch.arange(n, device=dev)
    while True:
        redo = torch.zeros(len(rows), dtype=torch.bool, device=dev)
        for lo in range(0, len(rows), _ROWS):
            r = rows[lo : lo + _ROWS]
            c, d = _sorted_candidates(x64, r, cand[lo : lo + _ROWS], rowmax)
            nbr[r] = c[:, :m]
            if t < n:
                # Every image left out has s >= smax, so an exact squared distance of at least
                # smax + ||a||^2 - err: the list is right when that exceeds the m-th one kept.
                bound = smax[lo : lo + _ROWS] + gemm.sq[r] - gemm.err[r]
                redo[lo : lo + _ROWS] = ~(bound > d[:, m - 1] * (1 + 1e-12))
        if not bool(redo.any()):
            return nbr, rowmax
        # More ties or near-ties at the end of the list than the margin: again with more candidates.
        rows, t = rows[redo], min(n, 2 * t)
        cand, smax = _candidates(gemm, rows, n, t, chunk)


def _reciprocal(nbr: torch.Tensor) -> torch.Tensor:
    """``mask[i, p]``: ``i`` is among the first ``L`` neighbours of ``nbr[i, p]`` (``nbr`` ``[N, L]``).

    The pairs ``(i, j)`` of the lists as sorted keys ``i N + j``; ``(j, i)`` is looked up among them.
    """
    n = nbr.shape[0]
    rows = torch.arange(n, device=nbr.device)[:, None]
    keys = _sort((rows * n + nbr).view(-1))
    back = (nbr * n + rows).view(-1)
    found = keys[torch.searchsorted(keys, back).clamp_(max=len(keys) - 1)] == back
    return found.view(nbr.shape)


# ----------------------------------------------------------------------------------------------------
# Sparse V
# ----------------------------------------------------------------------------------------------------


@dataclass
class _Csr:
    """Rows of a sparse ``[N, N]`` matrix; ``col`` sorted within each row."""

    rowptr: torch.Tensor  # [N + 1]
    col: torch.Tensor  # [nnz] int64
    val: torch.Tensor  # [nnz] float64


def _rowptr(row: torch.Tensor, n: int) -> torch.Tensor:
    ptr = torch.zeros(n + 1, dtype=torch.int64, device=row.device)
    ptr[1:] = torch.bincount(row, minlength=n).cumsum(0)
    return ptr


def _expanded_sets(nbr: torch.Tensor, k: int, h: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(row, col)`` of every ``j`` in ``E(i)``, sorted, from the neighbour lists (``k`` and ``h`` their
    lengths for ``R(i, k1)`` and ``R(c, round(k1 / 2))``)."""
    n = nbr.shape[0]
    nbr_k, nbr_h = nbr[:, :k].contiguous(), nbr[:, :h].contiguous()
    mask_k, mask_h = _reciprocal(nbr_k), _reciprocal(nbr_h)
    half_sets = torch.where(mask_h, nbr_h, -2)  # -2: never equal to a member or to the -1 padding
    half_sizes = mask_h.sum(1)
    rows, cols = [], []
    for lo in range(0, n, _ROWS):
        hi = min(n, lo + _ROWS)
        c = hi - lo
        r = torch.where(mask_k[lo:hi], nbr_k[lo:hi], -1)  # R(i, k1), -1 padded
        r_sorted = _sort(r)
        h_sets = half_sets[nbr_k[lo:hi]]  # [c, k, h]: R(cand, k1/2) of every candidate in the list
        flat = h_sets.reshape(c, k * h)
        pos = torch.searchsorted(r_sorted, flat).clamp_(max=k - 1)
        inter = (r_sorted.gather(1, pos) == flat).view(c, k, h).sum(2)
        # As the reference: |R(c) ∩ R(i)| > 2/3 * |R(c)| in float64 (2/3 rounds down: not 3|.| > 2|.|).
        take = mask_k[lo:hi] & (inter > half_sizes[nbr_k[lo:hi]].double() * (2 / 3))
        members = torch.cat([r, torch.where(take[:, :, None] & (h_sets >= 0), h_sets, -1).view(c, k * h)], 1)
        members = _sort(members)
        keep = members >= 0
        keep[:, 1:] &= members[:, 1:] != members[:, :-1]
        rows.append(torch.arange(lo, hi, device=nbr.device)[:, None].expand_as(members)[keep])
        cols.append(members[keep])
    return torch.cat(rows), torch.cat(cols)


def _v_matrix(x64: torch.Tensor, nbr: torch.Tensor, rowmax: torch.Tensor, k1: int) -> _Csr:
    n = nbr.shape[0]
    k, h = min(k1 + 1, n), min(round(k1 / 2) + 1, n)  # round: half to even, like np.around
    row, col = _expanded_sets(nbr, k, h)
    w = torch.exp(-(_pair_sqdist(x64, row, col) / rowmax[row]))
    total = torch.zeros(n, dtype=torch.float64, device=x64.device).index_add_(0, row, w)
    return _Csr(_rowptr(row, n), col, w / total[row])


def _expand_ranges(starts: torch.Tensor, counts: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Flatten ranges ``[start, start + count)``: the owner (range number) and position of each element."""
    owner = torch.repeat_interleave(torch.arange(len(counts), device=counts.device), counts)
    first = counts.cumsum(0) - counts
    pos = torch.arange(len(owner), device=counts.device) + (starts - first)[owner]
    return owner, pos


def _batches(counts: torch.Tensor, budget: int, max_len: int | None = None) -> list[tuple[int, int]]:
    """Split ``range(len(counts))`` into consecutive ``(lo, hi)`` whose counts sum to at most ``budget``
    (or hold one element), of at most ``max_len`` elements."""
    ends = counts.cumsum(0).cpu().numpy()
    max_len = max_len or len(ends)
    out, lo, base = [], 0, 0
    while lo < len(ends):
        hi = max(lo + 1, int(np.searchsorted(ends, base + budget, side="right")))
        hi = min(hi, lo + max_len)
        out.append((lo, hi))
        base, lo = int(ends[hi - 1]), hi
    return out


def _query_expansion(v: _Csr, nbr: torch.Tensor) -> _Csr:
    """Rows ``V[i] <- mean_{j in nbr[i]} V[j]`` (``nbr`` ``[N, k2]``)."""
    n, k2 = nbr.shape
    counts = (v.rowptr[1:] - v.rowptr[:-1])[nbr]  # [N, k2]: entries each source row brings
    rows, cols, vals = [], [], []
    for lo, hi in _batches(counts.sum(1), MAX_TRIPLES):
        owner, pos = _expand_ranges(v.rowptr[nbr[lo:hi]].reshape(-1), counts[lo:hi].reshape(-1))
        key = (owner // k2) * n + v.col[pos]
        # Stable: equal keys keep the neighbour order, so the sums run in the reference's order.
        order = _argsort(key, stable=True)
        key = key[order]
        uniq, inverse = torch.unique_consecutive(key, return_inverse=True)
        total = torch.zeros(len(uniq), dtype=torch.float64, device=key.device)
        total.index_add_(0, inverse, v.val[pos[order]])
        rows.append(uniq // n + lo)
        cols.append(uniq % n)
        vals.append(total / k2)
    row = torch.cat(rows)
    return _Csr(_rowptr(row, n), torch.cat(cols), torch.cat(vals))


# ----------------------------------------------------------------------------------------------------
# Entry points
# ----------------------------------------------------------------------------------------------------


@dataclass
class _State:
    gemm: _Gemm
    rowmax: torch.Tensor
    v: _Csr
    colptr: torch.Tensor  # inverted index of the gallery rows of V: column -> gallery images
    inv_row: torch.Tensor
    inv_val: torch.Tensor
    nq: int
    ng: int
    lambda_value: float
    chunk: int


def _prepare(qf: torch.Tensor, gf: torch.Tensor, k1: int, k2: int, lambda_value: float, chunk: int) -> _State:
    x = torch.cat([qf, gf])
    n, nq = x.shape[0], qf.shape[0]
    x64 = x.double()
    gemm = _Gemm(x)
    k2 = min(k2, n)
    nbr, rowmax = _neighbours(gemm, x64, min(max(k1 + 1, k2), n), chunk)
    v = _v_matrix(x64, nbr, rowmax, k1)
    if k2 != 1:
        v = _query_expansion(v, nbr[:, :k2].contiguous())
    start = int(v.rowptr[nq])
    g_col = v.col[start:]
    order = _argsort(g_col, stable=True)  # stable: gallery rows ascending within a column
    g_row = torch.repeat_interleave(torch.arange(n - nq, device=x.device), v.rowptr[nq + 1 :] - v.rowptr[nq:-1])
    return _State(
        gemm=gemm,
        rowmax=rowmax,
        v=v,
        colptr=_rowptr(g_col, n),
        inv_row=g_row[order],
        inv_val=v.val[start:][order].float(),
        nq=nq,
        ng=n - nq,
        lambda_value=float(lambda_value),
        chunk=chunk,
    )


def _chunks(state: _State, out: torch.Tensor | None = None) -> Iterator[tuple[int, torch.Tensor]]:
    nq, ng, lam, v, chunk = state.nq, state.ng, state.lambda_value, state.v, state.chunk
    dev = v.col.device
    col_count = state.colptr[1:] - state.colptr[:-1]
    scale = lam / state.rowmax[:nq]
    # The Jaccard sums run in float32 like the result (relative error about 1e-7 over ~100 terms).
    q_val = v.val[: int(v.rowptr[nq])].float()
    # Sums t of a batch of rows; only the entries being worked on are non-zero.
    acc_rows = max(1, min(chunk, nq, _ACC_BYTES // (4 * ng)))
    acc = torch.zeros(acc_rows * ng, dtype=torch.float32, device=dev)
    for lo in range(0, nq, chunk):
        hi = min(nq, lo + chunk)
        dist = out[lo:hi] if out is not None else torch.empty((hi - lo, ng), dtype=torch.float32, device=dev)
        # lambda * B + (1 - lambda): the value of every pair that shares no column (t = 0, Jaccard 1).
        if lam == 0:
            dist.fill_(1.0)
        else:
            state.gemm.scaled_distances(lo, hi, slice(nq, None), scale[lo:hi], dist)
            dist.clamp_(min=0).add_(1 - lam)
        # Entries of the chunk's rows of V, and the Jaccard terms each brings (gallery rows of its column).
        ptr = v.rowptr[lo : hi + 1]
        a = int(ptr[0])
        e_row = torch.repeat_interleave(torch.arange(hi - lo, device=dev), ptr[1:] - ptr[:-1])
        e_col, e_val = v.col[a : int(ptr[-1])], q_val[a : int(ptr[-1])]
        e_count = col_count[e_col]
        row_terms = torch.zeros(hi - lo, dtype=torch.int64, device=dev).index_add_(0, e_row, e_count)
        # Batches of whole rows, so that each pair's sum is complete within its batch.
        for r0, r1 in _batches(row_terms, MAX_TRIPLES, acc_rows):
            p, q = int(ptr[r0]) - a, int(ptr[r1]) - a
            owner, pos = _expand_ranges(state.colptr[e_col[p:q]], e_count[p:q])
            # Position of each term's pair in the batch's rows of dist (and in acc).
            pair = ((e_row[p:q] - r0) * ng)[owner].add_(state.inv_row[pos])
            acc.index_add_(0, pair, torch.minimum(e_val[p:q][owner], state.inv_val[pos]))
            t = acc.index_select(0, pair)  # complete sums, repeated for a pair met through several columns
            # Jaccard 1 - t / (2 - t): subtract (1 - lambda) t / (2 - t); repeated pairs write the same value.
            part = dist.view(-1)[r0 * ng : r1 * ng]
            part.index_copy_(0, pair, torch.addcdiv(part.index_select(0, pair), t, 2 - t, value=lam - 1))
            acc.index_fill_(0, pair, 0)
        yield lo, dist


def iter_rerank_chunks(
    query_feats: ArrayLike,
    gallery_feats: ArrayLike,
    *,
    k1: int = 20,
    k2: int = 6,
    lambda_value: float = 0.3,
    chunk_size: int | None = None,
) -> Iterator[tuple[int, torch.Tensor]]:
    """Re-ranked distances in chunks of queries, so that ``[Q, G]`` is never held.

    The arguments are those of :func:`k_reciprocal_rerank` (checked here, before the first chunk).
    The re-ranking itself runs when the first chunk is asked for.

    Yields:
        ``(start, dist)``: ``dist`` float32 ``[c, G]`` are the rows ``start : start + c`` of the result
        (``c = chunk_size`` except in the last chunk), on the features' device.
    """
    qf, gf = _check(query_feats, gallery_feats, k1, k2, lambda_value, chunk_size)
    chunk = chunk_size or default_chunk_size(qf.shape[0] + gf.shape[0])

    def generate() -> Iterator[tuple[int, torch.Tensor]]:
        yield from _chunks(_prepare(qf, gf, k1, k2, lambda_value, chunk))

    return generate()


def k_reciprocal_rerank(
    query_feats: ArrayLike,
    gallery_feats: ArrayLike,
    *,
    k1: int = 20,
    k2: int = 6,
    lambda_value: float = 0.3,
    chunk_size: int | None = None,
) -> torch.Tensor:
    """k-reciprocal re-ranked query-gallery distances (definition and algorithm in the module docstring).

    Args:
        query_feats, gallery_feats: ``[Q, D]`` and ``[G, D]`` features, numpy or torch on any device
            (both on the same); used as given (not normalised). Float64 features give float64
            distance blocks, others float32.
        k1: size of the k-reciprocal neighbourhoods (the paper's k1, 20).
        k2: size of the local query expansion (k2, 6); 1 turns it off.
        lambda_value: weight of the original distance (lambda, 0.3); 0 = Jaccard distance only.
        chunk_size: rows per chunk of the distance computations (and queries per chunk of
            :func:`iter_rerank_chunks`); None picks it from :data:`CHUNK_BYTES`. It changes memory and
            speed, not the result.

    Returns:
        float32 ``[Q, G]`` on the features' device (MSMT17-sized: 3.8 GB; see
        :func:`iter_rerank_chunks` to avoid holding it).
    """
    qf, gf = _check(query_feats, gallery_feats, k1, k2, lambda_value, chunk_size)
    chunk = chunk_size or default_chunk_size(qf.shape[0] + gf.shape[0])
    out = torch.empty((qf.shape[0], gf.shape[0]), dtype=torch.float32, device=qf.device)
    for _ in _chunks(_prepare(qf, gf, k1, k2, lambda_value, chunk), out):
        pass
    return out


@dataclass(frozen=True)
class KReciprocal:
    """k-reciprocal re-ranking as the re-ranker of :func:`svllreid.metrics.evaluate` (``rerank=``).

    Attributes:
        k1, k2, lambda_value: the parameters of :func:`k_reciprocal_rerank` (Zhong et al.'s 20, 6, 0.3),
            checked when the re-ranker is made.
    """

    k1: int = 20
    k2: int = 6
    lambda_value: float = 0.3

    def __post_init__(self) -> None:
        _check_parameters(self.k1, self.k2, self.lambda_value)

    def blocks(
        self, query_feats: ArrayLike, gallery_feats: ArrayLike, chunk_size: int | None = None
    ) -> Iterator[tuple[int, torch.Tensor]]:
        """:func:`iter_rerank_chunks` with these parameters."""
        return iter_rerank_chunks(
            query_feats, gallery_feats, k1=self.k1, k2=self.k2, lambda_value=self.lambda_value, chunk_size=chunk_size
        )
