"""Report figures: metrics reading, loss/CMC/table/embedding PNGs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from svllreid.report import plots
from svllreid.report.plots import (
    plot_cmc,
    plot_embedding,
    plot_losses,
    plot_metrics_table,
    read_metrics,
)


def _png_size(path: Path) -> tuple[int, int]:
    with Image.open(path) as image:
        assert image.format == "PNG"
        image.load()
        return image.size


def _no_temp_files(folder: Path) -> bool:
    return not any(p.name.endswith(".tmp") for p in folder.iterdir())


def _write_jsonl(path: Path, records: list[dict | str]) -> Path:
    lines = [r if isinstance(r, str) else json.dumps(r) for r in records]
    path.write_text("\n".join(lines) + "\n")
    return path


def _stage_records() -> list[dict]:
    records = [
        {"stage": "stage1", "epoch": 1, "step": s, "lr": 3e-4, "loss": 12.0 - s / 10, "loss_i2t": 4.0, "loss_t2i": 4.0}
        for s in (10, 20, 30)
    ]
    records += [
        {"stage": "stage2", "epoch": 1, "step": s, "loss": 16.0 - s / 100, "loss_id": 6.0, "loss_triplet": 3.0}
        for s in (40, 50)
    ]
    return records


# --- read_metrics ----------------------------------------------------------------------------------------


def test_read_metrics_keeps_last_record_per_stage_and_step(tmp_path: Path) -> None:
    path = _write_jsonl(
        tmp_path / "metrics.jsonl",
        [
            {"stage": "stage1", "step": 10, "loss": 1.0},
            {"stage": "stage1", "step": 20, "loss": 2.0},
            "",
            {"stage": "stage2", "step": 30, "loss": 3.0},
            # a resumed run repeats stage 1 step 20 and stage 2 step 30
            {"stage": "stage1", "step": 20, "loss": 2.5},
            {"stage": "stage2", "step": 30, "loss": 3.5},
            {"stage": "stage2", "step": 25, "loss": 4.0},
            "   ",
        ],
    )
    records = read_metrics(path)
    assert [(r["stage"], r["step"], r["loss"]) for r in records] == [
        ("stage1", 10, 1.0),
        ("stage1", 20, 2.5),
        ("stage2", 25, 4.0),
        ("stage2", 30, 3.5),
    ]


def test_read_metrics_names_file_and_line_of_a_corrupt_line(tmp_path: Path) -> None:
    path = _write_jsonl(tmp_path / "metrics.jsonl", [{"stage": "stage1", "step": 1}, "", '{"stage": "stage1", "st'])
    with pytest.raises(ValueError, match=r"metrics\.jsonl, line 3"):
        read_metrics(path)


@pytest.mark.parametrize("line", ['["stage1", 3]', '{"stage": "stage1"}', '{"stage": "stage1", "step": "x"}'])
def test_read_metrics_rejects_records_without_stage_and_integer_step(tmp_path: Path, line: str) -> None:
    path = _write_jsonl(tmp_path / "metrics.jsonl", [line])
    with pytest.raises(ValueError, match="line 1"):
        read_metrics(path)


# --- plot_losses -----------------------------------------------------------------------------------------


def test_plot_losses_writes_one_panel_per_stage(tmp_path: Path) -> None:
    records = read_metrics(_write_jsonl(tmp_path / "metrics.jsonl", _stage_records()))
    out = plot_losses(records, tmp_path / "figures" / "nested" / "losses.png")
    assert out == tmp_path / "figures" / "nested" / "losses.png"
    width, height = _png_size(out)
    assert 900 <= width <= 1400 and 350 <= height <= 600  # two 5x4-inch panels at ~110 dpi
    one_stage = plot_losses([r for r in records if r["stage"] == "stage1"], tmp_path / "one.png")
    assert _png_size(one_stage)[0] < width * 0.7
    assert _no_temp_files(out.parent) and _no_temp_files(tmp_path)


def test_plot_losses_handles_a_single_record_and_unknown_stage(tmp_path: Path) -> None:
    out = plot_losses([{"stage": "finetune", "step": 1, "loss": 2.0, "loss_ce": 2.0}], tmp_path / "l.png")
    assert _png_size(out)[0] > 300


def test_plot_losses_raises_without_records(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="no metrics records"):
        plot_losses([], tmp_path / "losses.png")
    assert not (tmp_path / "losses.png").exists()


# --- plot_cmc --------------------------------------------------------------------------------------------


def test_plot_cmc_writes_png(tmp_path: Path) -> None:
    trained = np.minimum(1.0, 0.32 + np.arange(50) / 60)
    untrained = np.linspace(0.05, 0.4, 50)
    out = plot_cmc({"untrained": untrained.tolist(), "trained": trained}, tmp_path / "cmc.png")
    width, height = _png_size(out)
    assert 500 <= width <= 900 and 350 <= height <= 600
    short = plot_cmc({"trained": trained}, tmp_path / "cmc5.png", max_rank=5, title="top 5")
    assert _png_size(short) == (width, height)


@pytest.mark.parametrize(
    ("curves", "message"),
    [({}, "no curves"), ({"a": []}, "empty"), ({"a": [32.0, 50.0]}, r"fractions within \[0, 1\]")],
)
def test_plot_cmc_rejects_bad_curves(tmp_path: Path, curves: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        plot_cmc(curves, tmp_path / "cmc.png")


# --- plot_metrics_table ------------------------------------------------------------------------------------


def test_percent_formatting() -> None:
    assert plots._percent(0.3234) == "32.3"
    assert plots._percent(0.323, 0.012) == "32.3 ± 1.2"
    assert plots._percent(None) == "–"
    assert plots._percent(float("nan")) == "–"


def test_table_columns_add_extra_ranks_in_order() -> None:
    columns = plots._table_columns([{"name": "a", "rank20": 0.9, "rank1_std": 0.1}, {"rank15": 0.8}])
    assert list(columns) == ["mAP", "mINP", "rank1", "rank5", "rank10", "rank15", "rank20"]


def test_plot_metrics_table_writes_png_sized_to_rows(tmp_path: Path) -> None:
    rows = [
        {"name": "untrained", "mAP": 0.05, "mINP": 0.004, "rank1": 0.12, "rank5": 0.25, "rank10": 0.33},
        {"name": "trained", "mAP": 0.3, "mAP_std": 0.01, "mINP": None, "rank1": 0.323, "rank5": 0.5, "rank10": 0.6},
    ]
    two = plot_metrics_table(rows, tmp_path / "t2.png", protocol="camera")
    five = plot_metrics_table(rows * 2 + rows[:1], tmp_path / "t5.png", protocol="a custom protocol text")
    (w2, h2), (_, h5) = _png_size(two), _png_size(five)
    assert 400 <= w2 <= 1400 and 150 <= h2 < h5 <= 500


def test_plot_metrics_table_raises_without_rows(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="no rows"):
        plot_metrics_table([], tmp_path / "t.png", protocol="camera")


# --- plot_embedding --------------------------------------------------------------------------------------


@pytest.fixture
def projections(monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, str]]:
    """Records (number of points, method) of every projection plot_embedding computes."""
    calls: list[tuple[int, str]] = []
    original = plots._project_2d

    def spy(features: np.ndarray, seed: int) -> tuple[np.ndarray, str]:
        coords, method = original(features, seed)
        assert coords.shape == (features.shape[0], 2) and np.all(np.isfinite(coords))
        calls.append((features.shape[0], method))
        return coords, method

    monkeypatch.setattr(plots, "_project_2d", spy)
    return calls


def test_plot_embedding_pca_for_few_points(tmp_path: Path, projections: list[tuple[int, str]]) -> None:
    rng = np.random.default_rng(0)
    out = plot_embedding(
        rng.normal(size=(3, 16)),
        np.array([1, 2, 3]),
        tmp_path / "e.png",
        text_feats=rng.normal(size=(2, 16)),
        text_pids=[1, 2],
    )
    assert projections == [(5, "PCA")]
    width, height = _png_size(out)
    assert 500 <= width <= 900 and 350 <= height <= 600


def test_plot_embedding_single_point(tmp_path: Path, projections: list[tuple[int, str]]) -> None:
    plot_embedding(np.ones((1, 4)), np.array([0]), tmp_path / "e.png")
    assert projections == [(1, "PCA")]


def test_plot_embedding_tsne_with_torch_inputs(tmp_path: Path, projections: list[tuple[int, str]]) -> None:
    import torch  # here, not at the top: importing torch takes seconds and only this test needs it

    generator = torch.Generator().manual_seed(0)
    pids = torch.arange(6).repeat_interleave(9)
    centres = torch.randn(6, 32, generator=generator)
    feats = centres[pids] + 0.3 * torch.randn(54, 32, generator=generator)
    out = plot_embedding(feats, pids, tmp_path / "e.png", text_feats=centres, text_pids=torch.arange(6), seed=1)
    assert projections == [(60, "t-SNE")]
    assert _png_size(out)[0] > 400


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"image_feats": np.zeros((4, 8)), "image_pids": np.zeros(3)}, "4 image features but 3"),
        ({"image_feats": np.zeros(8), "image_pids": np.zeros(8)}, r"image_feats must have shape \[N, D\]"),
        ({"image_feats": np.zeros((4, 8)), "image_pids": np.zeros((4, 1))}, r"image_pids must have shape \[N\]"),
        ({"image_feats": np.zeros((0, 8)), "image_pids": np.zeros(0)}, "no image features"),
        (
            {
                "image_feats": np.ones((4, 8)),
                "image_pids": np.zeros(4),
                "text_feats": np.ones((2, 6)),
                "text_pids": [0, 1],
            },
            "text features have width 6 but image features 8",
        ),
        (
            {
                "image_feats": np.ones((4, 8)),
                "image_pids": np.zeros(4),
                "text_feats": np.ones((2, 8)),
                "text_pids": [0],
            },
            "2 text features but 1 text_pids",
        ),
        ({"image_feats": np.ones((4, 8)), "image_pids": np.zeros(4), "text_feats": np.ones((2, 8))}, "together"),
        ({"image_feats": np.full((4, 8), np.nan), "image_pids": np.zeros(4)}, "NaN"),
    ],
)
def test_plot_embedding_validates_inputs(tmp_path: Path, kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        plot_embedding(path=tmp_path / "e.png", **kwargs)
    assert not (tmp_path / "e.png").exists()


def test_plot_embedding_of_identical_features_uses_pca(tmp_path: Path) -> None:
    """Identical features (an untrained network on uniform images) must not break t-SNE's initialisation."""
    feats = np.ones((12, 8), np.float32)
    out = plot_embedding(feats, np.repeat([1, 2, 3], 4), tmp_path / "same.png")
    assert Image.open(out).size[0] > 100


def test_embedding_removes_the_modality_gap_before_projecting(tmp_path: Path, monkeypatch) -> None:
    """Text features offset from their images by one shared vector (CLIP's modality gap) are projected
    next to their own identity's images once each modality is centred."""
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(4, 16))
    pids = np.repeat(np.arange(4), 6)
    images = centres[pids] + 0.05 * rng.normal(size=(24, 16))
    texts = centres + 6.0  # every prompt pushed the same way: far from all images in absolute position
    seen = {}

    def capture(features, seed):
        seen["features"] = features
        return features[:, :2], "t-SNE"

    monkeypatch.setattr(plots, "_project_2d", capture)
    for center in (False, True):
        plots.plot_embedding(
            images,
            pids,
            tmp_path / f"e{center}.png",
            text_feats=texts,
            text_pids=np.arange(4),
            center_modalities=center,
        )
        feats = seen["features"]
        nearest = np.argmax(feats[24:] @ feats[:24].T, axis=1)
        own = (pids[nearest] == np.arange(4)).mean()
        assert own == 1.0 if center else own < 1.0


def test_the_embedding_legend_names_identities_as_the_dataset_does(tmp_path: Path, monkeypatch) -> None:
    """Relabelled training ids (0, 1, 2) appear in the legend under the names the user gave them."""
    labels: list[str] = []
    original = plots.Line2D

    def recording(*args, **kwargs):
        labels.append(kwargs.get("label", ""))
        return original(*args, **kwargs)

    monkeypatch.setattr(plots, "Line2D", recording)
    rng = np.random.default_rng(0)
    names = {0: "nyala-60", 1: "nyala-75"}  # 2 has no name: its number is shown
    plot_embedding(rng.normal(size=(9, 8)), np.repeat([0, 1, 2], 3), tmp_path / "e.png", identity_names=names)
    assert [label for label in labels if label.startswith("id ")] == ["id nyala-60", "id nyala-75", "id 2"]
