"""``svllreid calibrate``: the threshold chosen on held-out identities, stored beside the checkpoint and in
an index, and the decisions of search and FeatureExtractor that follow it; every bad input's message."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from svllreid.cli import main
from svllreid.errors import CalibrationError
from svllreid.inference.calibration import Calibration, read_calibration, sidecar_path, write_calibration
from svllreid.inference.extractor import FeatureExtractor
from svllreid.search import GalleryIndex
from tests.conftest import write_images


@pytest.fixture(scope="module")
def calibrated(verification_run: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """A copy of the tiny run's checkpoint (the run is shared) and an index of its test images with
    identity labels (the first test calibrates it at FPR 0.05 by the CLI)."""
    folder = tmp_path_factory.mktemp("calibrated")
    patch = pytest.MonkeyPatch()
    patch.setenv("SVLLREID_CACHE", str(folder / "cache"))  # the compiled query encoder: not the user's cache
    checkpoint = folder / "model.safetensors"
    shutil.copy(verification_run.run_dir / "checkpoints" / "model.safetensors", checkpoint)
    synthetic = verification_run.run_dir.parents[1] / "synthetic"
    gallery = sorted((synthetic / "bounding_box_test").glob("*.jpg"))
    index = folder / "gallery.npz"
    args = ["--no-progress", "--device", "cpu"]
    assert main(["index", "build", "--checkpoint", str(checkpoint), "--images", str(synthetic / "bounding_box_test"),
                 "--out", str(index), "--pid-regex", r"^(\d+)_", *args]) == 0  # fmt: skip
    yield {"folder": folder, "checkpoint": checkpoint, "index": index, "gallery": gallery, "args": args}
    patch.undo()


def calibrate(capsys: pytest.CaptureFixture[str], *argv: str) -> dict[str, Any]:
    assert main(["calibrate", *argv, "--json", "--no-progress", "--device", "cpu"]) == 0
    return json.loads(capsys.readouterr().out)


def test_calibrate_chooses_on_validation_and_measures_test(calibrated: dict[str, Any], capsys) -> None:
    checkpoint = calibrated["checkpoint"]
    data = calibrate(capsys, "--checkpoint", str(checkpoint), "--fpr", "0.05")
    validation = data["validation"]
    assert validation["identities"] == 5  # the run's held-out identities (data.validation_ids=5)
    assert "root" not in validation and data["checkpoint"] == "model.safetensors"  # no local paths
    assert validation["fpr"] <= 0.05 and validation["false_accepts"] >= 1
    assert 0 < validation["tpr"] <= 1 and validation["positive_pairs"] > 0
    test = data["test"]
    assert test["positive_pairs"] > 0 and test["negative_pairs"] > 0 and test["splits"] == ["default"]
    assert 0 <= test["tpr"] <= 1 and 0 <= test["fpr"] <= 1
    written = Path(data["written"][0])
    assert written == sidecar_path(checkpoint) == checkpoint.with_name("model.calibration.json")
    stored = read_calibration(written)
    assert stored.threshold == data["threshold"] and stored.operating_point == "same identity at FPR 0.05"
    # --tpr fixes the other rate: a higher threshold for a lower TPR.
    other = calibrate(capsys, "--checkpoint", str(checkpoint), "--tpr", "0.5", "--no-sidecar", "--no-test")
    assert other["validation"]["tpr"] >= 0.5 and other["written"] == [] and other["test"] is None


def test_search_and_extractor_decide_by_the_threshold(calibrated: dict[str, Any], capsys) -> None:
    checkpoint, index = calibrated["checkpoint"], calibrated["index"]
    calibration = read_calibration(sidecar_path(checkpoint))  # the previous test's (module order)
    queries = [str(p) for p in calibrated["gallery"][:3]]
    assert main(["search", "--index", str(index), "--query", *queries, "--topk", "8", "--json",
                 *calibrated["args"]]) == 0  # fmt: skip
    answers = json.loads(capsys.readouterr().out)
    decided = [hit["same_identity"] for answer in answers for hit in answer["results"]]
    for answer in answers:
        assert answer["decision"]["calibrated"] and answer["decision"]["threshold"] == calibration.threshold
        assert answer["decision"]["operating_point"] == "same identity at FPR 0.05"
        for hit in answer["results"]:
            assert hit["same_identity"] == (hit["score"] >= calibration.threshold)
    assert any(decided) and not all(decided)  # the threshold falls inside the lists
    # The text output names the operating point and marks each hit.
    assert main(["search", "--index", str(index), "--query", queries[0], "--topk", "8", *calibrated["args"]]) == 0
    out = capsys.readouterr().out
    assert any(line.startswith("same identity at FPR 0.05: cosine similarity >= ") for line in out.splitlines())
    assert " same  " in out and " other  " in out
    # FeatureExtractor: the same threshold, for images and for features.
    extractor = FeatureExtractor(checkpoint, device="cpu")
    assert extractor.calibration == calibration
    feats = extractor(queries)
    sims = feats @ feats.T
    np.testing.assert_array_equal(extractor.same_identity(feats, feats), sims >= calibration.threshold)
    verdict = extractor.verify(queries[0], queries[1])
    assert verdict["same_identity"] == (verdict["score"] >= calibration.threshold)
    assert verdict["operating_point"] == "same identity at FPR 0.05"
    given = float(np.median(sims))  # a threshold given outright wins over the calibrated one
    np.testing.assert_array_equal(
        FeatureExtractor(checkpoint, device="cpu", threshold=given).same_identity(feats, feats), sims >= given
    )


def test_calibrate_into_an_index(calibrated: dict[str, Any], capsys, tmp_path: Path) -> None:
    index = tmp_path / "gallery.npz"
    shutil.copy(calibrated["index"], index)
    data = calibrate(capsys, "--index", str(index), "--fpr", "0.1", "--no-test")
    assert data["written"] == [str(index)]  # with --index, only the index (the sidecar stays FPR 0.05)
    stored = GalleryIndex.load(index).meta["calibration"]
    assert stored["threshold"] == data["threshold"] and stored["target_value"] == 0.1
    # The index's threshold wins over the checkpoint's sidecar (FPR 0.05).
    assert main(["search", "--index", str(index), "--query", str(calibrated["gallery"][0]), "--json",
                 *calibrated["args"]]) == 0  # fmt: skip
    (answer,) = json.loads(capsys.readouterr().out)
    assert answer["decision"]["operating_point"] == "same identity at FPR 0.1"


def test_a_threshold_of_another_network_is_refused(calibrated: dict[str, Any], capsys, tmp_path: Path) -> None:
    index = GalleryIndex.load(calibrated["index"])
    foreign = Calibration(0.5, "fpr", 1e-3, "f" * 64, {"dataset": "elsewhere", "identities": 3})
    index.meta["calibration"] = foreign.to_dict()
    path = index.save(tmp_path / "foreign.npz")
    assert main(["search", "--index", str(path), "--query", str(calibrated["gallery"][0]), *calibrated["args"]]) == 2
    assert "chosen on the features of another network" in capsys.readouterr().err
    # The same for a sidecar beside a copy of the checkpoint.
    copy = tmp_path / "model.safetensors"
    shutil.copy(calibrated["checkpoint"], copy)
    write_calibration(sidecar_path(copy), foreign)
    with pytest.raises(CalibrationError, match="another network"):
        FeatureExtractor(copy, device="cpu").same_identity(np.ones((1, 4)), np.ones((1, 4)))


def test_an_uncalibrated_model_says_so(verification_run: Any, tmp_path: Path, capsys) -> None:
    copy = tmp_path / "model.safetensors"
    shutil.copy(verification_run.run_dir / "checkpoints" / "model.safetensors", copy)
    extractor = FeatureExtractor(copy, device="cpu")
    assert extractor.calibration is None
    with pytest.raises(CalibrationError, match=r"uncalibrated.*svllreid calibrate"):
        extractor.same_identity(np.ones((1, 4)), np.ones((1, 4)))
    with pytest.raises(CalibrationError, match="uncalibrated"):
        extractor.verify(np.ones(4), np.ones(4))


@pytest.mark.parametrize(
    ("option", "message"),
    [
        (["--fpr", "0"], r"--fpr is a false positive rate in \(0, 1\)"),
        (["--fpr", "1.5"], r"--fpr is a false positive rate in \(0, 1\)"),
        (["--tpr", "0"], r"--tpr is a true positive rate in \(0, 1\]"),
    ],
)
def test_rates_out_of_range(calibrated: dict[str, Any], capsys, option: list[str], message: str) -> None:
    assert main(["calibrate", "--checkpoint", str(calibrated["checkpoint"]), *option, "--no-sidecar"]) == 2
    assert pytest.importorskip("re").search(message, capsys.readouterr().err)


def test_an_fpr_the_pairs_cannot_resolve(calibrated: dict[str, Any], capsys) -> None:
    argv = ["calibrate", "--checkpoint", str(calibrated["checkpoint"]), "--fpr", "1e-7", "--no-sidecar", "--no-test"]
    assert main([*argv, "--device", "cpu", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "--fpr 1e-07 is below what the validation split" in err
    smallest = float(err.split("Ask for --fpr ")[1].split()[0])
    data = calibrate(capsys, "--checkpoint", str(calibrated["checkpoint"]), "--fpr", str(smallest), "--no-sidecar",
                     "--no-test")  # fmt: skip
    assert data["validation"]["false_accepts"] == 1  # the smallest resolvable: one false accept


def test_the_training_set_without_held_out_identities(tmp_path: Path, capsys) -> None:
    """A model that trained on every identity of its set cannot be calibrated on it."""
    from svllreid.config import load_config
    from svllreid.training.run import train
    from tests.tiny_runs import TINY, small

    overrides = small(tmp_path, "all", **{"stage1.epochs": 1, "stage2.epochs": 1, "data.validation_ids": 0})
    run = train(load_config(TINY, overrides), progress=False).run_dir
    assert main(["calibrate", "--checkpoint", str(run), "--device", "cpu", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "trained on every training identity of synthetic" in err and "--validation-ids N" in err


def test_a_set_without_two_images_of_an_identity(calibrated: dict[str, Any], tmp_path: Path, capsys) -> None:
    root = tmp_path / "own"
    for split, names in {
        "train": [f"{pid:04d}_c1_0.jpg" for pid in range(8)],  # one image per training identity
        "query": ["0100_c1_0.jpg", "0101_c1_0.jpg"],
        "gallery": ["0100_c2_0.jpg", "0101_c2_0.jpg"],
    }.items():
        write_images(root / split, names)
    argv = ["calibrate", "--checkpoint", str(calibrated["checkpoint"]), "--dataset", "folder", "--root", str(root),
            "-o", r"pid_regex=^(\d+)_", "-o", r"camera_regex=_c(\d+)_", "--validation-ids", "3", "--no-sidecar",
            "--device", "cpu", "--no-progress"]  # fmt: skip
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "cannot hold identities of folder out to calibrate on" in err and "two images or more" in err


def test_a_threshold_of_other_features_flipped_or_not_is_refused(calibrated: dict[str, Any]) -> None:
    """The sidecar was chosen without flipped images; an extractor that adds them refuses it."""
    with pytest.raises(CalibrationError, match="without their flipped images"):
        FeatureExtractor(calibrated["checkpoint"], device="cpu", flip=True).calibration  # noqa: B018


def test_a_model_folders_threshold_reaches_search(calibrated: dict[str, Any], capsys, tmp_path: Path) -> None:
    """An index built from a model folder finds the folder's threshold (model.calibration.json)."""
    folder = tmp_path / "folder"
    assert main(["model", "save", str(calibrated["checkpoint"]), "--out", str(folder)]) == 0
    assert (folder / "model.calibration.json").is_file()
    images = tmp_path / "images"
    images.mkdir()
    for path in calibrated["gallery"][:6]:
        shutil.copy(path, images / path.name)
    index = tmp_path / "folder.npz"
    assert main(["index", "build", "--checkpoint", str(folder), "--images", str(images), "--out", str(index),
                 *calibrated["args"]]) == 0  # fmt: skip
    capsys.readouterr()
    assert main(["search", "--index", str(index), "--query", str(images / calibrated["gallery"][0].name), "--json",
                 *calibrated["args"]]) == 0  # fmt: skip
    (answer,) = json.loads(capsys.readouterr().out)
    assert answer["decision"]["calibrated"] and answer["decision"]["operating_point"] == "same identity at FPR 0.05"


def test_the_training_set_elsewhere_offers_only_its_held_out_identities(
    verification_run: Any, calibrated: dict[str, Any], capsys, tmp_path: Path
) -> None:
    """A copy of the training images at another root is recognised by their bytes: only the identities
    held out in training are calibrated on, and another number of them is refused."""
    copy = tmp_path / "copy"
    shutil.copytree(verification_run.run_dir.parents[1] / "synthetic", copy)
    options = ["-o", "ids=20", "-o", "cameras=3", "-o", "images_per_camera=3", "-o", "seed=1"]
    argv = ["--checkpoint", str(calibrated["checkpoint"]), "--dataset", "synthetic", "--root", str(copy), *options,
            "--fpr", "0.05"]  # fmt: skip
    assert main(["calibrate", *argv, "--no-sidecar", "--no-test", "--device", "cpu", "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "model.safetensors trained on (a copy of" in out and ": 5 identities the model did not" in out
    assert main(["calibrate", *argv, "--validation-ids", "3", "--no-sidecar", "--device", "cpu"]) == 2
    assert "would calibrate on other identities, some of which it trained on" in capsys.readouterr().err
