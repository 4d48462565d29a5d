"""Parity with open_clip on the same random weights (fp32): the ReID forward over open_clip's
towers computes exactly what open_clip computes at CLIP's own settings."""

from __future__ import annotations

import copy

import open_clip
import pytest
import torch

from svllreid.models.factory import ModelSpec, model_from_clip
from svllreid.models.pretrained import build_clip
from svllreid.models.text_encoder import TextEncoder

ATOL = 1e-5


def clip_pair(arch: str):
    torch.manual_seed(0)
    clip, _ = build_clip(arch)
    return clip, copy.deepcopy(clip)


@pytest.mark.parametrize("arch", [pytest.param("ViT-B-16", marks=pytest.mark.slow), "svll-tiny-vit"])
def test_vit_image_features_equal_open_clip(arch):
    clip, reference = clip_pair(arch)
    height, width = clip.visual.image_size  # the architecture's own geometry (64×32 for the tiny ViT)
    model = model_from_clip(clip, ModelSpec(arch, num_classes=3, image_size=(height, width), stride=16)).eval()
    images = torch.randn(2, 3, height, width)
    with torch.no_grad():
        feats = model.image_features(images)
        v = reference.visual
        pooled, _ = v._pool(v.transformer(v._embeds(images)))  # open_clip's pooled output before the projection
        expected = reference.encode_image(images)
    torch.testing.assert_close(feats.f12, pooled, atol=ATOL, rtol=1e-5)
    torch.testing.assert_close(feats.f_proj, expected, atol=ATOL, rtol=1e-5)


@pytest.mark.parametrize("arch", ["RN50", "svll-tiny-rn"])
def test_resnet_with_clip_last_stride_equals_open_clip(arch):
    clip, reference = clip_pair(arch)
    spec = ModelSpec(arch, num_classes=3, image_size=(224, 224), last_stride=2)
    model = model_from_clip(clip, spec).eval()
    images = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        torch.testing.assert_close(
            model.image_features(images).f_proj, reference.encode_image(images), atol=ATOL, rtol=1e-5
        )


def test_resnet_reid_changes_last_stride_and_pool_positions():
    clip, reference = clip_pair("svll-tiny-rn")
    model = model_from_clip(clip, ModelSpec("svll-tiny-rn", num_classes=3, image_size=(256, 128))).eval()
    pool = model.image_encoder.visual.attnpool
    assert model.image_encoder.grid == (16, 8)
    assert pool.positional_embedding.shape[0] == 16 * 8 + 1
    torch.testing.assert_close(pool.positional_embedding[0], reference.visual.attnpool.positional_embedding[0])
    images = torch.randn(2, 3, 256, 128)
    with torch.no_grad():
        v = model.image_encoder.visual
        stage4 = v.layer4(v.layer3(v.layer2(v.layer1(v.stem(images)))))
        feats = model.image_features(images)
    assert stage4.shape[-2:] == (16, 8)  # last stride 1: 256×128 / 16
    torch.testing.assert_close(feats.f12, stage4.mean(dim=(2, 3)))
    assert feats.f11.shape[1] * 2 == feats.f12.shape[1]  # stage 3 GAP has half the channels


@pytest.mark.parametrize("arch", [pytest.param("ViT-B-16", marks=pytest.mark.slow), "svll-tiny-vit"])
def test_text_encoder_equals_open_clip_and_truncation_is_exact(arch):
    clip, reference = clip_pair(arch)
    encoder = TextEncoder(clip).eval()
    tokenizer = open_clip.get_tokenizer(arch)
    tokens = tokenizer(["a photo of a person walking across the street.", "two red cars", "A"])
    with torch.no_grad():
        embedded = encoder.embed_tokens(tokens)
        eot = tokens.argmax(dim=-1)
        truncated = encoder(embedded, eot)
        full = encoder(embedded, eot, length=tokens.shape[1])
        expected = reference.encode_text(tokens)
    torch.testing.assert_close(full, expected, atol=ATOL, rtol=1e-5)
    torch.testing.assert_close(truncated, full, atol=ATOL, rtol=1e-5)


def test_prompt_features_12_tokens_equal_77_tokens():
    torch.manual_seed(1)
    model = model_from_clip(build_clip("svll-tiny-vit")[0], ModelSpec("svll-tiny-vit", num_classes=5)).eval()
    pids = torch.tensor([0, 3, 3, 4])
    learner = model.prompt_learner
    assert learner.length == 12 and learner.start == 5
    with torch.no_grad():
        short = model.encode_text(pids)
        prompts = learner(pids, full=True)  # [4, 77, D]
        full = model.text_encoder(prompts, learner.eot_index(4, prompts.device), length=77)
    assert prompts.shape[1] == 77
    torch.testing.assert_close(short, full, atol=ATOL, rtol=1e-5)
