"""The data factory: config -> dataset (with its start-of-training check), transforms, cache."""

from __future__ import annotations

import dataclasses

import pytest

from svllreid.config import load_config
from svllreid.data.factory import build_dataset, build_image_caches, build_transforms, resolve_image_size
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


def _photos(root, size, ids=6, per_id=3):
    from PIL import Image

    for pid in range(ids):
        folder = root / f"animal-{pid}"
        folder.mkdir(parents=True)
        for i in range(per_id):
            Image.new("RGB", size, (20 * pid, 10 * i, 90)).save(folder / f"{i}_{'left' if i % 2 else 'right'}.jpg")
    return root


@pytest.mark.parametrize(
    ("photo", "area", "expected"),
    [
        ((1500, 1200), 2048, [40, 48]),
        ((64, 128), 2048, [64, 32]),
        ((64, 128), 32768, [256, 128]),
        ((300, 300), 2048, [48, 48]),
    ],
)
def test_auto_image_size_follows_the_photos(tmp_path, photo, area, expected):
    # Before: the demo recipe kept its 64×32 portrait input for 1500×1200 animal photos.
    cfg = load_config(
        None,
        [
            "data.dataset=folder",
            f"data.root={_photos(tmp_path, photo)}",
            "data.image_size=auto",
            f"data.image_area={area}",
        ],
    ).data
    dataset = build_dataset(cfg)
    resolved, note = resolve_image_size(cfg, dataset)
    assert resolved.image_size == expected and resolved.size == tuple(expected)
    assert note is not None and f"{expected[0]}×{expected[1]}" in note and f"({photo[1]:g}×{photo[0]:g})" in note
    fixed, none = resolve_image_size(dataclasses.replace(cfg, image_size=[96, 32]), dataset)
    assert fixed.image_size == [96, 32] and none is None


def test_auto_image_size_must_be_settled_before_use(tmp_path):
    from svllreid.errors import ConfigError

    cfg = load_config(None, ["data.image_size=auto"]).data
    with pytest.raises(ConfigError, match="chosen from the training images when training starts"):
        build_transforms(cfg)


def test_auto_validation_holds_out_a_fifth_of_own_data_only(tmp_path, market_root):
    root = _photos(tmp_path / "own", (64, 128), ids=30, per_id=4)
    cfg = load_config(
        None, ["data.dataset=folder", f"data.root={root}", "data.options={camera_regex: '_(left|right)'}"]
    ).data
    dataset = build_dataset(cfg)
    assert cfg.validation_ids == "auto" and dataset.validation is not None
    assert len({s.pid for s in dataset.validation.query}) == 4  # a fifth of the 15 training identities, at least 4
    benchmark = build_dataset(load_config(None, ["data.dataset=market1501", f"data.root={market_root}"]).data)
    assert benchmark.validation is None  # the paper's benchmarks keep their training set whole


def test_auto_image_size_needs_a_readable_training_image(tmp_path):
    for pid in range(4):
        write_images(tmp_path / f"p{pid}", ["a.jpg", "b.jpg"], data=b"not a jpeg")
    cfg = load_config(None, ["data.dataset=folder", f"data.root={tmp_path}", "data.image_size=auto"]).data
    dataset = build_dataset(dataclasses.replace(cfg, check="off"))
    with pytest.raises(DatasetError, match=r"data.image_size=auto reads the training images' shape, but none"):
        resolve_image_size(cfg, dataset)
