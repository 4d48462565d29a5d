"""What image headers say: an image's size, whether PIL calls it a possible decompression bomb, and
the median shape of a set of images (which ``data.image_size=auto`` follows). Nothing is decoded."""

from __future__ import annotations

import math
import random
import statistics
from collections.abc import Sequence

from PIL import Image

__all__ = ["choose_input_size", "is_huge", "median_shape", "read_size", "too_many_pixels"]

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


#: ``data.image_size=auto``: sides are multiples of this, at least twice it, and the aspect ratio is
#: clipped to 1:MAX_ASPECT either way (a panorama still gets a usable input).
SIZE_MULTIPLE, MAX_ASPECT = 8, 4.0


def choose_input_size(median_height: float, median_width: float, area: int) -> tuple[int, int]:
    """The input ``(height, width)`` that spends about ``area`` pixels in the shape of the images.

    Sides are multiples of :data:`SIZE_MULTIPLE` (at least twice it). Among the sizes of 0.9 to 1.15 ×
    ``area`` pixels, the one closest to the images' median aspect ratio (clipped to 1:MAX_ASPECT) is
    chosen, ties going to the size nearer ``area``: the budget is spent, not traded for a closer shape
    (a network given fewer pixels sees less). A 2:1 person crop at 32,768 pixels gives 256×128 (the
    paper's input), at 2,048 pixels 64×32; a 1500×1200 photo at 2,048 pixels 40×48; a budget too small
    for any such size gives the smallest size of the shape.
    """
    if median_height <= 0 or median_width <= 0 or area <= 0:
        raise ValueError(f"image shape and area must be positive; got {median_height}×{median_width}, {area}")
    target = min(max(median_width / median_height, 1 / MAX_ASPECT), MAX_ASPECT)  # width / height
    step, low, high = SIZE_MULTIPLE, 0.9 * area, 1.15 * area
    candidates = []
    for h in range(2 * step, int(high / (2 * step)) + step, step):
        first = max(2 * step, step * math.ceil(low / h / step))
        for w in range(first, int(high / h) + 1, step):  # the widths that keep h × w within the budget
            candidates.append((abs(math.log(w / h / target)), abs(math.log(h * w / area)), h, w))
    if not candidates:  # a budget under the smallest sizes: the smallest of the shape
        short = 2 * step
        long = max(short, step * round(short * max(target, 1 / target) / step))
        return (short, long) if target >= 1 else (long, short)
    _, _, height, width = min(candidates)
    return height, width
