"""OpenVINO IRs: ``svllreid export --format openvino`` (fp32, and INT8 by NNCF), run wherever an ONNX file
runs (``extract``, ``index build``, ``search``, :class:`FeatureExtractor`; ``serve`` in
tests/serve/test_exported_model.py) with the same identity checks; and each bad input's message. Parity at
several batch sizes is in test_export.py."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from svllreid.cli import main
from svllreid.errors import MissingExtraError
from svllreid.export.exporter import checkpoint_calibration, export_image_branch, read_export_facts
from svllreid.export.int8 import INT8_MIN_COSINE, INT8_MIN_IMAGES
from svllreid.inference.calibration import sidecar_path, write_calibration
from svllreid.inference.extractor import FeatureExtractor
from svllreid.inference.gallery_search import IMAGE_BRANCH_ONLY
from svllreid.inference.openvino_backend import load_openvino_model
from svllreid.inference.trained import TrainedModel, load_trained_model
from tests.export.test_calibration_export import calibration_for

pytest.importorskip("openvino", reason="OpenVINO files need the openvino extra")
pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore::FutureWarning")]


@pytest.fixture(scope="module")
def irs(networks, exports) -> dict[str, Path]:
    return {name: exports(name, "openvino").path for name in networks}


@pytest.fixture(scope="module")
def crops(verification_run: Any) -> list[str]:
    """The tiny run's test crops: synthetic people of the kind its network saw."""
    folder = verification_run.run_dir.parents[1] / "synthetic" / "bounding_box_test"
    return [str(p) for p in sorted(folder.glob("*.jpg"))]


def test_extract_and_search_with_the_ir_equal_the_checkpoint(networks, irs, crops, tmp_path, capsys) -> None:
    images = tmp_path / "images"
    images.mkdir()
    for path in crops[:8]:
        shutil.copy(path, images)
    trained = networks["vit-sie"]
    runs = {}
    models = {"torch": ["--checkpoint", str(trained.checkpoint.path)], "ov": ["--model", str(irs["vit-sie"])]}
    for kind, model in models.items():
        out = tmp_path / f"{kind}.npz"
        assert main(["extract", *model, "--images", str(images), "--out", str(out), "--no-progress"]) == 0
        with np.load(out) as data:
            runs[kind] = {k: data[k] for k in data.files}
    assert runs["ov"]["paths"].tolist() == runs["torch"]["paths"].tolist()
    assert float(np.abs(runs["ov"]["feats"] - runs["torch"]["feats"]).max()) <= 1e-5
    # An index built with the checkpoint is searched with the IR, and the reverse, with the same ranking.
    build = ["index", "build", "--images", str(images), "--no-progress"]
    assert main([*build, "--checkpoint", str(trained.checkpoint.path), "--out", str(tmp_path / "t.index")]) == 0
    assert main([*build, "--model", str(irs["vit-sie"]), "--out", str(tmp_path / "o.index")]) == 0
    capsys.readouterr()
    query = str(images / Path(crops[3]).name)
    rankings = []
    for index, model in (("t.index", ["--model", str(irs["vit-sie"])]), ("o.index", []), ("t.index", [])):
        argv = ["search", "--index", str(tmp_path / index), "--query", query, "--topk", "5", "--json", "--no-progress"]
        assert main([*argv, *model]) == 0
        rankings.append(json.loads(capsys.readouterr().out)[0]["results"])
    for ranking in rankings[1:]:
        assert [h["path"] for h in ranking] == [h["path"] for h in rankings[0]]
        assert max(abs(a["score"] - b["score"]) for a, b in zip(ranking, rankings[0], strict=True)) < 1e-5
    # Another network's IR is refused, as another checkpoint is; descriptions need the text encoder.
    assert main(["search", "--index", str(tmp_path / "t.index"), "--query", query, "--model", str(irs["rn"])]) == 2
    assert "another network" in capsys.readouterr().err
    argv = ["search", "--index", str(tmp_path / "t.index"), "--text", "a person", "--model", str(irs["vit-sie"])]
    assert main(argv) == 2
    assert IMAGE_BRANCH_ONLY in capsys.readouterr().err


def test_the_ir_states_its_facts_and_runs_in_the_feature_extractor(networks, irs, crops) -> None:
    trained = networks["rn"]
    facts = read_export_facts(irs["rn"])
    assert facts["identity"]["weights_sha256"] == trained.weights_digest() and facts["precision"] == "fp32"
    assert facts["preprocessing"]["image_size"] == list(trained.image_size)
    extractor = FeatureExtractor(irs["rn"])
    assert extractor.runtime == "openvino" and "on openvino" in extractor.describe()
    reference = FeatureExtractor(trained.checkpoint.path, device="cpu")
    assert float(np.abs(extractor(crops[:5]) - reference(crops[:5])).max()) <= 1e-5


@pytest.fixture(scope="module")
def calibrated(verification_run: Any, tmp_path_factory: pytest.TempPathFactory) -> TrainedModel:
    """The tiny run's checkpoint, copied, with a same-identity threshold beside it."""
    folder = tmp_path_factory.mktemp("calibrated")
    checkpoint = shutil.copy(verification_run.run_dir / "checkpoints" / "model.safetensors", folder)
    trained = load_trained_model(checkpoint, "cpu")
    write_calibration(sidecar_path(trained.checkpoint.path), calibration_for(trained.weights_digest()))
    return trained


def test_an_int8_ir_stays_within_its_tolerance_and_carries_the_threshold(
    calibrated, crops, verification_run, tmp_path
) -> None:
    train = verification_run.run_dir.parents[1] / "synthetic" / "bounding_box_train"
    calibration_crops = [str(p) for p in sorted(train.glob("*.jpg"))[::4][:INT8_MIN_IMAGES]]
    report = export_image_branch(calibrated, tmp_path / "int8.xml", fmt="openvino", int8_images=calibration_crops)
    q = report.int8
    assert report.facts["precision"] == "int8" and "NNCF" in q["method"] and q["images"] == INT8_MIN_IMAGES
    assert INT8_MIN_COSINE <= q["min_cosine"] <= q["mean_cosine"] <= 1.0 + 1e-6
    # Quantised: the weights file is smaller than the network's fp32 weights.
    weights = sum(p.numel() for p in calibrated.model.parameters()) * 4
    assert (tmp_path / "int8.bin").stat().st_size < 0.6 * weights
    expected_calibration = checkpoint_calibration(calibrated)
    assert expected_calibration is not None and report.calibration == expected_calibration
    model = load_openvino_model(tmp_path / "int8.xml")
    assert model.calibration == expected_calibration and model.facts["int8"] == q
    # Test crops, which it was not calibrated on, stay close to the network.
    held_out = crops[:16]
    got = FeatureExtractor(tmp_path / "int8.xml")(held_out)
    expected = FeatureExtractor(calibrated.checkpoint.path, device="cpu")(held_out)
    assert ((got * expected).sum(1) / np.linalg.norm(got, axis=1)).min() >= INT8_MIN_COSINE


def test_bad_openvino_files_and_options_say_what_to_do(
    networks,
    irs,
    calibrated,
    crops,
    tmp_path,
    monkeypatch,
    capsys,
) -> None:
    lonely = tmp_path / "lonely.xml"
    shutil.copy(irs["rn"], lonely)  # without its .bin
    with pytest.raises(ValueError, match=r"lonely\.bin does not exist: an OpenVINO export is two files"):
        load_openvino_model(lonely)
    torn = tmp_path / "torn.xml"
    shutil.copy(irs["rn"], torn)
    shutil.copy(irs["vit-sie"].with_suffix(".bin"), torn.with_suffix(".bin"))  # another network's weights
    with pytest.raises(ValueError, match="come from different exports"):
        load_openvino_model(torn)
    # Weights of the same size (the same network exported again after more training): refused too.
    weights = bytearray(irs["rn"].with_suffix(".bin").read_bytes())
    weights[len(weights) // 2 - 8 :] = bytes(reversed(weights[len(weights) // 2 - 8 :]))
    torn.with_suffix(".bin").write_bytes(bytes(weights))
    with pytest.raises(ValueError, match="come from different exports"):
        load_openvino_model(torn)
    # An IR given where a checkpoint goes, and another network's IR given to eval, name the fix.
    images = str(Path(crops[0]).parent)
    assert main(["extract", "--checkpoint", str(irs["rn"]), "--images", images, "--out", str(tmp_path / "x.npz")]) == 2
    assert f"is an OpenVINO export, not a checkpoint: pass it as --model {irs['rn']}" in capsys.readouterr().err
    argv = ["eval", "--checkpoint", str(calibrated.checkpoint.path), "--model", str(irs["rn"]), "--no-progress"]
    assert main([*argv, "--out", str(tmp_path / "eval")]) == 2
    assert "another network" in capsys.readouterr().err
    ckpt = str(networks["rn"].checkpoint.path)
    export = ["export", "--checkpoint", ckpt, "--format", "openvino", "--out"]
    assert main([*export, str(tmp_path / "m.xml"), "--fp16"]) == 2
    assert "--fp16 is for GPUs" in capsys.readouterr().err
    assert main([*export, str(tmp_path / "m.onnx")]) == 2
    assert "an OpenVINO export is named *.xml" in capsys.readouterr().err
    monkeypatch.setitem(sys.modules, "openvino", None)  # as if not installed
    with pytest.raises(MissingExtraError, match=r"svllreid\[openvino\]"):
        load_openvino_model(irs["rn"])
    assert main([*export, str(tmp_path / "m.xml")]) == 2
    assert "pip install 'svllreid[openvino]'" in capsys.readouterr().err
    assert not (tmp_path / "m.xml").exists()


def test_int8_calibration_with_side_info_feeds_every_camera_id(networks, crops) -> None:
    from svllreid.export.int8 import calibration_batches

    trained = networks["vit-sie"]  # SIE on 3 cameras
    batches = calibration_batches(trained, crops[:20], side_info=True)
    ids = np.concatenate([feed["side_info"] for feed in batches])
    assert ids.shape == (20, 2) and sum(len(feed["images"]) for feed in batches) == 20
    assert sorted(set(ids[:, 0].tolist())) == [-1, 0, 1, 2] and set(ids[:, 1].tolist()) == {-1}
    assert all("side_info" not in feed for feed in calibration_batches(trained, crops[:4], side_info=False))
