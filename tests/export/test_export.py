"""``svllreid export``: ONNX and TorchScript files that give the network's features at any batch size,
state their preprocessing, and refuse what they cannot do with a message."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch

from svllreid.cli import main
from svllreid.errors import ExportError, MissingExtraError
from svllreid.export import exporter as export_module
from svllreid.export.exporter import export_image_branch, read_export_facts
from svllreid.inference.checkpoint import write_checkpoint
from svllreid.inference.trained import TrainedModel

# Each ONNX export takes seconds; torch's deprecation notices of TorchScript are not ours to show.
pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore::FutureWarning")]


def network_features(trained: TrainedModel, images: torch.Tensor, cameras: torch.Tensor | None) -> np.ndarray:
    ids = cameras if cameras is not None else torch.full((len(images),), -1, dtype=torch.long)
    with torch.no_grad():
        return trained.model.encode_image(images, ids, torch.full_like(ids, -1)).numpy()


def run_export(path: Path, images: torch.Tensor, cameras: torch.Tensor | None) -> np.ndarray:
    side = None if cameras is None else torch.stack([cameras, torch.full_like(cameras, -1)], dim=1)
    if path.suffix == ".onnx":
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        feed = {"images": images.numpy(), **({"side_info": side.numpy()} if side is not None else {})}
        return session.run(None, feed)[0]
    if path.suffix == ".xml":
        from svllreid.inference.openvino_backend import load_openvino_model

        return load_openvino_model(path).model.encode_image(images, *(() if cameras is None else (cameras,))).numpy()
    module = torch.jit.load(str(path))
    with torch.no_grad():
        return (module(images) if side is None else module(images, side)).numpy()


@pytest.mark.parametrize(
    ("name", "fmt", "side_info"),
    [
        ("vit-sie", "onnx", True),
        ("vit-sie", "onnx", False),
        ("rn", "onnx", False),
        ("vit-sie", "torchscript", True),
        ("rn", "torchscript", False),
        ("vit-sie", "openvino", True),
        ("rn", "openvino", False),
    ],
)
def test_the_export_gives_the_network_features_at_batches_1_2_and_7(networks, exports, name, fmt, side_info):
    trained = networks[name]
    report = exports(name, fmt, side_info)  # written once in the session: other test files check it too
    path = report.path
    assert report.inputs == (["images", "side_info"] if side_info else ["images"])
    exporters = {"onnx": "torch.export", "openvino": "torch.export, then openvino.convert_model"}
    assert report.exporter == exporters.get(fmt, "torch.jit.trace")
    generator = torch.Generator().manual_seed(5)
    for batch in (1, 2, 7):
        images = torch.randn(batch, 3, 64, 32, generator=generator)
        cameras = torch.randint(-1, 3, (batch,), generator=generator) if side_info else None
        got = run_export(path, images, cameras)
        assert got.shape == (batch, report.feature_dim)
        assert float(np.abs(got - network_features(trained, images, cameras)).max()) <= 1e-5, batch


def test_the_file_states_its_preprocessing_and_network(networks, exports) -> None:
    trained = networks["vit-sie"]
    onnx_file, script_file = exports("vit-sie", "onnx").path, exports("vit-sie", "torchscript", True).path
    onnx_facts, script_facts = read_export_facts(onnx_file), read_export_facts(script_file)
    for facts in (onnx_facts, script_facts):
        pre = facts["preprocessing"]
        assert pre["image_size"] == [64, 32] and pre["mean"] == trained.config.data.pixel_mean
        assert pre["std"] == trained.config.data.pixel_std and pre["resize"].startswith(trained.interpolation)
        assert facts["identity"]["weights_sha256"] == trained.weights_digest()
        assert "L2-normalised" in facts["output"]
    assert onnx_facts["side_info"] == "fixed as unknown (-1)"  # single input: the file says so
    assert script_facts["side_info"] == "input side_info" and "side_info" in script_facts["inputs"]
    session = ort.InferenceSession(str(onnx_file), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["images"] and session.get_inputs()[0].shape[0] == "batch"


def test_the_older_exporter_is_used_where_torch_export_fails(networks, tmp_path, monkeypatch) -> None:
    def refuse(*args, **kwargs):
        raise RuntimeError("torch.export cannot take this model")

    monkeypatch.setattr(torch.export, "Dim", refuse)
    trained = networks["vit-sie"]
    report = export_image_branch(trained, tmp_path / "old.onnx", fmt="onnx", side_info=True)
    assert report.exporter == "torchscript-based ONNX exporter"
    assert read_export_facts(tmp_path / "old.onnx")["exporter"] == report.exporter
    images, cameras = torch.randn(7, 3, 64, 32), torch.tensor([0, 1, 2, -1, 0, 1, 2])
    got = run_export(tmp_path / "old.onnx", images, cameras)
    assert float(np.abs(got - network_features(trained, images, cameras)).max()) <= 1e-5


def test_fp16_exports_run_in_half_precision(networks, tmp_path) -> None:
    report = export_image_branch(networks["rn"], tmp_path / "half.onnx", fmt="onnx", fp16=True)
    assert report.facts["precision"] == "fp16" and report.max_abs_diff <= export_module.TOLERANCE["fp16"]
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    session = ort.InferenceSession(str(tmp_path / "half.onnx"), options, providers=["CPUExecutionProvider"])
    assert session.get_inputs()[0].type == "tensor(float16)"


def test_a_file_that_does_not_reproduce_the_features_is_not_written(networks, tmp_path, monkeypatch) -> None:
    monkeypatch.setitem(export_module.TOLERANCE, "fp32", 0.0)  # any rounding difference now fails the check
    with pytest.raises(ExportError, match="differ from the network's"):
        export_image_branch(networks["vit-sie"], tmp_path / "bad.onnx", fmt="onnx")
    assert not (tmp_path / "bad.onnx").exists()


def test_bad_requests_get_clear_messages(networks, tmp_path, monkeypatch, capsys) -> None:
    with pytest.raises(ValueError, match="unknown export format 'tflite'"):
        export_image_branch(networks["rn"], tmp_path / "x", fmt="tflite")
    with pytest.raises(ValueError, match="no SIE"):
        export_image_branch(networks["rn"], tmp_path / "x.onnx", fmt="onnx", side_info=True)
    with pytest.raises(ValueError, match="--opset applies to ONNX"):
        export_image_branch(networks["rn"], tmp_path / "x.pt", fmt="torchscript", opset=17)
    with pytest.raises(ValueError, match=r"an ONNX export is named \*\.onnx"):
        export_image_branch(networks["rn"], tmp_path / "x.pt", fmt="onnx")
    with pytest.raises(ValueError, match="a TorchScript export is named"):
        export_image_branch(networks["rn"], tmp_path / "x.onnx", fmt="torchscript")
    monkeypatch.setitem(sys.modules, "onnxscript", None)  # as if not installed
    with pytest.raises(MissingExtraError, match=r"svllreid\[onnx\]"):
        export_image_branch(networks["rn"], tmp_path / "x.onnx", fmt="onnx")
    ckpt = str(networks["rn"].checkpoint.path)
    assert main(["export", "--checkpoint", ckpt, "--format", "onnx", "--out", str(tmp_path / "x.onnx")]) == 2
    assert "pip install 'svllreid[onnx]'" in capsys.readouterr().err
    monkeypatch.delitem(sys.modules, "onnxscript")
    not_a_model = tmp_path / "notes.safetensors"
    not_a_model.write_bytes(b"not a checkpoint")
    assert main(["export", "--checkpoint", str(not_a_model), "--format", "torchscript", "--out", "x.pt"]) == 2
    assert "not a readable safetensors checkpoint" in capsys.readouterr().err
    pretraining = tmp_path / "clip.safetensors"  # what 'svllreid pretrain' writes: a CLIP, no ReID heads
    write_checkpoint(pretraining, torch.nn.Linear(2, 2), {"task": "pretrain", "config": {}, "stage": 0})
    assert main(["export", "--checkpoint", str(pretraining), "--format", "onnx", "--out", "x.onnx"]) == 2
    assert "pretraining checkpoint (a CLIP), not a trained ReID model" in capsys.readouterr().err
    with pytest.raises(ValueError, match="not written by 'svllreid export'"):
        torch.jit.save(torch.jit.script(torch.nn.Identity()), str(tmp_path / "plain.pt"))
        read_export_facts(tmp_path / "plain.pt")


def test_the_command_prints_what_it_wrote(networks, tmp_path, capsys) -> None:
    ckpt = str(networks["vit-sie"].checkpoint.path)
    out = tmp_path / "cli.onnx"
    argv = ["export", "--checkpoint", ckpt, "--format", "onnx", "--out", str(out), "--side-info", "--json"]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "inputs images, side_info (dynamic batch) -> features [B, 192]" in printed
    assert "checked with onnxruntime (CPU): max abs difference" in printed
    metadata = json.loads(printed[printed.index("{") :])
    assert metadata["path"] == str(out) and metadata["max_abs_diff"] <= 1e-5


def test_the_readme_onnxruntime_snippet_gives_the_extract_features(networks, exports, tmp_path, monkeypatch) -> None:
    """The deployment page's snippet (docs/DEPLOY.md), run as written on an exported file, normalises once
    and matches extract."""
    from PIL import Image

    from svllreid.inference.features import extract_file_features

    page = (Path(__file__).resolve().parents[2] / "docs" / "DEPLOY.md").read_text()
    snippet = next(b for b in page.split("```python\n")[1:] if "ort.InferenceSession(" in b).split("```")[0]
    trained = networks["rn"]
    shutil.copy(exports("rn", "onnx").path, tmp_path / "market-svll.onnx")  # the name the snippet opens
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (150, 70, 3), dtype=np.uint8)).save(tmp_path / "person.jpg")
    monkeypatch.chdir(tmp_path)
    scope: dict = {}
    exec(compile(snippet, "docs/DEPLOY.md", "exec"), scope)
    extracted = extract_file_features(
        trained.model,
        [str(tmp_path / "person.jpg")],
        transform=trained.transform,
        image_size=trained.image_size,
        device=torch.device("cpu"),
        progress=False,
        interpolation=trained.interpolation,
    )
    assert scope["features"].shape == tuple(extracted.feats.shape)
    assert float(np.abs(scope["features"] - extracted.feats.numpy()).max()) <= 1e-5
