"""The faiss-ivfpq backend, a gallery past RAM: recall against exact search, a streamed build equal to the
in-memory one, an opened file that reads nothing whole, text search, saving again, the training sample,
and every bad input with its message."""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from svllreid.errors import MissingExtraError
from svllreid.search import GalleryIndex, IndexFileError
from svllreid.search.archive import ArchiveWriter
from svllreid.search.index_file import MAPPED
from svllreid.search.ivfpq import Reservoir, sample_keys
from svllreid.search.stored import StoredPaths
from tests.search.test_index import clustered, names, one_thread, recall  # noqa: F401 (one_thread: autouse)

faiss = pytest.importorskip("faiss")


@pytest.fixture(scope="module")
def data() -> tuple[np.ndarray, np.ndarray]:
    """4000 gallery and 200 query features, 64-d, around 400 identities."""
    return clustered(4000, 200, dim=64, ids=400, seed=5)


def batches(feats: np.ndarray, paths: list[str], sizes: list[int]) -> Iterator[tuple[list[str], np.ndarray]]:
    """The gallery cut into batches of the given sizes, cycling (an empty batch included where asked)."""
    lo, i = 0, 0
    while lo < len(feats):
        size = sizes[i % len(sizes)]
        yield paths[lo : lo + size], feats[lo : lo + size]
        lo, i = lo + size, i + 1


def test_streamed_file_is_opened_in_place_and_finds_the_exact_neighbours(
    tmp_path: Path, data: tuple[np.ndarray, np.ndarray], monkeypatch: pytest.MonkeyPatch
) -> None:
    gallery, queries = data
    paths = [str(tmp_path / p) for p in names(len(gallery))]
    file = tmp_path / "g.index"
    built = GalleryIndex.build_streamed(batches(gallery, paths, [700, 0, 333]), file, meta={"model": "m"})
    assert built.params == {"nlist": 102, "nprobe": 8, "pq_m": 8, "pq_nbits": 8, "refine": 10, "train_size": 4000}

    # Opening reads the small members only: the features, paths and lists stay in the file.
    read: list[str] = []
    original = np.lib.npyio.NpzFile.__getitem__

    def spy(self: np.lib.npyio.NpzFile, key: str) -> object:
        read.append(key)
        return original(self, key)

    monkeypatch.setattr(np.lib.npyio.NpzFile, "__getitem__", spy)
    index = GalleryIndex.load(file)
    monkeypatch.undo()
    assert read and not set(read) & set(MAPPED), read
    assert isinstance(index.feats, np.memmap) and index.feats.dtype == np.float16 and not index.feats.flags.writeable
    assert isinstance(index.paths, StoredPaths) and index.paths == paths and index.paths[-1] == paths[-1]
    lists = faiss.downcast_InvertedLists(faiss.extract_index_ivf(index._faiss).invlists)
    assert isinstance(lists, faiss.OnDiskInvertedLists) and lists.read_only and lists.filename == str(file)
    assert index._rows is not None and index._rows.array is None  # re-ranking reads rows with pread
    assert index.meta == {"model": "m"} and len(index) == 4000 and index.dim == 64

    exact = GalleryIndex.build(gallery, paths).search(queries, 10)
    result = index.search(queries, 10)
    assert recall(result.indices, exact.indices) >= 0.9
    assert (result.indices >= 0).all() and (np.diff(result.scores, axis=1) <= 0).all()
    # The scores are exact cosines with the stored float16 features, so within float16 rounding of exact's.
    same = result.indices == exact.indices
    assert same.mean() > 0.8
    np.testing.assert_allclose(result.scores[same], exact.scores[same], atol=2e-3)
    # A gallery image finds itself first (a query by the stored row, as the server asks).
    rows = [3, 1999, 3999]
    own = index.search(index.feats[rows], 1)
    assert own.indices[:, 0].tolist() == rows and np.allclose(own.scores, 1.0, atol=1e-5)


def test_streamed_build_equals_the_in_memory_build(tmp_path: Path, data: tuple[np.ndarray, np.ndarray]) -> None:
    """The training sample depends on the rows alone, not on the batches: any cut gives the same index."""
    gallery, queries = data
    paths = names(len(gallery))
    in_memory = GalleryIndex.build(gallery, paths, backend="faiss-ivfpq", nlist=20, refine=3)
    streamed = GalleryIndex.build_streamed(
        batches(gallery, paths, [1, 998, 5]), tmp_path / "s.index", nlist=20, refine=3
    )
    np.testing.assert_array_equal(streamed.feats, in_memory.feats)
    for k in (1, 10, 4000):
        a, b = in_memory.search(queries, k), streamed.search(queries, k)
        np.testing.assert_array_equal(a.indices, b.indices)
        np.testing.assert_array_equal(a.scores, b.scores)
    assert streamed.params == in_memory.params


def test_saving_again_elsewhere_keeps_the_index(tmp_path: Path, data: tuple[np.ndarray, np.ndarray]) -> None:
    gallery, queries = data
    photos = tmp_path / "photos"
    paths = [str(photos / p) for p in names(len(gallery))]
    first = tmp_path / "a" / "g.index"
    index = GalleryIndex.build_streamed(
        batches(gallery, paths, [4000]), first, meta={"checkpoint": str(tmp_path / "m")}
    )
    before = index.search(queries, 10)
    index.meta["calibration"] = {"threshold": 0.5}  # as `svllreid calibrate` saves a loaded index again
    for target in (first, tmp_path / "b" / "c" / "moved.index"):  # in place (its own file), then elsewhere
        index.save(target)
        again = GalleryIndex.load(target)
        assert again.paths == paths and again.meta["calibration"] == {"threshold": 0.5}
        assert again.meta["checkpoint"] == str(tmp_path / "m")
        result = again.search(queries, 10)
        np.testing.assert_array_equal(result.indices, before.indices)
        np.testing.assert_array_equal(result.scores, before.scores)
        assert sorted(p.name for p in target.parent.iterdir()) == [target.name]  # no temporary left
        index = again


def test_text_search_scans_the_stored_f_proj(
    tmp_path: Path, data: tuple[np.ndarray, np.ndarray], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Descriptions are compared with the last text_dim columns, re-normalised, exactly: as the exact
    backend does with the same (float16) features, chunk by chunk."""
    gallery, _ = data
    meta = {"text_dim": 24}
    index = GalleryIndex.build_streamed(batches(gallery, names(4000), [1500]), tmp_path / "t.index", meta=meta)
    exact = GalleryIndex.build(index.feats.astype(np.float32), names(4000), meta=meta)
    texts = np.random.default_rng(3).standard_normal((7, 24)).astype(np.float32)
    for chunk_bytes in (None, 40_000):  # one chunk, then 86 rows a chunk
        if chunk_bytes:
            monkeypatch.setattr(sys.modules[GalleryIndex.__module__], "SEARCH_CHUNK_BYTES", chunk_bytes)
        ours, theirs = index.search_text(texts, 12), exact.search_text(texts, 12)
        np.testing.assert_array_equal(ours.indices, theirs.indices)
        np.testing.assert_allclose(ours.scores, theirs.scores, atol=1e-5)


def test_the_training_sample_is_uniform_and_the_same_for_any_batching() -> None:
    rows = np.arange(10_000, dtype=np.float32)[:, None]
    samples = []
    for step in (10_000, 1, 337, 4096):
        reservoir = Reservoir(500)
        for lo in range(0, 10_000, step):
            reservoir.add(lo, rows[lo : lo + step])
        samples.append(reservoir.sample(400)[:, 0])
    for other in samples[1:]:
        np.testing.assert_array_equal(other, samples[0])
    # The rows with the 400 smallest keys of all 10,000: spread over the stream, not its first rows.
    expected = np.sort(np.argsort(sample_keys(0, 10_000))[:400])
    np.testing.assert_array_equal(np.sort(samples[0]), expected)
    counts = np.histogram(samples[0], bins=10, range=(0, 10_000))[0]
    assert counts.min() >= 20 and counts.max() <= 60  # 40 per tenth expected
    assert len(np.unique(sample_keys(0, 100_000))) == 100_000  # distinct keys: a bijection of the row


def test_tiny_galleries_get_settings_that_fit(tmp_path: Path) -> None:
    gallery, queries = clustered(40, 5, dim=12, ids=8, seed=2)
    index = GalleryIndex.build(gallery, names(40), backend="faiss-ivfpq")
    # nlist 1 (40 // 39), pq_m: the largest divisor of 12 up to 12 // 8, 5 bits: 32 codewords <= 40 vectors.
    assert index.params == {"nlist": 1, "nprobe": 1, "pq_m": 1, "pq_nbits": 5, "refine": 10, "train_size": 40}
    exact = GalleryIndex.build(index.feats.astype(np.float32), names(40)).search(queries, 40)
    result = index.search(queries, 100)  # 10 x 40 candidates: all of them, so the exact order
    np.testing.assert_array_equal(result.indices, exact.indices)


def test_bad_settings_say_what_fits(caplog: pytest.LogCaptureFixture) -> None:
    gallery, _ = clustered(600, 1, dim=48, ids=30)

    def fails(message: str, **settings: object) -> None:
        with pytest.raises(ValueError, match=message):
            GalleryIndex.build(gallery, names(600), backend="faiss-ivfpq", **settings)  # type: ignore[arg-type]

    fails(r"nlist \(601\) cannot exceed the number of gallery features \(600\)", nlist=601)
    fails(
        r"train_size \(50\) is smaller than nlist \(60\).*raise train_size to 2340 or lower nlist",
        nlist=60,
        train_size=50,
    )
    fails(r"pq_m \(7\) must divide the feature width \(48\).*choose one of .*6, 8, 12, 16, 24, 48", pq_m=7)
    fails(r"pq_nbits 10 needs at least 1024 training vectors .* 600; lower pq_nbits to 9", pq_nbits=10)
    fails(r"pq_nbits must be between 1 and 16", pq_nbits=17)
    fails(r"refine must be a positive integer, got 0", refine=0)
    fails(r"nprobe must be a positive integer, got True", nprobe=True)
    with caplog.at_level(logging.WARNING, logger="svllreid.search.ivfpq"):
        index = GalleryIndex.build(gallery, names(600), backend="faiss-ivfpq", nlist=30, nprobe=99)
    assert "600 training vectors for 30 clusters (>= 1170 advised)" in caplog.text
    assert index.params["nprobe"] == 30  # capped at nlist


def test_bad_batches_are_named(tmp_path: Path) -> None:
    gallery, _ = clustered(300, 1, dim=16, ids=10)
    out = tmp_path / "g.index"

    def fails(stream: object, message: str) -> None:
        with pytest.raises(ValueError, match=message):
            GalleryIndex.build_streamed(stream, out)  # type: ignore[arg-type]
        assert list(tmp_path.iterdir()) == []  # neither the file nor its temporary folder

    fails(
        [(names(100), gallery[:100]), (names(5), gallery[:5, :8])],
        r"batch 2\) have 8 dims but the batches before had 16",
    )
    fails([(names(99), gallery[:100])], r"batch 1: 99 paths for 100 gallery features")
    nan = gallery[:10].copy()
    nan[4, 2] = np.nan
    fails([(names(100), gallery[:100]), (names(10), nan)], r"gallery features \(batch 2\) contain NaN")
    fails([(names(3), np.zeros((3, 16), np.float32))], r"gallery features \(batch 1\) row 0 is all zeros")
    fails([], "no gallery features: the batches held none")
    fails([([], np.empty((0, 16), np.float32))], "no gallery features")
    with pytest.raises(ValueError, match="train_size must be a positive integer"):
        GalleryIndex.build_streamed(iter(()), out, train_size=0)


def test_missing_faiss_names_the_extra_before_any_batch_and_refuses_to_load(
    tmp_path: Path, data: tuple[np.ndarray, np.ndarray], monkeypatch: pytest.MonkeyPatch
) -> None:
    gallery, _ = data
    file = tmp_path / "g.index"
    GalleryIndex.build_streamed(batches(gallery, names(4000), [4000]), file)

    def untouched() -> Iterator[tuple[list[str], np.ndarray]]:
        raise AssertionError("a batch was read before faiss was found missing")
        yield  # a generator

    monkeypatch.setitem(sys.modules, "faiss", None)
    extra = r"pip install faiss-cpu \(or pip install 'svllreid\[faiss\]'\)"
    with pytest.raises(MissingExtraError, match=extra):
        GalleryIndex.build_streamed(untouched(), tmp_path / "other.index")
    # Not searched exactly instead, as other faiss indexes are: that would read every feature per search.
    with pytest.raises(ImportError, match=f"g.index is a faiss-ivfpq index, searched from disk by faiss, .*{extra}"):
        GalleryIndex.load(file)


def rewrite(source: Path, target: Path, drop: tuple[str, ...] = (), **changes: np.ndarray) -> Path:
    """A copy of the index file ``source`` with some members replaced or left out."""
    with np.load(source) as archive:
        members = {name: archive[name] for name in archive.files if name not in drop}
    with target.open("wb") as handle:
        writer = ArchiveWriter(handle)
        for name, array in {**members, **changes}.items():
            writer.add(name, array)
        writer.close()
    return target


def test_damaged_files_are_refused_with_what_is_wrong(tmp_path: Path, data: tuple[np.ndarray, np.ndarray]) -> None:
    gallery, _ = data
    good = tmp_path / "good.index"
    GalleryIndex.build_streamed(batches(gallery, names(4000), [4000]), good, nlist=16)
    with np.load(good) as archive:
        feats, sizes, ends = archive["feats"], archive["ivf_sizes"], archive["path_ends"]
        lists = archive["ivf_lists"]

    def fails(message: str, drop: tuple[str, ...] = (), **changes: np.ndarray) -> None:
        with pytest.raises(IndexFileError, match=message):
            GalleryIndex.load(rewrite(good, tmp_path / "bad.index", drop, **changes))

    fails(r"damaged \(features of dtype float32 .* expected float16", feats=feats.astype(np.float32))
    fails(
        r"damaged \(its inverted lists hold 3999 rows, not its 4000",
        ivf_sizes=sizes - np.eye(len(sizes), dtype=np.int64)[0],
    )
    fails(r"damaged \(its faiss index .* does not match its params", params_json=np.array('{"nlist": 17, "nprobe": 8, '
          '"pq_m": 8, "pq_nbits": 8, "refine": 10, "train_size": 4000}'))  # fmt: skip
    fails(r"damaged \(its inverted lists take .* bytes", ivf_lists=lists[:-8])
    fails(r"damaged \(the paths end at byte", path_ends=ends - 1)
    fails(r"damaged \(features are not finite L2-normalised", feats=(feats * 2).astype(np.float16))
    fails(r"damaged \(a version-3 file of backend 'exact'", backend=np.array("exact"))
    fails(r"incomplete \(missing ivf_lists\); rebuild it", drop=("ivf_lists",))
    # Row numbers beyond the gallery in the lists: found when a search meets them.
    first = int(np.flatnonzero(sizes)[0])
    start = int(sizes[:first].sum()) * 16  # 8 code bytes and an 8-byte row number per vector
    row = int(lists[start + sizes[first] * 8 : start + sizes[first] * 16].view(np.int64)[0])
    broken = lists.copy()
    broken[start + sizes[first] * 8 : start + sizes[first] * 16] = np.full(sizes[first], 10**6).view(np.uint8)
    index = GalleryIndex.load(rewrite(good, tmp_path / "ids.index", ivf_lists=broken))
    with pytest.raises(IndexFileError, match="name row 1000000 of a 4000-image gallery: the file is damaged"):
        index.search(index.feats[row], 10)
    truncated = tmp_path / "truncated.index"
    truncated.write_bytes(good.read_bytes()[:-1000])
    with pytest.raises(IndexFileError, match="not a svllreid gallery index"):
        GalleryIndex.load(truncated)
