"""INT8 ONNX exports: statically quantised by onnxruntime on the user's images through the network's own
preprocessing, checked against the fp32 network (a cosine tolerance per image, the agreement of a small
search), run by every ONNX consumer; and each bad input's message."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from svllreid.cli import main
from svllreid.errors import ExportError, ImageReadError
from svllreid.export import int8
from svllreid.export.exporter import INT8_MIN_COSINE, INT8_MIN_IMAGES, export_image_branch
from svllreid.inference.extractor import FeatureExtractor
from svllreid.inference.onnx_backend import load_onnx_model
from svllreid.inference.trained import TrainedModel, load_trained_model

pytest.importorskip("onnxruntime.quantization", reason="INT8 export needs the onnx extra")
pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore::FutureWarning")]


@pytest.fixture(scope="module")
def model(verification_run: Any) -> TrainedModel:
    return load_trained_model(verification_run.run_dir / "checkpoints" / "model.safetensors", "cpu")


@pytest.fixture(scope="module")
def images(verification_run: Any) -> list[str]:
    """The tiny run's test crops: synthetic people of the kind the network saw."""
    folder = verification_run.run_dir.parents[1] / "synthetic" / "bounding_box_test"
    return [str(p) for p in sorted(folder.glob("*.jpg"))]


@pytest.fixture(scope="module")
def training_crops(verification_run: Any) -> list[str]:
    """The tiny run's training crops: what INT8 is calibrated on (never the test set it is measured on)."""
    folder = verification_run.run_dir.parents[1] / "synthetic" / "bounding_box_train"
    return [str(p) for p in sorted(folder.glob("*.jpg"))]


@pytest.fixture(scope="module")
def int8_file(
    model: TrainedModel, training_crops: list[str], tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Any]:
    out = tmp_path_factory.mktemp("int8") / "model.int8.onnx"
    report = export_image_branch(model, out, fmt="onnx", int8_images=training_crops[::2][:32])
    return {"path": out, "report": report}


def test_the_int8_file_stays_within_its_tolerance_of_the_network(model, images, int8_file) -> None:
    report = int8_file["report"]
    q = report.int8
    assert report.facts["precision"] == "int8" and report.facts["int8"] == q
    assert q["images"] == 32 and "QDQ" in q["method"]
    assert INT8_MIN_COSINE <= q["min_cosine"] <= q["mean_cosine"] <= 1.0 + 1e-6
    assert 0 <= q["top1_agreement"] <= 1 and q["topk"] == 10 and 0 < q["topk_overlap"] <= 1
    # Quantised: the file is smaller than an fp32 export of the same network holds in weights.
    weights = sum(p.numel() for p in model.model.parameters()) * 4
    assert int8_file["path"].stat().st_size < 0.6 * weights
    # Images it was not calibrated on: every ONNX consumer runs it, close to the network.
    onnx_model = load_onnx_model(int8_file["path"])
    assert onnx_model.identity()["weights_sha256"] == model.weights_digest()
    extractor, reference = FeatureExtractor(int8_file["path"]), FeatureExtractor(model.checkpoint.path, device="cpu")
    held_out = images[:16]  # test crops: not among the calibration images
    got, expected = extractor(held_out), reference(held_out)
    cosine = (got * expected).sum(1) / np.linalg.norm(got, axis=1)
    assert cosine.min() >= INT8_MIN_COSINE


def test_the_cli_writes_and_describes_an_int8_file(model, images, capsys, tmp_path: Path) -> None:
    folder = tmp_path / "crops"
    folder.mkdir()
    for path in images[:INT8_MIN_IMAGES]:
        shutil.copy(path, folder)
    out = tmp_path / "cli.int8.onnx"
    argv = ["export", "--checkpoint", str(model.checkpoint.path), "--format", "onnx", "--out", str(out)]
    assert main([*argv, "--int8", "--calibration-images", str(folder)]) == 0
    printed = capsys.readouterr().out
    assert f"calibrated on {INT8_MIN_IMAGES} images" in printed and "cosine similarity of" in printed
    assert "(torch.export, int8)" in printed or "int8)" in printed
    assert out.is_file()


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--int8"], "--int8 and --calibration-images go together"),
        (["--int8", "--calibration-images", "CROPS", "--fp16"], "two precisions; choose one"),
        (["--int8", "--calibration-images", "FEW"], f"at least {INT8_MIN_IMAGES} images"),
    ],
)
def test_bad_int8_options_are_refused_before_the_network_loads(
    extra: list[str], message: str, images, capsys, tmp_path: Path
) -> None:
    crops, few = tmp_path / "crops", tmp_path / "few"
    for folder, count in ((crops, INT8_MIN_IMAGES), (few, 3)):
        folder.mkdir()
        for path in images[:count]:
            shutil.copy(path, folder)
    extra = [str(crops) if e == "CROPS" else str(few) if e == "FEW" else e for e in extra]
    argv = ["export", "--checkpoint", str(tmp_path / "no-such-checkpoint"), "--format", "onnx"]
    assert main([*argv, "--out", str(tmp_path / "m.onnx"), *extra]) == 2
    assert message in capsys.readouterr().err


def test_eval_measures_the_int8_file_on_the_checkpoints_test_set(model, int8_file, tmp_path: Path, capsys) -> None:
    checkpoint = str(model.checkpoint.path)
    runs = {}
    for name, extra in (("fp32", []), ("int8", ["--model", str(int8_file["path"])])):
        out = tmp_path / name
        argv = ["eval", "--checkpoint", checkpoint, "--no-report", "--no-progress", "--device", "cpu"]
        assert main([*argv, "--out", str(out), *extra]) == 0
        printed = capsys.readouterr().out
        runs[name] = json.loads((out / "eval.json").read_text())
    features = next(line for line in printed.splitlines() if line.startswith("features: "))
    assert str(int8_file["path"]) in features and "int8" in features and features.endswith("on onnxruntime")
    assert runs["int8"]["model_file"] == str(int8_file["path"]) and runs["int8"]["precision"] == "int8"
    # The same protocol and queries; INT8 moves the features a little, so the metrics stay close.
    fp32, int8_result = runs["fp32"]["result"], runs["int8"]["result"]
    assert [s["num_queries"] for s in int8_result["splits"]] == [s["num_queries"] for s in fp32["splits"]]
    assert abs(int8_result["mAP"] - fp32["mAP"]) < 0.03


def test_int8_is_for_onnx_and_openvino_only(model, images, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="--int8 quantises ONNX files"):
        export_image_branch(model, tmp_path / "m.pt", fmt="torchscript", int8_images=images[:16])


def test_a_calibration_file_that_is_no_image(model, images, tmp_path: Path) -> None:
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not a jpeg")
    with pytest.raises(ImageReadError, match=r"broken\.jpg"):
        export_image_branch(model, tmp_path / "m.onnx", fmt="onnx", int8_images=[*images[:16], str(broken)])
    assert not (tmp_path / "m.onnx").exists()


def test_a_file_beyond_the_tolerance_is_not_written(model, images, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(int8, "INT8_MIN_COSINE", 1.01)  # no INT8 file can reach it
    out = tmp_path / "m.onnx"
    with pytest.raises(ExportError, match="nothing was written"):
        export_image_branch(model, out, fmt="onnx", int8_images=images[:16])
    assert not out.exists()
