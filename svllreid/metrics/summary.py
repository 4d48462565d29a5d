"""Summaries of evaluations: the metrics' names, the mean over evaluation splits, one printed line."""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from typing import Any

from svllreid.metrics.ranking import RankingResult

__all__ = ["METRICS", "format_summary", "summarize"]

#: The summary metrics of an evaluation and their display names.
METRICS = {"mAP": "mAP", "mINP": "mINP", "rank1": "Rank-1", "rank5": "Rank-5", "rank10": "Rank-10"}


def summarize(dataset_name: str, splits: Sequence[tuple[str, RankingResult]]) -> dict[str, Any]:
    """Per-split metrics and, over splits, the mean (and the standard deviation where there are several:
    PKU's two directions, VehicleID's trials)."""
    results = [{"split": name, **result.to_dict()} for name, result in splits]
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
    return summary


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
