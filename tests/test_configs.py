"""Every shipped benchmark config resolves to the hyperparameters of METHOD.md (3.2, 3.3, 4.3)."""

from __future__ import annotations

from pathlib import Path

import pytest

from svllreid.config import load_config

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
DATASETS = {
    "market1501": "person",
    "dukemtmc": "person",
    "occluded_duke": "person",
    "msmt17": "person",
    "veri776": "vehicle",
    "vehicleid": "vehicle",
}
CASES = [(ds, method, backbone) for ds in DATASETS for method in ("clipreid", "svll") for backbone in ("vit", "rn50")]


def test_every_benchmark_has_all_four_configs():
    found = {p.relative_to(CONFIGS).as_posix() for p in CONFIGS.glob("*/*.yaml") if p.parent.name != "base"}
    expected = {f"{ds}/{m}_{b}.yaml" for ds, m, b in CASES}
    assert expected <= found


@pytest.mark.parametrize(("dataset", "method", "backbone"), CASES, ids=lambda v: str(v))
def test_key_hyperparameters(dataset, method, backbone):
    cfg = load_config(CONFIGS / dataset / f"{method}_{backbone}.yaml")
    kind, vit, svll = DATASETS[dataset], backbone == "vit", method == "svll"
    assert cfg.data.dataset == dataset
    assert cfg.model.arch == ("ViT-B-16" if vit else "RN50") and cfg.model.pretrained == "openai"
    assert cfg.data.image_size == ([256, 128] if kind == "person" else [256, 256])
    assert cfg.data.pixel_mean == ([0.5] * 3 if vit else [0.485, 0.456, 0.406])
    assert (cfg.data.padding, cfg.data.flip_prob, cfg.data.erasing_prob) == (10, 0.5, 0.5)
    # Stage 1 (3.2, 4.1, 4.3)
    s1 = cfg.stage1
    assert (s1.lr, s1.weight_decay, s1.warmup_epochs, s1.warmup_lr, s1.min_lr) == (3.5e-4, 1e-4, 5, 1e-5, 1e-6)
    assert s1.epochs == (120 if vit and kind == "person" else 60)
    assert s1.batch_size == (256 if svll and kind == "person" else 64)
    assert s1.lang_ssl is svll
    if svll:
        assert s1.lang_ssl_weight == (2.0 if dataset == "veri776" else 0.8)
        assert (s1.prompt_mask, s1.prompt_mask_prob, s1.train_lang_projector) == ("element", 0.5, False)
    # Stage 2 (3.3, 4.2, 4.3)
    s2 = cfg.stage2
    assert s2.ids_per_batch * s2.images_per_id == (32 if svll and kind == "vehicle" else 64) and s2.images_per_id == 4
    assert (s2.label_smoothing, s2.triplet_margin, s2.bias_lr_factor, s2.gamma) == (0.1, 0.3, 2.0, 0.1)
    if vit:
        assert s2.lr == (5e-5 if dataset == "vehicleid" else 5e-6) and s2.weight_decay == 1e-4
        assert (s2.epochs, s2.milestones, s2.warmup_epochs, s2.warmup_factor) == (60, [30, 50], 10, 0.1)
        assert (s2.id_weight, s2.triplet_weight, s2.i2t_weight) == (0.25, 1.0, 1.0)
    else:
        assert (s2.lr, s2.weight_decay) == (3.5e-4, 5e-4)
        assert (s2.epochs, s2.milestones, s2.warmup_epochs, s2.warmup_factor) == (120, [40, 70], 10, 0.01)
        assert (s2.id_weight, s2.triplet_weight, s2.i2t_weight) == (1.0, 1.0, 1.0)
        assert cfg.model.last_stride == 1
    assert s2.vis_ssl is svll and (not svll or s2.vis_ssl_weight == 0.8)
    # OLP and SIE: SVLL's ViT configs only (4.3); VehicleID has no cameras.
    if svll and vit:
        assert cfg.model.stride == 12
        expected_sie = {"person": "camera", "vehicle": "camera_view"}[kind] if dataset != "vehicleid" else "none"
        assert (cfg.model.sie, cfg.model.sie_coef) == (expected_sie, 1.0)
    else:
        assert cfg.model.stride is None and cfg.model.sie == "none"
    assert cfg.run.seed == 1234
