"""The data factory: config -> dataset (with its start-of-training check), transforms, cache."""

from __future__ import annotations

import dataclasses

import pytest

from svllreid.config import load_config
from svllreid.data.factory import build_dataset, build_image_caches, build_transforms
from svllreid.errors import DatasetError
from tests.conftest import write_images


def test_build_dataset_runs_the_quick_check(market_root):
    cfg = load_config(None, ["data.dataset=market1501", f"data.root={market_root}"]).data
    assert build_dataset(cfg).num_train_ids == 3
    write_images(market_root / "query", ["0077_c2s1_000001_00.jpg"])  # a query without gallery images
    with pytest.raises(DatasetError, match=r"failed its quick check.*svllreid data check") as err:
        build_dataset(cfg)
    assert "1 query identities have no image in the gallery: 77" in str(err.value)


def test_full_check_catches_corrupt_images_and_off_skips(market_root):
    (market_root / "query" / "0011_c1s1_000000_00.jpg").write_bytes(b"garbage")
    full = load_config(None, ["data.dataset=market1501", f"data.root={market_root}", "data.check=full"]).data
    with pytest.raises(DatasetError, match="unreadable or corrupt"):
        build_dataset(full)
    off = load_config(None, ["data.dataset=market1501", f"data.root={market_root}", "data.check=off"]).data
    assert len(build_dataset(off).query) == 2


def test_dataset_options_reach_the_parser(vehicleid_root):
    cfg = load_config(None, ["data.dataset=vehicleid", f"data.root={vehicleid_root}", "data.options.test_size=1600"])
    assert len(build_dataset(cfg.data).gallery) == 4


def test_transforms_and_caches_follow_the_config(market_root):
    cfg = load_config(
        None,
        ["data.dataset=market1501", f"data.root={market_root}", "data.image_size=[64,32]", "data.cache_images=true"],
    ).data
    dataset = build_dataset(cfg)
    transforms = build_transforms(cfg)
    assert (transforms.train_interpolation, transforms.test_interpolation) == ("bicubic", "bilinear")
    caches = build_image_caches(cfg, dataset)
    # Training images resized bicubically for training; every image (training ones too, for stage 1's
    # features) bilinearly for testing.
    assert set(caches) == {"bicubic", "bilinear"}
    assert caches["bicubic"].size == caches["bilinear"].size == (64, 32)
    assert len(caches["bicubic"].slot) == len(dataset.train)
    assert len(caches["bilinear"].slot) == len(dataset.train) + len(dataset.query) + len(dataset.gallery)
    image = caches["bilinear"].get(dataset.train[0].path)
    for transform in (transforms.train, transforms.test, transforms.view):
        assert transform(image).shape == (3, 64, 32)
    assert build_image_caches(load_config().data, dataset) == {}
    same = build_image_caches(dataclasses.replace(cfg, test_interpolation="bicubic"), dataset)
    assert set(same) == {"bicubic"}  # one filter: one cache holds everything
    assert len(same["bicubic"].slot) == len(caches["bilinear"].slot)


def test_the_test_cache_holds_the_validation_split_too(market_root):
    cfg = load_config(
        None,
        [
            "data.dataset=market1501",
            f"data.root={market_root}",
            "data.image_size=[64,32]",
            "data.cache_images=true",
            "data.validation_ids=1",
        ],
    ).data
    dataset = build_dataset(cfg)
    assert dataset.validation is not None
    cache = build_image_caches(cfg, dataset)["bilinear"]
    for sample in dataset.validation.query + dataset.validation.gallery:
        assert cache.get(sample.path).shape == (3, 64, 32)
