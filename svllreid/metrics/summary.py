"""Summaries of evaluations: the metrics' names, the mean over evaluation splits, one printed line."""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from typing import Any

from svllreid.metrics.ranking import RankingResult
from svllreid.metrics.verification import VerificationResult

__all__ = ["METRICS", "format_summary", "format_verification", "summarize", "verification_record"]

#: The summary metrics of an evaluation and their display names.
METRICS = {"mAP": "mAP", "mINP": "mINP", "rank1": "Rank-1", "rank5": "Rank-5", "rank10": "Rank-10"}


def summarize(
    dataset_name: str,
    splits: Sequence[tuple[str, RankingResult]],
    verification: Sequence[VerificationResult | None] = (),
) -> dict[str, Any]:
    """Per-split metrics and, over splits, the mean (and the standard deviation where there are several:
    PKU's two directions, VehicleID's trials). With ``verification`` (one per split), each split and the
    summary also hold the verification metrics under ``"verification"`` (the summary's: their mean)."""
    results = [{"split": name, **result.to_dict()} for name, result in splits]
    for row, checked in zip(results, verification, strict=False):
        if checked is not None:
            row["verification"] = checked.to_dict()
    summary: dict[str, Any] = {
        "dataset": dataset_name,
        "protocol": results[0]["protocol"],
        "protocol_rule": results[0]["protocol_rule"],
        "reranked": results[0]["reranked"],
        "splits": results,
    }
    for key in METRICS:
        values = [r[key] for r in results]
        if any(v is None for v in values):  # rank-k beyond max_rank
            summary[key] = None
            continue
        summary[key] = statistics.fmean(values)
        if len(values) > 1:
            summary[f"{key}_std"] = statistics.stdev(values)
    measured = [r["verification"] for r in results if "verification" in r]
    if measured and len(measured) == len(results):
        summary["verification"] = _mean_verification(measured)
    return summary


def _mean(values: Sequence[float | None]) -> float | None:
    return None if any(v is None for v in values) else statistics.fmean(v for v in values if v is not None)


def _mean_verification(splits: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The splits' verification metrics averaged (a threshold too: each split's is a cosine similarity);
    a rate not resolvable on some split is None."""
    first = splits[0]
    return {
        "auc": _mean([s["auc"] for s in splits]),
        "eer": _mean([s["eer"] for s in splits]),
        "eer_threshold": _mean([s["eer_threshold"] for s in splits]),
        "tpr_at_fpr": {k: _mean([s["tpr_at_fpr"][k] for s in splits]) for k in first["tpr_at_fpr"]},
        "threshold_at_fpr": {k: _mean([s["threshold_at_fpr"][k] for s in splits]) for k in first["threshold_at_fpr"]},
        "positive_pairs": sum(s["positive_pairs"] for s in splits),
        "negative_pairs": sum(s["negative_pairs"] for s in splits),
        "exact": all(s["exact"] for s in splits),
        "auc_bound": max(s["auc_bound"] for s in splits),
        "eer_bound": max(s["eer_bound"] for s in splits),
        "splits": len(splits),
        "score": first["score"],
    }


def verification_record(summary: dict[str, Any]) -> dict[str, float]:
    """The summary's verification metrics as flat numbers (for metrics.jsonl and TensorBoard, whose tags
    take letters, digits, "_", "-" and "." only: `TPR_at_FPR_1e-3`)."""
    checked = summary.get("verification")
    if not checked:
        return {}
    record = {"AUC": float(checked["auc"]), "EER": float(checked["eer"])}
    for key, value in checked["tpr_at_fpr"].items():
        if value is not None:
            record[f"TPR_at_FPR_{key}"] = float(value)
    return record


def format_verification(summary: dict[str, Any]) -> str | None:
    """One line: AUC, EER and each resolvable TPR at FPR, in percent (None without verification)."""
    checked = summary.get("verification")
    if not checked:
        return None
    parts = [f"AUC {100 * checked['auc']:.2f}", f"EER {100 * checked['eer']:.2f}"]
    parts += [f"TPR@FPR={k} {100 * v:.2f}" for k, v in checked["tpr_at_fpr"].items() if v is not None]
    pairs = f"{checked['positive_pairs']:,} same / {checked['negative_pairs']:,} different-identity pairs"
    return "verification (cosine similarity): " + ", ".join(parts) + f" over {pairs}"


def format_summary(summary: dict[str, Any]) -> str:
    """One line per metric: mean (± std over splits)."""
    parts = []
    for key in ("mAP", "rank1", "rank5", "rank10", "mINP"):
        if summary.get(key) is None:
            continue
        text = f"{METRICS[key]} {100 * summary[key]:.2f}"
        if f"{key}_std" in summary:
            text += f" ± {100 * summary[f'{key}_std']:.2f}"
        parts.append(text)
    splits = len(summary["splits"])
    where = f" (mean of {splits} splits)" if splits > 1 else ""
    rerank = ", re-ranked" if summary.get("reranked") else ""
    return f"{summary['dataset']} [{summary['protocol']} protocol{rerank}]{where}: " + ", ".join(parts)
