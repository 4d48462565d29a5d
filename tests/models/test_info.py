"""``model info``: parameter counts and FLOPs, checked against hand counts."""

from __future__ import annotations

import json

import svllreid
from svllreid.cli import main
from svllreid.models.info import model_info


def test_vit_flops_match_the_analytic_count():
    model = svllreid.create_model("svll-tiny-vit", num_classes=5, image_size=(128, 64))
    info = model_info(model)
    width, layers, patches = 128, 4, 8 * 4
    tokens = patches + 1
    per_layer = 12 * tokens * width**2 + 2 * tokens**2 * width  # qkv + out + MLP, and the two attention matmuls
    macs = layers * per_layer + patches * (3 * 16 * 16) * width + width * 64  # + patch embedding + projection
    assert info["gflops"]["image"] * 1e9 == 2 * macs
    assert info["token_grid"] == [8, 4] and info["tokens"] == 33
    assert info["gflops"]["text_prompt_77_tokens"] > 5 * info["gflops"]["text_prompt_12_tokens"]


def test_parameter_counts_add_up():
    model = svllreid.create_model(
        "svll-tiny-vit", num_classes=5, image_size=(128, 64), lang_ssl_head=True, vis_ssl_head=True, ssl_hidden_dim=32
    )
    info = model_info(model)
    params = info["parameters"]
    parts = sum(v for k, v in params.items() if k != "total")
    assert parts == params["total"] == sum(p.numel() for p in model.parameters())
    assert info["trainable"]["stage1"] == 5 * 4 * 64  # identity words only (the reference default)
    neck_biases = 128 + 64  # BNNeck biases stay frozen
    vis_head = sum(p.numel() for p in model.vis_projector.parameters())
    expected_stage2 = params["image_encoder"] + params["bnneck_classifiers"] - neck_biases + vis_head
    assert info["trainable"]["stage2"] == expected_stage2


def test_model_info_cli(capsys):
    assert main(["model", "info", "--arch", "svll-tiny-rn", "--image-size", "128", "64", "--num-classes", "9"]) == 0
    out = capsys.readouterr().out
    assert "last stride 1" in out and "token grid 8×4" in out and "GFLOPs" in out
    args = ["model", "info", "--arch", "svll-tiny-vit", "--image-size", "128", "64", "--stride", "12", "--json"]
    assert main([*args, "--sie", "camera", "--num-cameras", "3"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["token_grid"] == [10, 5] and info["sie"] == "camera"
    assert main(["model", "info", "--arch", "svll-tiny-rn", "--sie", "camera", "--num-cameras", "2"]) == 2
    assert "SIE is defined for ViT" in capsys.readouterr().err
