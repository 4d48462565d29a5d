"""Gallery index: exact search against a brute-force reference, ties, chunking, query forms, the file
(round trip, atomic save, load errors) and the faiss backends (agreement, recall, missing faiss)."""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

import svllreid.search.index as index_module
from svllreid.search import BACKENDS, GalleryIndex, IndexFileError, SearchResult

FAISS_BACKENDS = [b for b in BACKENDS if b != "exact"]


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    """Tiny problems: one thread (faiss follows torch's setting) is faster on a shared CPU."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def gaussian(n: int, dim: int = 16, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, dim)).astype(np.float32)


def sparse(n: int, nq: int, seed: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """Entries in {-1, 0, 1}, four non-zero of 16: unit rows of ±0.5, exact dot products, ties everywhere."""
    rng = np.random.default_rng(seed)
    x = np.zeros((n + nq, 16), np.float32)
    for row in x:
        row[rng.choice(16, 4, replace=False)] = rng.choice([-1.0, 1.0], 4)
    return x[:n], x[n:]


def clustered(n: int, nq: int, dim: int = 64, ids: int = 500, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Unit gallery and query features: noisy images around identity centres (ReID-like neighbours)."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((ids, dim))
    gallery = centres[rng.integers(0, ids, n)] + 0.5 * rng.standard_normal((n, dim))
    queries = centres[rng.integers(0, ids, nq)] + 0.5 * rng.standard_normal((nq, dim))
    unit = [(x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32) for x in (gallery, queries)]
    return unit[0], unit[1]


def names(n: int) -> list[str]:
    return [f"gallery/{i:05d}.jpg" for i in range(n)]


def reference(index: GalleryIndex, queries: np.ndarray, topk: int) -> tuple[np.ndarray, np.ndarray]:
    """Brute force: float64 cosine similarities of the unit rows, sorted by (-score, gallery index)."""
    q = queries.astype(np.float64)
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    scores = q @ index.feats.astype(np.float64).T
    positions = np.broadcast_to(np.arange(scores.shape[1]), scores.shape)
    order = np.lexsort((positions, -scores), axis=1)[:, :topk]
    return np.take_along_axis(scores, order, 1), order


def recall(found: np.ndarray, truth: np.ndarray) -> float:
    return float(np.mean([len(np.intersect1d(f, t)) / truth.shape[1] for f, t in zip(found, truth, strict=True)]))


# ----------------------------------------------------------------------------------------------------
# Exact search
# ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("topk", [1, 10, 299, 300])
def test_exact_matches_brute_force(topk: int) -> None:
    gallery, queries = gaussian(300, seed=1), gaussian(40, seed=2)
    index = GalleryIndex.build(gallery, names(300))
    result = index.search(queries, topk)
    scores, order = reference(index, queries, topk)
    assert result.scores.dtype == np.float32 and result.indices.dtype == np.int64
    assert result.indices.shape == (40, topk)
    np.testing.assert_array_equal(result.indices, order)
    np.testing.assert_allclose(result.scores, scores, atol=1e-6)
    assert (np.diff(result.scores, axis=1) <= 0).all()


@pytest.mark.parametrize("topk", [1, 7, 40, 500])
def test_exact_ties_keep_gallery_order(topk: int) -> None:
    gallery, queries = sparse(500, 30)
    index = GalleryIndex.build(gallery, names(500))
    result = index.search(queries, topk)
    scores, order = reference(index, queries, topk)
    np.testing.assert_array_equal(result.indices, order)
    np.testing.assert_array_equal(result.scores, scores.astype(np.float32))


def test_duplicate_gallery_rows_tie_exactly() -> None:
    """BLAS may round a dot product differently per column: copies of one feature must still tie."""
    gallery = gaussian(1000, dim=64, seed=4)
    copies = [3, 50, 200, 640, 999]
    gallery[copies] = gallery[3]
    gallery[[10, 700]] = gallery[20]
    queries = np.stack([gallery[3], gallery[20]]) + 0.01 * gaussian(2, dim=64, seed=5)
    result = GalleryIndex.build(gallery, names(1000)).search(queries, topk=6)
    np.testing.assert_array_equal(result.indices[0, :5], copies)
    assert len(set(result.scores[0, :5].tolist())) == 1
    np.testing.assert_array_equal(result.indices[1, :3], [10, 20, 700])
    assert len(set(result.scores[1, :3].tolist())) == 1


@pytest.mark.parametrize("kind", ["gaussian", "sparse"])
@pytest.mark.parametrize(("topk", "path"), [(12, "top-k"), (400, "sort")])
def test_chunking_does_not_change_results(monkeypatch: pytest.MonkeyPatch, kind: str, topk: int, path: str) -> None:
    gallery, queries = (gaussian(400, seed=6), gaussian(50, seed=7)) if kind == "gaussian" else sparse(400, 50)
    gallery[[5, 6, 390]] = gallery[100]
    index = GalleryIndex.build(gallery, names(400))
    whole = index.search(queries, topk)  # one chunk
    for rows in (1, 7):  # query rows per chunk
        monkeypatch.setattr(index_module, "SEARCH_CHUNK_BYTES", rows * index_module._BYTES_PER_PAIR[path] * 400)
        chunked = index.search(queries, topk)
        np.testing.assert_array_equal(chunked.indices, whole.indices)
        # Equal up to rounding: BLAS kernels differ with the number of rows.
        np.testing.assert_allclose(chunked.scores, whole.scores, rtol=0, atol=1e-6)


def test_query_forms() -> None:
    gallery = gaussian(200, seed=8)
    index = GalleryIndex.build(gallery, names(200))
    batch = index.search(gallery[:4] * 3.0, topk=5)  # not unit: normalised by the search
    np.testing.assert_array_equal(batch.indices[:, 0], np.arange(4))
    np.testing.assert_allclose(batch.scores[:, 0], 1.0, atol=1e-6)
    one = index.search(gallery[2], topk=5)
    assert one.indices.shape == one.scores.shape == (1, 5)
    np.testing.assert_array_equal(one.indices[0], batch.indices[2])
    for tensor in (torch.from_numpy(gallery[:4]), torch.from_numpy(gallery[:4]).double()):
        np.testing.assert_array_equal(index.search(tensor, topk=5).indices, batch.indices)
    np.testing.assert_array_equal(index.search(torch.from_numpy(gallery[2]), topk=5).indices, one.indices)
    empty = index.search(np.zeros((0, 16), np.float32), topk=5)
    assert empty.indices.shape == empty.scores.shape == (0, 5)


def test_topk_larger_than_gallery_returns_the_whole_gallery() -> None:
    index = GalleryIndex.build(gaussian(7, seed=9), names(7))
    result = index.search(gaussian(3, seed=10), topk=10)
    assert result.indices.shape == result.scores.shape == (3, 7)
    for row in result.indices:
        assert sorted(row) == list(range(7))
    assert np.isfinite(result.scores).all()


def test_query_width_mismatch_names_both_widths() -> None:
    index = GalleryIndex.build(gaussian(10, dim=1280), names(10))
    with pytest.raises(ValueError, match=r"query features have 512 dims but the index holds 1280-dim features; was it"):
        index.search(gaussian(2, dim=512), topk=3)


@pytest.mark.parametrize(
    ("feats", "paths", "kwargs", "message"),
    [
        (np.ones(8, np.float32), names(1), {}, r"must be \[N, D\]"),
        (np.ones((0, 8), np.float32), [], {}, "empty"),
        (np.full((2, 8), np.nan, np.float32), names(2), {}, "NaN or infinite"),
        (np.full((2, 8), 1e300), names(2), {}, "NaN or infinite"),
        (np.vstack([np.ones(8), np.zeros(8)]), names(2), {}, "row 1 is all zeros"),
        (np.ones((2, 8), np.float32), names(3), {}, "3 paths for 2 gallery features"),
        (np.ones((1, 8), np.float32), "a.jpg", {}, "not a single path"),
        (np.ones((2, 8), np.float32), names(2), {"backend": "annoy"}, "exact, faiss-flat, faiss-ivf, faiss-hnsw"),
        (np.ones((2, 8), np.float32), names(2), {"meta": {"ckpt": Path("x")}}, "JSON-serialisable"),
        (np.ones((2, 8), np.float32), names(2), {"meta": ["x"]}, "meta must be a dict"),
    ],
)
def test_build_rejects_bad_input(feats: np.ndarray, paths: object, kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        GalleryIndex.build(feats, paths, **kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize("queries", [np.full((1, 16), np.inf), np.zeros(16), np.ones((2, 2, 16))])
def test_search_rejects_bad_queries(queries: np.ndarray) -> None:
    index = GalleryIndex.build(gaussian(5), names(5))
    with pytest.raises(ValueError, match="query features"):
        index.search(queries)
    with pytest.raises(ValueError, match="topk must be a positive integer"):
        index.search(gaussian(1), topk=0)


def test_attributes_and_meta() -> None:
    gallery = gaussian(6, dim=8) * 5
    meta = {"checkpoint": "runs/x/model.safetensors", "image_size": (256, 128), "model": {"arch": "ViT-B-16"}}
    index = GalleryIndex.build(torch.from_numpy(gallery), [Path(p) for p in names(6)], meta=meta)
    assert len(index) == 6 and index.dim == 8 and index.backend == "exact" and index.paths == names(6)
    np.testing.assert_allclose(np.linalg.norm(index.feats, axis=1), 1.0, atol=1e-6)
    assert index.meta == {**meta, "image_size": [256, 128]}  # as JSON gives it back, as after a load
    assert not index.feats.flags.writeable
    assert repr(index) == "GalleryIndex(backend='exact', items=6, dim=8)"


# ----------------------------------------------------------------------------------------------------
# File
# ----------------------------------------------------------------------------------------------------


def built(backend: str, n: int = 600, **kwargs: object) -> tuple[GalleryIndex, np.ndarray]:
    if backend != "exact":
        pytest.importorskip("faiss")
    gallery, queries = clustered(n, 20, dim=32, ids=60, seed=11)
    meta = {"checkpoint": "best.safetensors", "image_size": [256, 128]}
    paths = [*names(n - 1), "naïve/ünïcode pâth.jpg"]
    return GalleryIndex.build(gallery, paths, meta=meta, backend=backend, **kwargs), queries  # type: ignore[arg-type]


@pytest.mark.parametrize("backend", BACKENDS)
def test_save_load_round_trip(tmp_path: Path, backend: str) -> None:
    index, queries = built(backend)
    path = tmp_path / "sub" / "gallery.index"  # no .npz suffix: kept as given
    assert index.save(path) == path
    assert path.is_file() and not path.with_name("gallery.index.npz").exists()
    assert sorted(p.name for p in path.parent.iterdir()) == ["gallery.index"]  # no temporary left
    loaded = GalleryIndex.load(str(path))
    # Paths come back absolute: stored relative to the index's folder, so the two may move together.
    assert (loaded.backend, loaded.paths, loaded.meta, loaded.params) == (
        index.backend,
        [str(Path(p).absolute()) for p in index.paths],
        {**index.meta, "checkpoint": str(Path(index.meta["checkpoint"]).absolute())},
        index.params,
    )
    np.testing.assert_array_equal(loaded.feats, index.feats)
    before, after = index.search(queries, 10), loaded.search(queries, 10)
    np.testing.assert_array_equal(after.indices, before.indices)
    np.testing.assert_array_equal(after.scores, before.scores)
    assert repr(loaded) == repr(index)


def test_save_is_atomic(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "gallery.npz"
    old = GalleryIndex.build(gaussian(5), names(5))
    old.save(path)

    def fail(handle: object, **arrays: object) -> None:
        handle.write(b"PK\x03\x04 half an archive")  # type: ignore[attr-defined]
        raise OSError("disk full")

    monkeypatch.setattr(np, "savez", fail)
    with pytest.raises(OSError, match="disk full"):
        GalleryIndex.build(gaussian(9, seed=1), names(9)).save(path)
    assert [p.name for p in tmp_path.iterdir()] == ["gallery.npz"]
    monkeypatch.undo()
    np.testing.assert_array_equal(GalleryIndex.load(path).feats, old.feats)


def write_npz(path: Path, **arrays: np.ndarray) -> Path:
    with path.open("wb") as handle:
        np.savez(handle, **arrays)
    return path


def good_arrays(tmp_path: Path) -> dict[str, np.ndarray]:
    GalleryIndex.build(gaussian(4), names(4)).save(tmp_path / "good.npz")
    with np.load(tmp_path / "good.npz") as archive:
        return {name: archive[name] for name in archive.files}


def test_load_errors(tmp_path: Path) -> None:
    def fails(path: Path, message: str) -> None:
        with pytest.raises(IndexFileError, match=message):
            GalleryIndex.load(path)

    fails(tmp_path / "missing.npz", "does not exist; build one with `svllreid index build`")
    fails(tmp_path, "is a directory")
    random_bytes = tmp_path / "random.npz"
    random_bytes.write_bytes(np.random.default_rng(0).bytes(1000))
    fails(random_bytes, "not a svllreid gallery index .not an .npz archive, or a damaged one.; rebuild it")
    with pytest.raises(IndexFileError) as error:
        GalleryIndex.load(random_bytes)
    assert "allow_pickle" not in str(error.value)  # numpy's advice for unknown files is not passed on
    checkpoint = tmp_path / "model.pt"
    torch.save({"state_dict": {"w": torch.zeros(2)}}, checkpoint)  # a zip archive too
    fails(checkpoint, "zip archive without a 'format' entry")
    npy = tmp_path / "feats.npy"
    np.save(npy, gaussian(3))
    fails(npy, "single .npy array")
    fails(write_npz(tmp_path / "other.npz", x=np.ones(3)), "without a 'format' entry")

    arrays = good_arrays(tmp_path)
    fails(write_npz(tmp_path / "tag.npz", **{**arrays, "format": np.array("something-else")}), "not a svllreid")
    future = write_npz(tmp_path / "future.npz", **{**arrays, "version": np.array(99)})
    fails(future, "version 99, newer than this svllreid reads .3.; upgrade svllreid or rebuild it")
    incomplete = {k: v for k, v in arrays.items() if k not in ("feats", "paths")}
    fails(write_npz(tmp_path / "incomplete.npz", **incomplete), "incomplete .missing feats, paths.; rebuild it")
    short = {**arrays, "paths": arrays["paths"][:2]}
    fails(write_npz(tmp_path / "short.npz", **short), "damaged .* paths .* for 4 features")
    fails(write_npz(tmp_path / "meta.npz", **{**arrays, "meta_json": np.array("{oops")}), "meta_json is not valid JSON")
    nan = {**arrays, "feats": np.where(np.eye(4, 16, dtype=bool), np.nan, arrays["feats"]).astype(np.float32)}
    fails(write_npz(tmp_path / "nan.npz", **nan), "not finite L2-normalised")
    fails(write_npz(tmp_path / "backend.npz", **{**arrays, "backend": np.array("annoy")}), "unknown backend 'annoy'")
    ivfpq = write_npz(tmp_path / "ivfpq.npz", **{**arrays, "backend": np.array("faiss-ivfpq")})
    fails(ivfpq, "damaged .a faiss-ivfpq index in a version-2 file; they are version 3.")
    good = (tmp_path / "good.npz").read_bytes()
    truncated = tmp_path / "truncated.npz"
    truncated.write_bytes(good[: len(good) // 2])
    fails(truncated, "svllreid gallery index")


# ----------------------------------------------------------------------------------------------------
# faiss backends
# ----------------------------------------------------------------------------------------------------


def test_faiss_flat_matches_exact() -> None:
    pytest.importorskip("faiss")
    gallery, queries = gaussian(2000, dim=32, seed=12), gaussian(100, dim=32, seed=13)
    exact = GalleryIndex.build(gallery, names(2000)).search(queries, 10)
    flat = GalleryIndex.build(gallery, names(2000), backend="faiss-flat").search(queries, 10)
    np.testing.assert_array_equal(flat.indices, exact.indices)
    np.testing.assert_allclose(flat.scores, exact.scores, atol=1e-5)


@pytest.mark.parametrize("backend", ["faiss-ivf", "faiss-hnsw"])
def test_approximate_backends_recall(backend: str) -> None:
    pytest.importorskip("faiss")
    gallery, queries = clustered(5000, 200, dim=64)
    truth = GalleryIndex.build(gallery, names(5000)).search(queries, 10).indices
    index = GalleryIndex.build(gallery, names(5000), backend=backend)
    result = index.search(queries, 10)
    assert recall(result.indices, truth) >= 0.9
    assert (result.indices >= 0).all() and (np.diff(result.scores, axis=1) <= 0).all()


def test_ivf_defaults_and_tiny_galleries(capfd: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("faiss")
    big = GalleryIndex.build(clustered(5000, 1)[0], names(5000), backend="faiss-ivf")
    assert big.params == {"nlist": 128, "nprobe": 8}  # 4 sqrt(N) = 283 clipped to N // 39; nlist // 16 < 8
    tiny = GalleryIndex.build(gaussian(10), names(10), backend="faiss-ivf")
    assert tiny.params == {"nlist": 1, "nprobe": 1}
    result = tiny.search(gaussian(3, seed=1), topk=20)
    assert result.indices.shape == (3, 10) and sorted(result.indices[0]) == list(range(10))
    assert "WARNING" not in capfd.readouterr().err  # faiss's own k-means warning is not printed
    custom = GalleryIndex.build(gaussian(500), names(500), backend="faiss-ivf", nlist=20, nprobe=50)
    assert custom.params == {"nlist": 20, "nprobe": 20}  # nprobe capped at nlist
    with pytest.raises(ValueError, match=r"nlist \(6\) cannot exceed"):
        GalleryIndex.build(gaussian(5), names(5), backend="faiss-ivf", nlist=6)


def test_hnsw_returns_topk_beyond_ef_search() -> None:
    pytest.importorskip("faiss")
    index = GalleryIndex.build(gaussian(500), names(500), backend="faiss-hnsw", hnsw_m=8, ef_search=4)
    assert index.params == {"hnsw_m": 8, "ef_search": 4}
    result = index.search(gaussian(5, seed=1), topk=30)
    assert result.indices.shape == (5, 30) and (result.indices >= 0).all()


def test_faiss_missing_at_build(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "faiss", None)  # import faiss -> ImportError
    for backend in FAISS_BACKENDS:
        with pytest.raises(ImportError, match=r"pip install faiss-cpu .*svllreid\[faiss\].* or use backend \"exact\""):
            GalleryIndex.build(gaussian(50), names(50), backend=backend)


@pytest.mark.parametrize("backend", [b for b in FAISS_BACKENDS if b != "faiss-ivfpq"])  # refused: test_ivfpq.py
def test_faiss_missing_at_load_falls_back_to_exact(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, backend: str
) -> None:
    index, queries = built(backend)
    index.save(tmp_path / "gallery.npz")
    monkeypatch.setitem(sys.modules, "faiss", None)
    with caplog.at_level(logging.WARNING, logger="svllreid.search.index"):
        loaded = GalleryIndex.load(tmp_path / "gallery.npz")
    assert "searching it exactly instead" in caplog.text and "pip install faiss-cpu" in caplog.text
    assert loaded.backend == "exact" and loaded.params == {}
    exact = GalleryIndex.build(index.feats, index.paths).search(queries, 10)
    result = loaded.search(queries, 10)
    np.testing.assert_array_equal(result.indices, exact.indices)


def test_search_result_fields() -> None:
    result = GalleryIndex.build(gaussian(3), names(3)).search(gaussian(1), topk=2)
    assert isinstance(result, SearchResult)
    assert result.scores.shape == result.indices.shape == (1, 2)
