"""The report of a training run or an evaluation: figures as PNG files and one ``report.html``.

The figures come from :mod:`svllreid.report`; this module picks what to show (best / median /
worst queries, a few identities for the embedding) from evaluation results and the network.
"""

from __future__ import annotations

import logging
import math
import platform
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch

from svllreid.data.loaders import ReIDImageDataset, Transform, build_test_loader
from svllreid.data.types import EvalSplit, Sample
from svllreid.evaluation.checkpoint_eval import CheckpointEvaluation
from svllreid.evaluation.model_eval import ModelEvaluation
from svllreid.evaluation.results import ResultRow
from svllreid.evaluation.selection import SELECTION_METRIC, Selection
from svllreid.inference.features import extract_features, projection_encoder
from svllreid.metrics.ranking import RankingResult
from svllreid.metrics.spread import COLLAPSE_MEAN_COSINE
from svllreid.metrics.summary import METRICS
from svllreid.metrics.verification import OperatingPoint, VerificationResult, fpr_label
from svllreid.report import (
    RankedList,
    Section,
    draw_ranked_lists,
    plot_cmc,
    plot_dynamics,
    plot_embedding,
    plot_losses,
    plot_metrics_table,
    plot_validation,
    plot_verification,
    read_metrics,
    write_report,
)

__all__ = [
    "EMBED_IDS",
    "EMBED_IMAGES_PER_ID",
    "metrics_row",
    "ranked_lists",
    "select_queries",
    "write_evaluation_report",
    "write_ranked_pictures",
    "write_test_embedding",
    "write_train_embedding",
    "write_training_report",
]

log = logging.getLogger(__name__)

#: Identities and images per identity drawn in the embedding plot.
EMBED_IDS = 8
EMBED_IMAGES_PER_ID = 12


def _caption(sample: Sample, names: Mapping[int, str]) -> str:
    cam = f" · cam {sample.camid + 1}" if sample.camid >= 0 else ""
    return f"id {names.get(sample.pid, sample.pid)}{cam}"


def select_queries(result: RankingResult) -> list[tuple[str, int]]:
    """``(label, query index)`` of the best, median and worst evaluated queries by AP (ties: query order)."""
    evaluated = np.flatnonzero(~np.isnan(result.query_ap))
    if not len(evaluated):
        return []
    order = evaluated[np.argsort(-result.query_ap[evaluated], kind="stable")]
    picks = [("best", order[0]), ("median", order[len(order) // 2]), ("worst", order[-1])]
    return [(label, int(q)) for label, q in picks]


def ranked_lists(
    split: EvalSplit, result: RankingResult, names: Mapping[int, str] | None = None
) -> list[tuple[str, RankedList]]:
    """Ranked lists (top k with true matches marked) of the best, median and worst queries of a split;
    captions name identities by ``names`` (the dataset's own names of test pids) where given."""
    names = names or {}
    if result.ranked is None:
        raise ValueError("the result has no ranked lists; evaluate with topk > 0")
    out = []
    for label, q in select_queries(result):
        query = split.query[q]
        items = [split.gallery[g] for g in result.ranked[q] if g >= 0]
        ap, first = 100 * result.query_ap[q], result.query_first_rank[q] + 1
        title = f"{label} query · AP {ap:.1f}% · first match at rank {first}"
        out.append(
            (
                label,
                RankedList(
                    title=title,
                    query_path=query.path,
                    query_caption=_caption(query, names),
                    gallery_paths=[s.path for s in items],
                    gallery_captions=[_caption(s, names) for s in items],
                    matches=[s.pid == query.pid for s in items],
                ),
            )
        )
    return out


def write_ranked_pictures(
    split: EvalSplit, result: RankingResult, out_dir: Path, names: Mapping[int, str] | None = None
) -> list[Path]:
    """``ranked_best.png``, ``ranked_median.png`` and ``ranked_worst.png`` of a split."""
    lists = ranked_lists(split, result, names)
    return [draw_ranked_lists([lst], out_dir / f"ranked_{label}.png") for label, lst in lists]


def metrics_row(name: str, summary: dict[str, Any]) -> dict[str, Any]:
    row: dict[str, Any] = {"name": name}
    for key in METRICS:
        row[key] = summary.get(key)
        if f"{key}_std" in summary:
            row[f"{key}_std"] = summary[f"{key}_std"]
    return row


def _mean_cmc(summary: dict[str, Any]) -> list[float]:
    curves = np.array([s["cmc"] for s in summary["splits"]], dtype=np.float64)
    return curves.mean(0).tolist()


def _pick_identities(samples: Sequence[Sample], count: int, per_id: int, among: set[int] | None = None) -> list[int]:
    """Rows of ``samples`` for the ``count`` identities with most images (ties: first seen), ``per_id``
    each; only identities in ``among`` if given."""
    counts = Counter(s.pid for s in samples if among is None or s.pid in among)
    ids = [pid for pid, n in sorted(counts.items(), key=lambda kv: -kv[1]) if n >= 2][:count]
    taken: dict[int, int] = dict.fromkeys(ids, 0)
    rows = []
    for i, s in enumerate(samples):
        if s.pid in taken and taken[s.pid] < per_id:
            taken[s.pid] += 1
            rows.append(i)
    return rows


def write_test_embedding(evaluation: ModelEvaluation, path: Path) -> Path | None:
    """t-SNE of the test features of a few identities (images only: test identities have no prompts)."""
    # Identities of the queries: galleries may hold distractor "identities" (Market-1501's 0) of thousands.
    queries = {s.pid for s in evaluation.splits[0][0].query}
    rows = _pick_identities(evaluation.samples, EMBED_IDS, EMBED_IMAGES_PER_ID, among=queries)
    if len(rows) < 3:
        return None
    feats = evaluation.feats[torch.as_tensor(rows, device=evaluation.feats.device)].cpu()
    pids = np.array([evaluation.samples[r].pid for r in rows])
    names = {int(pid): evaluation.identity_name(int(pid)) for pid in np.unique(pids)}
    return plot_embedding(feats, pids, path, title="t-SNE of test image features", identity_names=names)


@torch.no_grad()
def write_train_embedding(
    model: torch.nn.Module,
    train: Sequence[Sample],
    *,
    transform: Transform,
    image_size: tuple[int, int],
    device: torch.device,
    path: Path,
    interpolation: str = "bilinear",
    names: Sequence[str] = (),
) -> Path | None:
    """t-SNE of image features (CLIP's projected space, f_proj) of a few training identities together
    with the text features of their learned prompts: the picture of how stage 1 and stage 2 align them.
    ``transform`` and ``interpolation`` are the test pipeline's; ``names`` are the dataset's own names of
    the (relabelled) training pids, for the legend."""
    rows = _pick_identities(train, EMBED_IDS, EMBED_IMAGES_PER_ID)
    if len(rows) < 3:
        return None
    samples = [train[r] for r in rows]
    images = ReIDImageDataset(samples, transform, image_size, interpolation=interpolation)
    loader = build_test_loader(images, batch_size=64, num_workers=0)
    was_training = model.training
    model.eval()
    feats = extract_features(projection_encoder(model), loader, device).cpu()
    pids = np.array([s.pid for s in samples])
    ids = np.unique(pids)
    encode_text = cast(Callable[[torch.Tensor], torch.Tensor], model.encode_text)  # a ReIDModel's method
    text = encode_text(torch.as_tensor(ids, device=device)).float().cpu()
    model.train(was_training)
    return plot_embedding(
        feats,
        pids,
        path,
        text_feats=text,
        text_pids=ids,
        title="t-SNE of training identities: images and learned prompts",
        identity_names={int(pid): names[pid] for pid in ids if 0 <= pid < len(names)},
    )


def _facts(extra: dict[str, str]) -> dict[str, str]:
    return {**extra, "host": f"{platform.node()} ({platform.machine()})", "created": time.strftime("%Y-%m-%d %H:%M")}


def _summary_table(rows: Sequence[dict[str, Any]]) -> list[dict[str, object]]:
    """Rows for the HTML table, in % with the spread over splits."""
    table: list[dict[str, object]] = []
    for row in rows:
        cells: dict[str, object] = {"": row["name"]}
        for key in METRICS:
            value = row.get(key)
            text = "–" if value is None else f"{100 * value:.2f}"
            if value is not None and f"{key}_std" in row:
                text += f" ± {100 * row[f'{key}_std']:.2f}"
            cells[METRICS[key]] = text
        table.append(cells)
    return table


def _rows_table(rows: Sequence[ResultRow]) -> list[dict[str, object]]:
    """The run's rows for the HTML table: validation mAP and Rank-1 (when there is a validation split),
    the test metrics, and the test features' spread, in %."""
    with_validation = any(row.validation is not None for row in rows)
    table: list[dict[str, object]] = []
    for row in rows:
        cells: dict[str, object] = {"": row.name}
        if with_validation:
            for key, label in (("mAP", "validation mAP"), ("rank1", "validation Rank-1")):
                value = None if row.validation is None else row.validation.get(key)
                cells[label] = "–" if value is None else f"{100 * value:.2f}"
        test = dict(row.test or {})
        for key in METRICS:
            value = test.get(key)
            text = "–" if value is None else f"{100 * value:.2f}"
            if value is not None and f"{key}_std" in test:
                text += f" ± {100 * test[f'{key}_std']:.2f}"
            cells[f"test {METRICS[key]}"] = text
        spread = test.get("spread")
        cells["test mean cosine"] = "–" if not spread else f"{spread['mean_cosine']:.4f}"
        cells["test effective rank"] = "–" if not spread else f"{spread['effective_rank']:.1f}"
        table.append(cells)
    return table


def _validation_plot(selection: Selection, path: Path) -> Path:
    epochs = [int(entry["epoch"]) for entry in selection.history]
    scores = [float(entry["summary"][SELECTION_METRIC]) for entry in selection.history]
    cosines = [entry["summary"].get("spread", {}).get("mean_cosine") for entry in selection.history]
    assert selection.best_epoch is not None  # there is a history
    return plot_validation(
        epochs, scores, cosines, path, best_epoch=selection.best_epoch, collapse_at=COLLAPSE_MEAN_COSINE
    )


def _result_sections(
    out_dir: Path, rows: list[dict[str, Any]], curves: dict[str, list[float]], protocol: str, where: str
) -> tuple[list[Section], dict[str, Path]]:
    files = {
        "metrics_png": plot_metrics_table(rows, out_dir / "metrics.png", protocol, title=f"Results on {where}"),
        "cmc_png": plot_cmc(curves, out_dir / "cmc.png", title=f"CMC on {where}"),
    }
    section = Section(
        "Results",
        text=f"Retrieval on {where}; mAP, mINP and Rank-k in %. Protocol: {protocol}.",
        table=_summary_table(rows),
        images=[files["metrics_png"], files["cmc_png"]],
    )
    return [section], files


def _ranked_section(
    split: EvalSplit, result: RankingResult, out_dir: Path, names: Mapping[int, str]
) -> tuple[Section, dict[str, Path]]:
    pictures = write_ranked_pictures(split, result, out_dir, names)
    k = result.ranked.shape[1] if result.ranked is not None else 0
    removed = (
        "Junk (same identity, same camera) and the query's own image are not ranked."
        if result.protocol == "camera"
        else "Without camera labels only the query's own image is left out."
    )
    text = (
        f"Split {split.name}: the query (blue) and its top {k} gallery images; green = same identity, "
        f"red = another identity. {removed}"
    )
    return Section("Ranked lists", text=text, images=pictures), {p.stem: p for p in pictures}


def _drawn_points(result: VerificationResult) -> list[OperatingPoint]:
    """The operating points a figure can show: resolvable, with a finite threshold."""
    return [p for p in result.points if p.resolvable and math.isfinite(p.threshold)]


def _verification_words(result: VerificationResult) -> str:
    """One split's verification metrics as a sentence or two."""
    text = f"AUC {100 * result.auc:.2f}%, EER {100 * result.eer:.2f}%"
    if math.isfinite(result.eer_threshold):
        text += f" (threshold {result.eer_threshold:.4f})"
    rates = []
    for p in result.points:
        if not p.resolvable:
            continue
        at = f"threshold {p.threshold:.4f}" if math.isfinite(p.threshold) else "no threshold but rejecting every pair"
        rates.append(f"{100 * p.tpr:.2f}% at FPR {fpr_label(p.target_value)} ({at})")
    if rates:
        text += "; TPR " + ", ".join(rates)
    unresolvable = [fpr_label(p.target_value) for p in result.points if not p.resolvable]
    if unresolvable:
        text += f"; FPR {', '.join(unresolvable)} not resolvable (a rate x needs at least 1/x different-identity pairs)"
    pairs = f"{result.num_positive:,} same-identity and {result.num_negative:,} different-identity pairs"
    if result.exact:
        return f"{text}. Over {pairs}, every score kept (exact)."
    return (
        f"{text}. Over {pairs}; the different-identity scores were binned (width 2^-20), so the exact values "
        f"can differ by up to {100 * result.auc_bound:.3f} points of AUC and {100 * result.eer_bound:.3f} of EER."
    )


def _verification_section(
    evaluation: ModelEvaluation, path: Path, *, name: str, where: str
) -> tuple[Section, dict[str, Path]] | None:
    """The "Verification" section and ``verification.png`` (:func:`svllreid.report.plot_verification`) of
    the splits' verification metrics; None when none were computed (with their curves).

    Args:
        name: the model's name, the curve's label when there is one split (several: the splits' names).
        where: the dataset, for the title.
    """
    measured = [
        (split.name, checked)
        for (split, _), checked in zip(evaluation.splits, evaluation.verification, strict=False)
        if checked is not None and len(checked.curve_fpr) and len(checked.histogram_edges)
    ]
    if not measured:
        return None
    several = len(measured) > 1
    first_name, first = measured[0]
    curves = {(split if several else name): (r.curve_fpr, r.curve_tpr) for split, r in measured}
    aucs = {(split if several else name): r.auc for split, r in measured}
    points = [(f"FPR {fpr_label(p.target_value)}", p.threshold, p.fpr, p.tpr) for p in _drawn_points(first)]
    eer = (first.eer, first.eer_threshold) if math.isfinite(first.eer_threshold) else None
    figure = plot_verification(
        curves,
        (first.histogram_edges, first.positive_histogram, first.negative_histogram),
        path,
        auc=aucs,
        points=points,
        eer=eer,
        title=f"Verification on {where} · {name}",
    )
    kept = (
        "those the ranking counts: a query's same-identity images from its own camera and its own image are left out"
        if evaluation.summary.get("protocol") == "camera"
        else "those the ranking counts: only a query's own image is left out"
    )
    paragraphs = [
        "Verification asks of a query–gallery pair whether it shows one identity. The pairs are "
        f"{kept}. A pair's score is the cosine similarity of its two features, and the pair is declared the same "
        "identity when the score is at least a threshold t. AUC is the chance that a same-identity pair scores "
        "above a different-identity one; the EER (equal error rate) is where as many same-identity pairs are "
        "rejected as different-identity pairs accepted; TPR at FPR x is the share of same-identity pairs accepted "
        "at the lowest threshold that accepts at most a share x of the different-identity pairs."
    ]
    paragraphs += [(f"Split {split}: " if several else "") + _verification_words(result) for split, result in measured]
    if evaluation.summary.get("reranked"):
        paragraphs.append("The scores are the features' cosine similarities: re-ranking changes the ranking only.")
    ratio = first.num_negative / max(first.num_positive, 1)
    paragraphs.append(
        "Left: the ROC curve"
        + (" of each split" if several else "")
        + " (the share of same-identity pairs accepted against the share of different-identity pairs accepted, "
        "on a log scale), with the operating points (dots) and the EER (diamond)"
        + (f" of split {first_name}" if several else "")
        + ". Right: the scores of same- and different-identity pairs"
        + (f" of split {first_name}" if several else "")
        + f" as densities (the different-identity pairs are {ratio:,.0f} times as many), with the same thresholds "
        "as vertical lines: everything right of a line is accepted."
    )
    section = Section("Verification", text="\n\n".join(paragraphs), images=[figure])
    return section, {"verification_png": figure}


def write_evaluation_report(result: CheckpointEvaluation) -> dict[str, Path]:
    """Figures and ``report.html`` of ``svllreid eval`` in ``result.out_dir``."""
    out, ev = result.out_dir, result.evaluation
    summary = ev.summary
    where = f"{summary['dataset']}{' (re-ranked)' if summary.get('reranked') else ''}"
    rows = [metrics_row(result.trained.spec.arch, summary)]
    sections, files = _result_sections(out, rows, {"model": _mean_cmc(summary)}, summary["protocol"], where)
    facts = {
        "checkpoint": str(result.trained.checkpoint.path),
        "model": result.trained.describe(),
        "dataset": f"{result.dataset.name} ({result.dataset.root})",
        "splits": ", ".join(s.name for s, _ in ev.splits),
        "side information (SIE)": (
            "used" if result.side_info else ("left out" if result.trained.spec.sie else "none (the model has no SIE)")
        ),
        "device": str(result.trained.device),
    }
    sections.insert(0, Section("Evaluation", text="\n\n".join(result.notes), facts=_facts(facts)))
    verification = _verification_section(
        ev, out / "verification.png", name=result.trained.spec.arch, where=summary["dataset"]
    )
    if verification is not None:
        sections.append(verification[0])
        files.update(verification[1])
    split, first = ev.splits[0]
    if first.ranked is not None and first.num_evaluated:
        section, ranked_files = _ranked_section(split, first, out, ev.identity_names)
        sections.append(section)
        files.update(ranked_files)
    embedding = write_test_embedding(ev, out / "embedding.png")
    if embedding is not None:
        files["embedding_png"] = embedding
        text = "Test images of the identities with most images; colour = identity."
        sections.append(Section("Embedding", text=text, images=[embedding]))
    files["report"] = write_report(out / "report.html", f"svllreid eval · {where}", sections)
    return files


def write_training_report(
    run_dir: Path,
    *,
    facts: dict[str, str],
    final: ModelEvaluation,
    rows: Sequence[ResultRow],
    embedding: Path | None,
    selection: Selection | None = None,
    warnings: Sequence[str] = (),
) -> dict[str, Path]:
    """Figures and ``report.html`` of a training run in ``run_dir`` (losses from its ``metrics.jsonl``).

    Args:
        final: the delivered model on the test set, in full (its ranked lists are drawn).
        rows: the run's networks (:func:`svllreid.evaluation.results.result_rows`): start, best and last.
        selection: the validation history, when the run chose its checkpoint on a validation split.
        warnings: collapse warnings, shown at the top of the results.
    """
    summary = final.summary
    where = f"{summary['dataset']}'s test set{' (re-ranked)' if summary.get('reranked') else ''}"
    tested = [row for row in rows if row.test is not None]
    table_rows = [metrics_row(row.name, dict(row.test or {})) for row in tested]
    curves = {row.name: _mean_cmc(dict(row.test or {})) for row in tested if "splits" in (row.test or {})}
    sections, files = _result_sections(run_dir, table_rows, curves, summary["protocol"], where)
    results = sections[0]
    results.table = _rows_table(rows)
    notes = [*warnings]
    if selection is not None:
        notes.insert(0, selection.verdict() + ". The test set chose nothing; model.safetensors is the chosen network.")
    if notes:
        results.text = "\n\n".join([*notes, results.text])
    sections.insert(0, Section("Run", facts=_facts(facts)))
    verification = _verification_section(
        final, run_dir / "verification.png", name="delivered model", where=f"{summary['dataset']}'s test set"
    )
    if verification is not None:
        sections.append(verification[0])
        files.update(verification[1])
    if selection is not None and selection.history:
        files["validation_png"] = _validation_plot(selection, run_dir / "validation.png")
        sections.append(
            Section(
                "Validation",
                text="The validation split (training identities held out, data.validation_ids) was evaluated at the "
                "start of stage 2 and after its epochs (eval.every); the best is kept (checkpoints/best.safetensors) "
                "and delivered. The features' mean pairwise cosine similarity shows whether they spread out or "
                f"collapse (above {COLLAPSE_MEAN_COSINE}).",
                images=[files["validation_png"]],
            )
        )
    metrics_file = run_dir / "metrics.jsonl"
    logged = read_metrics(metrics_file) if metrics_file.is_file() else []
    records = [r for r in logged if any(key == "loss" or key.startswith("loss_") for key in r)]  # not validation
    dynamics = [r for r in logged if r.get("stage") == "dynamics"]
    if records:
        files["losses_png"] = plot_losses(records, run_dir / "losses.png")
        sections.append(
            Section(
                "Training",
                text="Loss terms per logged step (means over the logging interval); stage 1 learns the prompts, "
                "stage 2 the image encoder.",
                images=[files["losses_png"]],
            )
        )
    if dynamics:
        files["dynamics_png"] = plot_dynamics(dynamics, run_dir / "dynamics.png")
        grads = any("grad_cosine" in r for r in dynamics)
        sections.append(
            Section(
                "Dynamics",
                text=(
                    "Left: on the first batch of each stage-2 epoch, the cosine between the gradient of the vision "
                    "self-supervision and that of the main losses (ID, triplet, image-to-text) on the image "
                    "encoder, and the ratio of their norms as weighted in the loss (stage2.probe_gradients). "
                    if grads
                    else ""
                )
                + "f12's spread on a fixed probe set of training images: the mean cosine distance of an image to "
                "its identity's mean (within) and between the identities' means (between); epoch 0 is the start.",
                images=[files["dynamics_png"]],
            )
        )
    split, first = final.splits[0]
    if first.ranked is not None and first.num_evaluated:
        section, ranked_files = _ranked_section(split, first, run_dir, final.identity_names)
        sections.append(section)
        files.update(ranked_files)
    if embedding is not None:
        files["embedding_png"] = embedding
        sections.append(
            Section(
                "Embedding",
                text="Image features (dots, CLIP's projected space f_proj) and the text features of the learned "
                "prompts (stars) of a few training identities, jointly projected with t-SNE after centring each "
                "modality (CLIP keeps images and texts in two separate cones, the modality gap); colour = identity.",
                images=[embedding],
            )
        )
    files["report"] = write_report(run_dir / "report.html", f"svllreid training · {run_dir.name}", sections)
    return files
