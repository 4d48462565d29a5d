"""Text queries against an index: the gallery's f_proj columns, normalised on their own, against a
brute-force reference; what the index must record, and the errors when it does not."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from svllreid.search import GalleryIndex, IndexFileError


def concat_features(n: int, dim12: int = 12, dim_proj: int = 8, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """svllreid-style features (f12 ++ f_proj, normalised together) and the f_proj parts alone."""
    rng = np.random.default_rng(seed)
    f12, fproj = rng.standard_normal((n, dim12)), 3.0 * rng.standard_normal((n, dim_proj))
    both = np.concatenate([f12, fproj], axis=1)
    return (both / np.linalg.norm(both, axis=1, keepdims=True)).astype(np.float32), fproj


@pytest.mark.parametrize("backend", ["exact", "faiss-flat"])
@pytest.mark.parametrize("topk", [1, 5, 40])
def test_text_search_ranks_the_f_proj_parts_by_cosine(backend: str, topk: int) -> None:
    if backend != "exact":
        pytest.importorskip("faiss")
    feats, fproj = concat_features(30)
    index = GalleryIndex.build(feats, [f"g{i}.jpg" for i in range(30)], meta={"text_dim": 8}, backend=backend)
    text = np.random.default_rng(1).standard_normal((4, 8)).astype(np.float32)
    result = index.search_text(text, topk)
    unit = fproj / np.linalg.norm(fproj, axis=1, keepdims=True)
    expected = (text / np.linalg.norm(text, axis=1, keepdims=True)) @ unit.T
    k = min(topk, 30)
    assert result.scores.shape == result.indices.shape == (4, k)
    np.testing.assert_array_equal(result.indices, np.argsort(-expected, axis=1, kind="stable")[:, :k])
    np.testing.assert_allclose(result.scores, np.take_along_axis(expected, result.indices, 1), atol=1e-5)
    # The whole-feature search is another ranking: the text search really uses f_proj alone.
    assert index.search(feats[:1], 30).indices[0, 0] == 0


def test_text_dim_survives_the_file(tmp_path: Path) -> None:
    feats, _ = concat_features(10)
    GalleryIndex.build(feats, [f"g{i}.jpg" for i in range(10)], meta={"text_dim": 8}).save(tmp_path / "i.npz")
    loaded = GalleryIndex.load(tmp_path / "i.npz")
    assert loaded.text_dim == 8
    assert loaded.search_text(np.ones(8, np.float32), 3).indices.shape == (1, 3)


@pytest.mark.parametrize("meta", [{}, {"text_dim": 0}, {"text_dim": 21}, {"text_dim": "8"}, {"text_dim": True}])
def test_an_index_without_a_valid_text_dim_says_how_to_rebuild(meta: dict) -> None:
    feats, _ = concat_features(5)
    index = GalleryIndex.build(feats, [f"g{i}.jpg" for i in range(5)], meta=meta)
    with pytest.raises(IndexFileError, match=r"f_proj.*rebuild it with `svllreid index build"):
        index.search_text(np.ones(8, np.float32))


def test_text_features_of_another_width_are_refused() -> None:
    feats, _ = concat_features(5)
    index = GalleryIndex.build(feats, [f"g{i}.jpg" for i in range(5)], meta={"text_dim": 8})
    with pytest.raises(ValueError, match="text features have 6 dims but the index's f_proj has 8"):
        index.search_text(np.ones((2, 6), np.float32))
    with pytest.raises(ValueError, match="all zeros"):
        index.search_text(np.zeros((1, 8), np.float32))
    with pytest.raises(ValueError, match="topk"):
        index.search_text(np.ones(8, np.float32), 0)
