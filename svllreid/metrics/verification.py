"""Verification metrics: how well one similarity threshold tells same-identity pairs from
different-identity ones ("is this the same person?").

Pairs and scores
    The pairs are the query–gallery pairs the ranking protocol keeps (:mod:`svllreid.metrics.ranking`):
    with cameras, pairs of one identity seen by one camera are left out; a gallery image with the
    query's key (the query's own image) always is. A kept pair of one identity is a *positive*, any
    other kept pair a *negative*. Queries without a true match, which the ranking skips, still give
    their negatives. Where query and gallery share images (image keys on both sides, as a validation
    split that queries every image against the others), a pair of two such images appears in both
    directions with one score: it is counted once (as the query of the smaller key). A pair's score is
    the cosine similarity of its two features (what ``svllreid search`` shows), and a pair is declared
    "same identity" when ``score >= threshold``.

The curve
    Every distinct score is a threshold, as in ``sklearn.metrics.roc_curve(drop_intermediate=False)``:
    ``TPR(t) = #positives >= t / P`` and ``FPR(t) = #negatives >= t / N``.

    - AUC: the probability that a positive scores above a negative, ties counted half (equal to the
      trapezoidal area under that curve, ``roc_auc_score``).
    - TPR at FPR ``x``: at the lowest threshold whose FPR is at most ``x`` (the curve's last point with
      ``fpr <= x``). An ``x`` below ``1 / N`` is not resolvable: no false accept could be counted.
    - EER: at the threshold where ``|FNR - FPR|`` is smallest (the higher threshold on a tie),
      ``(FPR + FNR) / 2``.

Exact and binned negatives
    Positives are few (a query's matches) and always kept exactly. The negatives are nearly all pairs:

    - *exact*: every negative score is kept and sorted, when they fit ``exact_bytes`` (default 512 MiB:
      134 M float32 scores; Market-1501's 53 M pairs are exact). Results equal scikit-learn's.
    - *binned*: beyond that (MSMT17: 958 M pairs), negatives are counted on ``2**21`` bins of width
      ``2**-20`` over ``[-1, 1]`` (16 MiB). A bin's edges are exact thresholds (``floor(score * 2**20)``
      is exact in floating point; a last bin holds the scores of 1 and above), so every reported
      operating point is achieved exactly at its threshold; what is approximate is *which* threshold:
      the exact optimum lies within one bin of it. Each metric carries a bound computed from the bins
      it could move within
      (:attr:`OperatingPoint.tpr_bound`, :attr:`OperatingPoint.fpr_bound`,
      :attr:`VerificationResult.auc_bound`, :attr:`VerificationResult.eer_bound`); they are 0 on the
      exact path.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from svllreid.metrics.inputs import ArrayLike, as_feature_pair, pair_labels
from svllreid.metrics.ranking_plan import candidates, plan_queries

__all__ = [
    "FPR_TARGETS",
    "OperatingPoint",
    "PairScores",
    "VerificationResult",
    "fpr_label",
    "pair_scores",
    "scores_from_labels",
    "verify",
]

#: The false positive rates the metrics report a TPR and a threshold at.
FPR_TARGETS = (1e-4, 1e-3, 1e-2, 1e-1)
#: Negatives kept exactly up to this many bytes of scores; beyond, they are binned.
EXACT_BYTES = 512 * 2**20
#: Working memory of one chunk of query rows (scores and their bin numbers).
CHUNK_BYTES = 256 * 2**20
#: Bins of the binned path: ``2**21`` of width ``2**-20`` over [-1, 1) (the first also holding scores below
#: -1) and one for scores of 1 and above (rounding can give a cosine a little over 1): ``2**21 + 1``.
BIN_SCALE = 2**20
NUM_BINS = 2 * BIN_SCALE + 1
#: About how many bins the score histograms drawn in reports have over the scores' range.
HISTOGRAM_BINS = 80


def fpr_label(fpr: float) -> str:
    """``1e-3`` for 0.001: the key of a target FPR in JSON and tables."""
    mantissa, exponent = f"{fpr:.0e}".split("e")
    return f"{mantissa}e{int(exponent)}"


@dataclass(frozen=True)
class OperatingPoint:
    """One threshold and what it gives: declare "same identity" when ``score >= threshold``.

    Attributes:
        target: what chose it: ``"fpr"``, ``"tpr"`` or ``"threshold"``, and ``target_value``.
        threshold: the cosine similarity; ``inf`` when no threshold meets the target but rejecting all.
        tpr, fpr: the rates at it; ``true_accepts`` / ``false_accepts`` the pairs behind them.
        num_positive, num_negative: the pairs.
        resolvable: False for an FPR target below ``1 / num_negative`` (no false accept is countable).
        tpr_bound, fpr_bound: binned path only: how far the exact curve's answer can be (0 when exact).
    """

    target: str
    target_value: float
    threshold: float
    tpr: float
    fpr: float
    true_accepts: int
    false_accepts: int
    num_positive: int
    num_negative: int
    resolvable: bool = True
    tpr_bound: float = 0.0
    fpr_bound: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "target": self.target,
            "target_value": self.target_value,
            "threshold": self.threshold if math.isfinite(self.threshold) else None,
            "tpr": self.tpr,
            "fpr": self.fpr,
            "true_accepts": self.true_accepts,
            "false_accepts": self.false_accepts,
            "positive_pairs": self.num_positive,
            "negative_pairs": self.num_negative,
            "resolvable": self.resolvable,
            "tpr_bound": self.tpr_bound,
            "fpr_bound": self.fpr_bound,
        }


@dataclass(frozen=True, eq=False)
class VerificationResult:
    """Verification metrics of one set of pairs (see the module docstring for the definitions).

    Attributes:
        auc, eer, eer_threshold: the area under the ROC curve, the equal error rate and its threshold.
        points: TPR and threshold at each of :data:`FPR_TARGETS` (or the targets asked for).
        num_positive, num_negative: same- and different-identity pairs.
        exact: whether every negative score was kept (else binned; the bounds say by how much the
            exact values can differ).
        auc_bound, eer_bound: 0 when exact.
        curve_fpr, curve_tpr: points of the ROC curve for drawing (FPRs spaced evenly on a log scale).
        histogram_edges, positive_histogram, negative_histogram: the scores' histograms (counts).
    """

    auc: float
    eer: float
    eer_threshold: float
    points: tuple[OperatingPoint, ...]
    num_positive: int
    num_negative: int
    exact: bool
    auc_bound: float = 0.0
    eer_bound: float = 0.0
    curve_fpr: np.ndarray = field(default_factory=lambda: np.zeros(0), repr=False)
    curve_tpr: np.ndarray = field(default_factory=lambda: np.zeros(0), repr=False)
    histogram_edges: np.ndarray = field(default_factory=lambda: np.zeros(0), repr=False)
    positive_histogram: np.ndarray = field(default_factory=lambda: np.zeros(0), repr=False)
    negative_histogram: np.ndarray = field(default_factory=lambda: np.zeros(0), repr=False)

    def point(self, fpr: float) -> OperatingPoint:
        """The operating point of target FPR ``fpr``."""
        for p in self.points:
            if p.target == "fpr" and p.target_value == fpr:
                return p
        raise KeyError(f"no operating point at FPR {fpr}; have {[p.target_value for p in self.points]}")

    def to_dict(self, curves: bool = False) -> dict[str, Any]:
        """JSON-friendly: the metrics, one entry per target FPR (``tpr_at_fpr`` and ``threshold_at_fpr``
        keyed ``"1e-3"``; None where not resolvable), and with ``curves`` the ROC points and histograms."""
        out: dict[str, Any] = {
            "auc": self.auc,
            "eer": self.eer,
            "eer_threshold": self.eer_threshold if math.isfinite(self.eer_threshold) else None,
            "tpr_at_fpr": {fpr_label(p.target_value): p.tpr if p.resolvable else None for p in self.points},
            "threshold_at_fpr": {
                fpr_label(p.target_value): p.threshold if p.resolvable and math.isfinite(p.threshold) else None
                for p in self.points
            },
            "positive_pairs": self.num_positive,
            "negative_pairs": self.num_negative,
            "exact": self.exact,
            "auc_bound": self.auc_bound,
            "eer_bound": self.eer_bound,
            "tpr_bound": {fpr_label(p.target_value): p.tpr_bound for p in self.points},
            "score": "cosine similarity; same identity when score >= threshold",
        }
        if curves:
            out["curve"] = {"fpr": self.curve_fpr.tolist(), "tpr": self.curve_tpr.tolist()}
            out["histogram"] = {
                "edges": self.histogram_edges.tolist(),
                "same_identity": self.positive_histogram.tolist(),
                "different_identity": self.negative_histogram.tolist(),
            }
        return out


def _float_ceil(value: float, dtype: np.dtype) -> Any:
    """The smallest value of ``dtype`` not below ``value`` (so ``x >= value`` iff ``x >= result``)."""
    if not math.isfinite(value):
        return dtype.type(value)
    cast = dtype.type(value)
    if float(cast) < value:
        cast = np.nextafter(cast, dtype.type(np.inf))
    return cast


class PairScores:
    """The scores of positive and negative pairs, exact or binned, and the curve's quantities.

    Build it with :func:`pair_scores` (features and labels) or :func:`scores_from_labels` (scores and
    same/different flags). ``positives`` are sorted ascending; ``negatives`` are either sorted scores
    (exact) or ``counts`` per bin (binned).
    """

    def __init__(self, positives: np.ndarray, negatives: np.ndarray | None = None, counts: np.ndarray | None = None):
        if (negatives is None) == (counts is None):
            raise ValueError("give either the negatives' scores or their bin counts")
        self.positives = positives
        self.negatives = negatives
        self.counts = counts
        self.dtype = positives.dtype
        self.num_positive = len(positives)
        self.num_negative = len(negatives) if negatives is not None else int(counts.sum())  # type: ignore[union-attr]
        if counts is not None:
            # suffix[b] = negatives in bins >= b = negatives >= edge(b); suffix[NUM_BINS] = 0.
            self.suffix = np.concatenate([np.cumsum(counts[::-1])[::-1], [0]])

    @property
    def exact(self) -> bool:
        return self.negatives is not None

    # --- counting -------------------------------------------------------------------------------------
    def _positives_at_least(self, t: float) -> int:
        return self.num_positive - int(np.searchsorted(self.positives, _float_ceil(t, self.dtype), "left"))

    def _negatives_at_least(self, t: float) -> tuple[int, int]:
        """Negatives scoring ``>= t``: an upper count and how many of them may be below ``t`` (binned)."""
        if self.negatives is not None:
            return self.num_negative - int(np.searchsorted(self.negatives, _float_ceil(t, self.dtype), "left")), 0
        if t == -math.inf:
            return self.num_negative, 0
        if t == math.inf:
            return 0, 0
        b = min(max(math.floor(t * BIN_SCALE) + BIN_SCALE, 0), NUM_BINS - 1)
        if b > 0 and t == (b - BIN_SCALE) / BIN_SCALE:  # on an edge (bin 0 also holds scores below -1)
            return int(self.suffix[b]), 0
        return int(self.suffix[b]), int(self.counts[b])  # type: ignore[index]

    def _lowest_score(self) -> float:
        low = self.positives[0] if self.num_positive else np.inf
        if self.negatives is not None and self.num_negative:
            low = min(low, self.negatives[0])
        return float(low)

    def _check(self) -> None:
        if not self.num_positive or not self.num_negative:
            raise ValueError(
                f"verification needs pairs of both kinds; got {self.num_positive} same-identity and "
                f"{self.num_negative} different-identity pairs"
            )

    def smallest_fpr(self) -> float:
        """The smallest FPR the negatives resolve: one false accept, ``1 / num_negative``."""
        return 1.0 / self.num_negative if self.num_negative else math.inf

    # --- operating points -------------------------------------------------------------------------
    def at_threshold(self, threshold: float) -> OperatingPoint:
        """The rates when "same identity" is ``score >= threshold``."""
        self._check()
        tp = self._positives_at_least(threshold)
        fp, slack = self._negatives_at_least(threshold)
        return OperatingPoint(
            "threshold",
            float(threshold),
            float(threshold),
            tp / self.num_positive,
            fp / self.num_negative,
            tp,
            fp,
            self.num_positive,
            self.num_negative,
            fpr_bound=slack / self.num_negative,
        )

    def at_fpr(self, fpr: float) -> OperatingPoint:
        """The lowest threshold whose FPR is at most ``fpr``, and its TPR (the most accepted at that FPR)."""
        self._check()
        if not 0.0 < fpr < 1.0:
            raise ValueError(f"a false positive rate must be in (0, 1), got {fpr}")
        n = self.num_negative
        allowed = math.floor(fpr * n)  # the most false accepts with allowed / n <= fpr, as floats compare
        while (allowed + 1) / n <= fpr:
            allowed += 1
        while allowed > 0 and allowed / n > fpr:
            allowed -= 1
        resolvable = allowed >= 1
        tpr_bound = 0.0  # fpr < 1, so allowed < n: some negative must be rejected
        if self.negatives is not None:
            above = self.negatives[n - 1 - allowed]  # the (allowed + 1)-th highest negative: must be rejected
            after = [(a, int(np.searchsorted(a, above, "right"))) for a in (self.negatives, self.positives)]
            following = [a[i] for a, i in after if i < len(a)]
            threshold = float(min(following)) if following else math.inf
        else:
            # The lowest edge with few enough negatives above (b >= 1: all n are in bins >= 0; b = NUM_BINS:
            # even the top bin holds too many, and no edge but rejecting all will do). The exact threshold
            # lies in bin b-1 or at this edge: that bin's positives bound the TPR it could add.
            b = int(np.argmax(self.suffix <= allowed))
            threshold = (b - BIN_SCALE) / BIN_SCALE if b < NUM_BINS else math.inf
            low = (b - 1 - BIN_SCALE) / BIN_SCALE if b > 1 else -math.inf
            tpr_bound = (self._positives_at_least(low) - self._positives_at_least(threshold)) / self.num_positive
        point = self.at_threshold(threshold)
        return OperatingPoint(
            "fpr",
            fpr,
            point.threshold,
            point.tpr,
            point.fpr,
            point.true_accepts,
            point.false_accepts,
            self.num_positive,
            n,
            resolvable=resolvable,
            tpr_bound=tpr_bound,
            fpr_bound=point.fpr_bound,
        )

    def at_tpr(self, tpr: float) -> OperatingPoint:
        """The highest threshold whose TPR is at least ``tpr``, and its FPR."""
        self._check()
        if not 0.0 < tpr <= 1.0:
            raise ValueError(f"a true positive rate must be in (0, 1], got {tpr}")
        p = self.num_positive
        needed = math.ceil(tpr * p)
        while needed > 1 and (needed - 1) / p >= tpr:
            needed -= 1
        while needed / p < tpr:
            needed += 1
        point = self.at_threshold(float(self.positives[p - needed]))
        return OperatingPoint(
            "tpr",
            tpr,
            point.threshold,
            point.tpr,
            point.fpr,
            point.true_accepts,
            point.false_accepts,
            p,
            self.num_negative,
            fpr_bound=point.fpr_bound,
        )

    # --- summary metrics --------------------------------------------------------------------------
    def auc(self) -> tuple[float, float]:
        """The area under the ROC curve and its bound (0 when exact)."""
        self._check()
        p, n = self.num_positive, self.num_negative
        if self.negatives is not None:
            below = np.searchsorted(self.negatives, self.positives, "left").astype(np.int64)
            not_above = np.searchsorted(self.negatives, self.positives, "right").astype(np.int64)
            twice = int((below + not_above).sum())  # 2 * (#neg < pos) + #neg == pos
            return twice / (2 * p * n), 0.0
        assert self.counts is not None
        prefix = np.concatenate([[0], np.cumsum(self.counts)])  # negatives in bins < b
        bins = self._bins(self.positives)
        in_bin = self.counts[bins].astype(np.float64)
        return float((prefix[bins] + in_bin / 2).sum() / (p * n)), float(in_bin.sum() / 2 / (p * n))

    def eer(self) -> tuple[float, float, float]:
        """The equal error rate, its threshold, and its bound (0 when exact).

        FNR - FPR increases with the threshold over the distinct scores, so the answer is next to its
        sign change: found by a search over the positives' scores and one over the negatives' (or the
        bins' edges), never by walking the whole curve.
        """
        self._check()
        p, n = self.num_positive, self.num_negative
        found: list[float] = [math.inf, -math.inf]
        if self.negatives is not None:
            found += self._around_sign_change(np.unique(self.positives))
            found += self._around_sign_change(self.negatives)
            eer, threshold = self._best_balance(found)
            return eer, threshold, 0.0
        edges = (np.arange(1, NUM_BINS) - BIN_SCALE) / BIN_SCALE
        found += self._around_sign_change(edges)
        eer, threshold = self._best_balance(found)
        # The exact answer lies within one bin of this edge: the pairs in those bins bound the change.
        b = int(self._bins(np.array([threshold]))[0]) if math.isfinite(threshold) else NUM_BINS - 1
        around = [i for i in (b - 1, b) if 0 <= i < NUM_BINS]
        assert self.counts is not None
        neg_share = float(self.counts[around].sum()) / n
        low = (around[0] - BIN_SCALE) / BIN_SCALE if around[0] > 0 else -math.inf
        high = (around[-1] + 1 - BIN_SCALE) / BIN_SCALE
        pos_share = (self._positives_at_least(low) - self._positives_at_least(high)) / p
        return eer, threshold, (neg_share + pos_share) / 2

    def _around_sign_change(self, values: np.ndarray) -> list[float]:
        """Of ascending thresholds ``values``, the last with FNR <= FPR and the first after it (bisection)."""
        lo, hi = 0, len(values)
        while lo < hi:
            mid = (lo + hi) // 2
            point = self.at_threshold(float(values[mid]))
            if 1.0 - point.tpr <= point.fpr:
                lo = mid + 1
            else:
                hi = mid
        return [float(values[i]) for i in (lo - 1, lo) if 0 <= i < len(values)]

    def _best_balance(self, thresholds: Sequence[float]) -> tuple[float, float]:
        """Of candidate thresholds, the one with the smallest ``|FNR - FPR|`` (the higher on a tie)."""
        best: tuple[float, float, float] | None = None  # (|gap|, -threshold, eer)
        for t in sorted(set(thresholds), reverse=True):
            point = self.at_threshold(t)
            fnr = 1.0 - point.tpr
            key = (abs(fnr - point.fpr), -t, (fnr + point.fpr) / 2)
            if best is None or key[0] < best[0]:
                best = key
        assert best is not None
        return best[2], -best[1]

    def _bins(self, values: np.ndarray) -> np.ndarray:
        scaled = np.floor(np.asarray(values, np.float64) * BIN_SCALE) + BIN_SCALE
        return np.clip(scaled, 0, NUM_BINS - 1).astype(np.int64)

    # --- pictures ----------------------------------------------------------------------------------
    def curve(self, points: int = 121) -> tuple[np.ndarray, np.ndarray]:
        """ROC points at FPRs spaced evenly on a log scale from the smallest resolvable one to 1."""
        self._check()
        low = max(self.smallest_fpr(), 1e-7)
        fprs, tprs = [0.0], [0.0]
        for target in np.geomspace(low, 1.0, points)[:-1]:
            point = self.at_fpr(float(min(target, np.nextafter(1.0, 0.0))))
            fprs.append(point.fpr)
            tprs.append(point.tpr)
        fprs.append(1.0)
        tprs.append(1.0)
        return np.array(fprs), np.array(tprs)

    def _negative_quantile(self, share: float) -> float:
        """The score below which ``share`` of the negatives lie (binned: the left edge of its bin)."""
        k = min(int(share * self.num_negative), self.num_negative - 1)
        if self.negatives is not None:
            return float(self.negatives[k])
        assert self.counts is not None
        b = int(np.searchsorted(np.cumsum(self.counts), k + 1))
        return (b - BIN_SCALE) / BIN_SCALE

    def histograms(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Edges and the positive and negative counts of the scores, for drawing.

        The bins are a power-of-two width (one or more of the binned path's bins) giving about
        :data:`HISTOGRAM_BINS` bins between the lowest 0.1 % of either kind of score and the highest
        score: scores that cluster near 1 still get a readable histogram. The lowest 0.1 % are counted
        in the first bin.
        """
        low = min(self._negative_quantile(0.001), float(self.positives[int(0.001 * self.num_positive)]))
        high = max(float(self.positives[-1]), self._negative_quantile(1.0))
        shift = int(np.clip(math.floor(math.log2(max(high - low, 2**-20) / HISTOGRAM_BINS * BIN_SCALE)), 0, 15))
        width = 2**shift / BIN_SCALE
        first, last = math.floor(low / width), math.floor(high / width)
        edges = np.arange(first, last + 2) * width
        n = last - first + 1
        pos_idx = np.clip(np.floor(self.positives.astype(np.float64) / width).astype(np.int64) - first, 0, n - 1)
        positive = np.bincount(pos_idx, minlength=n)
        if self.counts is not None:
            fine = (np.arange(NUM_BINS, dtype=np.int64) - BIN_SCALE) >> shift  # floor(edge / width)
            negative = np.bincount(np.clip(fine - first, 0, n - 1), weights=self.counts, minlength=n).astype(np.int64)
        else:
            assert self.negatives is not None
            at = np.searchsorted(self.negatives, edges[1:-1].astype(self.dtype), "left")
            negative = np.diff(np.concatenate([[0], at, [self.num_negative]]))
        return edges, positive, negative

    def result(self, fpr_targets: Sequence[float] = FPR_TARGETS, *, curves: bool = True) -> VerificationResult:
        """The summary metrics (and, with ``curves``, the points to draw)."""
        auc, auc_bound = self.auc()
        eer, eer_threshold, eer_bound = self.eer()
        points = tuple(self.at_fpr(x) for x in fpr_targets)
        extra: dict[str, Any] = {}
        if curves:
            fpr, tpr = self.curve()
            edges, positive, negative = self.histograms()
            extra = {
                "curve_fpr": fpr,
                "curve_tpr": tpr,
                "histogram_edges": edges,
                "positive_histogram": positive,
                "negative_histogram": negative,
            }
        return VerificationResult(
            auc,
            eer,
            eer_threshold,
            points,
            self.num_positive,
            self.num_negative,
            self.exact,
            auc_bound=auc_bound,
            eer_bound=eer_bound,
            **extra,
        )


def scores_from_labels(scores: ArrayLike, same: ArrayLike) -> PairScores:
    """Exact :class:`PairScores` of given scores and same-identity flags (True: a positive pair)."""
    s = np.asarray(scores)
    flags = np.asarray(same).astype(bool)
    if s.ndim != 1 or s.shape != flags.shape:
        raise ValueError(f"scores and same must be 1-D of one length, got {s.shape} and {flags.shape}")
    if not np.issubdtype(s.dtype, np.floating):
        s = s.astype(np.float64)
    if not np.isfinite(s).all():
        raise ValueError("scores contain NaN or infinite values")
    return PairScores(np.sort(s[flags]), negatives=np.sort(s[~flags]))


def pair_scores(
    query_feats: ArrayLike,
    gallery_feats: ArrayLike,
    query_pids: ArrayLike,
    gallery_pids: ArrayLike,
    query_camids: ArrayLike | None = None,
    gallery_camids: ArrayLike | None = None,
    *,
    query_keys: ArrayLike | None = None,
    gallery_keys: ArrayLike | None = None,
    exact_bytes: int = EXACT_BYTES,
) -> PairScores:
    """The cosine similarities of the protocol's query–gallery pairs, positives and negatives.

    Runs on the CPU in the features' precision (float64 if either is float64, else float32), one chunk
    of queries at a time: memory is the features, :data:`CHUNK_BYTES` of working space, the positives,
    and the negatives (at most ``exact_bytes``, else 16 MiB of bin counts).

    Args:
        query_feats, gallery_feats: ``[Q, D]`` and ``[G, D]`` features (normalised here).
        query_pids, gallery_pids, query_camids, gallery_camids, query_keys, gallery_keys: as for
            :func:`svllreid.metrics.ranking.evaluate`.
        exact_bytes: keep every negative score while they fit in this many bytes; else bin them.
    """
    qf_t, gf_t = as_feature_pair(query_feats, gallery_feats)
    qf, gf = qf_t.cpu().numpy(), gf_t.cpu().numpy()
    nq, ng = len(qf), len(gf)
    qp, gp, qc, gc, qk, gk = pair_labels(
        query_pids=query_pids,
        gallery_pids=gallery_pids,
        query_camids=query_camids,
        gallery_camids=gallery_camids,
        query_keys=query_keys,
        gallery_keys=gallery_keys,
        num_query=nq,
        num_gallery=ng,
    )

    tiny = np.finfo(qf.dtype).tiny
    qn = qf / np.maximum(np.linalg.norm(qf, axis=1, keepdims=True), tiny)
    gn = gf / np.maximum(np.linalg.norm(gf, axis=1, keepdims=True), tiny)
    del qf, gf, qf_t, gf_t  # the normalised copies are all that is read from here
    gn_t = gn.T  # a transposed view: BLAS reads it as it is (no copy of the gallery)
    # Images on both sides: a pair of two of them comes twice (each as the query), counted once.
    shared = None
    if qk is not None and gk is not None:
        query_shared, gallery_shared = np.isin(qk, gk), np.isin(gk, qk)
        if query_shared.any():
            shared = (query_shared, gallery_shared)

    plan = plan_queries(qp, gp, qc, gc, qk=qk, gk=gk)
    # Upper counts (before pairs counted twice are dropped); the arrays are cut to what was filled.
    num_positive = int(plan.num_matches.sum())
    removed = int((plan.pid_count - plan.num_matches + plan.extra_count).sum())
    num_negative = nq * ng - num_positive - removed
    itemsize = qn.dtype.itemsize
    exact = num_negative * itemsize <= exact_bytes
    negatives = np.empty(num_negative, qn.dtype) if exact else None
    counts = None if exact else np.zeros(NUM_BINS + 1, np.int64)  # the last: pairs not counted
    positives = np.empty(num_positive, qn.dtype)
    rows_per_chunk = min(max(1, CHUNK_BYTES // (ng * (itemsize + 8))), nq)
    # Buffers reused by every chunk: allocating them anew costs as much as the arithmetic (page faults).
    score_buf = np.empty((rows_per_chunk, ng), qn.dtype)
    bin_buf = None if exact else np.empty((rows_per_chunk, ng), np.int64)
    filled_pos = filled_neg = 0
    for lo in range(0, nq, rows_per_chunk):
        rows = np.arange(lo, min(lo + rows_per_chunk, nq))
        scores = np.matmul(qn[rows[0] : rows[-1] + 1], gn_t, out=score_buf[: len(rows)])
        index, kind = candidates(plan, rows, qc, gc, qk=qk, gk=gk)
        owner = np.broadcast_to(np.arange(len(rows))[:, None], index.shape)
        twice = None  # [c, G]: pairs whose other direction is the one counted
        if shared is not None:
            assert qk is not None and gk is not None
            twice = shared[0][rows][:, None] & shared[1][None, :] & (qk[rows][:, None] > gk[None, :])
        match = kind == 1
        if twice is not None:
            match &= ~twice[owner, index]
        pos = scores[owner[match], index[match]]
        positives[filled_pos : filled_pos + len(pos)] = pos
        filled_pos += len(pos)
        flat = (owner * ng + index)[kind > 0]
        if negatives is not None:
            keep = np.ones(scores.shape, bool) if twice is None else ~twice
            keep.reshape(-1)[flat] = False
            kept = scores[keep]
            negatives[filled_neg : filled_neg + len(kept)] = kept
            filled_neg += len(kept)
        else:
            assert counts is not None and bin_buf is not None
            np.multiply(scores, BIN_SCALE, out=scores)  # exact: a power of two
            np.floor(scores, out=scores)
            bins = bin_buf[: len(rows)]
            np.copyto(bins, scores, casting="unsafe")  # whole numbers already: exact
            flat_bins = bins.reshape(-1)
            flat_bins += BIN_SCALE
            np.clip(flat_bins, 0, NUM_BINS - 1, out=flat_bins)
            flat_bins[flat] = NUM_BINS
            if twice is not None:
                bins[twice] = NUM_BINS
            counts += np.bincount(flat_bins, minlength=NUM_BINS + 1)
    positives = positives[:filled_pos]
    positives.sort()
    if negatives is not None:
        negatives = negatives[:filled_neg]
        negatives.sort()
        return PairScores(positives, negatives=negatives)
    assert counts is not None
    return PairScores(positives, counts=counts[:NUM_BINS])


def verify(
    query_feats: ArrayLike,
    gallery_feats: ArrayLike,
    query_pids: ArrayLike,
    gallery_pids: ArrayLike,
    query_camids: ArrayLike | None = None,
    gallery_camids: ArrayLike | None = None,
    *,
    query_keys: ArrayLike | None = None,
    gallery_keys: ArrayLike | None = None,
    fpr_targets: Sequence[float] = FPR_TARGETS,
    exact_bytes: int = EXACT_BYTES,
    curves: bool = True,
) -> VerificationResult:
    """ROC AUC, EER and TPR (with its threshold) at each target FPR over the protocol's pairs.

    Example:
        Two queries of identities 1 and 2 against three gallery images of 1, 2, 2:

        >>> import numpy as np
        >>> from svllreid.metrics.verification import verify
        >>> q = np.array([[1.0, 0.0], [0.0, 1.0]])
        >>> g = np.array([[0.9, 0.1], [0.2, 0.9], [0.1, 1.0]])
        >>> result = verify(q, g, [1, 2], [1, 2, 2], curves=False, fpr_targets=[0.5])
        >>> result.auc, result.num_positive, result.num_negative
        (1.0, 3, 3)
    """
    scores = pair_scores(
        query_feats,
        gallery_feats,
        query_pids,
        gallery_pids,
        query_camids,
        gallery_camids,
        query_keys=query_keys,
        gallery_keys=gallery_keys,
        exact_bytes=exact_bytes,
    )
    return scores.result(fpr_targets, curves=curves)
