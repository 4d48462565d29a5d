"""Verification metrics against scikit-learn's ROC curve, the pairs against a dense computation, and the
binned (bounded-memory) path against the exact one within its stated bounds."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score, roc_curve

from svllreid.metrics.verification import (
    FPR_TARGETS,
    PairScores,
    pair_scores,
    scores_from_labels,
    verify,
)


def sklearn_at_fpr(same: np.ndarray, scores: np.ndarray, fpr: float) -> tuple[float, float, float]:
    """The curve's last point with FPR <= fpr: (TPR, threshold, FPR)."""
    f, t, thresholds = roc_curve(same, scores, drop_intermediate=False)
    i = np.flatnonzero(f <= fpr)[-1]
    return t[i], thresholds[i], f[i]


def sklearn_eer(same: np.ndarray, scores: np.ndarray) -> tuple[float, float]:
    f, t, thresholds = roc_curve(same, scores, drop_intermediate=False)
    fnr = 1 - t
    i = int(np.argmin(np.abs(fnr - f)))  # the first (highest threshold) on a tie
    return (f[i] + fnr[i]) / 2, thresholds[i]


def check_against_sklearn(same: np.ndarray, scores: np.ndarray, stats: PairScores) -> None:
    assert stats.auc()[0] == pytest.approx(roc_auc_score(same, scores), abs=1e-12)
    for fpr in (1e-3, 1e-2, 0.05, 0.1, 0.3, 0.5):
        point = stats.at_fpr(fpr)
        tpr, threshold, achieved = sklearn_at_fpr(same, scores, fpr)
        assert (point.tpr, point.threshold, point.fpr) == (tpr, threshold, achieved), fpr
        assert point.tpr_bound == 0.0
    eer, threshold = sklearn_eer(same, scores)
    got = stats.eer()
    assert got[0] == pytest.approx(eer, abs=1e-12)
    assert got[1] == threshold
    assert got[2] == 0.0


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_random_scores_with_ties_equal_sklearn(dtype: type) -> None:
    rng = np.random.default_rng(0)
    for _ in range(120):
        n = int(rng.integers(6, 500))
        same = rng.random(n) < rng.uniform(0.05, 0.6)
        if same.all() or not same.any():
            continue
        # Rounded to 0-2 decimals: many ties, within and across the two kinds.
        scores = np.round(rng.normal(same * rng.uniform(0, 2), 1.0), int(rng.integers(0, 3))).astype(dtype)
        check_against_sklearn(same, scores, scores_from_labels(scores, same))


def test_at_tpr_is_the_highest_threshold_reaching_it() -> None:
    rng = np.random.default_rng(1)
    same = rng.random(400) < 0.3
    scores = np.round(rng.normal(same * 1.5, 1.0), 1)
    stats = scores_from_labels(scores, same)
    f, t, thresholds = roc_curve(same, scores, drop_intermediate=False)
    for tpr in (0.1, 0.5, 0.9, 1.0):
        i = np.flatnonzero(t >= tpr)[0]
        point = stats.at_tpr(tpr)
        assert (point.threshold, point.tpr, point.fpr) == (thresholds[i], t[i], f[i])


def clustered_features(rng: np.random.Generator, n: int, ids: int, dim: int, noise: float = 1.2):
    centers = np.random.default_rng(99).normal(size=(ids, dim))
    pid = rng.integers(0, ids, n)
    return (centers[pid] + rng.normal(size=(n, dim)) * noise).astype(np.float32), pid, rng.integers(0, 4, n)


def dense_pairs(qf, gf, qp, gp, qc=None, gc=None, qk=None, gk=None):
    """Scores and same flags of the protocol's pairs, from the whole similarity matrix."""
    qn = qf / np.linalg.norm(qf, axis=1, keepdims=True)
    gn = gf / np.linalg.norm(gf, axis=1, keepdims=True)
    sim = qn @ gn.T
    same = qp[:, None] == gp[None]
    kept = np.ones_like(same)
    if qc is not None:
        kept &= ~(same & (qc[:, None] == gc[None]))
    if qk is not None:
        kept &= qk[:, None] != gk[None]
        # A pair of two images on both sides comes twice: kept once, as the query of the smaller key.
        kept &= ~(np.isin(qk, gk)[:, None] & np.isin(gk, qk)[None] & (qk[:, None] > gk[None]))
    return sim[kept], same[kept]


def test_pairs_follow_the_ranking_protocol() -> None:
    """Same-identity-same-camera pairs and the query's own image are left out; other pairs stay."""
    rng = np.random.default_rng(2)
    gf, gp, gc = clustered_features(rng, 300, 20, 8)
    q_rows = rng.choice(300, 60, replace=False)  # queries taken from the gallery: their own image is excluded
    qf, qp, qc = gf[q_rows], gp[q_rows], gc[q_rows]
    gk = np.arange(300)
    stats = pair_scores(qf, gf, qp, gp, qc, gc, query_keys=gk[q_rows], gallery_keys=gk)
    scores, same = dense_pairs(qf, gf, qp, gp, qc, gc, gk[q_rows], gk)
    assert stats.num_positive == same.sum() and stats.num_negative == (~same).sum()
    np.testing.assert_allclose(stats.positives, np.sort(scores[same]), atol=1e-6)
    np.testing.assert_allclose(stats.negatives, np.sort(scores[~same]), atol=1e-6)
    assert stats.exact


def test_a_key_shared_with_another_identity_is_left_out() -> None:
    """A gallery image with the query's key is never paired with it, even labelled another identity."""
    rng = np.random.default_rng(6)
    gf, gp, gc = clustered_features(rng, 120, 10, 8)
    qf, qp, qc = gf[:20], gp[:20].copy(), gc[:20]
    gk = np.arange(120)
    qk = gk[:20].copy()
    qp[0] = gp[0] + 100  # query 0's own image is in the gallery under another identity
    stats = pair_scores(qf, gf, qp, gp, qc, gc, query_keys=qk, gallery_keys=gk)
    scores, same = dense_pairs(qf, gf, qp, gp, qc, gc, qk, gk)
    assert (stats.num_positive, stats.num_negative) == (same.sum(), (~same).sum())
    np.testing.assert_allclose(stats.negatives, np.sort(scores[~same]), atol=1e-6)


def test_images_on_both_sides_are_paired_once() -> None:
    """A validation split queries every image against the others: each pair is counted once, so the
    smallest resolvable FPR is one false accept."""
    rng = np.random.default_rng(7)
    feats, pids, cams = clustered_features(rng, 90, 15, 8)
    keys = np.arange(90)
    stats = pair_scores(feats, feats, pids, pids, cams, cams, query_keys=keys, gallery_keys=keys)
    same_id, same_cam = pids[:, None] == pids[None], cams[:, None] == cams[None]
    upper = np.triu(np.ones((90, 90), bool), k=1)
    assert stats.num_positive == (upper & same_id & ~same_cam).sum()
    assert stats.num_negative == (upper & ~same_id).sum()
    point = stats.at_fpr(stats.smallest_fpr())
    assert point.resolvable and point.false_accepts == 1


def test_scores_of_one_and_above_in_the_binned_path() -> None:
    """Scores at 1 (duplicates across identities) fall in a bin of their own: an FPR they exceed gets no
    threshold but rejecting every pair, as on the exact path."""
    positives = np.linspace(0.2, 0.9, 30)
    negatives = np.concatenate([np.linspace(-0.5, 0.5, 995), np.ones(5)])
    scores = np.concatenate([positives, negatives])
    same = np.arange(len(scores)) < len(positives)
    exact = scores_from_labels(scores, same)
    counts = np.bincount(
        PairScores(np.sort(positives), negatives=np.sort(negatives))._bins(negatives), minlength=2**21 + 1
    )
    binned = PairScores(np.sort(positives), counts=counts)
    for stats in (exact, binned):
        point = stats.at_fpr(1e-3)
        assert point.threshold == math.inf and point.tpr == 0 and point.false_accepts == 0
    point = binned.at_fpr(0.005)  # the five at 1 allowed: counted exactly, above 0.5
    assert point.false_accepts == 5 and point.fpr_bound == 0 and 0.5 < point.threshold < 0.5 + 2**-19


def test_exact_features_equal_sklearn_on_their_pairs() -> None:
    """Features whose cosines are exact in floating point (four ones of sixteen: 0, .25, ..., 1) make
    heavy ties; the metrics of the pairs equal scikit-learn's on the dense matrix's pairs."""
    rng = np.random.default_rng(3)
    feats = np.zeros((400, 16), np.float32)
    for row in feats:
        row[rng.choice(16, 4, replace=False)] = 1.0
    pids = rng.integers(0, 30, 400)
    cams = rng.integers(0, 3, 400)
    qf, qp, qc, gf, gp, gc = feats[:80], pids[:80], cams[:80], feats[80:], pids[80:], cams[80:]
    stats = pair_scores(qf, gf, qp, gp, qc, gc)
    scores, same = dense_pairs(qf, gf, qp, gp, qc, gc)
    assert len(np.unique(scores)) == 5  # every pair ties with many others
    check_against_sklearn(same, scores, stats)


def test_a_trained_models_scores_equal_sklearn(trained_eval_features) -> None:
    """Real features of a trained tiny model (its test set): the metrics equal scikit-learn's."""
    feats, pids, cams, q_rows, g_rows = trained_eval_features
    qf, gf = feats[q_rows], feats[g_rows]
    stats = pair_scores(qf, gf, pids[q_rows], pids[g_rows], cams[q_rows], cams[g_rows])
    scores, same = dense_pairs(qf, gf, pids[q_rows], pids[g_rows], cams[q_rows], cams[g_rows])
    # The GEMMs of the two sides may round differently: compare on the scores this module computed,
    # after checking that they are the dense ones.
    np.testing.assert_allclose(np.sort(scores[same]), stats.positives, atol=1e-6)
    flags = np.concatenate([np.ones(stats.num_positive, bool), np.zeros(stats.num_negative, bool)])
    check_against_sklearn(flags, np.concatenate([stats.positives, stats.negatives]), stats)


def test_binned_path_is_within_its_bounds_of_the_exact_one() -> None:
    rng = np.random.default_rng(4)
    qf, qp, qc = clustered_features(rng, 700, 150, 24)
    gf, gp, gc = clustered_features(rng, 3000, 150, 24)
    exact = pair_scores(qf, gf, qp, gp, qc, gc)
    binned = pair_scores(qf, gf, qp, gp, qc, gc, exact_bytes=0)
    assert exact.exact and not binned.exact
    assert (binned.num_positive, binned.num_negative) == (exact.num_positive, exact.num_negative)
    np.testing.assert_array_equal(binned.positives, exact.positives)
    auc, auc_bound = binned.auc()
    assert abs(auc - exact.auc()[0]) <= auc_bound < 1e-5
    eer, _, eer_bound = binned.eer()
    assert abs(eer - exact.eer()[0]) <= eer_bound < 1e-3
    for fpr in FPR_TARGETS:
        b, e = binned.at_fpr(fpr), exact.at_fpr(fpr)
        # The binned point is achieved exactly at its threshold: the exact path agrees there.
        at = exact.at_threshold(b.threshold)
        assert (at.true_accepts, at.false_accepts) == (b.true_accepts, b.false_accepts)
        assert b.fpr <= fpr
        assert 0 <= e.tpr - b.tpr <= b.tpr_bound < 2e-3
        # Within one bin above the exact threshold (lower is possible where no score lies between).
        assert b.threshold < e.threshold + 2**-20


def test_result_serialises_to_json_and_names_the_targets() -> None:
    rng = np.random.default_rng(5)
    qf, qp, qc = clustered_features(rng, 50, 10, 8)
    gf, gp, gc = clustered_features(rng, 200, 10, 8)
    result = verify(qf, gf, qp, gp, qc, gc)
    data = json.loads(json.dumps(result.to_dict(curves=True)))
    assert set(data["tpr_at_fpr"]) == {"1e-4", "1e-3", "1e-2", "1e-1"}
    n = result.num_negative
    assert n < 10_000  # FPR 1e-4 needs 10,000 negatives: not resolvable here
    assert data["tpr_at_fpr"]["1e-4"] is None and not result.point(1e-4).resolvable
    assert data["tpr_at_fpr"]["1e-1"] == result.point(1e-1).tpr
    assert sum(data["histogram"]["same_identity"]) == result.num_positive
    assert sum(data["histogram"]["different_identity"]) == n
    assert data["curve"]["fpr"][0] == 0.0 and data["curve"]["tpr"][-1] == 1.0
    assert np.all(np.diff(data["curve"]["fpr"]) >= 0) and np.all(np.diff(data["curve"]["tpr"]) >= 0)


def test_bad_inputs() -> None:
    stats = scores_from_labels(np.array([0.9, 0.1, 0.2]), np.array([True, False, False]))
    for fpr in (0.0, 1.0, -0.1, 2.0):
        with pytest.raises(ValueError, match=r"must be in \(0, 1\)"):
            stats.at_fpr(fpr)
    with pytest.raises(ValueError, match="pairs of both kinds"):
        scores_from_labels(np.array([0.9, 0.8]), np.array([True, True])).auc()
    with pytest.raises(ValueError, match="NaN"):
        scores_from_labels(np.array([0.9, math.nan]), np.array([True, False]))
    assert stats.smallest_fpr() == 0.5


def test_validation_records_and_tensorboard_carry_the_metrics(verification_run) -> None:
    """Each validation of a run logs AUC, EER and the resolvable TPRs to metrics.jsonl and TensorBoard."""
    import struct

    from tensorboardX.proto import event_pb2

    run_dir = verification_run.run_dir
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    validations = [r for r in records if r["stage"] == "validation"]
    assert validations and all({"AUC", "EER", "TPR_at_FPR_1e-1"} <= set(r) for r in validations)
    assert all(0 <= r["AUC"] <= 1 and 0 <= r["EER"] <= 1 for r in validations)
    tags = set()
    for path in (run_dir / "tensorboard").glob("events*"):
        data, i = path.read_bytes(), 0
        while i < len(data):  # TFRecord framing: length, its CRC, the event, its CRC
            (length,) = struct.unpack("Q", data[i : i + 8])
            event = event_pb2.Event()
            event.ParseFromString(data[i + 12 : i + 12 + length])
            tags |= {value.tag for value in event.summary.value}
            i += 16 + length
    assert {"validation/AUC", "validation/EER", "validation/TPR_at_FPR_1e-1"} <= tags
