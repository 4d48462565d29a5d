"""The ``faiss-ivfpq`` backend of :class:`svllreid.search.GalleryIndex`: a gallery past RAM.

An inverted file of product-quantised codes (faiss ``IndexIVFPQ``, inner product, spherical k-means) finds
``refine x topk`` candidates per query; they are re-ranked by their exact cosine with the query, from the
gallery's float16 features, which stay in the index file and are read row by row (:class:`FeatureRows`).
The inverted lists (codes and row numbers) stay in the index file too: faiss maps them
(``OnDiskInvertedLists`` over the file's ``ivf_lists`` member), so a search reads the pages of the lists it
probes and nothing else. In memory: the coarse centroids and the PQ codebooks (``nlist x D`` floats, plus
``256 x D``).

Building trains on a uniform sample of the gallery (:class:`Reservoir`, the same sample however the gallery
is cut into batches), then adds every feature, in chunks, as stored in float16; raw features are never all
in memory. What a build holds: the sample (``train_size x D`` float32), one chunk, and the codes
(``N x (pq_m + 8)`` bytes, faiss's in-memory lists until they are written).
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from svllreid.errors import IndexFileError, MissingExtraError
from svllreid.search.faiss_backend import faiss_threads, import_faiss
from svllreid.search.stored import FeatureRows

__all__ = [
    "ADD_CHUNK_ROWS",
    "DEFAULT_REFINE",
    "MAX_DEFAULT_NLIST",
    "PARAM_KEYS",
    "IvfpqBuilder",
    "Reservoir",
    "check_given",
    "ivfpq_params",
    "ivfpq_search",
    "list_pieces",
    "list_sizes",
    "open_lists",
    "reservoir_capacity",
    "sample_keys",
]

log = logging.getLogger(__name__)

#: The settings of a faiss-ivfpq index, as ``GalleryIndex.params`` holds them.
PARAM_KEYS = ("nlist", "nprobe", "pq_m", "pq_nbits", "refine", "train_size")
#: The default nlist stops growing here: adding a vector compares it with every centroid (a flat coarse
#: quantizer; an HNSW one was slower to add to in a trial here), so the add costs ``N x nlist x D``. With
#: 4096, a 10 M x 512 build is estimated at about a quarter of an hour on 2 cores (from the measured 1 M
#: build), and a query scans ``nprobe / nlist`` of the gallery's codes.
MAX_DEFAULT_NLIST = 4096
#: Candidates per result re-ranked exactly. On the benchmark's 1 M x 512 gallery, in a trial with nlist
#: 4096 and nprobe 64, the PQ codes' own top 10 held 0.85 of the true top 10; the top 100 re-ranked,
#: 0.96; the top 200, 0.965.
DEFAULT_REFINE = 10
#: Training points per centroid by default (faiss warns under 39, and uses at most 256).
TRAIN_PER_CENTROID = 64
#: At least this many training points by default (the PQ's 256 codewords per sub-vector want ~39 each).
MIN_DEFAULT_TRAIN = 10_000
#: k-means iterations of the coarse quantizer: 10 are most of the gain, at 40% of faiss's default cost.
KMEANS_ITERATIONS = 10
#: Rows added (and read back from the stored features) per call: 65536 x 512 float32 = 128 MiB.
ADD_CHUNK_ROWS = 65536
#: Bytes of a stored row number in the inverted lists (faiss's idx_t).
_ID_BYTES = 8


def _positive(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def check_given(
    *,
    nlist: int | None,
    nprobe: int | None,
    pq_m: int | None,
    pq_nbits: int | None,
    refine: int,
    train_size: int | None,
) -> None:
    """Refuse settings that are wrong whatever the gallery (before a streamed gallery is read).

    Raises:
        ValueError: a setting that is not a positive integer, or ``pq_nbits`` beyond 16.
    """
    for name, value in (("nlist", nlist), ("nprobe", nprobe), ("pq_m", pq_m), ("train_size", train_size)):
        if value is not None:
            _positive(value, name)
    _positive(refine, "refine")
    if pq_nbits is not None and not 1 <= _positive(pq_nbits, "pq_nbits") <= 16:
        raise ValueError(f"pq_nbits must be between 1 and 16 (8: one byte per sub-vector), got {pq_nbits}")


def reservoir_capacity(nlist: int | None, train_size: int | None) -> int:
    """How many sampled rows a streamed build keeps before it knows N: enough for any default train_size."""
    if train_size is not None:
        return train_size
    return max(TRAIN_PER_CENTROID * (nlist or MAX_DEFAULT_NLIST), MIN_DEFAULT_TRAIN)


def ivfpq_params(
    n: int,
    d: int,
    *,
    nlist: int | None,
    nprobe: int | None,
    pq_m: int | None,
    pq_nbits: int | None,
    refine: int,
    train_size: int | None,
) -> dict[str, int]:
    """The settings for ``n`` features of width ``d``, defaults filled in (see :class:`GalleryIndex`).

    Raises:
        ValueError: settings that do not fit (with what would).
    """
    check_given(nlist=nlist, nprobe=nprobe, pq_m=pq_m, pq_nbits=pq_nbits, refine=refine, train_size=train_size)
    if nlist is None:
        nlist = min(MAX_DEFAULT_NLIST, max(1, round(4 * math.sqrt(n))), max(1, n // 39))
    if nlist > n:
        raise ValueError(f"nlist ({nlist}) cannot exceed the number of gallery features ({n}); choose at most {n}")
    if train_size is None:
        train_size = max(TRAIN_PER_CENTROID * nlist, MIN_DEFAULT_TRAIN)
    train_size = min(train_size, n)
    if train_size < nlist:
        raise ValueError(
            f"train_size ({train_size}) is smaller than nlist ({nlist}): k-means needs at least one training "
            f"vector per cluster (39 or more advised); raise train_size to {39 * nlist} or lower nlist"
        )
    if train_size < 39 * nlist and nlist > 1:  # one cluster needs no k-means
        log.warning("faiss-ivfpq: %d training vectors for %d clusters (>= %d advised)", train_size, nlist, 39 * nlist)
    if pq_m is None:  # about one byte per 8 dimensions: 64-byte codes for 512-d features
        pq_m = max(m for m in range(1, max(1, d // 8) + 1) if d % m == 0)
    if d % pq_m:
        divisors = [m for m in range(1, d + 1) if d % m == 0]
        raise ValueError(
            f"pq_m ({pq_m}) must divide the feature width ({d}) into equal sub-vectors; choose one of "
            f"{', '.join(map(str, divisors[-12:]))}"
        )
    if pq_nbits is None:  # 8 (one byte per sub-vector) unless the sample is too small for 256 codewords
        pq_nbits = min(8, train_size.bit_length() - 1)
    if 2**pq_nbits > train_size:
        raise ValueError(
            f"pq_nbits {pq_nbits} needs at least {2**pq_nbits} training vectors (one per codeword), but there "
            f"are {train_size}; lower pq_nbits to {train_size.bit_length() - 1}"
        )
    if nprobe is None:  # 1/64 of the lists: recall@10 0.96 on the benchmark's 1 M gallery
        nprobe = max(8, nlist // 64)
    return {
        "nlist": nlist,
        "nprobe": min(nprobe, nlist),
        "pq_m": pq_m,
        "pq_nbits": pq_nbits,
        "refine": refine,
        "train_size": train_size,
    }


# ----------------------------------------------------------------------------------------------------
# Sampling
# ----------------------------------------------------------------------------------------------------


def sample_keys(start: int, count: int) -> np.ndarray:
    """Pseudo-random uint64 keys of rows ``start .. start + count - 1``: the splitmix64 finaliser of the row
    number, a bijection, so the keys are distinct and depend on the row alone (not on how rows are batched)."""
    z = (np.arange(start, start + count, dtype=np.uint64) + np.uint64(1)) * np.uint64(0x9E3779B97F4A7C15)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


class Reservoir:
    """The rows with the ``capacity`` smallest :func:`sample_keys` of a stream: a uniform random sample of a
    stream of unknown length, the same however the stream is cut into batches.

    Kept rows live in one ``[capacity, D]`` array (allocated at the first row; its pages are only taken as
    they fill). Candidates (rows whose key beats the largest kept key) wait in a buffer and are merged when
    it holds a quarter of the capacity, each kept candidate written over an evicted row: at most
    ``1.25 x capacity`` rows and a batch are held.
    """

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.keys = np.empty(0, np.uint64)  # of the kept rows, rows[: len(keys)]
        self.rows: np.ndarray | None = None
        self._pending: list[tuple[np.ndarray, np.ndarray]] = []
        self._pending_rows = 0
        self._threshold: np.uint64 | None = None  # the largest kept key once full

    def add(self, start: int, rows: np.ndarray) -> None:
        """Offer ``rows`` (float32), the stream's rows ``start ..``."""
        keys = sample_keys(start, len(rows))
        if self._threshold is not None:
            better = keys < self._threshold
            keys, rows = keys[better], rows[better]
        if len(keys) > self.capacity:  # only a batch's own smallest keys can enter (a whole gallery, say)
            smallest = np.argpartition(keys, self.capacity - 1)[: self.capacity]
            keys, rows = keys[smallest], rows[smallest]
        if not len(keys):
            return
        if self.rows is None:
            self.rows = np.empty((self.capacity, rows.shape[1]), np.float32)
        self._pending.append((keys, np.array(rows, np.float32)))
        self._pending_rows += len(keys)
        if self._pending_rows >= max(1, self.capacity // 4):
            self._merge()

    def _merge(self) -> None:
        if not self._pending:
            return
        assert self.rows is not None
        kept = len(self.keys)
        new_keys = np.concatenate([k for k, _ in self._pending])
        new_rows = np.concatenate([r for _, r in self._pending])
        self._pending, self._pending_rows = [], 0
        candidates = np.concatenate([self.keys, new_keys])
        if len(candidates) > self.capacity:
            best = np.argpartition(candidates, self.capacity - 1)[: self.capacity]
        else:
            best = np.arange(len(candidates))
        entering = best[best >= kept] - kept  # candidates that stay, by their place in new_rows
        evicted = np.setdiff1d(np.arange(kept), best[best < kept], assume_unique=True)
        # Free places first (the array is not full yet), then the places of evicted rows.
        slots = np.concatenate([np.arange(kept, min(self.capacity, kept + len(entering))), evicted])
        slots = slots[: len(entering)]
        keys = np.concatenate([self.keys, np.zeros(max(0, int(slots.max(initial=-1)) + 1 - kept), np.uint64)])
        keys[slots], self.rows[slots] = new_keys[entering], new_rows[entering]
        self.keys = keys
        if len(keys) == self.capacity:
            self._threshold = keys.max()

    def sample(self, size: int) -> np.ndarray:
        """The ``size`` rows with the smallest keys, in key order (so the same sample trains the same way)."""
        self._merge()
        assert self.rows is not None and size <= len(self.keys)
        order = np.argsort(self.keys, kind="stable")[:size]
        return np.ascontiguousarray(self.rows[order])


# ----------------------------------------------------------------------------------------------------
# Building
# ----------------------------------------------------------------------------------------------------


class IvfpqBuilder:
    """Takes a gallery's unit float32 features in batches; keeps a training sample and the features in
    float16 (in memory, or appended to ``spool``); then trains and fills a faiss IVF-PQ index.

    Args:
        capacity: rows of the training sample to keep (:func:`reservoir_capacity`).
        spool: the file the float16 features go to (None: kept in memory).
    """

    def __init__(self, *, capacity: int, spool: Path | None = None) -> None:
        self.reservoir = Reservoir(capacity)
        self.spool = spool
        self._handle = spool.open("wb") if spool is not None else None
        self._parts: list[np.ndarray] = []
        self.n = 0
        self.d: int | None = None

    def add(self, unit: np.ndarray) -> None:
        """Append unit float32 rows (checked by the caller, all of one width)."""
        self.d = unit.shape[1]
        self.reservoir.add(self.n, unit)
        half = unit.astype(np.float16)
        if self._handle is not None:
            self._handle.write(half.reshape(-1).view(np.uint8).data)
        else:
            self._parts.append(half)
        self.n += len(unit)

    def close(self) -> None:
        """Stop taking rows: the spool file, if any, is complete."""
        if self._handle is not None:
            self._handle.close()

    def stored(self) -> FeatureRows:
        """The float16 features (once all are added: closes the spool)."""
        assert self.d is not None
        self.close()
        if self.spool is not None:
            return FeatureRows(path=self.spool, shape=(self.n, self.d))
        return FeatureRows(np.concatenate(self._parts) if len(self._parts) != 1 else self._parts[0])

    def finish(self, params: dict[str, int], rows: FeatureRows) -> tuple[Any, np.ndarray]:
        """The trained index holding every row of ``rows`` (:meth:`stored`), and the serialised index
        before any row was added (its coarse centroids and codebooks: what the file keeps besides the lists)."""
        faiss = import_faiss()
        assert self.d is not None
        sample = self.reservoir.sample(params["train_size"])
        self.reservoir = Reservoir(0)  # the sample is all that is needed of it
        log.info(
            "faiss-ivfpq: training %d clusters and %d-byte codes on %d vectors",
            params["nlist"],
            params["pq_m"],
            len(sample),
        )
        index = faiss.IndexIVFPQ(
            faiss.IndexFlatIP(self.d),
            self.d,
            params["nlist"],
            params["pq_m"],
            params["pq_nbits"],
            faiss.METRIC_INNER_PRODUCT,
        )
        index.cp.spherical = True  # unit-length centroids suit inner products of unit vectors
        index.cp.niter = KMEANS_ITERATIONS
        # Few points per centroid are warned about by ivfpq_params, through logging, not faiss's stderr.
        index.cp.min_points_per_centroid = 1
        index.pq.cp.min_points_per_centroid = 1
        with faiss_threads(faiss):
            index.train(sample)
        del sample
        header = faiss.serialize_index(index)  # empty lists: the lists are written apart, list by list
        log.info("faiss-ivfpq: adding %d vectors", self.n)
        with faiss_threads(faiss):
            for _, chunk in rows.chunks(ADD_CHUNK_ROWS):
                index.add(chunk)
        index.nprobe = params["nprobe"]
        imbalance = index.invlists.imbalance_factor()
        if imbalance > 4:
            # The sample is uniform, so this means the gallery itself is lopsided (many near-copies).
            log.warning("faiss-ivfpq: lists are unbalanced (imbalance factor %.1f): searches are slower", imbalance)
        return index, header


def list_sizes(index: Any) -> np.ndarray:
    """The length of each inverted list (int64)."""
    lists = import_faiss().extract_index_ivf(index).invlists
    return np.fromiter((lists.list_size(i) for i in range(lists.nlist)), np.int64, lists.nlist)


def list_pieces(index: Any) -> Iterator[np.ndarray]:
    """The bytes of the ``ivf_lists`` member: each non-empty list's codes, then its row numbers (int64),
    as faiss's OnDiskInvertedLists lays out a list whose capacity is its size."""
    faiss = import_faiss()
    lists = faiss.extract_index_ivf(index).invlists
    for i in range(lists.nlist):
        size = lists.list_size(i)
        if size:
            yield faiss.rev_swig_ptr(lists.get_codes(i), size * lists.code_size)
            yield faiss.rev_swig_ptr(lists.get_ids(i), size).view(np.uint8)


def open_lists(
    header: np.ndarray, sizes: np.ndarray, *, path: Path, offset: int, nbytes: int, ntotal: int, params: dict[str, int]
) -> Any:
    """The index of a file: ``header`` (the trained, empty index) with inverted lists that faiss maps from
    the ``nbytes`` at ``offset`` of ``path``. Nothing of the lists is read here.

    Raises:
        ValueError: a header, sizes or lists that do not fit ``params`` or each other (why).
        MissingExtraError: no faiss, or a faiss without OnDiskInvertedLists.
    """
    faiss = import_faiss()
    if not hasattr(faiss, "OnDiskInvertedLists"):  # faiss's Windows builds leave it out (it needs mmap)
        raise MissingExtraError(
            "this faiss build has no OnDiskInvertedLists (it needs POSIX mmap): use faiss-cpu on Linux or macOS"
        )
    try:
        index = faiss.deserialize_index(header)
    except RuntimeError as err:
        raise ValueError(f"faiss cannot read its index: {err}") from err
    if not isinstance(index, faiss.IndexIVFPQ) or index.metric_type != faiss.METRIC_INNER_PRODUCT:
        raise ValueError(f"its faiss index is a {type(index).__name__}, not an inner-product IndexIVFPQ")
    found = {"nlist": index.nlist, "pq_m": index.pq.M, "pq_nbits": index.pq.nbits}
    if any(found[key] != params[key] for key in found) or len(sizes) != index.nlist:
        raise ValueError(f"its faiss index ({found}, {len(sizes)} list sizes) does not match its params {params}")
    if sizes.dtype != np.int64 or (sizes < 0).any() or int(sizes.sum()) != ntotal:
        raise ValueError(f"its inverted lists hold {int(sizes.sum())} rows, not its {ntotal} features")
    code_size = index.code_size
    if nbytes != ntotal * (code_size + _ID_BYTES):
        raise ValueError(f"its inverted lists take {nbytes} bytes, not {ntotal} x ({code_size} + {_ID_BYTES})")
    lists = faiss.OnDiskInvertedLists(index.nlist, code_size, os.fspath(path))
    lists.lists.clear()
    position = offset
    for size in sizes.tolist():
        entry = faiss.OnDiskOneList()
        entry.size = entry.capacity = size
        entry.offset = position
        lists.lists.push_back(entry)
        position += size * (code_size + _ID_BYTES)
    lists.totsize = position  # faiss maps the file from its start to the end of the lists
    lists.read_only = True
    lists.prefetch_nthread = 0  # no prefetch threads per search: the pages of a few lists are read on demand
    lists.do_mmap()
    index.replace_invlists(lists, True)
    lists.thisown = False  # the index owns (and unmaps) its lists now
    index.ntotal = ntotal
    index.nprobe = params["nprobe"]
    return index


# ----------------------------------------------------------------------------------------------------
# Searching
# ----------------------------------------------------------------------------------------------------

#: Candidate rows read per group of queries: 2^16 rows of 512 float32 are 128 MiB.
_RERANK_ROWS = 2**16


def ivfpq_search(
    index: Any, rows: FeatureRows, refine: int, queries: np.ndarray, *, k: int
) -> tuple[np.ndarray, np.ndarray]:
    """Top-k of unit ``queries``: ``refine x k`` candidates from the IVF-PQ index, re-ranked by the exact
    cosine with their stored features; descending score, then gallery row, missing items last."""
    faiss = import_faiss()
    n = len(rows)
    wanted = min(n, k * refine)
    with faiss_threads(faiss):
        _, candidates = index.search(queries, wanted)
    candidates = candidates.astype(np.int64, copy=False)
    if candidates.max(initial=-1) >= n:
        raise IndexFileError(
            f"the index's inverted lists name row {candidates.max()} of a {n}-image gallery: the file is damaged; "
            "rebuild it with `svllreid index build`"
        )
    nq = len(queries)
    scores, indices = np.full((nq, k), -np.inf, np.float32), np.full((nq, k), -1, np.int64)
    group = max(1, _RERANK_ROWS // wanted)
    for lo in range(0, nq, group):
        block = candidates[lo : lo + group]
        found = np.unique(block[block >= 0])  # sorted: each row read once for the group
        vectors = rows.take(found)
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)  # float16 rounding left them ~1e-4 off unit
        for i, row in enumerate(block, start=lo):
            ids = row[row >= 0]
            if not len(ids):
                continue
            exact = vectors[np.searchsorted(found, ids)] @ queries[i]
            order = np.lexsort((ids, -exact))[:k]
            scores[i, : len(order)], indices[i, : len(order)] = exact[order], ids[order]
    return scores, indices
