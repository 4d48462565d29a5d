"""``export --format boxmot``: CLIP-ReID's key names for BoxMOT's CLIP builder, and an ONNX file taking
BoxMOT's own crops for every other network."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch
import torch.nn.functional as F

import svllreid
from svllreid.cli import main
from svllreid.config import config_to_dict, load_config
from svllreid.export.boxmot import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    BoxmotInput,
    boxmot_state_dict,
    export_boxmot,
    pt_incompatibility,
    uses_imagenet_statistics,
)
from svllreid.inference.checkpoint import Checkpoint
from svllreid.inference.trained import TrainedModel

pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore::FutureWarning")]


def clipreid_vit_b16_parameters(num_classes: int) -> dict[str, tuple[int, ...]]:
    """Names and shapes of what BoxMOT's CLIP builder holds: CLIP-ReID's build_transformer for ViT-B-16 at
    256×128, patch stride 16, without SIE. Facts of its model definition (make_model_clipreid.py, and the
    VisionTransformer of its clip/model.py): the image encoder is CLIP's visual tower (width 768, 12
    residual blocks of nn.MultiheadAttention and a c_fc/c_proj MLP of 3072, a bias-free patch conv,
    projection to 512, a (256-16)/16+1 × (128-16)/16+1 = 16×8 patch grid plus the class token), then
    BatchNorm1d bottleneck (768) and bottleneck_proj (512) and bias-free classifier / classifier_proj."""
    width, layers, hidden, embed, tokens = 768, 12, 3072, 512, 16 * 8 + 1
    shapes: dict[str, tuple[int, ...]] = {
        "image_encoder.conv1.weight": (width, 3, 16, 16),
        "image_encoder.class_embedding": (width,),
        "image_encoder.positional_embedding": (tokens, width),
        "image_encoder.ln_pre.weight": (width,),
        "image_encoder.ln_pre.bias": (width,),
        "image_encoder.ln_post.weight": (width,),
        "image_encoder.ln_post.bias": (width,),
        "image_encoder.proj": (width, embed),
    }
    for i in range(layers):
        block = f"image_encoder.transformer.resblocks.{i}."
        shapes |= {
            block + "attn.in_proj_weight": (3 * width, width),
            block + "attn.in_proj_bias": (3 * width,),
            block + "attn.out_proj.weight": (width, width),
            block + "attn.out_proj.bias": (width,),
            block + "ln_1.weight": (width,),
            block + "ln_1.bias": (width,),
            block + "mlp.c_fc.weight": (hidden, width),
            block + "mlp.c_fc.bias": (hidden,),
            block + "mlp.c_proj.weight": (width, hidden),
            block + "mlp.c_proj.bias": (width,),
            block + "ln_2.weight": (width,),
            block + "ln_2.bias": (width,),
        }
    for neck, dim in (("bottleneck", width), ("bottleneck_proj", embed)):
        shapes |= {f"{neck}.{p}": (dim,) for p in ("weight", "bias", "running_mean", "running_var")}
        shapes[f"{neck}.num_batches_tracked"] = ()
    shapes["classifier.weight"] = (num_classes, width)
    shapes["classifier_proj.weight"] = (num_classes, embed)
    return shapes


def unsaved(arch: str, **spec: object) -> TrainedModel:
    """A randomly initialised network as inference holds a trained one (no checkpoint file needed)."""
    torch.manual_seed(0)
    model = svllreid.create_model(arch, **spec).eval()  # type: ignore[arg-type]
    size = model.spec.image_size
    config = load_config(None, [f"data.image_size=[{size[0]},{size[1]}]", f"model.arch={arch}"])
    meta = {"config": config_to_dict(config), "dataset": {"name": "market1501"}}
    return TrainedModel(model, Checkpoint(Path("model.safetensors"), meta, {}), config, torch.device("cpu"))


@pytest.fixture(scope="module")
def vit_b16() -> TrainedModel:
    return unsaved("ViT-B-16", num_classes=751, image_size=(256, 128), stride=16)


def test_the_state_dict_has_clipreid_names_and_shapes(vit_b16, tmp_path) -> None:
    tensors = boxmot_state_dict(vit_b16)
    assert {k: tuple(v.shape) for k, v in tensors.items()} == clipreid_vit_b16_parameters(751)
    model = vit_b16.model.state_dict()
    assert torch.equal(tensors["bottleneck_proj.running_var"], model["neck_proj.bn.running_var"])
    assert torch.equal(tensors["image_encoder.proj"], model["image_encoder.visual.proj"])
    written = export_boxmot(vit_b16, tmp_path)
    # BoxMOT: "clip" picks its CLIP builder, the second "_" field its 751 identities.
    assert written.kind == "pt" and written.path.name == "clip_market1501_svllreid.pt"
    payload = torch.load(written.path, weights_only=True)
    assert payload["model_name"] == "clip" and payload["num_classes"] == 751
    assert set(payload["state_dict"]) == set(tensors)
    with pytest.raises(ValueError, match=r"'clip' in a \.pt file's name"):
        export_boxmot(vit_b16, tmp_path / "market.pt")
    with pytest.raises(ValueError, match="unknown BoxMOT route 'tflite'"):
        export_boxmot(vit_b16, tmp_path, route="tflite")
    assert not uses_imagenet_statistics(vit_b16)  # CLIP's 0.5: the .pt route's ImageNet input costs mAP


def test_networks_boxmot_cannot_build_are_named_with_the_reason(vit_b16) -> None:
    assert pt_incompatibility(vit_b16) is None
    stride12 = unsaved("ViT-B-16", num_classes=4, image_size=(256, 128), stride=12)
    assert pt_incompatibility(stride12) == "the patch stride is 12, not 16"
    with pytest.raises(ValueError, match="cannot hold this network: the patch stride is 12"):
        boxmot_state_dict(stride12)
    with pytest.raises(ValueError, match="use the ONNX route"):
        export_boxmot(stride12, Path("out"), route="pt")
    rn = unsaved("svll-tiny-rn", num_classes=4, image_size=(64, 32))
    assert "svll-tiny-rn, not ViT-B-16" in pt_incompatibility(rn) and "64×32, not 256×128" in pt_incompatibility(rn)


def boxmot_crops(images_uint8: torch.Tensor) -> torch.Tensor:
    """BoxMOT's preprocessing of 256×128 RGB crops: /255, ImageNet mean and std."""
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    return (images_uint8.float() / 255 - mean) / std


def test_the_onnx_file_takes_boxmot_crops_and_gives_the_network_features(networks, tmp_path) -> None:
    trained = networks["vit-sie"]  # 64×32 with SIE: BoxMOT's CLIP builder cannot hold it
    written = export_boxmot(trained, tmp_path)
    assert written.kind == "onnx" and written.path.name.startswith("osnet_x0_25_") and "clip" not in written.path.name
    session = ort.InferenceSession(str(written.path), providers=["CPUExecutionProvider"])
    (only,) = session.get_inputs()
    assert only.name == "images" and only.shape[1:] == [3, 256, 128]
    crops = torch.randint(0, 256, (5, 3, 256, 128), generator=torch.Generator().manual_seed(2), dtype=torch.uint8)
    got = session.run(None, {"images": boxmot_crops(crops).numpy()})[0]
    # The same crops the network's own way: its statistics, resized (bilinear) to its input, cameras unknown.
    mean = torch.tensor(trained.config.data.pixel_mean).view(1, 3, 1, 1)
    std = torch.tensor(trained.config.data.pixel_std).view(1, 3, 1, 1)
    own = F.interpolate((crops.float() / 255 - mean) / std, size=(64, 32), mode="bilinear", align_corners=False)
    unknown = torch.full((5,), -1, dtype=torch.long)
    with torch.no_grad():
        expected = trained.model.encode_image(own, unknown, unknown).numpy()
        adapter = BoxmotInput(trained)(boxmot_crops(crops)).numpy()
    assert float(np.abs(adapter - expected).max()) <= 1e-5
    assert float(np.abs(got - expected).max()) <= 1e-5


def test_the_command_writes_the_boxmot_file(networks, tmp_path, capsys) -> None:
    ckpt = str(networks["rn"].checkpoint.path)
    assert main(["export", "--checkpoint", ckpt, "--format", "boxmot", "--out", str(tmp_path / "for-boxmot")]) == 0
    printed = capsys.readouterr().out
    assert "ONNX for BoxMOT's ONNX backend" in printed and "--reid-model" in printed
    assert len(list((tmp_path / "for-boxmot").glob("osnet_x0_25_*.onnx"))) == 1
    argv = ["export", "--checkpoint", ckpt, "--format", "boxmot", "--out", str(tmp_path), "--fp16"]
    assert main(argv) == 2
    assert "takes no --fp16" in capsys.readouterr().err


def test_the_openvino_route_writes_the_folder_boxmot_opens(networks, tmp_path, capsys) -> None:
    ov = pytest.importorskip("openvino", reason="the OpenVINO route needs the openvino extra")
    trained = networks["rn"]
    argv = ["export", "--checkpoint", str(trained.checkpoint.path), "--format", "boxmot", "--boxmot-route"]
    assert main([*argv, "openvino", "--out", str(tmp_path)]) == 0
    printed = capsys.readouterr().out
    (folder,) = tmp_path.glob("*_openvino_model")
    assert "OpenVINO IR for BoxMOT's OpenVINO backend" in printed and f"--reid-model {folder}" in printed
    # What BoxMOT does with the folder it is given: its name picks the backend and the network type, and
    # the first .xml in it is read with the .bin beside it and compiled with OpenVINO's defaults.
    suffixes = [".pt", ".torchscript", ".onnx", "_openvino_model", ".engine", ".tflite"]
    assert [s in folder.name for s in suffixes] == [False, False, False, True, False, False]
    assert folder.name.startswith("osnet_x0_25_") and "clip" not in folder.name
    xml = next(folder.glob("*.xml"))
    compiled = ov.Core().compile_model(ov.Core().read_model(model=xml, weights=xml.with_suffix(".bin")), "CPU")
    crops = torch.randint(0, 256, (3, 3, 256, 128), generator=torch.Generator().manual_seed(4), dtype=torch.uint8)
    got = compiled([boxmot_crops(crops).numpy()])[compiled.outputs[0]]
    with torch.no_grad():
        expected = BoxmotInput(trained)(boxmot_crops(crops)).numpy()
    # OpenVINO's default precision is bfloat16 on processors that have it: close, not equal.
    cosine = (got * expected).sum(1) / np.linalg.norm(got, axis=1) / np.linalg.norm(expected, axis=1)
    assert cosine.min() > 0.999
    with pytest.raises(ValueError, match="ending in _openvino_model"):
        export_boxmot(trained, tmp_path / "clip_openvino_model" / "x.xml", route="openvino")
