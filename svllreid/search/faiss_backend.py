"""The faiss backends of :class:`svllreid.search.GalleryIndex`: building, loading and searching a faiss
index (flat, IVF, HNSW) of L2-normalised features by inner product. faiss is optional
(``pip install 'svllreid[faiss]'``) and imported only here, only when a faiss backend is asked for."""

from __future__ import annotations

import contextlib
import logging
import sys
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from svllreid.errors import IndexFileError, MissingExtraError

__all__ = ["SERIALISED", "build_faiss", "faiss_search", "faiss_threads", "import_faiss", "load_faiss"]

log = logging.getLogger(__name__)

#: Backends whose faiss index is stored in the file (too costly to rebuild on load).
SERIALISED = ("faiss-ivf", "faiss-hnsw")


def import_faiss() -> Any:
    """The faiss module.

    Raises:
        MissingExtraError: faiss is not installed (an ImportError naming the extra).
    """
    try:
        import faiss
    except ImportError as err:
        raise MissingExtraError(
            "the faiss search backends need faiss: pip install faiss-cpu (or pip install 'svllreid[faiss]'), "
            'or use backend "exact"'
        ) from err
    return faiss


@contextlib.contextmanager
def faiss_threads(faiss: Any) -> Iterator[None]:
    """faiss's OpenMP threads set to torch's thread count for the block, when torch is loaded.

    faiss has its own OpenMP pool: following torch's setting (``torch.set_num_threads``) keeps one thread
    setting for the process. Without torch loaded (not imported here: seconds), faiss keeps its default.
    """
    torch = sys.modules.get("torch")
    if torch is None:
        yield
        return
    before = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(torch.get_num_threads())
    try:
        yield
    finally:
        faiss.omp_set_num_threads(before)


def build_faiss(backend: str, feats: np.ndarray, params: dict[str, int]) -> Any:
    faiss = import_faiss()
    n, d = feats.shape
    with faiss_threads(faiss):
        if backend == "faiss-flat":
            index = faiss.IndexFlatIP(d)
        elif backend == "faiss-ivf":
            nlist = params["nlist"]
            index = faiss.IndexIVFFlat(faiss.IndexFlatIP(d), d, nlist, faiss.METRIC_INNER_PRODUCT)
            index.cp.spherical = True  # unit-length centroids suit inner products of unit vectors
            if n < 39 * nlist:
                # Fewer points than faiss likes per centroid: k-means still works (a default nlist only
                # gets here for tiny galleries); warn through logging, not faiss's stderr.
                if nlist > 1:
                    log.warning("faiss-ivf: %d gallery features for %d clusters (>= %d advised)", n, nlist, 39 * nlist)
                index.cp.min_points_per_centroid = 1
            index.train(feats)
            index.nprobe = params["nprobe"]
        else:
            index = faiss.IndexHNSWFlat(d, params["hnsw_m"], faiss.METRIC_INNER_PRODUCT)
            index.hnsw.efSearch = params["ef_search"]
        index.add(feats)
    return index


def load_faiss(
    faiss: Any,
    backend: str,
    feats: np.ndarray,
    params: dict[str, Any],
    *,
    blob: np.ndarray | None,
    bad: Callable[[str], IndexFileError],
) -> Any:
    """The faiss index of a loaded file: rebuilt (flat) or deserialised and checked against ``feats``."""
    keys = {"faiss-flat": set(), "faiss-ivf": {"nlist", "nprobe"}, "faiss-hnsw": {"hnsw_m", "ef_search"}}[backend]
    if set(params) != keys or not all(isinstance(v, int) and v >= 1 for v in params.values()):
        raise bad(f"params {params} do not fit backend {backend!r}")
    if backend not in SERIALISED:
        return build_faiss(backend, feats, params)
    if blob is None or blob.dtype != np.uint8 or blob.ndim != 1:
        raise bad(f"no serialised faiss index for backend {backend!r}")
    try:
        index = faiss.deserialize_index(blob)
    except RuntimeError as err:
        raise bad(f"faiss cannot read its index: {err}") from err
    if (index.d, index.ntotal, index.metric_type) != (feats.shape[1], len(feats), faiss.METRIC_INNER_PRODUCT):
        raise bad(f"faiss index of {index.ntotal} x {index.d} does not match features of shape {feats.shape}")
    if backend == "faiss-ivf":
        index.nprobe = params["nprobe"]
    else:
        index.hnsw.efSearch = params["ef_search"]
    return index


def faiss_search(
    index: Any, backend: str, params: dict[str, int], queries: np.ndarray, *, k: int
) -> tuple[np.ndarray, np.ndarray]:
    faiss = import_faiss()
    kwargs: dict[str, Any] = {}
    if backend == "faiss-hnsw":  # a graph search needs at least k candidates to return k items
        kwargs["params"] = faiss.SearchParametersHNSW(efSearch=max(params["ef_search"], k))
    with faiss_threads(faiss):
        scores, indices = index.search(queries, k, **kwargs)
    indices = indices.astype(np.int64, copy=False)
    scores[indices < 0] = -np.inf  # faiss pads with -FLT_MAX
    # Same order as the exact backend: descending score, then gallery index, missing items last.
    order = np.lexsort((np.where(indices < 0, np.iinfo(np.int64).max, indices), -scores), axis=1)
    return np.take_along_axis(scores, order, 1), np.take_along_axis(indices, order, 1)
