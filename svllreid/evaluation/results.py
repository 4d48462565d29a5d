"""The rows a training run reports, named the same in the command line, the demo and the report:
the random floor, the start, and the trained network (the best and the last epoch where a validation
split chose between them), each on the validation split and on the test set."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from svllreid.evaluation.selection import Selection
from svllreid.metrics.summary import METRICS

__all__ = ["RANDOM_ROW", "ResultRow", "format_results", "result_rows", "start_name"]

#: The columns of the test part of the table.
TABLE_METRICS = ("mAP", "rank1", "rank5", "rank10", "mINP")
#: The name of the network with random weights, the floor everything is measured against.
RANDOM_ROW = "untrained (random)"


@dataclass(frozen=True)
class ResultRow:
    """One network of a run: its name and its summaries on the test set and the validation split."""

    name: str
    test: Mapping[str, Any] | None
    validation: Mapping[str, Any] | None = None


def start_name(pretrained: bool) -> str:
    """What the start of a run is called: the loaded weights, or random ones."""
    return "pretrained only (start)" if pretrained else f"{RANDOM_ROW}, the start"


def result_rows(
    *,
    pretrained: bool,
    start: Mapping[str, Any] | None,
    trained: Mapping[str, Any] | None,
    last: Mapping[str, Any] | None = None,
    validation: Mapping[str, Mapping[str, Any]] | None = None,
    selection: Selection | None = None,
    random: Mapping[str, Any] | None = None,
) -> list[ResultRow]:
    """The rows of a run (see :class:`svllreid.training.run.RunResult` for each argument): the random floor
    (when measured apart, for a pretrained start), the start, then the best and the last epoch (with a
    validation split) or the trained network (without)."""
    rows = []
    if random is not None:
        rows.append(ResultRow(RANDOM_ROW, random))
    validation = validation or {}
    if start is not None or "start" in validation:
        rows.append(ResultRow(start_name(pretrained), start, validation.get("start")))
    if selection is None or selection.best_epoch is None or not validation:
        rows.append(ResultRow("trained", trained))
        return rows
    best = selection.best_epoch
    best_name = "best: the start" if best == 0 else f"best: stage-2 epoch {best}"
    rows.append(ResultRow(best_name, trained, validation["best"]))
    rows.append(ResultRow(f"last: stage-2 epoch {selection.last_epoch}", last, validation["last"]))
    return rows


def _cell(summary: Mapping[str, Any] | None, key: str) -> str:
    value = None if summary is None else summary.get(key)
    return f"{'–':>9}" if value is None else f"{100 * value:9.2f}"


def format_results(rows: Sequence[ResultRow]) -> str:
    """The rows as a table in %: validation mAP and Rank-1 (when any row has them), then the test metrics."""
    width = max(len(row.name) for row in rows) + 2
    with_validation = any(row.validation is not None for row in rows)
    head = f"{'':<{width}}"
    if with_validation:
        head += f"{'val mAP':>9}{'val R-1':>9}  |"
    head += "".join(f"{METRICS[k]:>9}" for k in TABLE_METRICS)
    lines = [head]
    for row in rows:
        line = f"{row.name:<{width}}"
        if with_validation:
            line += _cell(row.validation, "mAP") + _cell(row.validation, "rank1") + "  |"
        line += "".join(_cell(row.test, key) for key in TABLE_METRICS)
        lines.append(line)
    if with_validation:
        lines.append(f"{'':<{width}}{'(validation split)':>18}  | (test set)")
    return "\n".join(lines)
