"""Every architecture the project ships or reproduces, through both training stages: forward, backward,
and every parameter the stage trains gets a finite, non-zero gradient (nothing trainable is left out of
the graph, nothing frozen receives one). In the manner of timm's tests over its whole model registry."""

from __future__ import annotations

import pytest
import torch

from svllreid.models import create_model
from svllreid.models.pretrained import CONFIG_DIR
from svllreid.training.tasks import ImageStageTask, PromptStageTask, Stage2Losses

IDS, PER_ID, CAMERAS, VIEWS = 4, 2, 3, 2

#: Each shipped config (svllreid/models/model_configs) and the paper's two backbones (random weights, a
#: small input so that CPU can afford them): arch, input size and the options that add parameters.
CASES = [
    pytest.param("svll-tiny-vit", (64, 32), {"stride": 8, "sie": "camera_view"}, id="svll-tiny-vit"),
    pytest.param("svll-tiny-rn", (64, 32), {}, id="svll-tiny-rn"),
    pytest.param("ViT-B-16", (64, 32), {"stride": 12, "sie": "camera"}, id="ViT-B-16", marks=pytest.mark.slow),
    pytest.param("RN50", (64, 32), {}, id="RN50", marks=pytest.mark.slow),
]


def test_the_cases_cover_every_shipped_config() -> None:
    shipped = {path.stem for path in CONFIG_DIR.glob("*.json")}
    covered = {case.values[0] for case in CASES}
    assert shipped <= covered, f"model configs without a gradient test: {sorted(shipped - covered)}"


def _build(arch: str, size: tuple[int, int], options: dict) -> torch.nn.Module:
    torch.manual_seed(0)
    model = create_model(
        arch,
        num_classes=IDS,
        num_cameras=CAMERAS,
        num_views=VIEWS,
        image_size=size,
        lang_ssl_head=True,
        vis_ssl_head=True,
        ssl_hidden_dim=32,
        ssl_out_dim=16,
        **options,
    )
    # CLIP's ResNet initialises the last BatchNorm gain of every residual block to zero, so at step 0 no
    # gradient reaches the rest of the block, by design; pretrained or trained weights have non-zero gains.
    # Give them the gains of a trained network so that the whole graph is checked.
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d) and not bool(module.weight.any()):
                module.weight.fill_(1.0)
    return model


def _check_gradients(model: torch.nn.Module, trainable: dict[str, torch.nn.Parameter]) -> None:
    assert trainable, "the stage trains nothing"
    missing, zero, bad = [], [], []
    for name, param in model.named_parameters():
        if name not in trainable:
            assert param.grad is None, f"{name} is frozen in this stage but received a gradient"
            continue
        if param.grad is None:
            missing.append(name)
        elif not bool(torch.isfinite(param.grad).all()):
            bad.append(name)
        elif not bool(param.grad.abs().sum() > 0):
            zero.append(name)
    assert not missing, f"trainable parameters outside the graph: {missing}"
    assert not bad, f"non-finite gradients: {bad}"
    assert not zero, f"all-zero gradients: {zero}"


@pytest.mark.parametrize(("arch", "size", "options"), CASES)
def test_stage1_trains_exactly_the_prompts_and_the_language_projector(arch, size, options) -> None:
    model = _build(arch, size, options).train()
    trainable = model.prepare_stage(1, train_lang_projector=True)
    pids = torch.arange(IDS).repeat_interleave(PER_ID)
    unknown = torch.full((len(pids),), -1)  # stage 1's cached features: no side information
    with torch.no_grad():
        features = model.image_features(torch.randn(len(pids), 3, *size), unknown, unknown).f_proj
    task = PromptStageTask(model, features, pids, lang_ssl_weight=1.0, global_batch=False)
    losses = task({"features": features, "pids": pids})
    assert set(losses) == {"i2t", "t2i", "lang_ssl"}
    sum(losses.values()).backward()
    _check_gradients(model, trainable)


@pytest.mark.parametrize(("arch", "size", "options"), CASES)
def test_stage2_trains_every_image_side_parameter(arch, size, options) -> None:
    model = _build(arch, size, options).train()
    trainable = model.prepare_stage(2)
    with torch.no_grad():
        text = model.encode_text(torch.arange(IDS))
    pids = torch.arange(IDS).repeat_interleave(PER_ID)
    generator = torch.Generator().manual_seed(1)
    batch = {
        "image": torch.randn(len(pids), 3, *size, generator=generator),
        "views": torch.randn(len(pids), 2, 3, *size, generator=generator),
        "pid": pids,
        "camid": torch.arange(len(pids)) % CAMERAS,
        "viewid": torch.arange(len(pids)) % VIEWS,
    }
    task = ImageStageTask(model, text, Stage2Losses(vis_ssl_weight=1.0), global_batch=False)
    losses = task(batch)
    assert {"id", "triplet", "i2t", "vis_ssl"} <= set(losses)
    sum(losses.values()).backward()
    _check_gradients(model, trainable)
