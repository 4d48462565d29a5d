"""The test pipeline's normalisation in plain torch: a resized uint8 image to the network's input.

:func:`svllreid.data.transforms.build_test_transform` does the same with torchvision, which costs a
second or more to import; ``svllreid search`` encodes a few queries, so it starts faster with this
copy. The two give identical tensors for images already at the input size (what
:func:`svllreid.data.loaders.read_resized` returns), which ``tests/data/test_pixels.py`` checks.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

__all__ = ["NormalizePixels"]


class NormalizePixels:
    """uint8 ``[3, H, W]`` → float32 scaled to [0, 1], minus ``mean``, over ``std`` (per channel), with the
    operations and their order of ``v2.ToDtype(float32, scale=True)`` then ``v2.Normalize``, so that the
    result is equal to the last bit."""

    def __init__(self, mean: Sequence[float], std: Sequence[float]):
        if len(mean) != len(std) or not all(std):
            raise ValueError(f"mean and std need one non-zero std per channel; got mean={mean}, std={std}")
        self.mean = torch.as_tensor(list(mean), dtype=torch.float32).view(-1, 1, 1)
        self.std = torch.as_tensor(list(std), dtype=torch.float32).view(-1, 1, 1)

    def __call__(self, image: torch.Tensor) -> torch.Tensor:
        if image.dtype != torch.uint8 or image.ndim != 3:
            raise TypeError(f"expected a uint8 [3, H, W] image tensor; got {image.dtype} {tuple(image.shape)}")
        return image.to(torch.float32).mul_(1.0 / 255).sub(self.mean).div_(self.std)
