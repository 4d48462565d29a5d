"""The onnxruntime backend and ``FeatureExtractor``: an exported file gives extract's features, an index
built by either runtime is searchable by the other, and every input kind a tracker has is taken."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import svllreid
from svllreid.cli import main
from svllreid.errors import CheckpointError, MissingExtraError
from svllreid.inference.onnx_backend import load_onnx_model

pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore::FutureWarning")]


@pytest.fixture(scope="module")
def photos(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Images of several sizes and shapes (one smaller than the input, one wider), PNG and JPEG."""
    folder = tmp_path_factory.mktemp("photos")
    rng = np.random.default_rng(0)
    for i, (w, h) in enumerate([(40, 90), (64, 128), (30, 50), (120, 80), (33, 66), (64, 128)]):
        low = rng.integers(0, 256, (8, 4, 3), dtype=np.uint8)
        image = Image.fromarray(low).resize((w, h), Image.Resampling.BILINEAR)
        image.save(folder / f"{i:02d}.{'png' if i % 2 else 'jpg'}")
    return folder


@pytest.fixture(scope="module")
def exported(networks, exports) -> dict[str, Path]:
    return {name: exports(name, "onnx").path for name in networks}


def extract(argv: list[str], out: Path) -> dict[str, np.ndarray]:
    assert main(["extract", *argv, "--out", str(out), "--no-progress"]) == 0
    with np.load(out) as data:
        return {k: data[k] for k in data.files}


def test_extract_with_the_onnx_file_equals_extract_with_the_checkpoint(networks, exported, photos, tmp_path):
    for name, trained in networks.items():
        torch_run = extract(["--checkpoint", str(trained.checkpoint.path), "--images", str(photos)], tmp_path / "t.npz")
        onnx_run = extract(["--model", str(exported[name]), "--images", str(photos)], tmp_path / "o.npz")
        assert onnx_run["paths"].tolist() == torch_run["paths"].tolist()
        assert float(np.abs(onnx_run["feats"] - torch_run["feats"]).max()) <= 1e-5, name


def test_an_index_built_by_one_runtime_is_searched_by_the_other(networks, exported, photos, tmp_path, capsys):
    trained = networks["vit-sie"]
    torch_index, onnx_index = tmp_path / "torch.index", tmp_path / "onnx.index"
    build = ["index", "build", "--images", str(photos), "--no-progress"]
    assert main([*build, "--checkpoint", str(trained.checkpoint.path), "--out", str(torch_index)]) == 0
    assert main([*build, "--model", str(exported["vit-sie"]), "--out", str(onnx_index)]) == 0
    capsys.readouterr()
    query = str(photos / "03.png")
    rankings = []
    for index, model in [(torch_index, ["--model", str(exported["vit-sie"])]), (onnx_index, []), (torch_index, [])]:
        argv = ["search", "--index", str(index), "--query", query, "--topk", "6", "--json", "--no-progress"]
        assert main([*argv, *model]) == 0
        rankings.append(json.loads(capsys.readouterr().out)[0]["results"])
    for ranking in rankings[1:]:
        assert [h["path"] for h in ranking] == [h["path"] for h in rankings[0]]
        assert max(abs(a["score"] - b["score"]) for a, b in zip(ranking, rankings[0], strict=True)) < 1e-5
    # Another network's file is refused, as another checkpoint is.
    argv = ["search", "--index", str(torch_index), "--query", query, "--model", str(exported["rn"])]
    assert main(argv) == 2
    assert "another network" in capsys.readouterr().err
    # A description needs the checkpoint's text encoder, which an ONNX file does not hold: say what to pass.
    argv = ["search", "--index", str(torch_index), "--text", "a person", "--model", str(exported["vit-sie"])]
    assert main(argv) == 2
    assert capsys.readouterr().err == (
        "svllreid: error: an exported file (ONNX or OpenVINO) holds only the image branch; text search needs the "
        "checkpoint's text encoder: pass --checkpoint CKPT, or nothing to use the checkpoint the index names\n"
    )


def test_the_onnx_model_refuses_other_weights(networks, exported) -> None:
    model = load_onnx_model(exported["rn"])
    identity = networks["rn"].identity()
    model.check_same_features(identity, "g.index")  # the same network and weights
    with pytest.raises(CheckpointError, match="other weights"):
        model.check_same_features({**identity, "weights_sha256": "0" * 64}, "g.index")


@pytest.mark.parametrize("runtime", ["torch", "onnxruntime"])
def test_feature_extractor_takes_every_input_kind_and_matches_extract(
    networks,
    exported,
    photos,
    tmp_path,
    runtime,
) -> None:
    trained = networks["vit-sie"]
    source = str(trained.checkpoint.path) if runtime == "torch" else str(exported["vit-sie"])
    extractor = svllreid.FeatureExtractor(source, device="cpu", batch_size=4)
    assert extractor.runtime == runtime
    paths = sorted(str(p) for p in photos.iterdir())
    expected = extract(["--checkpoint", str(trained.checkpoint.path), "--images", str(photos)], tmp_path / "e.npz")
    assert expected["paths"].tolist() == paths
    rgb = [np.asarray(Image.open(p).convert("RGB")) for p in paths]
    same_size = [a for a in rgb if a.shape == (128, 64, 3)]
    inputs = {
        "paths": (paths, {}),
        "PIL images": ([Image.open(p) for p in paths], {}),
        "RGB arrays": (rgb, {}),
        "BGR arrays (OpenCV)": ([a[:, :, ::-1] for a in rgb], {"bgr": True}),
    }
    for kind, (given, options) in inputs.items():
        feats = extractor(given, **options)
        assert feats.shape == expected["feats"].shape and feats.dtype == np.float32, kind
        assert float(np.abs(feats - expected["feats"]).max()) <= 1e-5, kind
    batch = torch.from_numpy(np.stack(same_size)).permute(0, 3, 1, 2).contiguous()  # uint8 [N, 3, H, W]
    rows = [paths.index(p) for p, a in zip(paths, rgb, strict=True) if a.shape == (128, 64, 3)]
    assert float(np.abs(extractor(batch) - expected["feats"][rows]).max()) <= 1e-5
    assert extractor([]).shape == (0, expected["feats"].shape[1])


def test_feature_extractor_names_what_it_cannot_take(networks, exported) -> None:
    extractor = svllreid.FeatureExtractor(str(exported["rn"]))
    with pytest.raises(ValueError, match="HWC uint8 with 3 channels"):
        extractor([np.zeros((10, 10), np.uint8)])
    with pytest.raises(ValueError, match=r"uint8 \[N, 3, H, W\]"):
        extractor(torch.zeros(2, 3, 8, 8))
    with pytest.raises(TypeError, match="cannot take a int"):
        extractor([3])
    with pytest.raises(ValueError, match="batch_size must be at least 1"):
        svllreid.FeatureExtractor(str(exported["rn"]), batch_size=0)
    with pytest.raises(ValueError, match="does not exist"):
        svllreid.FeatureExtractor("missing.onnx")
    with pytest.raises(ValueError, match="CPU provider"):
        svllreid.FeatureExtractor(str(exported["rn"]), device="cuda")
    with pytest.raises(TypeError, match="pass a list of images"):
        extractor(np.zeros((64, 32, 3), np.uint8))


def test_files_of_the_wrong_kind_name_the_right_option(networks, exported, photos, tmp_path, capsys) -> None:
    ckpt = str(networks["rn"].checkpoint.path)
    base = ["extract", "--images", str(photos), "--out", str(tmp_path / "f.npz")]
    assert main([*base, "--model", ckpt]) == 2
    assert "goes to --checkpoint" in capsys.readouterr().err
    assert main([*base, "--checkpoint", str(exported["rn"])]) == 2
    assert f"pass it as --model {exported['rn']}" in capsys.readouterr().err


def test_side_info_ids_outside_the_network_are_refused(exports) -> None:
    path = exports("vit-sie", "onnx", True).path
    model = load_onnx_model(path)  # 3 cameras, camera SIE
    images = torch.zeros(2, 3, 64, 32)
    assert model.model.encode_image(images, torch.tensor([2, -1])).shape == (2, 192)
    for bad in ([3, 0], [0, -2]):
        with pytest.raises(ValueError, match=f"camera id {bad[0] if bad[0] == 3 else -2} is outside"):
            model.model.encode_image(images, torch.tensor(bad))


def test_without_onnxruntime_the_message_names_the_extra(exported, monkeypatch, capsys, tmp_path) -> None:
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # as if not installed
    with pytest.raises(MissingExtraError, match=r"pip install 'svllreid\[onnx\]'"):
        load_onnx_model(exported["rn"])
    argv = ["extract", "--model", str(exported["rn"]), "--images", str(tmp_path), "--out", str(tmp_path / "f.npz")]
    (tmp_path / "a.png").write_bytes(b"")
    assert main(argv) == 2
    assert "svllreid[onnx]" in capsys.readouterr().err
