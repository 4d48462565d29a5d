"""k-reciprocal re-ranking: the fast sparse implementation against the dense reference, known answers,
chunked output and input validation."""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

import svllreid.metrics.rerank as rerank
from svllreid.metrics import KReciprocal, evaluate
from svllreid.metrics.rerank import iter_rerank_chunks, k_reciprocal_rerank
from tests.conftest import run_script
from tests.reference.rerank_reference import k_reciprocal_rerank_reference

ATOL = 1e-5


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    """These problems are tiny: one thread is faster, and is not held up by other processes on a
    shared CPU (torch's parallel kernels wait for their slowest thread)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def features(kind: str, seed: int, nq: int = 50, ng: int = 300, dim: int = 8) -> tuple[np.ndarray, np.ndarray]:
    """Float32 query and gallery features of one kind.

    continuous: Gaussian. unit: L2-normalised. integer: entries in {-1, 0, 1} (few distinct points,
    exact ties everywhere). duplicates: 40 copies of one gallery image, a query among them, and more
    copies than k1 + 1 (empty reciprocal sets). near-duplicates: clusters within 1e-4.
    """
    rng = np.random.default_rng(seed)
    if kind == "integer":
        return (rng.integers(-1, 2, (nq, 3)).astype(np.float32), rng.integers(-1, 2, (ng, 3)).astype(np.float32))
    qf, gf = rng.standard_normal((nq, dim)), rng.standard_normal((ng, dim))
    if kind == "unit":
        qf /= np.linalg.norm(qf, axis=1, keepdims=True)
        gf /= np.linalg.norm(gf, axis=1, keepdims=True)
    elif kind == "duplicates":
        gf[100:140] = gf[0]
        qf[5] = gf[0]
        gf[200:203] = qf[7]
    elif kind == "near-duplicates":
        gf[10:25] = gf[3] + 1e-4 * rng.standard_normal((15, dim))
        qf[:4] = gf[3] + 1e-4 * rng.standard_normal((4, dim))
    return qf.astype(np.float32), gf.astype(np.float32)


def assert_close(fast: torch.Tensor, ref: np.ndarray) -> None:
    assert isinstance(fast, torch.Tensor) and fast.dtype == torch.float32
    assert tuple(fast.shape) == ref.shape
    np.testing.assert_allclose(fast.numpy(), ref, rtol=0, atol=ATOL)


# ----------------------------------------------------------------------------------------------------
# Against the dense reference
# ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["continuous", "unit", "integer", "duplicates", "near-duplicates"])
@pytest.mark.parametrize(
    ("k1", "k2", "lam"),
    # k1 = 5 and 7: round(k1 / 2) rounds half to even (2 and 4); k1 = 1: R(c, 0) = {c}.
    [(20, 6, 0.3), (5, 1, 0.0), (7, 3, 0.6), (30, 10, 0.5), (1, 2, 0.3), (11, 4, 1.0)],
)
def test_matches_reference(kind: str, k1: int, k2: int, lam: float) -> None:
    qf, gf = features(kind, seed=len(kind) + k1)
    ref = k_reciprocal_rerank_reference(qf, gf, k1=k1, k2=k2, lambda_value=lam)
    assert_close(k_reciprocal_rerank(qf, gf, k1=k1, k2=k2, lambda_value=lam), ref)


def test_duplicates_leave_some_reciprocal_sets_empty() -> None:
    """The duplicate problem does reach the corner case: with k1 = 5, the first 6 of the 42 identical
    images (by index) are everyone's list, so the other copies have no reciprocal neighbour and an
    empty row of V."""
    qf, gf = features("duplicates", seed=0)
    feats = np.concatenate([qf, gf]).astype(np.float64)
    copies = np.flatnonzero((feats == gf[0]).all(1))
    assert len(copies) == 42
    state = rerank._prepare(torch.from_numpy(qf), torch.from_numpy(gf), 5, 1, 0.3, 64)
    row_sizes = (state.v.rowptr[1:] - state.v.rowptr[:-1]).numpy()
    assert (row_sizes[copies[:6]] > 0).all() and (row_sizes[copies[6:]] == 0).all()
    for k1, k2 in [(5, 1), (5, 3), (20, 6)]:
        assert_close(k_reciprocal_rerank(qf, gf, k1=k1, k2=k2), k_reciprocal_rerank_reference(qf, gf, k1=k1, k2=k2))


@pytest.mark.parametrize("seed", range(3))
def test_numpy_torch_float64_and_chunk_sizes(seed: int) -> None:
    qf, gf = features("continuous", seed, nq=23, ng=140)
    ref = k_reciprocal_rerank_reference(qf, gf)
    for chunk in (1, 5, 23, 24, 1000, None):
        assert_close(k_reciprocal_rerank(torch.from_numpy(qf), torch.from_numpy(gf), chunk_size=chunk), ref)
    assert_close(k_reciprocal_rerank(qf, gf, chunk_size=7), ref)
    assert_close(k_reciprocal_rerank(qf.astype(np.float64), gf.astype(np.float64)), ref)
    assert_close(k_reciprocal_rerank(qf, gf.astype(np.float64)), ref)  # mixed: float64
    grad = torch.from_numpy(qf).requires_grad_()
    assert_close(k_reciprocal_rerank(grad, torch.from_numpy(gf)[::1]), ref)


@pytest.mark.parametrize("kind", ["unit", "integer", "duplicates", "near-duplicates"])
def test_torch_path_matches_reference(kind: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The torch GEMMs and sorts (those of CUDA devices), forced on CPU."""
    monkeypatch.setattr(rerank, "_use_numpy", lambda device: False)
    qf, gf = features(kind, seed=11)
    for k1, k2, lam in [(20, 6, 0.3), (7, 1, 0.0)]:
        ref = k_reciprocal_rerank_reference(qf, gf, k1=k1, k2=k2, lambda_value=lam)
        assert_close(k_reciprocal_rerank(qf, gf, k1=k1, k2=k2, lambda_value=lam, chunk_size=17), ref)
    assert_close(k_reciprocal_rerank(qf.astype(np.float64), gf, chunk_size=17), k_reciprocal_rerank_reference(qf, gf))


@pytest.mark.parametrize("kind", ["continuous", "integer"])
def test_internal_batches_and_second_pass(kind: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Tiny internal batches (sparse row chunks, Jaccard terms, distance pairs) and no candidate margin,
    so that every neighbour list takes the second, wider pass."""
    qf, gf = features(kind, seed=3, nq=30, ng=120)
    ref = k_reciprocal_rerank_reference(qf, gf, k1=10, k2=4, lambda_value=0.2)
    monkeypatch.setattr(rerank, "_ROWS", 7)
    monkeypatch.setattr(rerank, "MAX_TRIPLES", 50)
    monkeypatch.setattr(rerank, "_PAIR_BYTES", 8 * qf.shape[1] * 3)
    monkeypatch.setattr(rerank, "_MARGIN", 0)
    assert_close(k_reciprocal_rerank(qf, gf, k1=10, k2=4, lambda_value=0.2, chunk_size=4), ref)


def test_neighbourhoods_larger_than_the_problem() -> None:
    """k1 + 1 and k2 above N = Q + G: the lists are the whole problem, as in the reference's slicing."""
    qf, gf = features("continuous", seed=4, nq=3, ng=9)
    for k1, k2 in [(20, 6), (11, 12), (12, 30), (2, 40)]:
        assert_close(k_reciprocal_rerank(qf, gf, k1=k1, k2=k2), k_reciprocal_rerank_reference(qf, gf, k1=k1, k2=k2))
    one = k_reciprocal_rerank(qf[:1], gf[:1])
    assert_close(one, k_reciprocal_rerank_reference(qf[:1], gf[:1]))


def test_all_images_identical() -> None:
    """Every distance is 0 (row maximum 0): B is 0 and all pairs are equal, no NaN."""
    qf, gf = np.ones((4, 3), np.float32), np.ones((9, 3), np.float32)
    fast, ref = k_reciprocal_rerank(qf, gf, k1=3, k2=2), k_reciprocal_rerank_reference(qf, gf, k1=3, k2=2)
    assert np.isfinite(ref).all()
    assert_close(fast, ref)


def test_far_from_origin() -> None:
    """Features with a large common offset: centring keeps the float32 distances accurate."""
    qf, gf = features("unit", seed=5)
    qf, gf = qf + 100, gf + 100
    assert_close(k_reciprocal_rerank(qf, gf), k_reciprocal_rerank_reference(qf, gf))


# ----------------------------------------------------------------------------------------------------
# Known answers
# ----------------------------------------------------------------------------------------------------


def test_hand_computed_example() -> None:
    """1-D: query 0, gallery 1 and 3. Squared distances q-g1 1, q-g2 9, g1-g2 4; row maxima 9, 4, 9.

    k1 = 1: the first two of each ranking are {q, g1}, {g1, q}, {g2, g1}, so R(q) = R(g1) = {q, g1} and
    R(g2) = {g2}; round(1/2) = 0 adds nothing. k2 = 1: no query expansion.
    """
    vq = np.exp(-np.array([0.0, 1 / 9]))
    vq /= vq.sum()
    vg1 = np.exp(-np.array([1 / 4, 0.0]))
    vg1 /= vg1.sum()
    t = np.minimum(vq, vg1).sum()
    expected = np.array([[0.7 * (1 - t / (2 - t)) + 0.3 / 9, 0.7 * 1 + 0.3 * 1]])
    args = (np.array([[0.0]]), np.array([[1.0], [3.0]]))
    params = {"k1": 1, "k2": 1, "lambda_value": 0.3}
    np.testing.assert_allclose(k_reciprocal_rerank_reference(*args, **params), expected, rtol=0, atol=1e-12)
    assert_close(k_reciprocal_rerank(*args, **params), expected)


def test_lambda_one_is_the_row_normalised_distance() -> None:
    qf, gf = features("continuous", seed=6)
    feats = np.concatenate([qf, gf]).astype(np.float64)
    d = ((feats[: len(qf), None] - feats[None]) ** 2).sum(-1)
    expected = d[:, len(qf) :] / d.max(1, keepdims=True)
    assert_close(k_reciprocal_rerank(qf, gf, k1=20, k2=6, lambda_value=1.0), expected)


def test_jaccard_is_one_for_pairs_without_shared_neighbours() -> None:
    """Two far clusters: with lambda = 0 a query and the other cluster share nothing (distance 1)."""
    rng = np.random.default_rng(7)
    gf = np.concatenate([rng.standard_normal((30, 4)), 100 + rng.standard_normal((30, 4))]).astype(np.float32)
    qf = gf[[0, 40]] + 0.01
    dist = k_reciprocal_rerank(qf, gf, k1=5, k2=2, lambda_value=0.0).numpy()
    assert (dist[0, 30:] == 1).all() and (dist[1, :30] == 1).all()
    assert (dist[0, :30] < 1).any() and (dist[1, 30:] < 1).any()


# ----------------------------------------------------------------------------------------------------
# Retrieval: mAP of the re-ranked distances
# ----------------------------------------------------------------------------------------------------


def map_from_distances(dist: np.ndarray, qp: np.ndarray, gp: np.ndarray, qc: np.ndarray, gc: np.ndarray) -> float:
    """Mean AP over queries with a true match; gallery images of the query's identity and camera are junk."""
    aps = []
    for i in range(len(dist)):
        order = np.argsort(dist[i], kind="stable")
        order = order[~((gp[order] == qp[i]) & (gc[order] == qc[i]))]
        positions = np.flatnonzero(gp[order] == qp[i])
        if len(positions):
            aps.append(np.mean(np.arange(1, len(positions) + 1) / (positions + 1)))
    return float(np.mean(aps))


def identity_problem(seed: int) -> dict[str, np.ndarray]:
    """Unit features with identity clusters and camera shifts: 40 queries, 400 gallery images."""
    rng = np.random.default_rng(seed)
    nids, ncams, dim = 30, 4, 16
    centres = rng.standard_normal((nids, dim))
    shifts = 0.6 * rng.standard_normal((ncams, dim))
    qp, gp = rng.integers(0, nids, 40), rng.integers(0, nids, 400)
    qc, gc = rng.integers(0, ncams, 40), rng.integers(0, ncams, 400)

    def images(p: np.ndarray, c: np.ndarray) -> np.ndarray:
        x = centres[p] + shifts[c] + 1.2 * rng.standard_normal((len(p), dim))
        return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)

    return {"qf": images(qp, qc), "gf": images(gp, gc), "qp": qp, "gp": gp, "qc": qc, "gc": gc}


@pytest.mark.parametrize("seed", range(2))
def test_map_matches_reference(seed: int) -> None:
    p = identity_problem(seed)
    labels = (p["qp"], p["gp"], p["qc"], p["gc"])
    ref = k_reciprocal_rerank_reference(p["qf"], p["gf"])
    fast = k_reciprocal_rerank(p["qf"], p["gf"])
    assert_close(fast, ref)
    fast_map, ref_map = map_from_distances(fast.numpy(), *labels), map_from_distances(ref, *labels)
    assert fast_map == pytest.approx(ref_map, abs=1e-4)
    # The helper agrees with the library's evaluator on plain Euclidean distances ...
    d = ((p["qf"][:, None].astype(np.float64) - p["gf"][None]) ** 2).sum(-1)
    plain = map_from_distances(d, *labels)
    assert plain == pytest.approx(evaluate(p["qf"], p["gf"], *labels).mAP, abs=1e-6)
    # ... and on these clustered features re-ranking helps, as it should.
    assert fast_map > plain


# ----------------------------------------------------------------------------------------------------
# Chunked output
# ----------------------------------------------------------------------------------------------------


def test_chunks_cover_the_result() -> None:
    qf, gf = features("unit", seed=8, nq=37, ng=150)
    ref = k_reciprocal_rerank_reference(qf, gf, k1=12, k2=3, lambda_value=0.4)
    for chunk in (1, 10, 37, 50, None):
        starts, parts = [], []
        for start, part in iter_rerank_chunks(qf, gf, k1=12, k2=3, lambda_value=0.4, chunk_size=chunk):
            assert part.dtype == torch.float32 and part.shape[1] == len(gf)
            starts.append(start)
            parts.append(part.clone())
        size = chunk or len(qf)
        assert starts == list(range(0, len(qf), size))
        assert [len(x) for x in parts[:-1]] == [size] * (len(parts) - 1)
        assert_close(torch.cat(parts), ref)


def test_inputs_not_modified() -> None:
    qf, gf = features("continuous", seed=9, nq=10, ng=40)
    q0, g0 = qf.copy(), gf.copy()
    qt, gt = torch.from_numpy(qf.copy()), torch.from_numpy(gf.copy())
    k_reciprocal_rerank(qf, gf)
    k_reciprocal_rerank(qt, gt)
    np.testing.assert_array_equal(qf, q0)
    np.testing.assert_array_equal(gf, g0)
    assert torch.equal(qt, torch.from_numpy(q0)) and torch.equal(gt, torch.from_numpy(g0))


def test_default_chunk_size() -> None:
    for n in (2, 19281, 93820, 10**8):
        c = rerank.default_chunk_size(n)
        assert c >= 1 and (c == 1 or 4 * c * n <= rerank.CHUNK_BYTES)


@pytest.mark.slow
def test_benchmark_script_runs(capsys: pytest.CaptureFixture[str]) -> None:
    """The benchmark script itself (a tiny size, chunked mode): it runs and reports measurements (the
    script in this process, its worker in a process of its own)."""
    script = Path(__file__).resolve().parents[2] / "benchmarks" / "rerank_speed.py"
    printed = run_script(script, "--sizes", "tiny", "--mode", "chunks", "--threads", "1", "--json", capsys=capsys)
    row = json.loads(printed.strip().splitlines()[-1])
    assert row["size"] == "tiny 200x1000" and row["device"] == "cpu" and row["mode"] == "chunks"
    assert row["wall_s"] > 0 and row["peak_rss_gb"] > 0 and row["threads"] == 1


# ----------------------------------------------------------------------------------------------------
# Validation
# ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"gallery_feats": np.zeros((3, 5))}, "feature widths differ: query 2, gallery 5"),
        ({"query_feats": np.zeros((0, 2))}, "query_feats is empty"),
        ({"gallery_feats": np.zeros((0, 2))}, "gallery_feats is empty"),
        ({"query_feats": np.zeros((2, 0)), "gallery_feats": np.zeros((3, 0))}, "query_feats has zero-width"),
        ({"query_feats": np.zeros(2)}, "query_feats must be 2-D"),
        ({"query_feats": np.array([[0.0, np.nan], [0, 0]])}, "query_feats contains NaN or infinite"),
        ({"gallery_feats": np.array([[np.inf, 0], [0, 0], [0, 0]])}, "gallery_feats contains NaN or infinite"),
        ({"query_feats": np.full((2, 2), 1e30, np.float32)}, "feature norms too large"),
        ({"k1": 0}, "k1 must be a positive integer, got 0"),
        ({"k1": -3}, "k1 must be a positive integer"),
        ({"k1": 2.5}, "k1 must be a positive integer"),
        ({"k2": 0}, "k2 must be a positive integer"),
        ({"lambda_value": 1.5}, "lambda_value must be a number in [0, 1], got 1.5"),
        ({"lambda_value": -0.1}, "lambda_value must be a number in [0, 1]"),
        ({"lambda_value": math.nan}, "lambda_value must be a number in [0, 1]"),
        ({"chunk_size": 0}, "chunk_size must be a positive integer"),
    ],
)
def test_validation_messages(change: dict[str, Any], message: str) -> None:
    kwargs: dict[str, Any] = {
        "query_feats": np.zeros((2, 2), np.float32),
        "gallery_feats": np.zeros((3, 2), np.float32),
    }
    kwargs.update(change)
    escaped = message.replace("(", r"\(").replace("[", r"\[")
    with pytest.raises(ValueError, match=escaped):
        k_reciprocal_rerank(**kwargs)
    with pytest.raises(ValueError, match=escaped):
        iter_rerank_chunks(**kwargs)  # checked on the call, before any chunk is asked for


# ----------------------------------------------------------------------------------------------------
# CUDA
# ----------------------------------------------------------------------------------------------------


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_matches_reference() -> None:
    for kind in ("unit", "duplicates", "integer"):
        qf, gf = features(kind, seed=10)
        ref = k_reciprocal_rerank_reference(qf, gf)
        for chunk in (7, None):
            fast = k_reciprocal_rerank(torch.from_numpy(qf).cuda(), torch.from_numpy(gf).cuda(), chunk_size=chunk)
            assert fast.device.type == "cuda"
            assert_close(fast.cpu(), ref)
        parts = [part.cpu() for _, part in iter_rerank_chunks(torch.from_numpy(qf).cuda(), torch.from_numpy(gf).cuda())]
        assert_close(torch.cat(parts), ref)


def test_evaluate_takes_a_reranker_not_a_flag() -> None:
    """evaluate composes re-ranking from outside: a KReciprocal (checked when made), never a bare bool."""
    feats, pids = np.eye(4, dtype=np.float32), np.arange(4)
    with pytest.raises(TypeError, match=r"KReciprocal\(k1, k2, lambda_value\)"):
        evaluate(feats, feats, pids, pids, rerank=True)
    with pytest.raises(ValueError, match="k1 must be a positive integer"):
        KReciprocal(k1=0)
    with pytest.raises(ValueError, match=r"lambda_value must be a number in \[0, 1\]"):
        KReciprocal(lambda_value=1.5)
    result = evaluate(feats, feats, pids, pids, rerank=KReciprocal(k1=2, k2=1))
    assert result.reranked and result.mAP == 1.0
    plain = evaluate(feats, feats, pids, pids, rerank=False)  # "no re-ranking", as before re-rankers were objects
    assert not plain.reranked and plain.mAP == 1.0
