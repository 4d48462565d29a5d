"""Image reading, the optional decoded-image cache, the torch Dataset and DataLoader builders."""

from __future__ import annotations

import contextlib
import hashlib
import io
import logging
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset

from svllreid.data.samplers import PKSampler, RandomBatchSampler
from svllreid.data.shapes import too_many_pixels
from svllreid.data.types import Sample
from svllreid.errors import ImageReadError
from svllreid.fileio import atomic_write, cache_dir

__all__ = [
    "INTERPOLATIONS",
    "REDUCED_DECODING",
    "RESIZE_CACHE",
    "ImageCache",
    "ReIDImageDataset",
    "Transform",
    "build_test_loader",
    "build_train_loader",
    "decode_rgb",
    "read_resized",
    "resized_pixels",
    "set_loader_epoch",
]

log = logging.getLogger(__name__)

Transform = Callable[[Any], torch.Tensor]


#: Decode a JPEG at the smallest DCT scale (1/2, 1/4, 1/8) that still leaves at least twice the input
#: size, then resize as usual: a 1500×1200 photo for a 64×64 input decodes at 1/8, several times faster.
#: Images smaller than four times the input (every benchmark's crops) decode in full, so their pixels are
#: exactly those of a full decode. ``benchmarks/large_photos.py`` measures both settings.
REDUCED_DECODING = True

#: Resized copies of large photos (at least four times the input in both sides, the ones that cost a
#: decode) are kept in ``$SVLLREID_CACHE/resized`` (default ``~/.cache/svllreid``), keyed by the file's
#: path, size on disk and modification time, the input size, the filter and the decoding mode, so later
#: runs and epochs skip the decoding; the pixels are those computed the first time, exactly.
#: ``SVLLREID_RESIZE_CACHE=0`` turns it off.
RESIZE_CACHE = os.environ.get("SVLLREID_RESIZE_CACHE", "1") != "0"


def _resize_cache_file(path: str, size: tuple[int, int], interpolation: str) -> Path | None:
    try:
        file = Path(path).absolute()
        stat = file.stat()
    except OSError:
        return None
    key = f"{file}|{stat.st_size}|{stat.st_mtime_ns}|{size}|{interpolation}|{REDUCED_DECODING}"
    root = cache_dir() / "resized"
    return root / f"{size[0]}x{size[1]}" / f"{hashlib.sha1(key.encode()).hexdigest()}.npy"


def _cached_pixels(file: Path) -> np.ndarray | None:
    try:
        pixels = np.load(file, allow_pickle=False)
    except (OSError, ValueError, EOFError):
        return None  # absent, or damaged by an earlier crash: decode again
    return pixels if pixels.dtype == np.uint8 and pixels.ndim == 3 else None


def _store_pixels(file: Path, pixels: np.ndarray) -> None:
    """Write a cache entry atomically (a reader never sees half a file) but without the flush to disk:
    a lost entry is only decoded again."""
    buffer = io.BytesIO()
    np.save(buffer, pixels)
    with contextlib.suppress(OSError):  # a read-only or full cache only costs speed
        atomic_write(file, lambda tmp: Path(tmp).write_bytes(buffer.getvalue()), durable=False)


#: Resampling filters for the resize to the network's input size (PIL's, antialiased when shrinking).
INTERPOLATIONS = {"bilinear": Image.Resampling.BILINEAR, "bicubic": Image.Resampling.BICUBIC}


def read_resized(path: str, size: Sequence[int], interpolation: str = "bicubic") -> torch.Tensor:
    """Decode ``path`` as RGB and resize it to ``size`` = (height, width).

    Args:
        interpolation: ``bicubic`` (the reference's training pipeline) or ``bilinear`` (its test
            pipeline: torchvision's default on PIL images).

    Returns:
        uint8 tensor ``[3, H, W]``. Cached and uncached loading both go through here, so the
        two give identical pixels.
    """
    if interpolation not in INTERPOLATIONS:
        raise ValueError(f"interpolation must be one of {', '.join(INTERPOLATIONS)}; got {interpolation!r}")
    height, width = size
    cache_file = None
    try:
        with Image.open(path) as image:  # reads the header only
            if RESIZE_CACHE and image.size[0] >= 4 * width and image.size[1] >= 4 * height:
                cache_file = _resize_cache_file(path, (height, width), interpolation)
                cached = _cached_pixels(cache_file) if cache_file is not None else None
                if cached is not None and cached.shape == (height, width, 3):
                    return torch.from_numpy(cached).permute(2, 0, 1)
            rgb = decode_rgb(image, (height, width))
    except FileNotFoundError as err:
        raise ImageReadError(path, "file not found") from err
    except Image.DecompressionBombError as err:
        raise ImageReadError(path, too_many_pixels(err)) from None
    except Exception as err:  # PIL raises many types for corrupt data
        raise ImageReadError(path, f"{type(err).__name__}: {err}") from err
    pixels = resized_pixels(rgb, (height, width), interpolation)
    if cache_file is not None:
        _store_pixels(cache_file, pixels)
    return torch.from_numpy(pixels).permute(2, 0, 1)


def decode_rgb(image: Image.Image, size: Sequence[int]) -> Image.Image:
    """An opened image decoded as RGB for a network input of ``size`` = (height, width): a JPEG at the
    smallest DCT scale that keeps twice that size (:data:`REDUCED_DECODING`)."""
    if REDUCED_DECODING and image.format == "JPEG":
        image.draft("RGB", (2 * int(size[1]), 2 * int(size[0])))  # a no-op unless the photo is 4× the input or more
    return image.convert("RGB")


def resized_pixels(image: Image.Image, size: Sequence[int], interpolation: str = "bicubic") -> np.ndarray:
    """An image in memory as :func:`read_resized` makes a file's: RGB, resized to ``size`` = (height,
    width) by ``interpolation``; uint8 ``[H, W, 3]``."""
    height, width = int(size[0]), int(size[1])
    rgb = image if image.mode == "RGB" else image.convert("RGB")
    if rgb.size != (width, height):
        rgb = rgb.resize((width, height), INTERPOLATIONS[interpolation])
    return np.asarray(rgb).copy()


class ImageCache:
    """Decoded, resized uint8 images in shared memory, filled lazily on first access.

    The storage is allocated in shared memory before DataLoader workers start, so an image
    decoded by any worker is reused by every worker and every later epoch: each image is
    decoded once per run.
    """

    def __init__(self, paths: Sequence[str], size: Sequence[int], interpolation: str = "bicubic"):
        self.size = (int(size[0]), int(size[1]))
        self.interpolation = interpolation
        self.slot = {path: i for i, path in enumerate(dict.fromkeys(paths))}
        count = len(self.slot)
        self.pixels = torch.zeros((count, 3, *self.size), dtype=torch.uint8).share_memory_()
        self.filled = torch.zeros(count, dtype=torch.bool).share_memory_()
        log.info("image cache (%s): %d images, %.2f GB of shared memory", interpolation, count, self.nbytes / 1e9)

    @property
    def nbytes(self) -> int:
        return self.pixels.numel()

    def get(self, path: str) -> torch.Tensor:
        slot = self.slot[path]
        if not self.filled[slot]:
            self.pixels[slot] = read_resized(path, self.size, self.interpolation)
            self.filled[slot] = True
        return self.pixels[slot]


class ReIDImageDataset(Dataset):
    """Samples -> dicts ``{"image", "pid", "camid", "viewid", "index"}`` (and ``"views"``).

    Args:
        samples: the images.
        transform: applied to the (resized uint8) image.
        size: (height, width) every image is resized to before the transform.
        view_transform: if given, two extra views are made from the same image with it and
            returned as ``"views"`` ``[2, 3, H, W]`` (SVLL's vision self-supervision).
        cache: an :class:`ImageCache` holding these samples' paths, or None to decode each time.
        interpolation: how images are resized to ``size`` (see :func:`read_resized`); a cache must
            hold images resized the same way.
    """

    def __init__(
        self,
        samples: Sequence[Sample],
        transform: Transform,
        size: Sequence[int],
        *,
        view_transform: Transform | None = None,
        cache: ImageCache | None = None,
        interpolation: str = "bicubic",
    ):
        self.samples = list(samples)
        self.transform = transform
        self.view_transform = view_transform
        self.size = (int(size[0]), int(size[1]))
        self.cache = cache
        self.interpolation = interpolation
        if cache is not None and cache.size != self.size:
            raise ValueError(f"image cache holds {cache.size} images but the dataset needs {self.size}")
        if cache is not None and cache.interpolation != interpolation:
            raise ValueError(
                f"image cache holds {cache.interpolation}-resized images but the dataset needs {interpolation}"
            )

    def __len__(self) -> int:
        return len(self.samples)

    def load(self, index: int) -> torch.Tensor:
        path = self.samples[index].path
        return self.cache.get(path) if self.cache is not None else read_resized(path, self.size, self.interpolation)

    def __getitem__(self, index: int) -> dict[str, Any]:
        sample = self.samples[index]
        image = self.load(index)
        item = {
            "image": self.transform(image),
            "pid": sample.pid,
            "camid": sample.camid,
            "viewid": sample.viewid,
            "index": index,
        }
        if self.view_transform is not None:
            item["views"] = torch.stack([self.view_transform(image), self.view_transform(image)])
        return item


def _worker_kwargs(num_workers: int) -> dict[str, Any]:
    # Workers are not persistent: new workers each epoch take their seeds from the loader's
    # generator, which set_loader_epoch re-seeds, so augmentation is reproducible per epoch.
    if num_workers <= 0:
        return {"num_workers": 0}
    return {"num_workers": num_workers, "prefetch_factor": 4}


def build_train_loader(
    dataset: ReIDImageDataset,
    *,
    ids_per_batch: int,
    images_per_id: int,
    seed: int,
    num_workers: int = 4,
    rank: int = 0,
    world_size: int = 1,
    pin_memory: bool = False,
    global_batch: bool = True,
) -> DataLoader:
    """A P×K loader. Call :func:`set_loader_epoch` before each epoch for reproducible order
    and augmentation (the sampler and the workers' random seeds both follow the epoch).
    ``global_batch``: under DDP, P×K is the batch of all processes together (see :class:`PKSampler`)."""
    sampler = PKSampler(
        [s.pid for s in dataset.samples],
        ids_per_batch=ids_per_batch,
        images_per_id=images_per_id,
        seed=seed,
        rank=rank,
        world_size=world_size,
        global_batch=global_batch,
    )
    generator = torch.Generator().manual_seed(seed)
    return DataLoader(
        dataset,
        batch_sampler=sampler,
        generator=generator,
        pin_memory=pin_memory,
        **_worker_kwargs(num_workers),
    )


def set_loader_epoch(loader: DataLoader, epoch: int, seed: int, rank: int = 0) -> None:
    """Re-seed a train loader for ``epoch``: its sampler's order and its workers' augmentation
    seeds. With ``num_workers=0`` augmentation draws from the main process's global torch RNG,
    whose state the caller saves and restores."""
    sampler = loader.batch_sampler
    if isinstance(sampler, PKSampler | RandomBatchSampler):
        sampler.set_epoch(epoch)
    if loader.generator is not None:
        loader.generator.manual_seed(seed * 100_003 + epoch * 101 + rank)


def build_test_loader(
    dataset: ReIDImageDataset, batch_size: int, num_workers: int = 4, pin_memory: bool = False
) -> DataLoader:
    """Ordered, unshuffled batches for feature extraction."""
    return DataLoader(
        dataset, batch_size=batch_size, shuffle=False, pin_memory=pin_memory, **_worker_kwargs(num_workers)
    )
