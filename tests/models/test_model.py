"""ReID model structure: positional-embedding resize, SIE, stages' gradients, prompts."""

from __future__ import annotations

import pytest
import torch

import svllreid
from svllreid.models.pos_embed import resize_grid_embedding
from svllreid.models.prompts import augment_prompts
from svllreid.models.sie import SideInfoEmbedding


def tiny(arch: str = "svll-tiny-vit", **kwargs):
    torch.manual_seed(0)
    return svllreid.create_model(arch, **({"num_classes": 6, "image_size": (128, 64)} | kwargs))


@pytest.mark.parametrize(("stride", "grid"), [(16, (16, 8)), (12, (21, 10))])
def test_positional_embedding_resized_to_reid_grid(stride, grid):
    model = tiny(image_size=(256, 128), stride=stride)
    encoder = model.image_encoder
    assert encoder.grid == grid
    assert encoder.visual.positional_embedding.shape == (1 + grid[0] * grid[1], 128)
    assert encoder.visual.conv1.stride == (stride, stride)
    with torch.no_grad():
        feats = model.image_features(torch.randn(2, 3, 256, 128))
    assert feats.f12.shape == (2, 128) and feats.f_proj.shape == (2, 64)


def test_resize_keeps_class_position_and_is_bilinear():
    torch.manual_seed(0)
    embedding = torch.randn(1 + 14 * 14, 8)
    resized = resize_grid_embedding(embedding, (21, 10))
    assert resized.shape == (211, 8)
    torch.testing.assert_close(resized[0], embedding[0])
    constant = torch.cat([embedding[:1], torch.full((196, 8), 0.5)])
    torch.testing.assert_close(resize_grid_embedding(constant, (16, 8))[1:], torch.full((128, 8), 0.5))
    torch.testing.assert_close(resize_grid_embedding(embedding, (14, 14)), embedding)
    # A ramp along the rows stays a ramp in the interior (bilinear, align_corners=False).
    ramp = torch.arange(14.0).repeat_interleave(14).unsqueeze(1)
    out = resize_grid_embedding(torch.cat([torch.zeros(1, 1), ramp]), (28, 14))[1:].reshape(28, 14)
    torch.testing.assert_close(out[2:-2, 0], torch.arange(2, 26) / 2 - 0.25)


def test_sie_changes_only_the_class_token():
    model = tiny(sie="camera", num_cameras=3).eval()
    encoder = model.image_encoder
    images = torch.randn(2, 3, 128, 64)
    with torch.no_grad():
        side = encoder.sie(torch.tensor([1, 2]))
        plain, with_side = encoder.embed(images), encoder.embed(images, side)
    torch.testing.assert_close(plain[:, 1:], with_side[:, 1:], atol=0, rtol=0)
    assert not torch.allclose(plain[:, 0], with_side[:, 0])
    torch.testing.assert_close(side, encoder.sie.table[[1, 2]] * encoder.sie.coef)


def test_sie_tables_indices_and_unknown_ids():
    sie = SideInfoEmbedding("camera_view", 4, num_cameras=3, num_views=2, coef=2.0)
    out = sie(torch.tensor([2, 0, -1]), torch.tensor([1, -1, 1]))
    torch.testing.assert_close(out[0], 2.0 * sie.table[2 * 2 + 1])
    assert torch.equal(out[1], torch.zeros(4)) and torch.equal(out[2], torch.zeros(4))
    assert sie.table.shape == (6, 4)
    with pytest.raises(ValueError, match=r"camera id 3 is outside the SIE table \(0\.\.2, or -1 for unknown\)"):
        sie(torch.tensor([3]), torch.tensor([0]))
    with pytest.raises(ValueError, match="needs view ids"):
        SideInfoEmbedding("view", 4, num_views=8)(torch.tensor([0]))
    with pytest.raises(ValueError, match="needs num_cameras >= 1"):
        SideInfoEmbedding("camera", 4)


def test_model_level_camera_out_of_range_message():
    model = tiny(sie="camera", num_cameras=2)
    with pytest.raises(ValueError, match="camera id 5 is outside the SIE table"):
        model.encode_image(torch.randn(1, 3, 128, 64), camids=torch.tensor([5]))


def test_invalid_options_are_clear_errors():
    with pytest.raises(ValueError, match="SIE is defined for ViT"):
        tiny(arch="svll-tiny-rn", sie="camera", num_cameras=2)
    with pytest.raises(ValueError, match="has no patch stride"):
        tiny(arch="svll-tiny-rn", stride=12)
    with pytest.raises(ValueError, match=r"patch stride must be in 1\.\.16"):
        tiny(stride=20)
    with pytest.raises(ValueError, match="multiple of 16"):
        tiny(arch="svll-tiny-rn", image_size=(250, 128))


@pytest.mark.parametrize("arch", ["svll-tiny-vit", "svll-tiny-rn"])
def test_encode_image_is_normalised_concat_before_bnneck(arch):
    model = tiny(arch=arch).eval()
    images = torch.randn(3, 3, 128, 64)
    with torch.no_grad():
        feats = model.image_features(images)
        encoded = model.encode_image(images)
    assert encoded.shape == (3, model.feature_dim) == (3, feats.f12.shape[1] + feats.f_proj.shape[1])
    torch.testing.assert_close(encoded.norm(dim=1), torch.ones(3))
    torch.testing.assert_close(encoded, torch.nn.functional.normalize(torch.cat([feats.f12, feats.f_proj], 1), dim=1))


def grads(model) -> dict[str, bool]:
    return {name: p.grad is not None and bool(p.grad.abs().sum() > 0) for name, p in model.named_parameters()}


@pytest.mark.parametrize("arch", ["svll-tiny-vit", "svll-tiny-rn"])
def test_stage2_gradients_reach_exactly_the_trainable_parameters(arch):
    sie = {"sie": "camera", "num_cameras": 3} if arch == "svll-tiny-vit" else {}
    model = tiny(arch=arch, vis_ssl_head=True, lang_ssl_head=True, ssl_hidden_dim=32, ssl_out_dim=16, **sie).train()
    with torch.no_grad():  # CLIP's ResNet zero-inits each residual branch's last BN, which blocks
        for name, param in model.named_parameters():  # gradients at the very first step
            if name.endswith("bn3.weight"):
                param.fill_(1.0)
    trainable = model.prepare_stage(2)
    camids = torch.tensor([0, 1, 2, 0]) if sie else None
    out = model(torch.randn(4, 3, 128, 64), camids)
    text = model.encode_text(torch.tensor([0, 1, 2, 3])).detach()  # computed once, no gradient, in stage 2
    # Squares, not sums: a plain sum through a train-mode BatchNorm has zero gradient.
    loss = out.logits.square().sum() + out.logits_proj.square().sum() + out.f11.square().sum()
    loss = loss + (out.f_proj @ text.T).square().sum() + model.vis_projector(out.f12).square().sum()
    loss.backward()
    got = grads(model)
    assert {n for n, ok in got.items() if ok} == set(trainable)
    assert not any(n.startswith(("text_encoder.", "prompt_learner.", "lang_projector.")) for n in trainable)
    assert "neck.bn.bias" not in trainable and model.neck.bn.bias.grad is None
    if sie:
        assert "image_encoder.sie.table" in trainable


@pytest.mark.parametrize("train_projector", [False, True])
def test_stage1_gradients_reach_only_prompts(train_projector):
    model = tiny(lang_ssl_head=True, vis_ssl_head=True, ssl_hidden_dim=32, ssl_out_dim=16).train()
    trainable = model.prepare_stage(1, train_lang_projector=train_projector)
    pids = torch.tensor([0, 1, 1, 4])
    with torch.no_grad():
        image_feats = model.image_features(torch.randn(4, 3, 128, 64)).f_proj  # cached in stage 1
    text = model.encode_text(pids)
    views = [augment_prompts(model.prompt_learner(pids.unique()), "element", 0.5) for _ in range(2)]
    projected = model.lang_projector(torch.cat([model.encode_prompts(v) for v in views]))
    (image_feats @ text.T).square().sum().backward(retain_graph=True)
    projected.square().sum().backward()
    got = grads(model)
    assert {n for n, ok in got.items() if ok} == set(trainable)
    expected = {"prompt_learner.cls_ctx"} | (
        {n for n in got if n.startswith("lang_projector.")} if train_projector else set()
    )
    assert set(trainable) == expected
    assert model.prompt_learner.cls_ctx.grad[[2, 3, 5]].abs().sum() == 0  # identities not in the batch


def test_vehicle_template():
    model = tiny(kind="vehicle")
    assert model.prompt_learner.template.endswith("vehicle.") and model.prompt_learner.length == 12


def test_prompt_augmentations():
    torch.manual_seed(0)
    prompts = torch.randn(8, 12, 64) + 3.0  # no exact zeros
    element = augment_prompts(prompts, "element", 0.5)
    assert 0.45 < (element == 0).float().mean() < 0.55
    assert torch.equal(element[element != 0], prompts[element != 0])
    token = augment_prompts(prompts, "token", 0.5)
    zero_rows = (token == 0).all(dim=-1)
    assert zero_rows.any() and torch.equal((token == 0).any(dim=-1), zero_rows)
    swap = augment_prompts(prompts, "swap", 0.5)
    for a, b in zip(prompts, swap, strict=True):  # the same rows, some in other places
        assert sorted(map(tuple, a.tolist())) == sorted(map(tuple, b.tolist()))
    assert not torch.equal(swap, prompts)
    mix = augment_prompts(prompts, "mix", 0.3)
    assert (mix - prompts).abs().max() > 0
    with pytest.raises(ValueError, match="unknown prompt augmentation"):
        augment_prompts(prompts, "blur", 0.5)


def test_masking_beyond_the_end_token_has_no_effect():
    model = tiny().eval()
    pids = torch.tensor([0, 1, 2])
    generator = torch.Generator().manual_seed(5)
    with torch.no_grad():
        full = model.prompt_learner(pids, full=True)  # [3, 77, D]
        mask77 = (torch.rand(full.shape, generator=generator) >= 0.5).float()
        masked_full = model.text_encoder(full * mask77, model.prompt_learner.eot_index(3, full.device), length=77)
        masked_short = model.encode_prompts((full * mask77)[:, :12])
    torch.testing.assert_close(masked_short, masked_full, atol=1e-5, rtol=1e-5)


def test_projection_head_inits_follow_the_reference():
    """Vision projector: BatchNorm weight and bias from U(0, 1), Kaiming-normal fan-in linears; the
    language projector keeps PyTorch's defaults; ``vis_ssl_bn_init="pytorch"`` restores weight 1, bias 0."""
    hidden = 4096
    model = tiny(vis_ssl_head=True, lang_ssl_head=True, ssl_hidden_dim=hidden)
    vis_bns = [m for m in model.vis_projector.modules() if isinstance(m, torch.nn.BatchNorm1d)]
    assert len(vis_bns) == 2
    for bn in vis_bns:
        for values in (bn.weight.detach(), bn.bias.detach()):
            assert values.min() >= 0 and values.max() <= 1
            # U(0, 1): mean 1/2, std 1/sqrt(12) = 0.2887; 4096 draws put both within a few percent.
            assert abs(values.mean().item() - 0.5) < 0.03 and abs(values.std().item() - 0.2887) < 0.02
            assert values.unique().numel() > hidden // 2  # drawn, not constant
    linears = [m for m in model.vis_projector.modules() if isinstance(m, torch.nn.Linear)]
    for linear in linears:  # Kaiming normal, fan-in, ReLU gain: std sqrt(2 / fan_in)
        expected = (2 / linear.in_features) ** 0.5
        assert abs(linear.weight.std().item() / expected - 1) < 0.05
    for bn in (m for m in model.lang_projector.modules() if isinstance(m, torch.nn.BatchNorm1d)):
        assert torch.equal(bn.weight, torch.ones_like(bn.weight)) and torch.equal(bn.bias, torch.zeros_like(bn.bias))
    plain = tiny(vis_ssl_head=True, ssl_hidden_dim=64, vis_ssl_bn_init="pytorch")
    for bn in (m for m in plain.vis_projector.modules() if isinstance(m, torch.nn.BatchNorm1d)):
        assert torch.equal(bn.weight, torch.ones_like(bn.weight)) and torch.equal(bn.bias, torch.zeros_like(bn.bias))
    with pytest.raises(ValueError, match=r"bn_init must be one of uniform, pytorch; got 'ones'"):
        tiny(vis_ssl_head=True, ssl_hidden_dim=64, vis_ssl_bn_init="ones")


def test_swap_reference_permutes_positions_of_all_77_and_moves_padding_into_the_prompt():
    model = tiny().eval()
    with torch.no_grad():
        full = model.prompt_learner(torch.arange(3).repeat(100), full=True)  # [300, 77, D]
    torch.manual_seed(0)
    swapped = augment_prompts(full, "swap_reference", 0.5)
    for a, b in zip(full[:5], swapped[:5], strict=True):  # a permutation of the 77 rows
        assert sorted(map(tuple, a.tolist())) == sorted(map(tuple, b.tolist()))
    moved = (swapped != full).any(dim=-1)  # [300, 77] positions whose embedding changed
    assert int(moved[0].sum()) <= int(0.5 * 77)
    padding = full[0, -1]
    used = swapped[:, :12]
    padded = (used == padding).all(dim=-1).float().sum(dim=1).mean()
    # int(0.5 * 77) = 38 positions of 77: each used position is drawn with probability 38/77 and then
    # receives one of the other drawn positions, of which 65/76 are padding: about 4.9 of the 12.
    assert 4.3 < float(padded) < 5.5
    eot = model.prompt_learner.eot_position
    assert 0.4 < float((swapped[:, eot] != full[:, eot]).any(dim=-1).float().mean()) < 0.6


def test_loaded_weights_rebuild_the_prompt_template_from_the_loaded_token_embedding(tmp_path) -> None:
    """The template around the identity words derives from the token embedding and is not saved: a
    network built with other (random) weights and then loaded must recompute it, or every loaded
    model's text features of its identities are wrong (load_trained_model builds, then loads)."""
    from svllreid.config import config_to_dict, load_config
    from svllreid.inference.checkpoint import write_checkpoint
    from svllreid.inference.trained import load_trained_model
    from svllreid.models import create_model

    torch.manual_seed(0)
    trained = create_model("svll-tiny-vit", 4, image_size=(64, 32), stride=8).eval()
    torch.manual_seed(1)  # another random token embedding, as a network built before loading has
    other = create_model("svll-tiny-vit", 4, image_size=(64, 32), stride=8).eval()
    pids = torch.arange(4)
    with torch.no_grad():
        expected = trained.encode_text(pids)
        assert not torch.allclose(other.encode_text(pids), expected)
        other.load_state_dict(trained.state_dict())
        torch.testing.assert_close(other.encode_text(pids), expected, rtol=0, atol=0)

    config = load_config(None, ["data.image_size=[64,32]", "model.arch=svll-tiny-vit", "model.stride=8"])
    meta = {"spec": trained.spec.to_dict(), "quick_gelu": False, "config": config_to_dict(config), "stage": 2}
    loaded = load_trained_model(write_checkpoint(tmp_path / "model.safetensors", trained, meta), "cpu")
    with torch.no_grad():
        torch.testing.assert_close(loaded.model.encode_text(pids), expected, rtol=0, atol=0)
