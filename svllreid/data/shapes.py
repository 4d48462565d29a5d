"""What image headers say: an image's size, whether PIL calls it a possible decompression bomb, and
the median shape of a set of images (which ``data.image_size=auto`` follows). Nothing is decoded."""

from __future__ import annotations

import random
import statistics
from collections.abc import Sequence

from PIL import Image

__all__ = ["is_huge", "median_shape", "read_size", "too_many_pixels"]

#: Headers read by :func:`median_shape` (a random sample of larger sets: the median settles fast).
SHAPE_SAMPLE = 500


def is_huge(size: tuple[int, int]) -> bool:
    """Whether an image of ``size`` pixels is over PIL's decompression-bomb warning limit (89 megapixels)."""
    return Image.MAX_IMAGE_PIXELS is not None and size[0] * size[1] > Image.MAX_IMAGE_PIXELS


def too_many_pixels(err: Image.DecompressionBombError) -> str:
    """Why an image over PIL's hard limit (twice the warning limit) is not read, and what to do."""
    return (
        f"too large to decode ({err}); PIL refuses images of more than twice {Image.MAX_IMAGE_PIXELS} pixels: "
        "save a smaller copy"
    )


def read_size(path: str) -> tuple[int, int] | None:
    """``(width, height)`` from the file's header; None when it cannot be read as an image."""
    try:
        with Image.open(path) as image:
            return image.size
    except Image.DecompressionBombError:
        return None
    except Exception:  # missing, truncated or not an image: the dataset check reports those
        return None


def median_shape(paths: Sequence[str], seed: int = 0) -> tuple[float, float, int] | None:
    """Median height, median width and the number of headers read, over ``paths`` (a seeded sample of
    :data:`SHAPE_SAMPLE` when there are more); None when no image could be read."""
    chosen = list(paths) if len(paths) <= SHAPE_SAMPLE else random.Random(seed).sample(list(paths), SHAPE_SAMPLE)
    sizes = [size for size in map(read_size, chosen) if size is not None]
    if not sizes:
        return None
    return statistics.median(h for _, h in sizes), statistics.median(w for w, _ in sizes), len(sizes)
