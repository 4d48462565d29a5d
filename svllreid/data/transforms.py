"""Image transforms of METHOD.md 3.3 and 4.2 on torchvision.transforms.v2.

Every transform accepts a PIL image or a uint8 ``[3, H, W]`` tensor (what the image cache holds)
and returns a normalised float32 ``[3, H, W]`` tensor.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torchvision.transforms import InterpolationMode, v2

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "VIT_MEAN",
    "VIT_STD",
    "build_ssl_view_transform",
    "build_test_transform",
    "build_train_transform",
    "erased_token_share",
]

#: Mean/std of CLIP ViT configs in the reference (0.5 per channel) and of ImageNet (RN50 configs).
VIT_MEAN = VIT_STD = (0.5, 0.5, 0.5)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


_MODES = {"bilinear": InterpolationMode.BILINEAR, "bicubic": InterpolationMode.BICUBIC}


def _head(size: Sequence[int], interpolation: str = "bicubic") -> list[v2.Transform]:
    # Images read by the loaders arrive resized already (the resize is a no-op then); a PIL image or
    # tensor of another size passed directly is resized here.
    if interpolation not in _MODES:
        raise ValueError(f"interpolation must be one of {', '.join(_MODES)}; got {interpolation!r}")
    return [v2.ToImage(), v2.Resize(list(size), interpolation=_MODES[interpolation], antialias=True)]


def _tail(mean: Sequence[float], std: Sequence[float]) -> list[v2.Transform]:
    return [v2.ToDtype(torch.float32, scale=True), v2.Normalize(list(mean), list(std))]


def build_test_transform(
    size: Sequence[int],
    mean: Sequence[float] = VIT_MEAN,
    std: Sequence[float] = VIT_STD,
    interpolation: str = "bilinear",
) -> v2.Compose:
    """Resize -> tensor -> normalise. The reference's test resize is torchvision's default, bilinear;
    the training pipelines resize bicubically."""
    return v2.Compose([*_head(size, interpolation), *_tail(mean, std)])


def _augmenting(
    size: Sequence[int],
    mean: Sequence[float],
    std: Sequence[float],
    padding: int,
    flip_prob: float,
    erasing: v2.Transform,
) -> v2.Compose:
    """Resize -> flip -> pad -> random crop -> normalise -> ``erasing``."""
    return v2.Compose(
        [
            *_head(size),
            v2.RandomHorizontalFlip(flip_prob),
            v2.Pad(padding),
            v2.RandomCrop(list(size)),
            *_tail(mean, std),
            erasing,
        ]
    )


def build_train_transform(
    size: Sequence[int],
    *,
    mean: Sequence[float] = VIT_MEAN,
    std: Sequence[float] = VIT_STD,
    padding: int = 10,
    flip_prob: float = 0.5,
    erasing_prob: float = 0.5,
) -> v2.Compose:
    """Resize -> flip -> pad -> random crop -> normalise -> random erasing with noise fill.

    Erasing covers 2%-33% of the image with aspect 0.3-3.3, filled with per-pixel normal noise.
    """
    erasing = v2.RandomErasing(p=erasing_prob, scale=(0.02, 0.33), ratio=(0.3, 3.3), value="random")
    return _augmenting(size, mean, std, padding, flip_prob, erasing)


def build_ssl_view_transform(
    size: Sequence[int],
    *,
    mean: Sequence[float] = VIT_MEAN,
    std: Sequence[float] = VIT_STD,
    padding: int = 10,
    flip_prob: float = 0.5,
    erasing_prob: float = 0.5,
    erasing_area: float = 0.33,
) -> v2.Compose:
    """One of SVLL's two occluded self-supervision views: the train pipeline, but the erased
    rectangle always covers ``erasing_area`` of the image (about a third in the reference)."""
    erasing = v2.RandomErasing(p=erasing_prob, scale=(erasing_area, erasing_area), ratio=(0.3, 3.3), value="random")
    return _augmenting(size, mean, std, padding, flip_prob, erasing)


def erased_token_share(
    size: Sequence[int], patch: int, stride: int, area: float, *, draws: int = 2000, seed: int = 0
) -> float:
    """The mean share of a ViT's patch tokens that an SSL view's erased rectangle touches, when it erases.

    The rectangle is drawn by the same ``RandomErasing`` as :func:`build_ssl_view_transform` (``area`` of
    the image, aspect ratio 0.3-3.3); a token is touched when its ``patch`` × ``patch`` window (placed every
    ``stride`` pixels) overlaps the rectangle at all. Erasing the same share of the image touches far
    more tokens of a small input than of a large one, which this measures.
    """
    height, width = (int(v) for v in size)
    rows, cols = (height - patch) // stride + 1, (width - patch) // stride + 1
    erase = v2.RandomErasing(p=1.0, scale=(area, area), ratio=(0.3, 3.3), value=0.0)
    # The transform's own draw of a rectangle, without erasing an image: a window touches the rectangle
    # when their rows and their columns overlap, so counting both gives the touched tokens. The same
    # draws and the same float32 shares as erasing an image of ones and looking for zeros, at a fraction
    # of the cost (the bisection of benchmarks/vision_ssl_factors.py calls this tens of thousands of times).
    draw = getattr(erase, "make_params", None) or erase._get_params  # torchvision < 0.21: private
    ones = [torch.ones(1, height, width)]
    tokens = float(rows * cols)
    shares = []
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        for _ in range(draws):
            torch.rand(1)  # the transform's draw of whether to erase at all (p=1: it always does)
            box = draw(ones)
            if box["v"] is None or box["h"] == 0 or box["w"] == 0:  # no rectangle fitted: the image stays
                continue
            top, left, h, w = box["i"], box["j"], box["h"], box["w"]
            touched_rows = sum(1 for r in range(rows) if r * stride < top + h and r * stride + patch > top)
            touched_cols = sum(1 for c in range(cols) if c * stride < left + w and c * stride + patch > left)
            shares.append(torch.tensor(float(touched_rows * touched_cols)) / tokens)
    return float(torch.stack(shares).mean()) if shares else 0.0
