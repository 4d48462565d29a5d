"""Exports carry a calibrated checkpoint's same-identity threshold: ONNX metadata, TorchScript's extra file,
BoxMOT's ONNX file (with the cosine-distance gate ``1 - threshold``) and a model folder with its card; a
threshold chosen on other weights is refused; an uncalibrated checkpoint's exports record none."""

from __future__ import annotations

import io
import json
import shutil
from contextlib import redirect_stdout
from pathlib import Path

import onnx
import pytest
import torch

from svllreid.cli import main
from svllreid.errors import CalibrationError
from svllreid.export import boxmot as boxmot_module
from svllreid.export.boxmot import export_boxmot
from svllreid.export.exporter import TORCHSCRIPT_CALIBRATION, export_image_branch
from svllreid.export.pretrained import CALIBRATION_FILE, save_pretrained
from svllreid.inference.calibration import Calibration, read_calibration, sidecar_path, write_calibration
from svllreid.inference.onnx_backend import CALIBRATION_KEY, DISTANCE_KEY, METADATA_KEY, load_onnx_model
from svllreid.inference.trained import TrainedModel, load_trained_model

pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore::FutureWarning")]

THRESHOLD = 0.5


def calibration_for(digest: str) -> Calibration:
    return Calibration(
        threshold=THRESHOLD,
        target="fpr",
        target_value=1e-3,
        weights_sha256=digest,
        validation={"dataset": "synthetic", "identities": 5, "tpr": 0.8, "fpr": 0.001},
        test={"tpr": 0.75, "fpr": 0.002},
    )


def copy_checkpoint(run_dir: Path, folder: Path) -> Path:
    """The run's delivered model copied into ``folder`` (the run directory is shared by other tests)."""
    folder.mkdir(parents=True)
    return Path(shutil.copy2(run_dir / "checkpoints" / "model.safetensors", folder / "model.safetensors"))


@pytest.fixture(scope="module")
def models(verification_run, tmp_path_factory: pytest.TempPathFactory) -> dict[str, TrainedModel]:
    """The same weights three times: calibrated, uncalibrated, and with a threshold of other weights."""
    root = tmp_path_factory.mktemp("threshold-export")
    folders = {"calibrated": "with", "uncalibrated": "without", "foreign": "other-weights"}  # no word in a path
    out = {
        name: load_trained_model(copy_checkpoint(verification_run.run_dir, root / folder), "cpu")
        for name, folder in folders.items()
    }
    digest = out["calibrated"].weights_digest()
    write_calibration(sidecar_path(out["calibrated"].checkpoint.path), calibration_for(digest))
    write_calibration(sidecar_path(out["foreign"].checkpoint.path), calibration_for("f" * 64))
    return out


@pytest.fixture(scope="module")
def calibrated_onnx(models, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """``svllreid export --format onnx`` of the calibrated checkpoint: the file and what the command printed."""
    out = tmp_path_factory.mktemp("onnx") / "m.onnx"
    printed = io.StringIO()
    with redirect_stdout(printed):
        argv = ["export", "--checkpoint", str(models["calibrated"].checkpoint.path), "--format", "onnx"]
        assert main([*argv, "--out", str(out)]) == 0
    return out, printed.getvalue()


def onnx_props(path: Path) -> dict[str, str]:
    return {p.key: p.value for p in onnx.load(str(path), load_external_data=False).metadata_props}


def script_calibration(path: Path) -> str | bytes:
    """The TorchScript file's calibration extra file (empty where it has none)."""
    extra: dict[str, str | bytes] = {TORCHSCRIPT_CALIBRATION: ""}
    torch.jit.load(str(path), map_location="cpu", _extra_files=extra)
    return extra[TORCHSCRIPT_CALIBRATION]


def test_the_onnx_export_carries_the_threshold_and_the_model_reads_it_back(models, calibrated_onnx) -> None:
    expected = calibration_for(models["calibrated"].weights_digest())
    out, printed = calibrated_onnx
    assert f"cosine similarity >= {THRESHOLD:.4f}" in printed and CALIBRATION_KEY in printed
    props = onnx_props(out)
    assert METADATA_KEY in props  # the facts are still there
    assert Calibration.from_dict(json.loads(props[CALIBRATION_KEY]), "m.onnx") == expected
    assert float(props[DISTANCE_KEY]) == pytest.approx(1 - THRESHOLD)
    assert load_onnx_model(out).calibration == expected


def test_the_deploy_page_snippet_reads_the_tracker_distance(calibrated_onnx, tmp_path, monkeypatch) -> None:
    """docs/DEPLOY.md's snippet, run as written (onnxruntime alone), finds 1 - threshold."""
    page = (Path(__file__).resolve().parents[2] / "docs" / "DEPLOY.md").read_text(encoding="utf-8")
    blocks = [block.split("```")[0] for block in page.split("```python\n")[1:]]
    snippet = next(block for block in blocks if "svllreid.calibration" in block)
    shutil.copy(calibrated_onnx[0], tmp_path / "market-svll.onnx")
    monkeypatch.chdir(tmp_path)
    scope: dict = {}
    exec(compile(snippet, "docs/DEPLOY.md", "exec"), scope)
    assert scope["max_cos_dist"] == pytest.approx(1 - THRESHOLD)


def test_an_onnx_file_whose_threshold_names_other_weights_is_refused_when_read(calibrated_onnx, tmp_path) -> None:
    proto = onnx.load(str(calibrated_onnx[0]))
    props = {p.key: p.value for p in proto.metadata_props}
    props[CALIBRATION_KEY] = calibration_for("e" * 64).to_json()
    onnx.helper.set_model_props(proto, props)
    onnx.save(proto, str(tmp_path / "edited.onnx"))
    with pytest.raises(CalibrationError, match="chosen on the features of another network"):
        _ = load_onnx_model(tmp_path / "edited.onnx").calibration


def test_the_torchscript_export_carries_the_threshold(models, tmp_path) -> None:
    trained = models["calibrated"]
    report = export_image_branch(trained, tmp_path / "m.pt", fmt="torchscript")
    expected = calibration_for(trained.weights_digest())
    assert report.calibration == expected
    assert Calibration.from_dict(json.loads(script_calibration(tmp_path / "m.pt")), "m.pt") == expected


def test_boxmot_onnx_carries_the_distance_and_the_pt_route_carries_none(models, tmp_path, monkeypatch) -> None:
    trained = models["calibrated"]
    expected = calibration_for(trained.weights_digest())
    written = export_boxmot(trained, tmp_path / "onnx")  # the tiny network: the ONNX route
    assert written.kind == "onnx" and written.carries_calibration and written.calibration == expected
    props = onnx_props(written.path)
    assert float(props[DISTANCE_KEY]) == pytest.approx(1 - THRESHOLD)
    assert Calibration.from_dict(json.loads(props[CALIBRATION_KEY]), "boxmot") == expected
    # The .pt route's features (after the BNNecks, ImageNet statistics) are not those the threshold was
    # chosen on: the file carries none, and says why through the export's result.
    monkeypatch.setattr(boxmot_module, "pt_incompatibility", lambda _: None)
    written = export_boxmot(trained, tmp_path / "pt", route="pt")
    payload = torch.load(written.path, weights_only=True)
    assert written.kind == "pt" and written.calibration == expected and not written.carries_calibration
    assert set(payload) == {"state_dict", "model_name", "num_classes"}


def test_a_model_folder_holds_the_threshold_and_its_card_states_it(models, tmp_path, capsys) -> None:
    trained = models["calibrated"]
    folder = tmp_path / "folder"
    assert main(["model", "save", str(trained.checkpoint.path), "--out", str(folder)]) == 0
    assert "same identity at FPR 1e-3" in capsys.readouterr().out
    assert read_calibration(folder / CALIBRATION_FILE) == calibration_for(trained.weights_digest())
    card = (folder / "README.md").read_text(encoding="utf-8")
    assert f"cosine similarity ≥ **{THRESHOLD:.4f}**" in card and "same identity at FPR 1e-3" in card
    assert f"`{CALIBRATION_FILE}`" in card and "uncalibrated" not in card
    # Saved again from the folder, the threshold comes along (its sidecar is the folder's file).
    again = save_pretrained(folder, tmp_path / "again")
    assert again.calibration == calibration_for(trained.weights_digest())
    assert (tmp_path / "again" / CALIBRATION_FILE).is_file()


def test_a_threshold_of_other_weights_fails_every_export(models, tmp_path) -> None:
    trained = models["foreign"]
    message = "chosen on the features of another network"
    for fmt, name in (("onnx", "m.onnx"), ("torchscript", "m.pt")):
        with pytest.raises(CalibrationError, match=message):
            export_image_branch(trained, tmp_path / name, fmt=fmt)
        assert not (tmp_path / name).exists()
    with pytest.raises(CalibrationError, match=message):
        export_boxmot(trained, tmp_path / "boxmot")
    with pytest.raises(CalibrationError, match=message):
        save_pretrained(trained.checkpoint.path, tmp_path / "folder")
    assert not (tmp_path / "folder").exists()


def test_without_a_sidecar_exports_record_no_threshold_and_say_how_to_calibrate(models, tmp_path, capsys) -> None:
    trained = models["uncalibrated"]
    ckpt = str(trained.checkpoint.path)
    assert main(["export", "--checkpoint", ckpt, "--format", "torchscript", "--out", str(tmp_path / "m.pt")]) == 0
    printed = [line for line in capsys.readouterr().out.splitlines() if line.strip().startswith("uncalibrated")]
    assert len(printed) == 1 and "svllreid calibrate --checkpoint CKPT" in printed[0]
    assert not script_calibration(tmp_path / "m.pt")
    written = export_boxmot(trained, tmp_path / "boxmot")
    assert written.calibration is None and not written.carries_calibration
    props = onnx_props(written.path)
    assert CALIBRATION_KEY not in props and DISTANCE_KEY not in props
    assert load_onnx_model(written.path).calibration is None
    saved = save_pretrained(ckpt, tmp_path / "folder")
    assert saved.calibration is None and not (tmp_path / "folder" / CALIBRATION_FILE).exists()
    card = (tmp_path / "folder" / "README.md").read_text(encoding="utf-8")
    assert [line for line in card.splitlines() if "uncalibrated" in line] == [
        "- Same person: uncalibrated. No same-identity threshold was chosen for these weights; `svllreid calibrate` "
        "chooses one on labelled held-out identities."
    ]
