"""Stage tasks: the single batched pass equals three passes; losses are the named terms."""

from __future__ import annotations

import pytest
import torch

import svllreid
from svllreid.training.tasks import ImageStageTask, PromptStageTask, Stage2Losses


def make_batch(size: int = 8, cameras: int = 3) -> dict[str, torch.Tensor]:
    torch.manual_seed(1)
    return {
        "image": torch.randn(size, 3, 64, 32),
        "views": torch.randn(size, 2, 3, 64, 32),
        "pid": torch.arange(size) // 2,
        "camid": torch.arange(size) % cameras,
        "viewid": torch.full((size,), -1),
    }


@pytest.mark.parametrize("exclude_same_id", [False, True])
def test_single_pass_equals_three_passes(exclude_same_id):
    torch.manual_seed(0)
    model = svllreid.create_model(
        "svll-tiny-vit", 4, num_cameras=3, image_size=(64, 32), sie="camera", vis_ssl_head=True, ssl_hidden_dim=32
    ).train()
    model.prepare_stage(2)
    text = torch.randn(4, 64)
    batch = make_batch()
    losses, grads = {}, {}
    for single in (True, False):
        task = ImageStageTask(
            model, text, Stage2Losses(vis_ssl_weight=0.8, ssl_exclude_same_id=exclude_same_id), single_pass=single
        )
        assert task.single_pass is single
        model.zero_grad()
        terms = task(batch)
        sum(terms.values()).backward()
        losses[single] = {k: v.detach() for k, v in terms.items()}
        grads[single] = model.image_encoder.sie.table.grad.clone()
    assert set(losses[True]) == {"id", "triplet", "i2t", "vis_ssl"}
    for name in losses[True]:
        torch.testing.assert_close(losses[True][name], losses[False][name], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(grads[True], grads[False], atol=1e-5, rtol=1e-5)


def test_batchnorm_encoders_use_separate_passes():
    model = svllreid.create_model("svll-tiny-rn", 4, image_size=(64, 32), vis_ssl_head=True, ssl_hidden_dim=32)
    task = ImageStageTask(model, torch.randn(4, 64), Stage2Losses(vis_ssl_weight=0.8), single_pass=True)
    assert task.single_pass is False
    terms = task({k: v for k, v in make_batch().items() if k != "camid"} | {"camid": torch.full((8,), -1)})
    assert set(terms) == {"id", "triplet", "i2t", "vis_ssl"}


def test_stage2_weights_scale_the_terms():
    model = svllreid.create_model("svll-tiny-vit", 4, num_cameras=3, image_size=(64, 32), sie="camera").train()
    batch = make_batch()
    torch.manual_seed(3)
    one = ImageStageTask(model, torch.randn(4, 64), Stage2Losses(id_weight=1.0, triplet_weight=1.0, i2t_weight=1.0))
    torch.manual_seed(3)
    weighted = ImageStageTask(
        model, one.text_features, Stage2Losses(id_weight=0.25, triplet_weight=2.0, i2t_weight=0.5)
    )
    a, b = one(batch), weighted(batch)
    for name, weight in (("id", 0.25), ("triplet", 2.0), ("i2t", 0.5)):
        torch.testing.assert_close(b[name], weight * a[name])
    with pytest.raises(ValueError, match="vis_ssl_head=True"):
        ImageStageTask(model, one.text_features, Stage2Losses(vis_ssl_weight=0.8))


def test_prompt_task_losses_and_batches():
    model = svllreid.create_model("svll-tiny-vit", 5, image_size=(64, 32), lang_ssl_head=True, ssl_hidden_dim=32)
    model.prepare_stage(1)
    features, labels = torch.randn(23, 64), torch.arange(23) % 5
    task = PromptStageTask(model, features, labels, lang_ssl_weight=0.8)
    batches = list(task.batches(epoch=1, batch_size=8, seed=0))
    assert [len(b["pids"]) for b in batches] == [8, 8, 7]
    assert sorted(torch.cat([b["pids"] for b in batches]).tolist()) == sorted(labels.tolist())
    assert [b["pids"].tolist() for b in task.batches(1, 8, 0)] == [b["pids"].tolist() for b in batches]
    assert [b["pids"].tolist() for b in task.batches(2, 8, 0)] != [b["pids"].tolist() for b in batches]
    shares = [torch.cat([b["pids"] for b in task.batches(1, 4, 0, rank=r, world_size=2)]) for r in (0, 1)]
    assert len(shares[0]) == len(shares[1]) == 11
    terms = task(batches[0])
    assert set(terms) == {"i2t", "t2i", "lang_ssl"}
    single = task({"features": features[:3], "pids": torch.tensor([2, 2, 2])})
    assert "lang_ssl" not in single and task.skipped_ssl_batches == 1


def test_side_information_falls_back_or_explains():
    from svllreid.data.types import EvalSplit, ReIDDataset
    from svllreid.training.run import effective_sie

    def dataset(cameras: int, views: int) -> ReIDDataset:
        return ReIDDataset("x", "/x", "vehicle", [], [EvalSplit("d", [], [])], "camera", cameras, views)

    assert effective_sie("camera_view", dataset(20, 8)) == "camera_view"
    assert effective_sie("camera_view", dataset(20, 0)) == "camera"  # VeRi without viewpoint files
    assert effective_sie("none", dataset(0, 0)) == "none"
    with pytest.raises(ValueError, match=r"model\.sie=camera needs camera labels, but x has none; use model\.sie=none"):
        effective_sie("camera", dataset(0, 0))
    with pytest.raises(ValueError, match=r"model\.sie=view needs viewpoint labels"):
        effective_sie("view", dataset(6, 0))


def test_metric_terms_stay_fp32_under_bf16_autocast(monkeypatch):
    """Given the encoder's features, the triplet and image-to-text terms of stage 2 and the image-text
    terms of stage 1 are the same under bf16 autocast as in fp32 (only the encoders run in bf16)."""
    from svllreid.models.image_encoders import ImageFeatures

    model = svllreid.create_model("svll-tiny-vit", 4, image_size=(64, 32)).train()
    gen = torch.Generator().manual_seed(5)
    feats = ImageFeatures(*(2.5 * torch.randn(8, d, generator=gen) for d in (128, 128, 64)))  # norms ~ 20
    monkeypatch.setattr(model, "image_features", lambda *args: feats)
    task = ImageStageTask(model, 3 * torch.randn(4, 64, generator=gen))
    batch = make_batch()
    plain = task(batch)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        mixed = task(batch)
    for name in ("triplet", "i2t"):
        assert mixed[name].dtype == torch.float32
        torch.testing.assert_close(mixed[name], plain[name], rtol=1e-6, atol=1e-6)

    text = 0.5 * torch.randn(8, 64, generator=gen)
    monkeypatch.setattr(model, "encode_text", lambda pids: text[: len(pids)])
    prompt_task = PromptStageTask(model, 2.5 * torch.randn(8, 64, generator=gen), torch.arange(8) // 2)
    stage1 = {"features": prompt_task.features, "pids": prompt_task.labels}
    plain = prompt_task(stage1)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        mixed = prompt_task(stage1)
    for name in ("i2t", "t2i"):
        torch.testing.assert_close(mixed[name], plain[name], rtol=1e-6, atol=1e-6)


def _batchnorm_buffers(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {
        name: value.clone()
        for name, value in module.named_buffers()
        if name.rsplit(".", 1)[-1] in ("running_mean", "running_var", "num_batches_tracked")
    }


@pytest.mark.slow
@pytest.mark.parametrize("views_update", [False, True])
def test_view_passes_leave_the_encoders_running_statistics_alone(views_update):
    """A ResNet step with the two occluded views leaves the encoder's BatchNorm running statistics as a
    step without views would; ``views_update_bn_stats=True`` restores the plain behaviour (three updates)."""
    import copy

    torch.manual_seed(0)
    model = svllreid.create_model("svll-tiny-rn", 4, image_size=(64, 32), vis_ssl_head=True, ssl_hidden_dim=32)
    model.train().prepare_stage(2)
    twin = copy.deepcopy(model)
    batch = {k: v for k, v in make_batch().items() if k != "camid"} | {"camid": torch.full((8,), -1)}
    with_views = ImageStageTask(
        model, torch.randn(4, 64), Stage2Losses(vis_ssl_weight=0.8), views_update_bn_stats=views_update
    )
    without_views = ImageStageTask(twin, with_views.text_features)
    terms = with_views(batch)
    # The views' own term still trains the encoder.
    conv = model.image_encoder.visual.conv1.weight
    assert torch.autograd.grad(terms["vis_ssl"], conv, retain_graph=True)[0].abs().sum() > 0
    sum(terms.values()).backward()
    sum(without_views(batch).values()).backward()
    stepped, plain = _batchnorm_buffers(model.image_encoder), _batchnorm_buffers(twin.image_encoder)
    assert stepped and stepped.keys() == plain.keys()
    counters = [name for name in stepped if name.endswith("num_batches_tracked")]
    if not views_update:
        for name in plain:
            assert torch.equal(stepped[name], plain[name]), name
        assert all(bn.track_running_stats for bn in model.modules() if isinstance(bn, torch.nn.BatchNorm2d))
    else:
        assert all(int(stepped[name]) == 3 and int(plain[name]) == 1 for name in counters)
        means = [name.replace("num_batches_tracked", "running_mean") for name in counters]
        assert not all(torch.equal(stepped[name], plain[name]) for name in means)


def test_frozen_running_statistics_still_normalise_with_the_batch():
    """Inside the region a BatchNorm network gives exactly its training-mode (batch-statistics) output."""
    import copy

    from svllreid.training.tasks import running_statistics_frozen

    torch.manual_seed(0)
    model = svllreid.create_model("svll-tiny-rn", 4, image_size=(64, 32)).train()
    twin = copy.deepcopy(model)
    images = torch.randn(6, 3, 64, 32)
    before = _batchnorm_buffers(model)
    with running_statistics_frozen(model):
        frozen = model.image_features(images).f12
    torch.testing.assert_close(frozen, twin.image_features(images).f12, rtol=0, atol=0)
    after = _batchnorm_buffers(model)
    assert all(torch.equal(before[name], after[name]) for name in before)
    with pytest.raises(RuntimeError), running_statistics_frozen(model):
        raise RuntimeError("a failing step")
    assert all(bn.track_running_stats for bn in model.modules() if isinstance(bn, torch.nn.BatchNorm2d))


def test_the_triplet_term_on_normalised_features_when_asked():
    from svllreid.losses import triplet_loss

    model = svllreid.create_model("svll-tiny-vit", 4, num_cameras=3, image_size=(64, 32), sie="camera").eval()
    batch = make_batch()
    plain = ImageStageTask(model, torch.randn(4, 64), Stage2Losses())
    normed = ImageStageTask(model, plain.text_features, Stage2Losses(triplet_normalize=True))
    feats = model.image_features(batch["image"], batch["camid"], batch["viewid"])
    expected = sum(triplet_loss(f, batch["pid"], 0.3, normalize=True) for f in (feats.f11, feats.f12, feats.f_proj))
    torch.testing.assert_close(normed(batch)["triplet"], expected)
    assert not torch.allclose(plain(batch)["triplet"], expected)
