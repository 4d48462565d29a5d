"""A gallery index: L2-normalised image features with their paths, searched by cosine similarity.

Backends
    ``exact``
        Chunked float32 matrix products in numpy and a partial sort: the true top-k. Fast enough for
        galleries up to ~10^5-10^6 images, and the only backend that needs nothing beyond numpy.
    ``faiss-flat``
        faiss ``IndexFlatIP``: also exhaustive (the same results up to float rounding), faiss's kernels.
    ``faiss-ivf``
        faiss ``IndexIVFFlat`` (inner product, spherical k-means): searches the ``nprobe`` of ``nlist``
        clusters nearest the query. Defaults: ``nlist = round(4 * sqrt(N))`` clipped to
        ``[1, max(1, N // 39)]`` (faiss's k-means wants >= 39 points per centroid), and
        ``nprobe = min(nlist, max(8, nlist // 16))``, about a sixteenth of the gallery per query
        (recall@10 0.99 in ``benchmarks/search_speed.py`` at 100,000 x 512; nprobe 32 gave 0.98, 8 gave 0.96).
    ``faiss-hnsw``
        faiss ``IndexHNSWFlat`` (inner product): a graph search; ``hnsw_m`` links per node and
        ``ef_search`` candidates per search (at least ``topk``).
    ``faiss-ivfpq``
        A gallery past RAM (:mod:`svllreid.search.ivfpq`): faiss ``IndexIVFPQ`` (inner product) finds
        ``refine x topk`` candidates in the ``nprobe`` nearest of ``nlist`` lists of ``pq_m``-byte codes
        (``pq_nbits`` bits per sub-vector), re-ranked by their exact cosine with the gallery's float16
        features. Its file is read in place: faiss maps the lists, the features and paths are read as
        hits need them, so serving takes little memory whatever N. Built from an array (:meth:`GalleryIndex.build`)
        or from batches streamed into the file (:meth:`GalleryIndex.build_streamed`), trained on a uniform
        sample of ``train_size`` features. Defaults: ``nlist = round(4 * sqrt(N))`` clipped to
        ``[1, N // 39]`` and to at most 4096; ``nprobe = max(8, nlist // 64)``; ``pq_m`` about ``D / 8``
        (a divisor of D); ``pq_nbits`` 8; ``refine`` 10; ``train_size = max(64 * nlist, 10000)``
        (at most N). Recall@10 0.96 at 1 M x 512 in ``benchmarks/search_speed.py --sizes``.

    The approximate backends pay off for large galleries only; for a few thousand images use
    ``exact``. faiss is optional (``pip install 'svllreid[faiss]'``) and imported only when needed. faiss
    runs with ``torch.get_num_threads()`` OpenMP threads where torch is loaded (its default otherwise),
    so that one setting governs both libraries.

Text queries
    :meth:`GalleryIndex.search_text` compares text features (a checkpoint's text encoder) with the last
    ``meta["text_dim"]`` columns of the features, f_proj, normalised on their own; always exactly.

Results
    Scores are cosine similarities (higher = closer), float32, descending; a query gets
    ``min(topk, N)`` columns, never padding for a small gallery. Equal scores keep gallery order: the
    exact backend computes identical gallery features once, so that they tie exactly (a BLAS may round
    one dot product differently in different columns), and breaks ties at the k-th place by gallery
    index. The faiss backends order what they return the same way, but pick among items tied at the
    k-th place themselves. ``faiss-ivfpq`` scores are the cosines with the stored float16 features
    (within ~1e-3 of the float32 ones); its text search scans them in chunks, without the exact backend's
    care for repeated rows. Scores can differ in the last bits between batches of queries of different
    sizes (BLAS kernels), as between backends. The approximate backends may find fewer than
    ``min(topk, N)`` items: the missing entries are index -1 with score -inf, at the end of the row.

File
    One ``.npz`` archive (:mod:`svllreid.search.index_file`, read with ``allow_pickle=False``): ``format``
    ("svllreid-gallery-index"), ``version`` (int), ``backend``, ``feats`` (float32 [N, D], unit rows),
    ``paths`` (unicode [N]), ``meta_json`` and ``params_json`` (JSON text), and for ``faiss-ivf`` /
    ``faiss-hnsw`` the serialised faiss index (``faiss_index``, uint8), so that loading neither retrains nor rebuilds
    the graph (the file then holds the features twice). ``faiss-flat`` is rebuilt from ``feats`` on load (a
    copy). A faiss index loaded where faiss is missing falls back to exact search (``backend`` "exact"; saving
    it again writes an exact index), with a logged warning: the features are all it needs. A ``faiss-ivfpq``
    file (version 3, :mod:`svllreid.search.index_file`) is refused without faiss instead: searching it
    exactly would read every feature for every search, what the backend is there to avoid.
"""

from __future__ import annotations

import functools
import json
import logging
import math
import os
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from svllreid.errors import IndexFileError, MissingExtraError
from svllreid.search.faiss_backend import SERIALISED, build_faiss, faiss_search, import_faiss, load_faiss
from svllreid.search.index_file import (
    FORMAT,
    VERSION,
    Pieces,
    absolute,
    damaged,
    json_entry,
    locate,
    locate_meta,
    read_index_file,
    text_entry,
    write_index_file,
    write_mapped_index_file,
)
from svllreid.search.ivfpq import (
    DEFAULT_REFINE,
    PARAM_KEYS,
    IvfpqBuilder,
    check_given,
    ivfpq_params,
    ivfpq_search,
    list_pieces,
    list_sizes,
    open_lists,
    reservoir_capacity,
)
from svllreid.search.stored import FeatureRows, PathSpool, StoredPaths, file_pieces

if TYPE_CHECKING:
    import torch

__all__ = [
    "BACKENDS",
    "FORMAT",
    "VERSION",
    "GalleryIndex",
    "IndexFileError",
    "SearchResult",
]

log = logging.getLogger(__name__)

BACKENDS = ("exact", "faiss-flat", "faiss-ivf", "faiss-hnsw", "faiss-ivfpq")
#: Working memory of one chunk of queries of the exact search (scores, partition indices, masks).
SEARCH_CHUNK_BYTES = 256 * 2**20
#: Bytes per (query, gallery item) pair of a chunk: scores, partition indices and a mask for a top-k
#: (``topk < N``); scores, keys, order and sorted copies for a full sort (``topk >= N``).
_BYTES_PER_PAIR = {"top-k": 16, "sort": 32}

ArrayLike = Any  # numpy array, torch tensor, or anything np.asarray accepts


@dataclass(frozen=True)
class _IvfpqParts:
    """What saving a faiss-ivfpq index needs besides its features and paths: the serialised trained index
    without its lists (``header``), and, for an index read from a file, that file's mapped members
    (lists, paths: copied from there) and list sizes."""

    header: np.ndarray
    mapped: dict[str, np.ndarray] | None = None
    sizes: np.ndarray | None = None


@dataclass(frozen=True, eq=False)
class SearchResult:
    """Top-k gallery items of each query.

    Attributes:
        scores: float32 ``[Q, k]`` cosine similarities, descending per row (-inf where ``indices`` is -1).
        indices: int64 ``[Q, k]`` gallery rows (into :attr:`GalleryIndex.paths`), -1 where an
            approximate backend found fewer than ``k`` items. ``k = min(topk, N)``.
    """

    scores: np.ndarray
    indices: np.ndarray

    @classmethod
    def empty(cls, k: int) -> SearchResult:
        """The result of no queries."""
        return cls(np.empty((0, k), np.float32), np.empty((0, k), np.int64))


class GalleryIndex:
    """Gallery features, their image paths and free-form metadata, searchable by cosine similarity.

    Create one with :meth:`build`, :meth:`build_streamed` or :meth:`load`. Treat the attributes as
    read-only (``feats`` is a read-only array): a faiss index is built from them.

    Attributes:
        feats: float32 ``[N, D]`` L2-normalised gallery features; float16 for ``faiss-ivfpq``, and then,
            once loaded, a read-only :class:`numpy.memmap` of the file (read as indexed, never whole).
        paths: the N image paths, in gallery order (a list; for a loaded ``faiss-ivfpq`` index a
            :class:`~svllreid.search.stored.StoredPaths`, read one at a time).
        meta: JSON-serialisable metadata (as JSON gives it back: tuples become lists).
        backend: one of :data:`BACKENDS`.
        params: the backend's settings in effect (``nlist``/``nprobe``, ``hnsw_m``/``ef_search``, and
            for ``faiss-ivfpq`` also ``pq_m``, ``pq_nbits``, ``refine`` and ``train_size``).

    Example:
        >>> import numpy as np
        >>> from svllreid.search import GalleryIndex
        >>> feats = np.array([[1.0, 0.0], [0.0, 1.0], [0.6, 0.8]], dtype=np.float32)
        >>> index = GalleryIndex.build(feats, ["a.jpg", "b.jpg", "c.jpg"])
        >>> result = index.search(np.array([[0.0, 1.0]], dtype=np.float32), topk=2)
        >>> [index.paths[i] for i in result.indices[0]], [round(float(s), 2) for s in result.scores[0]]
        (['b.jpg', 'c.jpg'], [1.0, 0.8])
    """

    def __init__(
        self,
        feats: np.ndarray,
        paths: Sequence[str],
        *,
        meta: dict[str, Any],
        backend: str,
        params: dict[str, int],
        faiss_index: Any = None,
        rows: FeatureRows | None = None,
        ivfpq: _IvfpqParts | None = None,
    ) -> None:
        """Assemble validated parts (use :meth:`build`, :meth:`build_streamed` or :meth:`load`)."""
        feats.setflags(write=False)
        self.feats = feats
        self.paths = paths
        self.meta = meta
        self.backend = backend
        self.params = params
        self._faiss = faiss_index
        self._rows = rows  # faiss-ivfpq: the stored features, read row by row (re-ranking, text search)
        self._ivfpq = ivfpq

    # ------------------------------------------------------------------------------------------------
    # Building
    # ------------------------------------------------------------------------------------------------

    @classmethod
    def build(
        cls,
        feats: np.ndarray | torch.Tensor,
        paths: Sequence[str | os.PathLike[str]],
        *,
        meta: dict[str, Any] | None = None,
        backend: str = "exact",
        nlist: int | None = None,
        nprobe: int | None = None,
        hnsw_m: int = 32,
        ef_search: int = 64,
        pq_m: int | None = None,
        pq_nbits: int | None = None,
        refine: int = DEFAULT_REFINE,
        train_size: int | None = None,
    ) -> GalleryIndex:
        """Index gallery features (re-normalised here) with their image paths.

        Args:
            feats: ``[N, D]`` features, numpy or torch, finite, no all-zero row.
            paths: the N image paths, in the order of ``feats``.
            meta: JSON-serialisable metadata kept with the index (checkpoint, model, image size...).
            backend: one of :data:`BACKENDS`.
            nlist, nprobe: ``faiss-ivf`` / ``faiss-ivfpq`` clusters and clusters searched per query
                (default: see the module docstring); other backends ignore them.
            hnsw_m, ef_search: ``faiss-hnsw`` links per node and search breadth; others ignore them.
            pq_m, pq_nbits, refine, train_size: ``faiss-ivfpq`` code bytes, bits per sub-vector,
                candidates re-ranked per result and training sample; others ignore them.

        Raises:
            ValueError: bad features, paths, metadata, backend or parameters.
            ImportError: a faiss backend without faiss installed.
        """
        if backend not in BACKENDS:
            raise ValueError(f"unknown search backend {backend!r}; choose one of {', '.join(BACKENDS)}")
        if backend != "exact":
            import_faiss()  # the missing extra is named before any work
        unit = _unit_rows(_as_matrix(feats, "gallery features"), "gallery features")
        n = len(unit)
        path_list = _as_paths(paths, n)
        meta_dict = _as_meta(meta)
        if backend == "faiss-ivfpq":
            params = ivfpq_params(
                n, unit.shape[1], nlist=nlist, nprobe=nprobe, pq_m=pq_m, pq_nbits=pq_nbits, refine=refine,
                train_size=train_size,
            )  # fmt: skip
            builder = IvfpqBuilder(capacity=params["train_size"])
            builder.add(unit)
            del unit  # the float16 copy is what the index keeps
            rows = builder.stored()
            index, header = builder.finish(params, rows)
            assert rows.array is not None
            return cls(
                rows.array, path_list, meta=meta_dict, backend=backend, params=params, faiss_index=index, rows=rows,
                ivfpq=_IvfpqParts(header),
            )  # fmt: skip
        params = _backend_params(backend, n, nlist, nprobe, hnsw_m, ef_search)
        faiss_index = build_faiss(backend, unit, params) if backend != "exact" else None
        return cls(unit, path_list, meta=meta_dict, backend=backend, params=params, faiss_index=faiss_index)

    @classmethod
    def build_streamed(
        cls,
        batches: Iterable[tuple[Sequence[str | os.PathLike[str]], ArrayLike]],
        path: str | os.PathLike[str],
        *,
        meta: dict[str, Any] | None = None,
        nlist: int | None = None,
        nprobe: int | None = None,
        pq_m: int | None = None,
        pq_nbits: int | None = None,
        refine: int = DEFAULT_REFINE,
        train_size: int | None = None,
    ) -> GalleryIndex:
        """Build a ``faiss-ivfpq`` index file at ``path`` from ``(paths, features)`` batches, never holding
        all the features at once, and open it (read in place, as :meth:`load` does).

        The batches are read once: their features go, in float16, to a temporary file beside ``path``
        while a uniform sample of them is kept for training; then the index is trained on the sample and
        the stored features are added in chunks. The file is written atomically. Needs free disk space for
        about twice the file (the temporary features and the file); in memory, the sample
        (``train_size x D`` float32), a chunk, and the codes (``N x (pq_m + 8)`` bytes).

        Args:
            batches: an iterable of ``(paths, feats)``: the paths of a batch's images and their ``[B, D]``
                features (numpy or torch; re-normalised here), e.g. read chunk by chunk from feature
                files or extraction shards.
            path: the index file to write.
            meta, nlist, nprobe, pq_m, pq_nbits, refine, train_size: as for :meth:`build`.

        Raises:
            ValueError: bad features, paths, metadata or parameters (a batch is named by its number, from 1).
            MissingExtraError: faiss is not installed (an ImportError).
        """
        import_faiss()  # the missing extra is named before any batch is read
        check_given(nlist=nlist, nprobe=nprobe, pq_m=pq_m, pq_nbits=pq_nbits, refine=refine, train_size=train_size)
        path = Path(path)
        meta_dict = _as_meta(meta)
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=path.parent, prefix=f".{path.name}.") as work:
            builder = IvfpqBuilder(capacity=reservoir_capacity(nlist, train_size), spool=Path(work) / "feats")
            spool = PathSpool(Path(work) / "paths", str(Path(absolute(path)).parent))
            try:
                for number, (batch_paths, batch_feats) in enumerate(batches, start=1):
                    name = f"gallery features (batch {number})"
                    unit = _unit_rows(_as_matrix(batch_feats, name, allow_empty=True), name)
                    if builder.d is not None and unit.shape[1] != builder.d:
                        raise ValueError(
                            f"{name} have {unit.shape[1]} dims but the batches before had {builder.d}; all the "
                            "features of a gallery must come from one model"
                        )
                    try:
                        spool.add(_as_paths(batch_paths, len(unit)))
                    except ValueError as err:
                        raise ValueError(f"batch {number}: {err}") from None
                    if len(unit):
                        builder.add(unit)
            finally:  # the temporary files are closed (and removed with their folder) whatever happens
                ends = spool.close()
                builder.close()
            if not builder.n:
                raise ValueError("no gallery features: the batches held none")
            rows = builder.stored()
            params = ivfpq_params(
                builder.n, rows.shape[1], nlist=nlist, nprobe=nprobe, pq_m=pq_m, pq_nbits=pq_nbits, refine=refine,
                train_size=train_size,
            )  # fmt: skip
            index, header = builder.finish(params, rows)
            sizes = list_sizes(index)
            members = _ivfpq_members(
                header=header,
                sizes=sizes,
                lists=Pieces(np.dtype(np.uint8), (int(index.ntotal * (index.code_size + 8)),), list_pieces(index)),
                ends=ends,
                path_bytes=Pieces(np.dtype(np.uint8), (spool.nbytes,), file_pieces(spool.file, 0, spool.nbytes)),
                rows=rows,
            )
            write_mapped_index_file(path, backend="faiss-ivfpq", meta=meta_dict, params=params, members=members)
            del index  # its in-memory codes; the file's are mapped by load
        return cls.load(path)

    # ------------------------------------------------------------------------------------------------
    # Searching
    # ------------------------------------------------------------------------------------------------

    def search(self, queries: np.ndarray | torch.Tensor, topk: int = 10) -> SearchResult:
        """The ``min(topk, N)`` most similar gallery items of each query.

        Args:
            queries: ``[Q, D]`` query features (or one ``[D]`` vector: Q = 1), numpy or torch;
                re-normalised here.
            topk: items per query, >= 1.

        Raises:
            ValueError: bad queries (shape, width, non-finite, all-zero) or ``topk``.
        """
        q, k = self._unit_queries(
            queries,
            topk,
            "query features",
            self.dim,
            "the index holds {dim}-dim features; was it built with another model?",
        )
        if not len(q):
            return SearchResult.empty(k)
        if self.backend == "faiss-ivfpq":
            assert self._rows is not None
            scores, indices = ivfpq_search(self._faiss, self._rows, self.params["refine"], q, k=k)
        elif self._faiss is None:
            scores, indices = _exact_search(self.feats, q, k, self._duplicates)
        else:
            scores, indices = faiss_search(self._faiss, self.backend, self.params, q, k=k)
        return SearchResult(scores, indices)

    def search_text(self, text_feats: np.ndarray | torch.Tensor, topk: int = 10) -> SearchResult:
        """The ``min(topk, N)`` gallery items whose projected feature f_proj is most similar to each text
        feature (from the index's own network's text encoder: :mod:`svllreid.inference.text_query`).

        An svllreid feature is f12 and f_proj concatenated; the index records f_proj's width
        (``meta["text_dim"]``), its last columns, which are L2-normalised on their own here (the
        rescaling of the whole feature cancels out). The search is exact whatever the backend: the
        faiss structure indexes the whole feature.

        Raises:
            IndexFileError: the index does not record where f_proj lies (built by an older svllreid or
                from an older ONNX export): rebuild it.
            ValueError: bad text features (shape, width, non-finite, all-zero) or ``topk``.
        """
        q, k = self._unit_queries(
            text_feats,
            topk,
            "text features",
            self.text_dim,
            "the index's f_proj has {dim}; were they encoded by another model?",
        )
        if not len(q):
            return SearchResult.empty(k)
        if self._rows is not None:  # stored features: scanned in chunks, never all in memory
            return SearchResult(*_scan_search(self._rows, q, k, columns=slice(self.dim - self.text_dim, None)))
        gallery, duplicates = self._text_gallery
        return SearchResult(*_exact_search(gallery, q, k, duplicates))

    def _unit_queries(
        self, queries: ArrayLike, topk: int, name: str, dim: int, mismatch: str
    ) -> tuple[np.ndarray, int]:
        """Checked ``[Q, dim]`` queries as unit float32 rows, and the number of items each gets.

        Raises:
            ValueError: bad queries or ``topk``; a width other than ``dim`` says "{name} have W dims but"
                and ``mismatch`` (with ``{dim}`` filled in).
        """
        if isinstance(topk, bool) or not isinstance(topk, int | np.integer) or topk < 1:
            raise ValueError(f"topk must be a positive integer, got {topk!r}")
        q = _as_matrix(queries, name, allow_vector=True, allow_empty=True)
        if q.shape[1] != dim:
            raise ValueError(f"{name} have {q.shape[1]} dims but {mismatch.format(dim=dim)}")
        return _unit_rows(q, name), min(int(topk), len(self))

    @property
    def text_dim(self) -> int:
        """The width of f_proj, the last columns of the features, that text queries are compared with.

        Raises:
            IndexFileError: the index does not record it (see :meth:`search_text`).
        """
        value = self.meta.get("text_dim")
        if isinstance(value, bool) or not isinstance(value, int) or not 0 < value <= self.dim:
            raise IndexFileError(
                "this index does not record which of its feature columns are f_proj, the part that text "
                "queries are compared with (it was built by an older svllreid, or from an ONNX file exported "
                "by one); rebuild it with `svllreid index build --checkpoint CKPT --images DIR --out INDEX`"
            )
        return value

    @functools.cached_property
    def _text_gallery(self) -> tuple[np.ndarray, tuple[np.ndarray, np.ndarray] | None]:
        """The gallery's f_proj parts, unit rows, with their repeated rows (computed at the first text search)."""
        feats = _unit_rows(np.ascontiguousarray(self.feats[:, self.dim - self.text_dim :]), "gallery f_proj")
        return feats, _duplicate_rows(feats)

    @functools.cached_property
    def _duplicates(self) -> tuple[np.ndarray, np.ndarray] | None:
        """Repeated gallery rows (found at the first exact search; see :func:`_duplicate_rows`)."""
        return _duplicate_rows(self.feats)

    # ------------------------------------------------------------------------------------------------
    # File
    # ------------------------------------------------------------------------------------------------

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the index to one file at exactly ``path`` (no suffix added; ``.npz`` is customary).

        The file is written next to ``path`` under a temporary name and renamed over it, so an
        interrupted save leaves any previous file intact. Returns the path.
        """
        path = Path(path)
        if self.backend == "faiss-ivfpq":
            self._save_ivfpq(path)
            return path
        blob = import_faiss().serialize_index(self._faiss) if self.backend in SERIALISED else None
        write_index_file(
            path, backend=self.backend, feats=self.feats, paths=self.paths, meta=self.meta, params=self.params,
            faiss_index=blob,
        )  # fmt: skip
        return path

    def _save_ivfpq(self, path: Path) -> None:
        """Write a faiss-ivfpq index (version 3), copying what lies in its own file piece by piece."""
        assert self._ivfpq is not None and self._rows is not None
        parts, base = self._ivfpq, Path(absolute(path)).parent
        n = len(self.feats)
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=path.parent, prefix=f".{path.name}.") as work:
            if parts.mapped is not None:
                assert parts.sizes is not None
                lists, sizes = _file_member(parts.mapped["ivf_lists"]), parts.sizes
            else:
                sizes = list_sizes(self._faiss)
                nbytes = int(sizes.sum()) * (self._faiss.code_size + 8)
                lists = Pieces(np.dtype(np.uint8), (nbytes,), list_pieces(self._faiss))
            if isinstance(self.paths, StoredPaths) and self.paths.base == str(base):
                assert parts.mapped is not None  # stored, relative to this very folder: copied as they are
                ends, path_bytes = np.asarray(parts.mapped["path_ends"]), _file_member(parts.mapped["path_bytes"])
            else:  # relative to the new file's folder
                spool = PathSpool(Path(work) / "paths", str(base))
                for lo in range(0, n, 2**16):
                    spool.add(self.paths[lo : lo + 2**16])
                ends = spool.close()
                path_bytes = Pieces(np.dtype(np.uint8), (spool.nbytes,), file_pieces(spool.file, 0, spool.nbytes))
            members = _ivfpq_members(
                header=parts.header, sizes=sizes, lists=lists, ends=ends, path_bytes=path_bytes, rows=self._rows
            )
            write_mapped_index_file(path, backend=self.backend, meta=self.meta, params=self.params, members=members)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> GalleryIndex:
        """Read an index written by :meth:`save` (a ``faiss-ivfpq`` index is opened in place: its features,
        paths and lists stay in the file, read as searches need them).

        Raises:
            IndexFileError: missing file, not an index, damaged, or written by a newer svllreid.
            MissingExtraError: a ``faiss-ivfpq`` index without faiss installed (an ImportError).
        """
        path = Path(path)
        arrays = read_index_file(path)
        if int(arrays["version"]) >= 3:
            return cls._from_mapped(arrays, path)
        index = cls._from_arrays(arrays, path)
        if int(arrays["version"]) >= 2:
            index.paths = locate(index.paths, index.meta, Path(absolute(path)).parent)
        return index

    @classmethod
    def _from_arrays(cls, arrays: dict[str, np.ndarray], path: Path) -> GalleryIndex:
        bad = damaged(path)
        feats, paths = arrays["feats"], arrays["paths"]
        if feats.dtype != np.float32 or feats.ndim != 2 or not len(feats) or not feats.shape[1]:
            raise bad(f"features of dtype {feats.dtype} and shape {feats.shape}, expected float32 [N, D]")
        if paths.dtype.kind != "U" or paths.shape != (len(feats),):
            raise bad(f"{paths.shape} paths of dtype {paths.dtype} for {len(feats)} features")
        if not np.allclose(_row_norms(feats), 1.0, atol=1e-3):  # fails on NaN or inf entries too
            raise bad("features are not finite L2-normalised vectors")
        backend = text_entry(arrays["backend"], "backend", bad)
        if backend not in BACKENDS:
            raise bad(f"unknown backend {backend!r}")
        if backend == "faiss-ivfpq":
            raise bad(f"a faiss-ivfpq index in a version-{int(arrays['version'])} file; they are version 3")
        meta, params = (
            json_entry(arrays["meta_json"], "meta_json", bad),
            json_entry(arrays["params_json"], "params_json", bad),
        )
        feats = np.ascontiguousarray(feats)
        if backend != "exact":
            try:
                faiss = import_faiss()
            except ImportError as err:
                why = "searching it exactly instead (results as good or better)"
                log.warning("%s holds a %s index, but %s; %s", path, backend, err, why)
                return cls(feats, paths.tolist(), meta=meta, backend="exact", params={})
            faiss_index = load_faiss(faiss, backend, feats, params, blob=arrays.get("faiss_index"), bad=bad)
        else:
            faiss_index = None
        return cls(feats, paths.tolist(), meta=meta, backend=backend, params=params, faiss_index=faiss_index)

    @classmethod
    def _from_mapped(cls, arrays: dict[str, np.ndarray], path: Path) -> GalleryIndex:
        """A version-3 (faiss-ivfpq) file: checked from its small parts and a sample of its rows."""
        bad = damaged(path)
        feats, ends, blob = arrays["feats"], arrays["path_ends"], arrays["path_bytes"]
        if feats.dtype != np.float16 or feats.ndim != 2 or not len(feats) or not feats.shape[1]:
            raise bad(f"features of dtype {feats.dtype} and shape {feats.shape}, expected float16 [N, D]")
        n = len(feats)
        if ends.dtype != np.int64 or ends.shape != (n,) or blob.dtype != np.uint8 or blob.ndim != 1:
            raise bad(f"path ends {ends.dtype} {ends.shape} and path bytes {blob.dtype} {blob.shape} for {n} features")
        if int(ends[0]) < 0 or int(ends[-1]) != len(blob):
            raise bad(f"the paths end at byte {int(ends[-1])} of {len(blob)}")
        backend = text_entry(arrays["backend"], "backend", bad)
        if backend != "faiss-ivfpq":
            raise bad(f"a version-3 file of backend {backend!r}; only faiss-ivfpq files are version 3")
        meta, params = (
            json_entry(arrays["meta_json"], "meta_json", bad),
            json_entry(arrays["params_json"], "params_json", bad),
        )
        if set(params) != set(PARAM_KEYS) or not all(
            isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in params.values()
        ):
            raise bad(f"params {params} do not fit backend {backend!r}")
        rows = FeatureRows(path=path, offset=_file_offset(feats), shape=feats.shape)
        spot = np.unique(np.linspace(0, n - 1, min(n, 64)).astype(np.int64))  # a sample: never all the rows
        if not np.allclose(_row_norms(rows.take(spot)), 1.0, atol=2e-3):  # float16 rounding: ~1e-4
            raise bad("features are not finite L2-normalised vectors")
        header, sizes, lists = arrays["faiss_index"], arrays["ivf_sizes"], arrays["ivf_lists"]
        if header.dtype != np.uint8 or header.ndim != 1 or sizes.ndim != 1:
            raise bad("no serialised faiss index and list sizes")
        try:
            import_faiss()
        except ImportError as err:
            raise MissingExtraError(
                f"gallery index {path} is a faiss-ivfpq index, searched from disk by faiss, which is not installed: "
                "pip install faiss-cpu (or pip install 'svllreid[faiss]')"
            ) from err
        try:
            index = open_lists(
                header, sizes, path=path, offset=_file_offset(lists), nbytes=lists.nbytes, ntotal=n, params=params
            )
        except ValueError as err:
            raise bad(str(err)) from err
        base = Path(absolute(path)).parent
        locate_meta(meta, base)
        return cls(
            feats, StoredPaths(blob, ends, str(base)), meta=meta, backend=backend, params=params, faiss_index=index,
            rows=rows, ivfpq=_IvfpqParts(header, mapped={name: arrays[name] for name in arrays}, sizes=sizes),
        )  # fmt: skip

    # ------------------------------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self.feats)

    @property
    def dim(self) -> int:
        """Feature width D."""
        return int(self.feats.shape[1])

    @property
    def labels(self) -> dict[str, list[str]]:
        """Each image's identity / camera names, as ``index build --identity-folders``, ``--pid-regex``
        and ``--camera-regex`` stored them (``meta["labels"]``: kind → one name per image, in index
        order); a kind whose list has another length (a damaged file) is left out."""
        saved = self.meta.get("labels") or {}
        if not isinstance(saved, dict):
            return {}
        return {
            str(kind): [str(name) for name in names]
            for kind, names in saved.items()
            if isinstance(names, list) and len(names) == len(self)
        }

    def __repr__(self) -> str:
        params = "".join(f", {key}={value}" for key, value in self.params.items())
        return f"GalleryIndex(backend={self.backend!r}, items={len(self)}, dim={self.dim}{params})"


# ----------------------------------------------------------------------------------------------------
# Inputs
# ----------------------------------------------------------------------------------------------------


def _as_matrix(x: ArrayLike, name: str, allow_vector: bool = False, allow_empty: bool = False) -> np.ndarray:
    """A float32 ``[N, D]`` numpy array (a copy or view) of numpy or torch input, checked finite."""
    if hasattr(x, "detach"):  # a torch tensor, any device and dtype (bfloat16 has no numpy twin)
        x = x.detach().cpu().float().numpy()
    a = np.asarray(x)
    if allow_vector and a.ndim == 1:
        a = a[None]
    if a.ndim != 2:
        shape = "[Q, D] or [D]" if allow_vector else "[N, D]"
        raise ValueError(f"{name} must be {shape}, got shape {a.shape}")
    if a.dtype.kind not in "iuf":
        raise ValueError(f"{name} must be real numbers, got dtype {a.dtype}")
    if not a.shape[1] or not (allow_empty or len(a)):
        raise ValueError(f"{name} are empty (shape {a.shape})")
    with np.errstate(over="ignore"):  # reported below
        a = np.ascontiguousarray(a, dtype=np.float32)
    if not np.isfinite(a).all():
        raise ValueError(f"{name} contain NaN or infinite values (or values beyond float32)")
    return a


def _unit_rows(a: np.ndarray, name: str) -> np.ndarray:
    """``a`` (float32) with rows scaled to unit length, as a new array; -0.0 entries become +0.0."""
    norms = _row_norms(a)
    zero = np.flatnonzero(norms == 0)
    if len(zero):
        raise ValueError(f"{name} row {zero[0]} is all zeros (no direction to compare); {len(zero)} such rows")
    out = np.empty_like(a)
    step = max(1, 2**22 // a.shape[1])  # float64 temporaries of ~32 MB
    for lo in range(0, len(a), step):
        out[lo : lo + step] = a[lo : lo + step] / norms[lo : lo + step, None]
    # + 0.0 turns -0.0 into +0.0, so that equal features are equal bytes (see _duplicate_rows).
    out += np.float32(0.0)
    return out


def _row_norms(a: np.ndarray) -> np.ndarray:
    """float64 L2 norms of the rows (no overflow; buffered, so no float64 copy of ``a``)."""
    return np.sqrt(np.einsum("ij,ij->i", a, a, dtype=np.float64))


def _file_offset(array: np.ndarray) -> int:
    """Where a mapped member's data begins in its file (0 for an empty member, which is not mapped)."""
    return int(getattr(array, "offset", 0))


def _file_member(array: np.ndarray) -> Pieces:
    """A mapped member of an index file, to be copied from that file piece by piece."""
    filename = getattr(array, "filename", None)
    if filename is None:  # empty, not mapped
        return Pieces(array.dtype, array.shape, [array])
    return Pieces(array.dtype, array.shape, file_pieces(Path(filename), _file_offset(array), array.nbytes))


def _ivfpq_members(
    *, header: np.ndarray, sizes: np.ndarray, lists: Pieces, ends: np.ndarray, path_bytes: Pieces, rows: FeatureRows
) -> dict[str, np.ndarray | Pieces]:
    """The members of a faiss-ivfpq file, in file order: the lists first, so that faiss's map of the file's
    start up to the end of the lists spans little more than them."""
    return {
        "faiss_index": np.asarray(header, np.uint8),
        "ivf_sizes": np.asarray(sizes, np.int64),
        "ivf_lists": lists,
        "path_ends": np.asarray(ends, np.int64),
        "path_bytes": path_bytes,
        "feats": Pieces(np.dtype(np.float16), rows.shape, rows.raw_pieces()),
    }


def _as_paths(paths: Sequence[str | os.PathLike[str]], n: int) -> list[str]:
    if isinstance(paths, str | bytes | os.PathLike):
        raise ValueError("paths must be a sequence of paths, one per gallery feature, not a single path")
    out = [os.fspath(p) for p in paths]
    if len(out) != n:
        raise ValueError(f"{len(out)} paths for {n} gallery features; they must match one to one")
    bad = [p for p in out if not isinstance(p, str)]
    if bad:
        raise ValueError(f"paths must be text, got {type(bad[0]).__name__} {bad[0]!r}")
    return out


def _as_meta(meta: dict[str, Any] | None) -> dict[str, Any]:
    if meta is None:
        return {}
    if not isinstance(meta, dict):
        raise ValueError(f"meta must be a dict, got {type(meta).__name__}")
    try:
        # Kept as JSON gives it back, so that a loaded index has the same meta as the built one.
        return json.loads(json.dumps(meta))
    except (TypeError, ValueError) as err:
        raise ValueError(f"meta must be JSON-serialisable: {err}") from err


def _positive(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def _backend_params(
    backend: str, n: int, nlist: int | None, nprobe: int | None, hnsw_m: int, ef_search: int
) -> dict[str, int]:
    """The settings of ``backend`` for ``n`` items, defaults filled in (see the module docstring)."""
    if backend == "faiss-ivf":
        if nlist is None:
            nlist = min(max(1, round(4 * math.sqrt(n))), max(1, n // 39))
        nlist = _positive(nlist, "nlist")
        if nlist > n:
            raise ValueError(f"nlist ({nlist}) cannot exceed the number of gallery features ({n})")
        if nprobe is None:
            nprobe = max(8, nlist // 16)
        return {"nlist": nlist, "nprobe": min(_positive(nprobe, "nprobe"), nlist)}
    if backend == "faiss-hnsw":
        m = _positive(hnsw_m, "hnsw_m")
        if m < 2:
            raise ValueError(f"hnsw_m must be at least 2, got {m}")
        return {"hnsw_m": m, "ef_search": _positive(ef_search, "ef_search")}
    return {}


# ----------------------------------------------------------------------------------------------------
# Exact search
# ----------------------------------------------------------------------------------------------------


def _duplicate_rows(feats: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """Rows equal to an earlier row, and that earlier (first) row, or None when all rows differ.

    BLAS kernels may round the same dot product differently in different output columns, so identical
    gallery features would get scores an ulp apart and be ordered by that instead of by gallery index;
    the exact search copies each repeat's score from its first occurrence instead.
    """
    n, d = feats.shape
    rows = feats.view(np.dtype((np.void, d * feats.itemsize))).ravel()  # each row as one byte string
    order = np.argsort(rows, kind="stable")  # equal rows adjacent, in gallery order
    same = np.zeros(n, bool)  # same[i]: the i-th row in sorted order equals the previous one
    step = max(1, 2**26 // (d * feats.itemsize))  # compares ~64 MB of rows at a time
    for lo in range(1, n, step):
        hi = min(n, lo + step)
        same[lo:hi] = rows[order[lo:hi]] == rows[order[lo - 1 : hi - 1]]
    if not same.any():
        return None
    group_start = np.maximum.accumulate(np.where(same, 0, np.arange(n)))
    return order[same], order[group_start[same]]


def _scan_search(rows: FeatureRows, queries: np.ndarray, k: int, *, columns: slice) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-k of unit ``queries`` against ``columns`` of the stored rows, each part re-normalised, read
    chunk by chunk; descending score, then gallery row (no special care for repeated rows)."""
    nq = len(queries)
    scores, indices = np.empty((nq, 0), np.float32), np.empty((nq, 0), np.int64)
    width = len(range(*columns.indices(rows.shape[1])))
    # Working memory of a chunk: its float32 rows and its scores with _top_k's temporaries.
    step = max(k, SEARCH_CHUNK_BYTES // (_BYTES_PER_PAIR["top-k"] * nq + 4 * rows.shape[1] + 4 * width))
    for lo, chunk in rows.chunks(step):
        part = _unit_rows(np.ascontiguousarray(chunk[:, columns]), f"gallery rows {lo}.. (f_proj)")
        block_scores, block_indices = _top_k(queries @ part.T, min(k, len(part)))
        merged_scores = np.concatenate([scores, block_scores], axis=1)
        merged_indices = np.concatenate([indices, block_indices + lo], axis=1)
        order = np.lexsort((merged_indices, -merged_scores), axis=1)[:, :k]
        scores = np.take_along_axis(merged_scores, order, 1)
        indices = np.take_along_axis(merged_indices, order, 1)
    return scores, indices


def _exact_search(
    feats: np.ndarray, queries: np.ndarray, k: int, duplicates: tuple[np.ndarray, np.ndarray] | None
) -> tuple[np.ndarray, np.ndarray]:
    """Top-k scores and indices by chunks of queries whose working memory fits ``SEARCH_CHUNK_BYTES``."""
    nq, n = len(queries), len(feats)
    per_pair = _BYTES_PER_PAIR["top-k" if k < n else "sort"]
    rows = max(1, min(nq, SEARCH_CHUNK_BYTES // (per_pair * n)))
    scores, indices = np.empty((nq, k), np.float32), np.empty((nq, k), np.int64)
    buffer = np.empty((rows, n), np.float32)
    for lo in range(0, nq, rows):
        hi = min(nq, lo + rows)
        block = np.matmul(queries[lo:hi], feats.T, out=buffer[: hi - lo])
        if duplicates is not None:
            block[:, duplicates[0]] = block[:, duplicates[1]]
        scores[lo:hi], indices[lo:hi] = _top_k(block, k)
    return scores, indices


def _top_k(block: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The k largest scores of each row, descending, equal scores in column order."""
    c, n = block.shape
    if k < n:
        chosen = np.argpartition(block, n - k, axis=1)[:, n - k :]
        values = np.take_along_axis(block, chosen, 1)
        kth = values.min(1)
        # argpartition picks arbitrarily among scores equal to the k-th one: rows with more such items
        # than places are redone below, keeping the lowest gallery indices.
        redo = np.flatnonzero(np.count_nonzero(block >= kth[:, None], axis=1) > k)
    else:
        chosen, values, redo = np.broadcast_to(np.arange(n), (c, n)), block, np.empty(0, np.int64)
    order = np.lexsort((chosen, -values), axis=1)
    indices, values = np.take_along_axis(chosen, order, 1), np.take_along_axis(values, order, 1)
    for r in redo:
        candidates = np.flatnonzero(block[r] >= kth[r])
        best = candidates[np.lexsort((candidates, -block[r, candidates]))[:k]]
        indices[r], values[r] = best, block[r, best]
    return values, indices
