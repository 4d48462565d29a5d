"""Report figures: training losses, CMC curves, a metrics table, verification and a 2-D feature embedding.

Every ``plot_*`` function draws one matplotlib figure (no pyplot state), writes it atomically as a PNG
at ``path`` (parent folders created) and returns the path.
"""

from __future__ import annotations

import json
import math
import textwrap
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import numpy as np
from matplotlib import colormaps
from matplotlib.font_manager import FontProperties
from matplotlib.lines import Line2D
from matplotlib.ticker import FixedLocator, MaxNLocator, PercentFormatter

from svllreid.report._io import new_figure, save_figure

if TYPE_CHECKING:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.colors import ListedColormap

__all__ = [
    "PROTOCOL_NOTES",
    "STAGE_TITLES",
    "plot_cmc",
    "plot_dynamics",
    "plot_embedding",
    "plot_losses",
    "plot_metrics_table",
    "plot_validation",
    "plot_verification",
    "read_metrics",
]

#: Panel titles of the known training stages; other stage names are shown as they are.
STAGE_TITLES = {"stage1": "stage 1: prompt learning", "stage2": "stage 2: image encoder"}

#: The sentence under a metrics table for each evaluation protocol; other protocol strings are shown as they are.
PROTOCOL_NOTES = {
    "camera": "protocol: camera — same-identity same-camera gallery images excluded",
    "no-camera": "protocol: no-camera — only the query image itself excluded",
}

#: Ranks marked on CMC curves and quoted in their legend.
_CMC_MARKED_RANKS = (1, 5, 10)

#: Metric columns of the table, in order, with their headers; other ``rankK`` keys found in the rows follow.
_TABLE_COLUMNS = {"mAP": "mAP", "mINP": "mINP", "rank1": "Rank-1", "rank5": "Rank-5", "rank10": "Rank-10"}

_MISSING = "–"

#: Metrics-table layout, in inches.
_ROW_H, _TITLE_H, _MARGIN, _NOTE_GAP, _NOTE_LINE_H = 0.3, 0.45, 0.15, 0.15, 0.2

#: Largest number of points embedded with exact t-SNE (quadratic cost); Barnes-Hut beyond.
_TSNE_EXACT_MAX = 200


# --- metrics.jsonl -------------------------------------------------------------------------------------


def read_metrics(path: str | Path) -> list[dict[str, Any]]:
    """Read a run's ``metrics.jsonl``.

    Blank lines are skipped. A resumed run appends records whose steps repeat earlier ones; the last
    record per ``(stage, step)`` wins.

    Args:
        path: the JSON-lines file, one object per line with at least ``stage`` and ``step``.

    Returns:
        The records, stages in order of first appearance, steps ascending within a stage.

    Raises:
        ValueError: a line is not JSON, not an object, or lacks ``stage``/``step`` (the message names
            the file and the 1-based line number).
    """
    path = Path(path)
    latest: dict[tuple[str, int], dict[str, Any]] = {}
    stage_order: dict[str, int] = {}
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ValueError(f"{path}, line {number}: not valid JSON ({exc.msg})") from exc
            if not isinstance(record, dict) or "stage" not in record or "step" not in record:
                raise ValueError(f"{path}, line {number}: expected a JSON object with 'stage' and 'step'")
            stage, step = str(record["stage"]), record["step"]
            if isinstance(step, bool) or not isinstance(step, int):
                raise ValueError(f"{path}, line {number}: 'step' must be an integer; got {step!r}")
            stage_order.setdefault(stage, len(stage_order))
            latest[(stage, step)] = record
    return [latest[key] for key in sorted(latest, key=lambda key: (stage_order[key[0]], key[1]))]


# --- losses --------------------------------------------------------------------------------------------


def _loss_value(record: Mapping[str, Any], key: str) -> float:
    value = record.get(key)
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else math.nan


def plot_losses(records: Sequence[Mapping[str, Any]], path: str | Path) -> Path:
    """Plot the training losses against the step, one panel per stage.

    Each panel draws every ``loss_*`` term and, thicker and black, the total ``loss``. A record without a
    term leaves a gap in that line.

    Args:
        records: metrics records (see :func:`read_metrics`), with ``stage``, ``step`` and loss keys.
        path: where to write the PNG.

    Returns:
        ``path`` as a :class:`~pathlib.Path`.

    Raises:
        ValueError: there are no records.
    """
    if not records:
        raise ValueError("plot_losses: no metrics records to plot")
    by_stage: dict[str, list[Mapping[str, Any]]] = {}
    for record in records:
        by_stage.setdefault(str(record.get("stage", "?")), []).append(record)

    figure = new_figure(5.0 * len(by_stage), 4.0)
    axes = figure.subplots(1, len(by_stage), squeeze=False)[0]
    for ax, (stage, stage_records) in zip(axes, by_stage.items(), strict=True):
        stage_records = sorted(stage_records, key=lambda r: r.get("step", 0))
        steps = [r.get("step", 0) for r in stage_records]
        terms = list(dict.fromkeys(k for r in stage_records for k in r if k.startswith("loss_")))
        # Markers only where lines are short: a single logged step would otherwise be invisible.
        marker = "o" if len(steps) < 20 else None
        for term in terms:
            ax.plot(
                steps,
                [_loss_value(r, term) for r in stage_records],
                lw=1.3,
                marker=marker,
                ms=3,
                label=term.removeprefix("loss_"),
            )
        if any("loss" in r for r in stage_records):
            ax.plot(
                steps,
                [_loss_value(r, "loss") for r in stage_records],
                color="black",
                lw=2.4,
                marker=marker,
                ms=4,
                label="total",
                zorder=3,
            )
        ax.set_title(STAGE_TITLES.get(stage, stage))
        ax.set_xlabel("step")
        ax.set_ylabel("loss")
        ax.grid(alpha=0.3)
        if ax.lines:
            ax.legend(fontsize="small", framealpha=0.85)
        else:
            ax.text(0.5, 0.5, "no loss values", ha="center", va="center", transform=ax.transAxes, color="grey")
    return save_figure(figure, path)


def plot_dynamics(records: Sequence[Mapping[str, Any]], path: str | Path) -> Path:
    """Stage 2's dynamics against the epoch (0 = the start): on the left, the cosine between the vision
    self-supervision's gradient on the image encoder and the main losses' gradient, and their norm ratio
    (right axis); on the right, f12's within- and between-identity spread on the probe set.

    Args:
        records: ``dynamics`` records of metrics.jsonl (``epoch`` and any of ``grad_cosine``,
            ``grad_norm_ratio``, ``spread_within``, ``spread_between``).

    Raises:
        ValueError: no record holds any of them.
    """
    keys = ("grad_cosine", "grad_norm_ratio", "spread_within", "spread_between")
    rows = sorted((r for r in records if any(k in r for k in keys)), key=lambda r: r.get("epoch", 0))
    if not rows:
        raise ValueError("plot_dynamics: no dynamics records to plot")
    has_grads = any("grad_cosine" in r for r in rows)
    figure = new_figure(10.0 if has_grads else 5.2, 3.6)
    axes = list(figure.subplots(1, 2 if has_grads else 1, squeeze=False)[0])

    def series(key: str) -> tuple[list[float], list[float]]:
        known = [(float(r["epoch"]), _loss_value(r, key)) for r in rows if key in r]
        return [e for e, _ in known], [v for _, v in known]

    if has_grads:
        ax = axes.pop(0)
        epochs, cosines = series("grad_cosine")
        ax.plot(epochs, cosines, marker="o", ms=4, lw=1.6, color="tab:blue", label="cos(∇ vision SSL, ∇ main)")
        ax.axhline(0.0, color="grey", lw=0.8)
        ax.set_ylim(-1.05, 1.05)
        ax.set_xlabel("stage-2 epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylabel("gradient cosine")
        twin = ax.twinx()
        ratio_epochs, ratios = series("grad_norm_ratio")
        twin.plot(ratio_epochs, ratios, marker=".", lw=1.2, ls="--", color="tab:orange", label="|∇ SSL| / |∇ main|")
        twin.set_ylabel("norm ratio")
        twin.set_ylim(bottom=0.0)
        handles = ax.get_legend_handles_labels()
        twins = twin.get_legend_handles_labels()
        ax.legend(handles[0] + twins[0], handles[1] + twins[1], fontsize="small", loc="lower left", framealpha=0.9)
        ax.set_title("Gradients on the image encoder (first batch)")
        ax.grid(alpha=0.3)
    ax = axes[0]
    for key, label, color in (
        ("spread_within", "within identity", "tab:green"),
        ("spread_between", "between identities", "tab:purple"),
    ):
        epochs, values = series(key)
        if epochs:
            ax.plot(epochs, values, marker="o", ms=4, lw=1.6, color=color, label=label)
    ax.set_xlabel("stage-2 epoch (0 = the start)")
    ax.set_ylabel("cosine distance")
    spreads = [v for line in ax.lines for v in cast(Sequence[float], line.get_ydata()) if math.isfinite(v)]
    if spreads and min(spreads) > 0:  # spreads shrink by orders of magnitude when features collapse
        ax.set_yscale("log")
    ax.grid(alpha=0.3)
    if ax.lines:
        ax.legend(fontsize="small", framealpha=0.9)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_title("f12 spread on the probe set")
    return save_figure(figure, path)


# --- CMC -----------------------------------------------------------------------------------------------


def _rank_ticks(num_ranks: int) -> list[int]:
    """Rank 1 plus round ranks, at most about 10 ticks."""
    if num_ranks <= 10:
        return list(range(1, num_ranks + 1))
    step = next((s for s in (5, 10, 20, 25, 50, 100, 200, 250, 500, 1000) if num_ranks / s <= 10), None)
    step = step or math.ceil(num_ranks / 10)
    return [1, *range(step, num_ranks + 1, step)]


def plot_cmc(
    curves: Mapping[str, Sequence[float]],
    path: str | Path,
    max_rank: int | None = None,
    title: str = "CMC",
) -> Path:
    """Plot cumulative match characteristic curves.

    Args:
        curves: label → CMC as fractions, ``curve[k - 1]`` = share of queries with a true match in the top k.
        path: where to write the PNG.
        max_rank: last rank drawn (default: the longest curve).
        title: figure title.

    Returns:
        ``path`` as a :class:`~pathlib.Path`.

    Raises:
        ValueError: no curves, an empty curve, a value outside [0, 1], or ``max_rank`` < 1.
    """
    if not curves:
        raise ValueError("plot_cmc: no curves to plot")
    if max_rank is not None and max_rank < 1:
        raise ValueError(f"plot_cmc: max_rank must be at least 1; got {max_rank}")
    arrays: dict[str, np.ndarray] = {}
    for label, curve in curves.items():
        values = np.asarray(curve, dtype=np.float64).reshape(-1)
        if values.size == 0:
            raise ValueError(f"plot_cmc: the curve {label!r} is empty")
        if not np.all(np.isfinite(values)) or values.min() < 0 or values.max() > 1:
            raise ValueError(f"plot_cmc: the curve {label!r} must hold fractions within [0, 1]")
        arrays[label] = values[:max_rank] if max_rank is not None else values
    num_ranks = max(len(values) for values in arrays.values())

    figure = new_figure(6.0, 4.0)
    ax = figure.subplots()
    for label, values in arrays.items():
        ranks = np.arange(1, len(values) + 1)
        marked = [k for k in _CMC_MARKED_RANKS if k <= len(values)]
        quoted = ", ".join(f"R{k} {100 * values[k - 1]:.1f}%" for k in marked)
        (line,) = ax.plot(ranks, 100 * values, lw=1.8, label=f"{label} ({quoted})")
        ax.plot(
            marked,
            [100 * values[k - 1] for k in marked],
            ls="none",
            marker="o",
            ms=6,
            color=line.get_color(),
            markeredgecolor="white",
            zorder=3,
        )
    ax.set_title(title)
    ax.set_xlabel("rank")
    ax.set_ylabel("matching accuracy")
    ax.set_ylim(0, 102)  # a little headroom so a curve at 100% is not drawn on the frame
    ax.yaxis.set_major_formatter(PercentFormatter(xmax=100, decimals=0))
    if num_ranks <= 10:
        ax.set_xlim(0.5, num_ranks + 0.5)
    else:
        ax.set_xlim(1, num_ranks)
    ax.xaxis.set_major_locator(FixedLocator(_rank_ticks(num_ranks)))
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize="small", framealpha=0.9)
    return save_figure(figure, path)


# --- validation -----------------------------------------------------------------------------------------


def plot_validation(
    epochs: Sequence[int],
    scores: Sequence[float],
    mean_cosines: Sequence[float | None],
    path: str | Path,
    *,
    best_epoch: int,
    metric: str = "mAP",
    collapse_at: float | None = None,
) -> Path:
    """The validation metric after each evaluated stage-2 epoch (0 = the start), the best one marked, and
    the gallery features' mean pairwise cosine similarity on a second axis.

    Args:
        epochs, scores: the evaluated epochs and the metric there, as fractions.
        mean_cosines: the features' mean cosine at each (None where not measured).
        best_epoch: the epoch marked as the chosen checkpoint.
        collapse_at: a mean cosine drawn as a dashed line (where the features count as collapsed).

    Raises:
        ValueError: no epochs, or lists of different lengths.
    """
    if not epochs or not len(epochs) == len(scores) == len(mean_cosines):
        raise ValueError("plot_validation: epochs, scores and mean_cosines must be equally long and not empty")
    figure = new_figure(6.0, 3.6)
    ax = figure.subplots()
    ax.plot(epochs, [100 * v for v in scores], lw=1.8, marker="o", ms=4, color="tab:blue", label=f"validation {metric}")
    if best_epoch in epochs:
        best = scores[list(epochs).index(best_epoch)]
        ax.plot(
            [best_epoch],
            [100 * best],
            marker="*",
            ms=15,
            color="tab:orange",
            ls="none",
            zorder=3,
            label=f"chosen: {'the start' if best_epoch == 0 else f'epoch {best_epoch}'} ({100 * best:.2f})",
        )
    ax.set_xlabel("stage-2 epoch (0 = the start)")
    ax.set_ylabel(f"{metric} (%)")
    ax.grid(alpha=0.3)
    known = [(e, c) for e, c in zip(epochs, mean_cosines, strict=True) if c is not None]
    handles, labels = ax.get_legend_handles_labels()
    if known:
        twin = ax.twinx()
        (line,) = twin.plot([e for e, _ in known], [c for _, c in known], lw=1.2, ls="--", marker=".", color="tab:gray")
        handles.append(line)
        labels.append("features' mean cosine (right)")
        if collapse_at is not None:
            twin.axhline(collapse_at, color="tab:red", lw=0.8, ls=":")
            handles.append(Line2D([], [], color="tab:red", lw=0.8, ls=":"))
            labels.append(f"collapse ({collapse_at})")
        twin.set_ylim(min(0.0, min(c for _, c in known)), 1.05)  # room above 1, so the collapse line shows
        twin.set_ylabel("mean pairwise cosine")
    ax.legend(handles, labels, loc="lower right", fontsize="small", framealpha=0.9)
    ax.set_title("Choosing the checkpoint on the validation split")
    return save_figure(figure, path)


# --- verification --------------------------------------------------------------------------------------

#: Colours of the operating points (lowest target FPR first), shared by the dot on the ROC curve and the
#: threshold's line on the histograms; the EER's is black.
_POINT_COLOURS = ("tab:red", "tab:orange", "tab:green", "tab:purple", "tab:brown", "tab:pink", "tab:olive")
_EER_COLOUR = "black"
#: Colours of the ROC curves (the first is the one whose points and histograms are drawn).
_CURVE_COLOURS = ("tab:blue", "tab:cyan", "tab:gray", "navy")


def _vector(values: Any, what: str) -> np.ndarray:
    """A 1-D float array of finite values, or a ValueError naming ``what``."""
    array = np.asarray(values, dtype=np.float64)
    if array.ndim != 1:
        raise ValueError(f"plot_verification: {what} must be 1-D; got shape {tuple(array.shape)}")
    if not np.all(np.isfinite(array)):
        raise ValueError(f"plot_verification: {what} contains NaN or infinite values")
    return array


def _rate(value: float, what: str) -> float:
    value = float(value)
    if not 0.0 <= value <= 1.0:  # NaN fails too
        raise ValueError(f"plot_verification: {what} must be a rate within [0, 1]; got {value}")
    return value


def plot_verification(
    curves: Mapping[str, tuple[Any, Any]],
    histogram: tuple[Any, Any, Any],
    path: str | Path,
    *,
    auc: Mapping[str, float] | None = None,
    points: Sequence[tuple[str, float, float, float]] = (),
    eer: tuple[float, float] | None = None,
    title: str = "Verification",
) -> Path:
    """Verification ("is this pair the same identity?") in two panels: the ROC curve on the left, the
    score histograms of same- and different-identity pairs on the right.

    Left: TPR against FPR, the FPR on a log scale from the smallest positive FPR of the curves to 1; each
    operating point a coloured dot labelled with its target and threshold, the EER a black diamond at
    ``(EER, 1 - EER)``. Right: the two histograms as densities (each integrates to 1: different-identity
    pairs outnumber the others by orders of magnitude), with a vertical line at each operating point's
    threshold and at the EER's, in the colours of the left. A pair counts as the same identity when its
    score is at least the threshold.

    Several curves (e.g. PKU's two directions) are drawn together; ``points``, ``eer`` and ``histogram``
    belong to the first one.

    Args:
        curves: name → ``(fpr, tpr)``, the ROC points as equally long arrays of rates in [0, 1], FPR
            ascending (a point at FPR 0 is not drawn on the log scale).
        histogram: ``(edges, same, different)``: the score bins' ``K + 1`` edges and the ``K`` counts of
            same- and different-identity pairs.
        path: where to write the PNG.
        auc: name → area under the curve, quoted in the left title (one curve) or the legend.
        points: ``(label, threshold, fpr, tpr)`` of each operating point, e.g. ``("FPR 1e-3", 0.712,
            0.00099, 0.85)``; thresholds must be finite (leave out the points that are not resolvable).
        eer: ``(rate, threshold)`` of the equal error rate.
        title: figure title (e.g. the model and the dataset).

    Returns:
        ``path`` as a :class:`~pathlib.Path`.

    Raises:
        ValueError: no curves; a curve whose FPRs and TPRs differ in length, hold values outside [0, 1] or
            no positive FPR; histogram edges that are not one more than the counts or not increasing,
            negative counts; a point or EER with a rate outside [0, 1] or a non-finite threshold.
    """
    if not curves:
        raise ValueError("plot_verification: no ROC curves to plot")
    rocs: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for name, (fpr_values, tpr_values) in curves.items():
        fpr, tpr = _vector(fpr_values, f"the FPRs of {name!r}"), _vector(tpr_values, f"the TPRs of {name!r}")
        if len(fpr) != len(tpr):
            raise ValueError(f"plot_verification: the curve {name!r} has {len(fpr)} FPRs but {len(tpr)} TPRs")
        if fpr.size and (min(fpr.min(), tpr.min()) < 0 or max(fpr.max(), tpr.max()) > 1):
            raise ValueError(f"plot_verification: the curve {name!r} must hold rates within [0, 1]")
        if not np.any(fpr > 0):
            raise ValueError(f"plot_verification: the curve {name!r} has no positive FPR to draw on a log scale")
        rocs[name] = (fpr, tpr)
    edges = _vector(histogram[0], "the histogram edges")
    same, different = (
        _vector(histogram[1], "the same-identity counts"),
        _vector(histogram[2], "the different-identity counts"),
    )
    if len(same) != len(edges) - 1 or len(different) != len(edges) - 1:
        raise ValueError(
            f"plot_verification: {len(edges)} histogram edges need {len(edges) - 1} counts each; got "
            f"{len(same)} same-identity and {len(different)} different-identity counts"
        )
    if len(edges) < 2 or np.any(np.diff(edges) <= 0):
        raise ValueError("plot_verification: the histogram edges must be at least two, increasing")
    if min(same.min(), different.min()) < 0:
        raise ValueError("plot_verification: histogram counts cannot be negative")
    marks: list[tuple[str, float, float, float]] = []
    for label, threshold, fpr_value, tpr_value in points:
        if not math.isfinite(threshold):
            raise ValueError(f"plot_verification: the point {label!r} has threshold {threshold}; leave it out")
        marks.append(
            (
                label,
                float(threshold),
                _rate(fpr_value, f"the FPR of {label!r}"),
                _rate(tpr_value, f"the TPR of {label!r}"),
            )
        )
    marks.sort(key=lambda mark: mark[2])
    if eer is not None:
        if not math.isfinite(eer[1]):
            raise ValueError(f"plot_verification: the EER threshold is {eer[1]}; leave the EER out")
        eer = (_rate(eer[0], "the EER"), float(eer[1]))
    colours = [_POINT_COLOURS[i % len(_POINT_COLOURS)] for i in range(len(marks))]
    aucs = dict(auc or {})

    figure = new_figure(11.5, 4.6)
    figure.suptitle(title, fontweight="bold")
    roc_ax, hist_ax = figure.subplots(1, 2)

    # --- left: ROC -------------------------------------------------------------------------------------
    # At most 0.1: a split too small to resolve any FPR below 1 still gets a readable axis.
    low = min(0.1, *(float(fpr[fpr > 0].min()) for fpr, _ in rocs.values()))
    several = len(rocs) > 1
    for i, (name, (fpr, tpr)) in enumerate(rocs.items()):
        shown = fpr > 0
        quoted = f" (AUC {100 * aucs[name]:.2f}%)" if several and name in aucs else ""
        roc_ax.plot(
            fpr[shown], tpr[shown], lw=1.8, color=_CURVE_COLOURS[i % len(_CURVE_COLOURS)], label=f"{name}{quoted}"
        )
    chance = np.geomspace(low, 1.0, 200)
    roc_ax.plot(chance, chance, lw=0.9, ls=":", color="grey", label="chance")
    # Thresholds with as many decimals (3 to 5) as it takes to tell them apart: scores may crowd near 1.
    shown_thresholds = [float(t) for _, t, _, _ in points] + ([float(eer[1])] if eer is not None else [])
    decimals = next(
        (d for d in (3, 4, 5) if len({round(t, d) for t in shown_thresholds}) == len(set(shown_thresholds))), 5
    )

    def t_text(value: float) -> str:
        return f"t={value:.{decimals}f}"

    # The labels stand in a column in the lower right, under the curve, each joined to its dot by a thin line.
    labelled = [
        (f"{label}: {t_text(threshold)}", max(fpr_value, low), tpr_value, colour, "o")
        for (label, threshold, fpr_value, tpr_value), colour in zip(marks, colours, strict=True)
    ]
    if eer is not None:
        eer_text = f"EER {100 * eer[0]:.2f}%: {t_text(eer[1])}"
        labelled.append((eer_text, max(eer[0], low), 1.0 - eer[0], _EER_COLOUR, "D"))
    labelled.sort(key=lambda item: item[1])  # the leftmost dot's label lowest, so the lines do not cross
    for row, (text, x, y, colour, marker) in enumerate(labelled):
        # The EER's diamond is larger and under the dots: a dot on it (FPR 1e-1 often) leaves its corners showing.
        eer_mark = marker == "D"
        roc_ax.plot(
            [x],
            [y],
            ls="none",
            marker=marker,
            ms=9 if eer_mark else 7,
            color=colour,
            markeredgecolor="white",
            zorder=3.5 if eer_mark else 4,
        )
        roc_ax.annotate(
            text,
            xy=(x, y),
            xytext=(0.97, 0.05 + 0.075 * row),
            textcoords="axes fraction",
            ha="right",
            va="center",
            fontsize="small",
            color=colour,
            bbox={"boxstyle": "round,pad=0.2", "facecolor": "white", "edgecolor": "none", "alpha": 0.85},
            arrowprops={"arrowstyle": "-", "color": colour, "lw": 0.7, "alpha": 0.7, "shrinkB": 4},
            zorder=5,
        )
    roc_ax.set_xscale("log")
    roc_ax.set_xlim(low, 1.0)
    roc_ax.set_ylim(0, 1.02)
    roc_ax.yaxis.set_major_formatter(PercentFormatter(xmax=1, decimals=0))
    roc_ax.set_xlabel("false positive rate (different identities accepted, log scale)")
    roc_ax.set_ylabel("true positive rate (same identity accepted)")
    first = next(iter(rocs))
    roc_ax.set_title("ROC" + (f" · AUC {100 * aucs[first]:.2f}%" if not several and first in aucs else ""))
    roc_ax.grid(alpha=0.3, which="major")
    roc_ax.legend(loc="upper left", fontsize="small", framealpha=0.9)

    # --- right: score histograms -----------------------------------------------------------------------
    widths = np.diff(edges)
    peak = 0.0
    for counts, name, colour in (
        (different, "different identity", "tab:gray"),
        (same, "same identity", "tab:blue"),
    ):
        total = counts.sum()
        if total <= 0:
            continue
        density = counts / (total * widths)
        peak = max(peak, float(density.max()))
        hist_ax.stairs(density, edges, fill=True, alpha=0.3, color=colour)
        hist_ax.stairs(density, edges, lw=1.2, color=colour, label=f"{name} ({int(total):,} pairs)")
    for (label, threshold, _, _), colour in zip(marks, colours, strict=True):
        hist_ax.axvline(threshold, color=colour, lw=1.3, ls="--", zorder=3, label=f"{label}: {t_text(threshold)}")
    if eer is not None:  # wide and under the dashed lines: one on it still shows in its gaps and beside it
        hist_ax.axvline(eer[1], color=_EER_COLOUR, lw=2.4, alpha=0.45, zorder=2.5, label=f"EER: {t_text(eer[1])}")
    hist_ax.set_xlim(edges[0], edges[-1])
    # Headroom above the histograms for the legend in the upper left (about 0.055 of the height an entry).
    entries = len(hist_ax.get_legend_handles_labels()[1])
    hist_ax.set_ylim(0, (peak or 1.0) / max(1.0 - 0.055 * entries - 0.06, 0.3))
    hist_ax.set_xlabel("score (cosine similarity); same identity when ≥ t")
    hist_ax.set_ylabel("density")
    hist_ax.set_title("Scores of pairs" + (f" · {first}" if several else ""))
    hist_ax.grid(alpha=0.3)
    hist_ax.legend(loc="upper left", fontsize="small", framealpha=0.9)
    return save_figure(figure, path)


# --- metrics table -------------------------------------------------------------------------------------


def _percent(value: Any, std: Any = None) -> str:
    if value is None or isinstance(value, bool) or not math.isfinite(float(value)):
        return _MISSING
    text = f"{100 * float(value):.1f}"
    if std is not None and not isinstance(std, bool) and math.isfinite(float(std)):
        text += f" ± {100 * float(std):.1f}"
    return text


def _table_columns(rows: Sequence[Mapping[str, Any]]) -> dict[str, str]:
    columns = dict(_TABLE_COLUMNS)
    extra = {int(key[4:]) for row in rows for key in row if key.startswith("rank") and key[4:].isdigit()}
    for k in sorted(extra):
        columns.setdefault(f"rank{k}", f"Rank-{k}")
    return columns


def plot_metrics_table(
    rows: Sequence[Mapping[str, Any]],
    path: str | Path,
    protocol: str,
    title: str = "Results",
) -> Path:
    """Draw retrieval metrics as a table picture, values in % with one decimal.

    Args:
        rows: one mapping per model/run: ``name`` and the fractions ``mAP``, ``mINP``, ``rank1``,
            ``rank5``, ``rank10`` (any may be missing or None → "–"; other ``rankK`` keys add columns);
            an optional ``<key>_std`` is shown as "32.3 ± 1.2".
        path: where to write the PNG.
        protocol: ``"camera"``, ``"no-camera"`` (explained under the table) or any text shown as is.
        title: figure title.

    Returns:
        ``path`` as a :class:`~pathlib.Path`.

    Raises:
        ValueError: no rows.
    """
    if not rows:
        raise ValueError("plot_metrics_table: no rows to show")
    columns = _table_columns(rows)
    header = ["", *columns.values()]
    cells = [[str(row.get("name", "")), *(_percent(row.get(k), row.get(f"{k}_std")) for k in columns)] for row in rows]

    note = PROTOCOL_NOTES.get(protocol, protocol) + " · values in %"

    # Fixed layout in inches, sized from the measured text, so nothing is clipped or overlaps whatever
    # the names and the number of rows.
    figure = new_figure(1.0, 1.0, constrained=False)
    renderer = cast("FigureCanvasAgg", figure.canvas).get_renderer()  # new_figure gives an Agg canvas

    def text_width(text: str, size: float, weight: str = "normal") -> float:
        prop = FontProperties(size=size, weight=weight)
        return renderer.get_text_width_height_descent(text, prop, ismath=False)[0] / figure.dpi

    col_widths = [
        max(text_width(header[i], 10, "bold"), *(text_width(line[i], 10) for line in cells)) + 0.3
        for i in range(len(header))
    ]
    note_lines = textwrap.wrap(note, width=110)
    table_w, table_h = sum(col_widths), _ROW_H * (len(rows) + 1)
    content_w = max(table_w, text_width(title, 12, "bold"), *(text_width(line, 9) for line in note_lines))
    fig_w = max(content_w + 2 * _MARGIN, 4.0)
    note_h = _NOTE_LINE_H * len(note_lines)
    fig_h = _TITLE_H + table_h + _NOTE_GAP + note_h + _MARGIN
    figure.set_size_inches(fig_w, fig_h)

    figure.text(0.5, 1 - 0.12 / fig_h, title, ha="center", va="top", fontsize=12, fontweight="bold")
    ax = figure.add_axes(
        ((fig_w - table_w) / 2 / fig_w, (fig_h - _TITLE_H - table_h) / fig_h, table_w / fig_w, table_h / fig_h)
    )
    ax.axis("off")
    table = ax.table(
        cellText=cells,
        colLabels=header,
        colWidths=[w / table_w for w in col_widths],
        cellLoc="center",
        bbox=(0, 0, 1, 1),  # type: ignore[arg-type]  # stub says Bbox only; documented: or [x, y, w, h]
    )
    table.auto_set_font_size(False)
    table.set_fontsize(10)
    for (r, c), cell in table.get_celld().items():
        cell.set_edgecolor("#999999")
        if r == 0:
            cell.set_text_props(fontweight="bold")
            cell.set_facecolor("#e8eef6")
        elif r % 2 == 0:
            cell.set_facecolor("#f6f6f6")
        if c == 0 and r > 0:
            cell.set_text_props(ha="left")
    figure.text(
        0.5,
        (_MARGIN + note_h) / fig_h,
        "\n".join(note_lines),
        ha="center",
        va="top",
        fontsize=9,
        color="#444444",
        linespacing=1.4,
    )
    return save_figure(figure, path)


# --- embedding -----------------------------------------------------------------------------------------


def _as_array(values: Any, name: str, ndim: int) -> np.ndarray:
    """numpy or (CPU) torch input → numpy, with its number of dimensions checked."""
    if hasattr(values, "detach"):  # a torch tensor; duck-typed so this module does not import torch
        values = values.detach().cpu().numpy()
    array = np.asarray(values)
    if array.ndim != ndim:
        shape = "[N, D]" if ndim == 2 else "[N]"
        raise ValueError(f"plot_embedding: {name} must have shape {shape}; got {tuple(array.shape)}")
    return array


def _l2_normalise(features: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(features, axis=1, keepdims=True)
    return features / np.maximum(norms, 1e-12)


def _project_2d(features: np.ndarray, seed: int) -> tuple[np.ndarray, str]:
    """2-D coordinates and the method's name: PCA below 6 distinct points, t-SNE otherwise."""
    n, dim = features.shape
    distinct = len(np.unique(features.round(6), axis=0))
    # t-SNE needs a few points, and distinct ones: identical points (e.g. an untrained network on
    # uniform images) make its PCA initialisation divide by zero.
    if n < 6 or distinct < 6:
        centred = features - features.mean(axis=0, keepdims=True)
        _, _, vt = np.linalg.svd(centred, full_matrices=False)
        coords = centred @ vt[:2].T
        if coords.shape[1] < 2:  # fewer than 2 components exist (1 point or 1-D features)
            coords = np.pad(coords, ((0, 0), (0, 2 - coords.shape[1])))
        return coords, "PCA"
    # Imported here: scikit-learn takes a while to import and only this function needs it.
    from sklearn.manifold import TSNE

    tsne = TSNE(
        n_components=2,
        perplexity=min(30.0, (n - 1) / 3),
        init="pca" if dim >= 2 else "random",  # PCA initialisation needs at least 2 feature dimensions
        random_state=seed,
        # Exact gradients below a few hundred points: more faithful and, there, faster than Barnes-Hut.
        method="exact" if n <= _TSNE_EXACT_MAX else "barnes_hut",
    )
    return tsne.fit_transform(features), "t-SNE"


def plot_embedding(
    image_feats: Any,
    image_pids: Any,
    path: str | Path,
    *,
    text_feats: Any = None,
    text_pids: Any = None,
    seed: int = 0,
    title: str | None = None,
    center_modalities: bool = True,
    identity_names: Mapping[int, str] | None = None,
) -> Path:
    """Draw L2-normalised image (and text) features in 2-D, coloured by identity.

    Image and text features are projected jointly, so their positions are comparable; with
    ``center_modalities`` each modality's mean is removed first (then re-normalised), which takes
    away CLIP's modality gap so that a text feature lands by the images it matches. t-SNE
    (``init="pca"``, perplexity ``min(30, (n - 1) / 3)``, ``random_state=seed``), or PCA when there are
    fewer than 6 points in all. Image features are dots, text features large stars with a black edge.
    Colours come from tab10 (≤ 10 identities) or tab20 and repeat beyond 20 identities; up to 10
    identities are also named in a legend.

    Args:
        image_feats: ``[N, D]`` numpy array or CPU tensor.
        image_pids: ``[N]`` identity labels.
        path: where to write the PNG.
        text_feats: optional ``[M, D]`` text features (e.g. one learned prompt per identity).
        text_pids: ``[M]`` identity labels of ``text_feats``; required with them.
        seed: t-SNE random state.
        title: figure title (default: names the projection).
        identity_names: the legend's name of an identity label (the dataset's own, e.g. a folder name
            where the labels are relabelled numbers); the label itself where absent.

    Returns:
        ``path`` as a :class:`~pathlib.Path`.

    Raises:
        ValueError: wrong shapes, lengths that disagree, text and image widths that differ, no image
            features, or only one of ``text_feats``/``text_pids``.
    """
    feats = _as_array(image_feats, "image_feats", 2)
    pids = _as_array(image_pids, "image_pids", 1)
    if feats.shape[0] == 0:
        raise ValueError("plot_embedding: no image features")
    if pids.shape[0] != feats.shape[0]:
        raise ValueError(f"plot_embedding: {feats.shape[0]} image features but {pids.shape[0]} image_pids")
    if (text_feats is None) != (text_pids is None):
        raise ValueError("plot_embedding: text_feats and text_pids must be given together")
    num_images = feats.shape[0]
    all_feats, all_pids = feats, pids
    if text_feats is not None:
        tfeats = _as_array(text_feats, "text_feats", 2)
        tpids = _as_array(text_pids, "text_pids", 1)
        if tpids.shape[0] != tfeats.shape[0]:
            raise ValueError(f"plot_embedding: {tfeats.shape[0]} text features but {tpids.shape[0]} text_pids")
        if tfeats.shape[1] != feats.shape[1]:
            raise ValueError(
                f"plot_embedding: text features have width {tfeats.shape[1]} but image features {feats.shape[1]}"
            )
        all_feats = np.concatenate([feats, tfeats])
        all_pids = np.concatenate([pids, tpids])
    if not np.all(np.isfinite(all_feats)):
        raise ValueError("plot_embedding: the features contain NaN or infinite values")

    unit = _l2_normalise(all_feats.astype(np.float64))
    if text_feats is not None and center_modalities:
        # CLIP's image and text features lie in two separate cones (the "modality gap"): matched pairs are
        # close in angle relative to the others, not in absolute position. Centring each modality removes
        # the gap, so a prompt lands by the images it matches instead of in a clump of its own.
        unit[:num_images] -= unit[:num_images].mean(axis=0)
        unit[num_images:] -= unit[num_images:].mean(axis=0)
        unit = _l2_normalise(unit)
    coords, method = _project_2d(unit, seed)
    identities = list(np.unique(all_pids))
    cmap_name = "tab10" if len(identities) <= 10 else "tab20"
    cmap = cast("ListedColormap", colormaps[cmap_name])  # tab10 and tab20 are listed colormaps
    palette = cast("Sequence[tuple[float, float, float]]", cmap.colors)  # of RGB tuples
    index = {pid: i for i, pid in enumerate(identities)}
    colours = [palette[index[pid] % len(palette)] for pid in all_pids]

    figure = new_figure(6.5 if len(identities) <= 10 else 6.0, 4.5)
    ax = figure.subplots()
    ax.scatter(coords[:num_images, 0], coords[:num_images, 1], c=colours[:num_images], s=22, alpha=0.8, linewidths=0)
    if all_feats.shape[0] > num_images:
        ax.scatter(
            coords[num_images:, 0],
            coords[num_images:, 1],
            c=colours[num_images:],
            s=260,
            marker="*",
            edgecolors="black",
            linewidths=1.0,
            zorder=3,
        )
    ax.set_title(title or f"{method} of {'image and text' if all_feats.shape[0] > num_images else 'image'} features")
    ax.set_xlabel(f"{method} 1")
    ax.set_ylabel(f"{method} 2")
    ax.set_xticks([])
    ax.set_yticks([])
    ax.margins(0.08)

    kinds = [Line2D([], [], ls="none", marker="o", ms=6, color="grey", label="image feature")]
    if all_feats.shape[0] > num_images:
        kinds.append(
            Line2D(
                [],
                [],
                ls="none",
                marker="*",
                ms=13,
                color="grey",
                markeredgecolor="black",
                label="text feature (learned prompt)",
            )
        )
    # Legends go outside the axes (constrained layout makes room), so they never hide points.
    names = {int(k): v for k, v in (identity_names or {}).items()}
    if len(identities) <= 10:
        ids = [
            Line2D([], [], ls="none", marker="s", ms=7, color=palette[index[pid]], label=f"id {names.get(pid, pid)}")
            for pid in identities
        ]
        figure.legend(handles=ids, title="identity", loc="outside right upper", fontsize="small")
        note = None
    else:
        note = f"{len(identities)} identities" + (" (colours repeat after 20)" if len(identities) > 20 else "")
    figure.legend(
        handles=kinds,
        loc="outside lower center",
        ncols=len(kinds),
        fontsize="small",
        title=note,
        title_fontsize="small",
    )
    return save_figure(figure, path)
