"""Ranking metrics: the fast chunked evaluator against the per-query reference, and known answers."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest
import torch

import svllreid.metrics.ranking as ranking
import svllreid.metrics.ranking_torch as ranking_torch
from svllreid.metrics import KReciprocal, RankingResult, evaluate
from tests.reference.ranking_reference import evaluate_reference


@pytest.fixture(params=["numpy", "torch"])
def path(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Both implementations on CPU: numpy (the CPU default) and torch (the CUDA one, forced here)."""
    if request.param == "torch":
        monkeypatch.setattr(ranking, "_use_numpy", lambda device: False)
    return request.param


def assert_same(fast: RankingResult, ref: RankingResult) -> None:
    assert fast.num_queries == ref.num_queries
    assert fast.num_evaluated == ref.num_evaluated
    assert fast.num_skipped == ref.num_skipped
    assert fast.protocol == ref.protocol
    assert fast.mAP == pytest.approx(ref.mAP, abs=1e-6)
    assert fast.mINP == pytest.approx(ref.mINP, abs=1e-6)
    assert fast.cmc.shape == ref.cmc.shape
    np.testing.assert_allclose(fast.cmc, ref.cmc, rtol=0, atol=1e-6)
    np.testing.assert_allclose(fast.query_ap, ref.query_ap, rtol=0, atol=1e-6)  # NaN where skipped, in both
    np.testing.assert_array_equal(fast.query_first_rank, ref.query_first_rank)
    assert (fast.ranked is None) == (ref.ranked is None)
    if ref.ranked is not None:
        np.testing.assert_array_equal(fast.ranked, ref.ranked)
    assert fast.reranked == ref.reranked


def make_problem(seed: int, nq: int = 12, ng: int = 70, dim: int = 3, float64: bool = False) -> dict[str, Any]:
    """Random re-id problem with everything the protocol must handle.

    float32: small integer features (distances exact, many ties). float64: continuous features, and
    a few gallery rows repeated (exact ties). Identities 0-5 on both sides, 6-8 only in the gallery
    (distractors), 9 only among the queries (no positive).
    """
    rng = np.random.default_rng(seed)
    if float64:
        qf, gf = rng.standard_normal((nq, dim)), rng.standard_normal((ng, dim))
        gf[ng // 2 : ng // 2 + 5] = gf[:5]
    else:
        qf = rng.integers(-1, 2, (nq, dim)).astype(np.float32)
        gf = rng.integers(-1, 2, (ng, dim)).astype(np.float32)
    qp = rng.integers(0, 6, nq)
    qp[0] = 9
    gp = rng.integers(0, 9, ng)
    gp[gp == 5] = 4
    gp[-1] = 5  # identity 5: a single gallery image
    qp[1] = 5
    qc, gc = rng.integers(0, 3, nq), rng.integers(0, 3, ng)
    qc[1] = (gc[-1] + 1) % 3
    return {"qf": qf, "gf": gf, "qp": qp, "gp": gp, "qc": qc, "gc": gc}


def check_coverage(p: dict[str, Any]) -> None:
    """The random problem does contain junk, ties and queries without positives."""
    junk = (p["qp"][:, None] == p["gp"][None]) & (p["qc"][:, None] == p["gc"][None])
    assert junk.any()
    d = ((p["qf"][:, None] - p["gf"][None]) ** 2).sum(-1)
    assert any(len(np.unique(row)) < len(row) for row in d)
    assert not np.isin(9, p["gp"])


@pytest.mark.parametrize("float64", [False, True], ids=["f32-int", "f64"])
@pytest.mark.parametrize("as_torch", [False, True], ids=["numpy", "tensor"])
@pytest.mark.parametrize("cameras", [True, False], ids=["camera", "no-camera"])
def test_matches_reference_every_chunk_size(path: str, cameras: bool, as_torch: bool, float64: bool) -> None:
    for seed in range(3):
        p = make_problem(seed, float64=float64)
        check_coverage(p)
        cams = (p["qc"], p["gc"]) if cameras else ()
        ref = evaluate_reference(p["qf"], p["gf"], p["qp"], p["gp"], *cams, max_rank=20)
        qf, gf = (torch.from_numpy(p["qf"]), torch.from_numpy(p["gf"])) if as_torch else (p["qf"], p["gf"])
        for chunk in range(1, len(p["qp"]) + 2):
            fast = evaluate(qf, gf, p["qp"], p["gp"], *cams, max_rank=20, chunk_size=chunk)
            assert_same(fast, ref)
        assert_same(evaluate(qf, gf, p["qp"], p["gp"], *cams, max_rank=20), ref)
        assert ref.num_skipped >= 1 and ref.num_evaluated >= 1


@pytest.mark.parametrize("cameras", [True, False], ids=["camera", "no-camera"])
@pytest.mark.parametrize("keys", [True, False], ids=["keys", "no-keys"])
def test_query_set_inside_gallery(path: str, cameras: bool, keys: bool) -> None:
    """Queries are gallery images; keys (image indices) remove each query's own image."""
    rng = np.random.default_rng(7)
    ng = 60
    gf = rng.integers(-1, 2, (ng, 4)).astype(np.float32)
    gp, gc = rng.integers(0, 8, ng), rng.integers(0, 3, ng)
    qi = rng.choice(ng, 15, replace=False)
    args = [gf[qi], gf, gp[qi], gp]
    if cameras:
        args += [gc[qi], gc]
    kw = {"query_keys": qi, "gallery_keys": np.arange(ng)} if keys else {}
    ref = evaluate_reference(*args, **kw)
    for chunk in (1, 4, 15, 16, None):
        assert_same(evaluate(*args, **kw, chunk_size=chunk), ref)
    if not cameras and not keys:
        # Nothing removed: every query finds itself (ties with duplicates aside, at rank 1 or later).
        assert ref.num_skipped == 0
    if not cameras and keys:
        # Removing the self-match is what changes the answer.
        assert evaluate(*args, chunk_size=3).mAP > ref.mAP


def test_keys_remove_other_identities_too(path: str) -> None:
    """A gallery image with the query's key is removed whatever its identity (equal keys = same image)."""
    qf = np.array([[0.0, 0.0]], np.float32)
    gf = np.array([[0.0, 0.0], [1.0, 0.0], [2.0, 0.0]], np.float32)
    kw = {"query_keys": [5], "gallery_keys": [5, 6, 7]}
    result = evaluate(qf, gf, [1], [2, 1, 1], **kw)
    assert result.cmc[0] == 1.0 and result.mAP == 1.0
    assert_same(result, evaluate_reference(qf, gf, [1], [2, 1, 1], **kw))
    assert evaluate(qf, gf, [1], [2, 1, 1]).mAP == pytest.approx((1 / 2 + 2 / 3) / 2)


@pytest.mark.parametrize("seed", range(4))
def test_larger_random_problem(path: str, seed: int) -> None:
    """More identities and cameras, keys on, features with some duplicates."""
    rng = np.random.default_rng(100 + seed)
    nq, ng = 40, 400
    gf = rng.integers(-2, 3, (ng, 5)).astype(np.float32)
    gp, gc = rng.integers(0, 30, ng), rng.integers(0, 6, ng)
    qi = rng.choice(ng, nq, replace=False)
    args = (gf[qi], gf, gp[qi], gp, gc[qi], gc)
    kw = {"query_keys": qi, "gallery_keys": np.arange(ng)}
    ref = evaluate_reference(*args, **kw)
    for chunk in (1, 7, None):
        assert_same(evaluate(*args, **kw, chunk_size=chunk), ref)


def test_float64_and_mixed_dtypes(path: str) -> None:
    p = make_problem(3, float64=True)
    labels = (p["qp"], p["gp"], p["qc"], p["gc"])
    ref = evaluate_reference(p["qf"], p["gf"], *labels)
    assert_same(evaluate(torch.from_numpy(p["qf"]), p["gf"], *labels), ref)
    # One side float64: both are ranked in float64.
    q32 = p["qf"].astype(np.float32)
    assert_same(evaluate(q32, p["gf"], *labels), evaluate_reference(q32, p["gf"], *labels))
    # float16 and integer features are computed in float32.
    q16 = np.round(p["qf"] * 4).astype(np.float16)
    g_int = np.round(p["gf"] * 4).astype(np.int64)
    assert_same(evaluate(q16, g_int, *labels), evaluate_reference(q16, g_int, *labels))


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_repeated_gallery_features_tie(path: str, dtype: type) -> None:
    """Identical gallery features get identical distances (computed once), so gallery order decides;
    a BLAS may round the same dot product differently in different output columns."""
    for seed in range(4):
        rng = np.random.default_rng(seed)
        base = rng.standard_normal((23, 3)).astype(dtype)
        gf = np.concatenate([base, base[::-1], base[::2]])
        qf = rng.standard_normal((15, 3)).astype(dtype)
        qp, gp = rng.integers(0, 4, 15), rng.integers(0, 4, len(gf))
        ref = evaluate_reference(qf, gf, qp, gp)
        for chunk in range(1, 17):
            assert_same(evaluate(qf, gf, qp, gp, chunk_size=chunk), ref)


@pytest.mark.parametrize("as_torch", [False, True])
def test_distinct_rows(as_torch: bool) -> None:
    g = np.array([[1.0, 0.0], [2.0, 3.0], [1.0, -0.0], [2.0, 3.0], [5.0, 5.0]], np.float32)
    x = torch.from_numpy(g) if as_torch else g
    distinct, inverse = ranking._distinct_rows(x)
    assert inverse is not None and len(distinct) == 3
    np.testing.assert_array_equal(np.asarray(distinct)[np.asarray(inverse)], g)
    assert ranking._distinct_rows(x[:2])[1] is None


def test_float_keys_order_like_floats() -> None:
    """The torch path's integer keys: same order as the float32 values, -0.0 equal to +0.0."""
    rng = np.random.default_rng(0)
    special = [0.0, -0.0, 1e-45, -1e-45, 1e-38, -1e-38, np.inf, -np.inf, 3.0, -3.0, 3.0]
    values = np.concatenate([special, rng.standard_normal(200) * 10.0 ** rng.integers(-30, 30, 200)])
    v = torch.tensor(values, dtype=torch.float32)
    keys = ranking_torch.float_keys(v)
    assert keys.dtype == torch.int64 and int(keys.min()) >= 0 and int(keys.max()) < 2**32
    i, j = np.triu_indices(len(values), 1)
    vi, vj, ki, kj = v[i], v[j], keys[i], keys[j]
    assert torch.equal(vi < vj, ki < kj) and torch.equal(vi == vj, ki == kj)


# ----------------------------------------------------------------------------------------------------
# Known answers
# ----------------------------------------------------------------------------------------------------


def line_gallery(n: int) -> np.ndarray:
    """Gallery item i at distance i (+1) from the query at the origin: gallery order = ranking order."""
    return np.stack([np.arange(1, n + 1), np.zeros(n)], 1).astype(np.float32)


def test_hand_computed_ap_inp_cmc(path: str) -> None:
    # True matches (identity 1) at ranks 2 and 4.
    qf = np.zeros((1, 2), np.float32)
    result = evaluate(qf, line_gallery(5), [1], [0, 1, 2, 1, 3], max_rank=5)
    assert result.mAP == pytest.approx((1 / 2 + 2 / 4) / 2)
    assert result.mINP == pytest.approx(2 / 4)
    np.testing.assert_array_equal(result.cmc, [0, 1, 1, 1, 1])
    assert result.rank(1) == 0 and result.rank(2) == 1
    assert (result.num_queries, result.num_evaluated, result.num_skipped) == (1, 1, 0)
    assert result.protocol == "no-camera"


def test_hand_computed_two_queries_with_junk(path: str) -> None:
    # Query A (id 1, cam 0): gallery ids [1, 2, 1, 1] cams [0, 1, 1, 0] -> items 0 and 3 are junk, the
    # kept ranking is [2(id 2), 2(id 1)]: one match at rank 2 -> AP 1/2, INP 1/2.
    # Query B (id 2, cam 0): item 1 (id 2, cam 1) is a match at rank 2 -> AP 1/2, INP 1/2, not rank 1.
    qf = np.zeros((2, 2), np.float32)
    gf = line_gallery(4)
    result = evaluate(qf, gf, [1, 2], [1, 2, 1, 1], [0, 0], [0, 1, 1, 0], max_rank=3)
    assert result.mAP == pytest.approx(0.5)
    assert result.mINP == pytest.approx(0.5)
    np.testing.assert_array_equal(result.cmc, [0, 1, 1])
    assert result.protocol == "camera"
    # Without cameras nothing is removed: A has matches at 1, 3, 4; B at 2.
    plain = evaluate(qf, gf, [1, 2], [1, 2, 1, 1], max_rank=3)
    ap_a = (1 / 1 + 2 / 3 + 3 / 4) / 3
    assert plain.mAP == pytest.approx((ap_a + 1 / 2) / 2)
    assert plain.mINP == pytest.approx((3 / 4 + 1 / 2) / 2)
    np.testing.assert_array_equal(plain.cmc, [0.5, 1, 1])


def test_skipped_queries_are_counted_not_averaged(path: str) -> None:
    qf = np.zeros((3, 2), np.float32)
    # Query 0 (id 1, cam 0) has a match; query 1 (id 2, cam 0) only junk; query 2 (id 7) nothing.
    result = evaluate(qf, line_gallery(3), [1, 2, 7], [2, 1, 3], [0, 0, 0], [0, 1, 0], max_rank=3)
    assert (result.num_queries, result.num_evaluated, result.num_skipped) == (3, 1, 2)
    assert result.mAP == pytest.approx(1 / 2)
    np.testing.assert_array_equal(result.cmc, [0, 1, 1])


def test_no_evaluable_query_gives_zeros(path: str) -> None:
    result = evaluate(np.zeros((2, 2)), line_gallery(3), [5, 6], [1, 2, 3], max_rank=4)
    assert (result.mAP, result.mINP, result.num_evaluated, result.num_skipped) == (0.0, 0.0, 0, 2)
    np.testing.assert_array_equal(result.cmc, np.zeros(4))
    assert not np.isnan(result.cmc).any()
    json.dumps(result.to_dict())


def test_ties_follow_gallery_order(path: str) -> None:
    qf = np.zeros((1, 2), np.float32)
    gf = np.array([[1, 0], [0, 1], [-1, 0], [0, -1]], np.float32)  # all at distance 1
    first = evaluate(qf, gf, [1], [1, 0, 0, 0], max_rank=4)
    last = evaluate(qf, gf, [1], [0, 0, 0, 1], max_rank=4)
    middle = evaluate(qf, gf, [1], [0, 1, 0, 1], max_rank=4)
    assert first.mAP == 1.0 and first.rank(1) == 1.0
    assert last.mAP == pytest.approx(1 / 4) and last.mINP == pytest.approx(1 / 4)
    np.testing.assert_array_equal(last.cmc, [0, 0, 0, 1])
    assert middle.mAP == pytest.approx((1 / 2 + 2 / 4) / 2)
    # Removed (junk) items among the tied ones do not count.
    junk = evaluate(qf, gf, [1], [1, 0, 1, 1], [0], [0, 1, 1, 1], max_rank=4)
    assert junk.mAP == pytest.approx((1 / 2 + 2 / 3) / 2)


def test_tie_with_a_nearer_item_and_a_farther_one(path: str) -> None:
    """Equal distances among many, on both sides of true matches."""
    qf = np.zeros((1, 1), np.float32)
    gf = np.array([[2], [1], [-1], [1], [-2], [0], [1]], np.float32)
    gp = [1, 0, 1, 0, 0, 0, 1]  # distances 4,1,1,1,4,0,1 -> order 5,1,2,3,6,0,4
    result = evaluate(qf, gf, [1], gp, max_rank=7)
    # Matches at ranks 3 (item 2), 5 (item 6), 6 (item 0).
    assert result.mAP == pytest.approx((1 / 3 + 2 / 5 + 3 / 6) / 3)
    assert result.mINP == pytest.approx(3 / 6)
    assert_same(result, evaluate_reference(qf, gf, [1], gp, max_rank=7))


def test_unnormalised_features_rank_by_euclidean_distance(path: str) -> None:
    # By dot product item 1 (long vector) would come first; by distance item 0 does.
    qf = np.array([[1.0, 0.0]], np.float32)
    gf = np.array([[1.0, 0.1], [5.0, 0.0]], np.float32)
    assert evaluate(qf, gf, [1], [1, 0]).mAP == 1.0


def test_max_rank_beyond_gallery_is_padded(path: str) -> None:
    qf = np.zeros((1, 2), np.float32)
    result = evaluate(qf, line_gallery(3), [1], [0, 1, 0], max_rank=6)
    np.testing.assert_array_equal(result.cmc, [0, 1, 1, 1, 1, 1])
    assert len(result.cmc) == 6


def test_result_api() -> None:
    qf = np.zeros((1, 2), np.float32)
    result = evaluate(qf, line_gallery(12), [1], [0] * 11 + [1])
    d = result.to_dict()
    assert json.loads(json.dumps(d)) == d
    assert set(d) >= {"mAP", "mINP", "rank1", "rank5", "rank10", "cmc", "num_queries", "protocol"}
    assert d["rank10"] == 0.0 and len(d["cmc"]) == 50 and d["cmc"][11] == 1.0
    assert evaluate(qf, line_gallery(12), [1], [1] + [0] * 11, max_rank=3).to_dict()["rank5"] is None
    with pytest.raises(ValueError, match="rank k"):
        result.rank(0)
    with pytest.raises(ValueError, match="rank k"):
        result.rank(51)
    assert not result.cmc.flags.writeable
    assert "mAP=" in repr(result)


def test_features_needing_grad_and_rows_views() -> None:
    gf = torch.tensor(line_gallery(4), requires_grad=True)
    qf = torch.zeros(3, 2)[::2]  # a non-contiguous view
    result = evaluate(qf, gf, [1, 1], [0, 1, 0, 1])
    assert result.mAP == pytest.approx((1 / 2 + 2 / 4) / 2)


def test_torch_labels_and_keys(path: str) -> None:
    p = make_problem(5)
    keys = np.arange(len(p["qp"])), np.arange(len(p["gp"])) + 3
    ref = evaluate_reference(p["qf"], p["gf"], p["qp"], p["gp"], query_keys=keys[0], gallery_keys=keys[1])
    as_t = [torch.from_numpy(x) for x in (p["qp"], p["gp"], *keys)]
    fast = evaluate(p["qf"], p["gf"], as_t[0], as_t[1], query_keys=as_t[2], gallery_keys=as_t[3], chunk_size=5)
    assert_same(fast, ref)


def test_default_chunk_size_spreads_queries_evenly() -> None:
    for nq, ng in [(1, 10), (3368, 15913), (11659, 82161), (10, 10**7)]:
        c = ranking.default_chunk_size(nq, ng)
        chunks = -(-nq // c)
        assert 1 <= c <= nq and chunks * c - nq < chunks


# ----------------------------------------------------------------------------------------------------
# Validation
# ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"query_pids": [1, 2, 3]}, "query_pids has 3 entries but the features have 2 rows"),
        ({"gallery_pids": [1]}, "gallery_pids has 1 entries"),
        ({"gallery_feats": np.zeros((3, 5))}, "feature widths differ: query 2, gallery 5"),
        ({"query_camids": [0, 0]}, "query_camids and gallery_camids must be given together"),
        ({"gallery_keys": [0, 1, 2]}, "query_keys and gallery_keys must be given together"),
        ({"query_camids": [0], "gallery_camids": [0, 0, 0]}, "query_camids has 1 entries"),
        ({"query_feats": np.zeros((0, 2))}, "query_feats is empty"),
        ({"gallery_feats": np.zeros((0, 2)), "gallery_pids": []}, "gallery_feats is empty"),
        ({"query_feats": np.array([[0.0, np.nan], [0, 0]])}, "query_feats contains NaN"),
        ({"gallery_feats": np.array([[np.inf, 0], [0, 0], [0, 0]])}, "gallery_feats contains NaN or infinite"),
        ({"query_feats": np.zeros(2)}, "query_feats must be 2-D"),
        ({"query_pids": [0.5, 1.0]}, "query_pids must hold integers"),
        ({"gallery_pids": np.zeros((3, 1), int)}, "gallery_pids must be 1-D"),
        ({"max_rank": 0}, "max_rank must be a positive integer"),
        ({"chunk_size": 0}, "chunk_size must be a positive integer"),
        ({"topk": -1}, "topk must be a non-negative integer"),
        ({"query_feats": np.full((2, 2), 1e30, np.float32)}, "feature norms too large"),
    ],
)
def test_validation_messages(change: dict[str, Any], message: str) -> None:
    kwargs: dict[str, Any] = {
        "query_feats": np.zeros((2, 2), np.float32),
        "gallery_feats": np.zeros((3, 2), np.float32),
        "query_pids": [1, 2],
        "gallery_pids": [1, 2, 3],
    }
    kwargs.update(change)
    with pytest.raises(ValueError, match=message.replace("(", r"\(")):
        evaluate(**kwargs)


def test_reference_validates_like_evaluate() -> None:
    with pytest.raises(ValueError, match="must be given together"):
        evaluate_reference(np.zeros((1, 2)), np.zeros((2, 2)), [1], [1, 2], query_camids=[0])


# ----------------------------------------------------------------------------------------------------
# CUDA
# ----------------------------------------------------------------------------------------------------


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_equals_cpu() -> None:
    for seed, float64 in [(0, False), (1, True)]:
        p = make_problem(seed, nq=30, ng=300, float64=float64)
        qf, gf = torch.from_numpy(p["qf"]), torch.from_numpy(p["gf"])
        labels = (p["qp"], p["gp"], p["qc"], p["gc"])
        cpu = evaluate(qf, gf, *labels)
        for chunk in (1, 7, None):
            gpu = evaluate(qf.cuda(), gf.cuda(), *(torch.from_numpy(x).cuda() for x in labels), chunk_size=chunk)
            assert_same(gpu, cpu)


@pytest.mark.parametrize("float64", [False, True], ids=["f32-int", "f64"])
@pytest.mark.parametrize("cameras", [True, False], ids=["camera", "no-camera"])
def test_ranked_lists_match_reference(path: str, cameras: bool, float64: bool) -> None:
    """topk: each evaluated query's first k kept items, ties in gallery order, junk and own image left out."""
    for seed in range(3):
        p = make_problem(seed, float64=float64)
        cams = (p["qc"], p["gc"]) if cameras else ()
        keys = {"query_keys": np.arange(len(p["qp"])), "gallery_keys": np.arange(len(p["gp"]))}
        for topk in (1, 10, 80):  # 80 > gallery size: rows padded with -1
            ref = evaluate_reference(p["qf"], p["gf"], p["qp"], p["gp"], *cams, topk=topk, **keys)
            for chunk in (1, 5, None):
                fast = evaluate(p["qf"], p["gf"], p["qp"], p["gp"], *cams, topk=topk, chunk_size=chunk, **keys)
                assert_same(fast, ref)
            assert (ref.ranked[~np.isnan(ref.query_ap)] >= 0).any()
            assert (ref.ranked[np.isnan(ref.query_ap)] == -1).all()  # skipped queries have no list


def test_ranked_list_leaves_out_junk() -> None:
    qf = np.zeros((1, 1), np.float32)
    gf = np.array([[0.0], [1.0], [2.0], [3.0]], np.float32)
    # Gallery 0: same identity and camera (junk); 1: other identity; 2: true match; 3: other identity.
    result = evaluate(qf, gf, [7], [7, 1, 7, 2], [0], [0, 1, 1, 0], topk=3)
    assert result.ranked.tolist() == [[1, 2, 3]]
    assert result.query_first_rank.tolist() == [1]
    assert result.query_ap.tolist() == [0.5]


@pytest.mark.parametrize("cameras", [True, False], ids=["camera", "no-camera"])
def test_rerank_matches_dense_reference(path: str, cameras: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    """rerank=KReciprocal(...) ranks by k-reciprocal distances: the dense algorithm, then the reference."""
    import svllreid.metrics.rerank as rerank_module
    from tests.reference.rerank_reference import k_reciprocal_rerank_reference

    if path == "torch":
        monkeypatch.setattr(rerank_module, "_use_numpy", lambda device: False)
    rng = np.random.default_rng(3)
    nq, ng = 15, 60
    centres = rng.standard_normal((8, 16))
    qp, gp = rng.integers(0, 8, nq), rng.integers(0, 8, ng)
    qf = (centres[qp] + 0.8 * rng.standard_normal((nq, 16))).astype(np.float32)
    gf = (centres[gp] + 0.8 * rng.standard_normal((ng, 16))).astype(np.float32)
    cams = (rng.integers(0, 3, nq), rng.integers(0, 3, ng)) if cameras else ()
    dense = k_reciprocal_rerank_reference(qf, gf, k1=6, k2=3, lambda_value=0.3)
    ref = evaluate_reference(qf, gf, qp, gp, *cams, topk=10, distances=dense)
    plain = evaluate(qf, gf, qp, gp, *cams)
    for chunk in (1, 4, None):
        fast = evaluate(qf, gf, qp, gp, *cams, rerank=KReciprocal(k1=6, k2=3), topk=10, chunk_size=chunk)
        assert fast.reranked and fast.to_dict()["reranked"]
        assert fast.mAP == pytest.approx(ref.mAP, abs=1e-4)
        np.testing.assert_allclose(fast.cmc, ref.cmc, atol=1e-6)
        np.testing.assert_array_equal(fast.ranked, ref.ranked)
    assert fast.mAP != pytest.approx(plain.mAP, abs=1e-3)  # re-ranking did change the ranking
