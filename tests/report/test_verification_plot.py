"""The verification figure (ROC curve and score histograms) and its section in the reports."""

from __future__ import annotations

import math
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image

from svllreid.data.types import EvalSplit, Sample
from svllreid.evaluation import reporting
from svllreid.evaluation.checkpoint_eval import CheckpointEvaluation
from svllreid.evaluation.model_eval import ModelEvaluation
from svllreid.evaluation.results import ResultRow
from svllreid.metrics.ranking import evaluate
from svllreid.metrics.summary import summarize
from svllreid.metrics.verification import VerificationResult, fpr_label, verify
from svllreid.report import plot_verification

NUM_IDS, NUM_QUERIES, NUM_GALLERY, NUM_CAMERAS, DIM = 60, 300, 2000, 4, 16


def _clustered(seed: int = 0) -> tuple[np.ndarray, ...]:
    """Features around one centre per identity, noisy enough that the identities overlap a little."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(NUM_IDS, DIM))
    q_pids, g_pids = rng.integers(0, NUM_IDS, NUM_QUERIES), rng.integers(0, NUM_IDS, NUM_GALLERY)
    q_feats = (centres[q_pids] + 0.8 * rng.normal(size=(NUM_QUERIES, DIM))).astype(np.float32)
    g_feats = (centres[g_pids] + 0.8 * rng.normal(size=(NUM_GALLERY, DIM))).astype(np.float32)
    q_cams, g_cams = rng.integers(0, NUM_CAMERAS, NUM_QUERIES), rng.integers(0, NUM_CAMERAS, NUM_GALLERY)
    return q_feats, g_feats, q_pids, g_pids, q_cams, g_cams


@pytest.fixture(scope="module")
def data() -> tuple[np.ndarray, ...]:
    return _clustered()


@pytest.fixture(scope="module")
def checked(data) -> VerificationResult:
    return verify(*data)


def _arguments(result: VerificationResult) -> dict:
    return {
        "histogram": (result.histogram_edges, result.positive_histogram, result.negative_histogram),
        "points": [
            (f"FPR {fpr_label(p.target_value)}", p.threshold, p.fpr, p.tpr)
            for p in result.points
            if p.resolvable and math.isfinite(p.threshold)
        ],
        "eer": (result.eer, result.eer_threshold),
    }


def _png_size(path: Path) -> tuple[int, int]:
    with Image.open(path) as image:
        assert image.format == "PNG"
        image.load()
        return image.size


def test_the_figure_draws_a_verification_result(checked: VerificationResult, tmp_path: Path) -> None:
    assert 0.9 < checked.auc < 1.0 and checked.exact  # the data overlap a little, as a real model's do
    out = plot_verification(
        {"model": (checked.curve_fpr, checked.curve_tpr)},
        path=tmp_path / "figures" / "verification.png",
        auc={"model": checked.auc},
        title="Verification on clustered features",
        **_arguments(checked),
    )
    assert out == tmp_path / "figures" / "verification.png"
    width, height = _png_size(out)
    assert 1000 <= width <= 1600 and 400 <= height <= 700  # two panels side by side
    assert not any(p.name.endswith(".tmp") for p in out.parent.iterdir())


def test_several_curves_share_the_left_panel(data, checked: VerificationResult, tmp_path: Path) -> None:
    other = verify(*_clustered(seed=1))
    out = plot_verification(
        {"query→gallery": (checked.curve_fpr, checked.curve_tpr), "gallery→query": (other.curve_fpr, other.curve_tpr)},
        path=tmp_path / "two.png",
        auc={"query→gallery": checked.auc, "gallery→query": other.auc},
        **_arguments(checked),
    )
    assert _png_size(out)[0] >= 1000


def test_bad_input_is_refused_with_a_clear_message(checked: VerificationResult, tmp_path: Path) -> None:
    arguments = _arguments(checked)
    with pytest.raises(ValueError, match=r"the curve 'model' has 122 FPRs but 121 TPRs"):
        plot_verification({"model": (checked.curve_fpr, checked.curve_tpr[:-1])}, path=tmp_path / "x.png", **arguments)
    with pytest.raises(ValueError, match="no ROC curves"):
        plot_verification({}, path=tmp_path / "x.png", **arguments)
    with pytest.raises(ValueError, match="rates within"):
        plot_verification({"model": ([0.0, 0.5, 1.5], [0.0, 0.5, 1.0])}, path=tmp_path / "x.png", **arguments)
    with pytest.raises(ValueError, match="no positive FPR"):
        plot_verification({"model": ([0.0, 0.0], [0.0, 1.0])}, path=tmp_path / "x.png", **arguments)
    edges, same, different = arguments["histogram"]
    with pytest.raises(ValueError, match=r"histogram edges need .* counts each"):
        plot_verification(
            {"model": (checked.curve_fpr, checked.curve_tpr)},
            path=tmp_path / "x.png",
            **{**arguments, "histogram": (edges, same[:-1], different)},
        )
    with pytest.raises(ValueError, match="threshold inf; leave it out"):
        plot_verification(
            {"model": (checked.curve_fpr, checked.curve_tpr)},
            path=tmp_path / "x.png",
            **{**arguments, "points": [("FPR 1e-4", math.inf, 0.0, 0.0)]},
        )
    assert not (tmp_path / "x.png").exists()


def _evaluation(data, with_verification: bool = True) -> ModelEvaluation:
    """A ModelEvaluation of the clustered features, as evaluate_model returns it (no ranked lists)."""
    q_feats, g_feats, q_pids, g_pids, q_cams, g_cams = data
    query = [Sample(f"q{i}.jpg", int(p), int(c), -1) for i, (p, c) in enumerate(zip(q_pids, q_cams, strict=True))]
    gallery = [Sample(f"g{i}.jpg", int(p), int(c), -1) for i, (p, c) in enumerate(zip(g_pids, g_cams, strict=True))]
    split = EvalSplit("default", query, gallery)
    result = evaluate(q_feats, g_feats, q_pids, g_pids, q_cams, g_cams)
    checked = [verify(*data) if with_verification else None]
    summary = summarize("clustered", [(split.name, result)], checked)
    feats = torch.from_numpy(np.concatenate([q_feats, g_feats]))
    return ModelEvaluation(summary, [(split, result)], query + gallery, feats, verification=checked)


def _checkpoint_evaluation(evaluation: ModelEvaluation, out: Path) -> CheckpointEvaluation:
    trained = SimpleNamespace(
        spec=SimpleNamespace(arch="svll-tiny-rn", sie=None),
        checkpoint=SimpleNamespace(path=out / "model.safetensors"),
        describe=lambda: "svll-tiny-rn (tiny)",
        device="cpu",
    )
    dataset = SimpleNamespace(name="clustered", root=str(out))
    return CheckpointEvaluation(out, trained, dataset, evaluation, side_info=False)  # type: ignore[arg-type]


def test_the_eval_report_has_a_verification_section(data, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(reporting, "write_test_embedding", lambda *args: None)  # t-SNE: not what is tested
    files = reporting.write_evaluation_report(_checkpoint_evaluation(_evaluation(data), tmp_path))
    assert files["verification_png"] == tmp_path / "verification.png"
    assert _png_size(files["verification_png"])[0] >= 1000
    html = files["report"].read_text()
    assert "<h2" in html and "Verification" in html
    assert "different-identity pairs" in html and "every score kept (exact)" in html
    assert html.index("Results") < html.index("Verification")


def test_without_verification_the_reports_leave_the_section_out(data, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(reporting, "write_test_embedding", lambda *args: None)
    files = reporting.write_evaluation_report(_checkpoint_evaluation(_evaluation(data, False), tmp_path))
    assert "verification_png" not in files and not (tmp_path / "verification.png").exists()
    assert ">Verification<" not in files["report"].read_text()


def test_the_training_report_has_a_verification_section(data, tmp_path: Path) -> None:
    final = _evaluation(data)
    files = reporting.write_training_report(
        tmp_path, facts={"run": "r"}, final=final, rows=[ResultRow("trained", final.summary)], embedding=None
    )
    assert files["verification_png"] == tmp_path / "verification.png"
    html = files["report"].read_text()
    assert "Verification" in html and f"AUC {100 * final.verification[0].auc:.2f}%" in html  # type: ignore[union-attr]
