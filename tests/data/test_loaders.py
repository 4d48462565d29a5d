"""Dataset items, the shared decoded-image cache and the loaders."""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from svllreid.data.loaders import (
    ImageCache,
    ReIDImageDataset,
    build_test_loader,
    build_train_loader,
    read_resized,
    set_loader_epoch,
)
from svllreid.data.transforms import build_ssl_view_transform, build_test_transform, build_train_transform
from svllreid.data.types import Sample
from svllreid.errors import ImageReadError

SIZE = (32, 16)


@pytest.fixture
def samples(tmp_path: Path) -> list[Sample]:
    out = []
    for pid in range(6):
        for i in range(3):
            path = tmp_path / f"{pid}_{i}.png"
            Image.new("RGB", (20 + i, 40), (40 * pid, 20 * i, 100)).save(path)
            out.append(Sample(str(path), pid, i % 2, -1))
    return out


def test_read_resized_gives_uint8_chw(samples):
    pixels = read_resized(samples[0].path, SIZE)
    assert pixels.shape == (3, 32, 16) and pixels.dtype == torch.uint8


def test_item_fields_and_views(samples):
    ds = ReIDImageDataset(
        samples, build_train_transform(SIZE, padding=2), SIZE, view_transform=build_ssl_view_transform(SIZE)
    )
    item = ds[4]
    assert item["image"].shape == (3, 32, 16)
    assert item["views"].shape == (2, 3, 32, 16)
    assert (item["pid"], item["camid"], item["viewid"], item["index"]) == (1, 1, -1, 4)


def test_cached_and_uncached_pixels_are_identical(samples):
    cache = ImageCache([s.path for s in samples], SIZE)
    plain = ReIDImageDataset(samples, build_test_transform(SIZE), SIZE)
    cached = ReIDImageDataset(samples, build_test_transform(SIZE), SIZE, cache=cache)
    for i in range(len(samples)):
        assert torch.equal(plain[i]["image"], cached[i]["image"])
    assert bool(cache.filled.all())
    assert cache.nbytes == len(samples) * 3 * 32 * 16


def test_cache_is_filled_by_worker_processes(samples):
    cache = ImageCache([s.path for s in samples], SIZE)
    ds = ReIDImageDataset(samples, build_test_transform(SIZE), SIZE, cache=cache)
    batches = list(build_test_loader(ds, batch_size=4, num_workers=2))
    assert sum(len(b["pid"]) for b in batches) == len(samples)
    assert bool(cache.filled.all())  # shared memory: the parent sees what the workers decoded
    assert torch.equal(cache.pixels[0], read_resized(samples[0].path, SIZE))


def test_cache_size_mismatch_is_an_error(samples):
    with pytest.raises(ValueError, match="image cache holds"):
        ReIDImageDataset(samples, build_test_transform(SIZE), SIZE, cache=ImageCache([samples[0].path], (8, 8)))
    bicubic = ImageCache([s.path for s in samples], SIZE, "bicubic")
    with pytest.raises(ValueError, match="image cache holds bicubic-resized images but the dataset needs bilinear"):
        ReIDImageDataset(samples, build_test_transform(SIZE), SIZE, cache=bicubic, interpolation="bilinear")
    with pytest.raises(ValueError, match="interpolation must be one of bilinear, bicubic; got 'area'"):
        read_resized(samples[0].path, SIZE, "area")


def test_test_pipeline_equals_the_references_bilinear_resize(tmp_path):
    """Images read for testing equal torchvision's default pipeline on PIL images (the reference's
    ``T.Resize(size)``: bilinear), cached or not; the training pipelines keep bicubic."""
    from torchvision import transforms as T

    samples = []
    for i, (width, height) in enumerate([(20, 40), (48, 96), (64, 128), (13, 29)]):
        image = Image.new("RGB", (width, height))
        image.putdata(
            [((x * 37 + i) % 256, (y * 11) % 256, (x * y) % 256) for y in range(height) for x in range(width)]
        )
        path = tmp_path / f"{i}.png"
        image.save(path)
        samples.append(Sample(str(path), i, 0, -1))

    mean, std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
    reference = T.Compose([T.Resize(SIZE), T.ToTensor(), T.Normalize(mean, std)])
    test = build_test_transform(SIZE, mean, std)
    plain = ReIDImageDataset(samples, test, SIZE, interpolation="bilinear")
    cached = ReIDImageDataset(
        samples, test, SIZE, cache=ImageCache([s.path for s in samples], SIZE, "bilinear"), interpolation="bilinear"
    )
    bicubic = ReIDImageDataset(samples, test, SIZE, interpolation="bicubic")
    differs = 0
    for i, sample in enumerate(samples):
        with Image.open(sample.path) as image:
            expected = reference(image.convert("RGB"))
        torch.testing.assert_close(plain[i]["image"], expected, rtol=0, atol=1e-6)
        torch.testing.assert_close(cached[i]["image"], expected, rtol=0, atol=1e-6)
        differs += not torch.allclose(bicubic[i]["image"], expected, rtol=0, atol=1e-6)
    assert differs > 0  # the filters do differ on these images, so the check above has teeth


def test_corrupt_image_message_names_file_and_fix(tmp_path, samples):
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"\xff\xd8 not really")
    ds = ReIDImageDataset([Sample(str(bad), 0, 0, -1)], build_test_transform(SIZE), SIZE)
    with pytest.raises(ImageReadError, match=r"cannot read image .*broken\.jpg.*svllreid data check"):
        ds[0]
    with pytest.raises(ImageReadError, match="file not found"):
        read_resized(str(tmp_path / "missing.jpg"), SIZE)


def test_train_loader_batches_and_epoch_reproducibility(samples):
    ds = ReIDImageDataset(samples, build_train_transform(SIZE, padding=2), SIZE)
    loader = build_train_loader(ds, ids_per_batch=2, images_per_id=2, seed=1, num_workers=0)

    def run(epoch: int) -> list[torch.Tensor]:
        set_loader_epoch(loader, epoch, seed=1)
        torch.manual_seed(epoch)  # num_workers=0: augmentation uses the global RNG
        return [b["image"] for b in loader]

    first = run(0)
    assert first and all(b.shape == (4, 3, 32, 16) for b in first)
    assert all(torch.equal(a, b) for a, b in zip(first, run(0), strict=True))
    batch = next(iter(loader))
    assert len(set(batch["pid"].tolist())) == 2


def test_train_loader_with_workers_is_reproducible_per_epoch(samples):
    ds = ReIDImageDataset(samples, build_train_transform(SIZE, padding=2), SIZE)
    loader = build_train_loader(ds, ids_per_batch=2, images_per_id=2, seed=4, num_workers=2)

    def run(epoch: int) -> list[torch.Tensor]:
        set_loader_epoch(loader, epoch, seed=4)
        return [b["image"] for b in loader]

    a, b = run(3), run(3)
    assert all(torch.equal(x, y) for x, y in zip(a, b, strict=True))
    assert not all(torch.equal(x, y) for x, y in zip(a, run(4), strict=False))


def _photo(path, size=(200, 400), seed=0):
    rng = np.random.default_rng(seed)
    low = rng.integers(0, 256, (8, 4, 3), dtype=np.uint8)
    Image.fromarray(low).resize(size, Image.Resampling.BILINEAR).save(path, quality=90)
    return path


def test_large_photos_decode_reduced_and_are_cached_on_disk(tmp_path, monkeypatch):
    """A photo at least 4× the input decodes at a reduced JPEG scale (close to a full decode), and its
    resized copy is kept on disk: a second read gives the same pixels; changing the file misses the cache."""
    import svllreid.data.loaders as loaders

    monkeypatch.setenv("SVLLREID_CACHE", str(tmp_path / "cache"))
    photo = _photo(tmp_path / "photo.jpg")
    first = read_resized(str(photo), (64, 32), "bilinear")
    cached = list((tmp_path / "cache" / "resized" / "64x32").glob("*.npy"))
    assert len(cached) == 1
    assert torch.equal(read_resized(str(photo), (64, 32), "bilinear"), first)
    monkeypatch.setattr(loaders, "REDUCED_DECODING", False)
    monkeypatch.setattr(loaders, "RESIZE_CACHE", False)
    full = read_resized(str(photo), (64, 32), "bilinear")
    assert (first.float() - full.float()).abs().mean() < 3.0  # of 255: the same picture
    monkeypatch.setattr(loaders, "REDUCED_DECODING", True)
    monkeypatch.setattr(loaders, "RESIZE_CACHE", True)
    _photo(photo, seed=1)  # another picture under the same name
    os.utime(photo, ns=(time.time_ns(), time.time_ns() + 10**9))
    assert not torch.equal(read_resized(str(photo), (64, 32), "bilinear"), first)
    # Crops smaller than four times the input are neither reduced nor cached.
    crop = _photo(tmp_path / "crop.jpg", size=(64, 128))
    read_resized(str(crop), (64, 32), "bilinear")
    assert len(list((tmp_path / "cache" / "resized" / "64x32").glob("*.npy"))) == 2
