"""The torchvision-free normalisation of ``search`` gives the test pipeline's tensors to the last bit."""

from __future__ import annotations

import pytest
import torch

from svllreid.data.pixels import NormalizePixels
from svllreid.data.transforms import IMAGENET_MEAN, IMAGENET_STD, VIT_MEAN, VIT_STD, build_test_transform


@pytest.mark.parametrize(("mean", "std"), [(VIT_MEAN, VIT_STD), (IMAGENET_MEAN, IMAGENET_STD)])
def test_equal_to_the_torchvision_test_transform_for_resized_images(mean, std) -> None:
    generator = torch.Generator().manual_seed(3)
    images = torch.randint(0, 256, (5, 3, 64, 32), dtype=torch.uint8, generator=generator)
    images[0] = 0
    images[1] = 255  # both ends of the range
    torchvision_path = build_test_transform((64, 32), mean, std, "bilinear")
    plain = NormalizePixels(mean, std)
    for image in images:
        assert torch.equal(plain(image), torchvision_path(image))


def test_wrong_inputs_are_named() -> None:
    with pytest.raises(ValueError, match="one non-zero std per channel"):
        NormalizePixels((0.5, 0.5, 0.5), (0.5, 0.0, 0.5))
    with pytest.raises(TypeError, match="expected a uint8"):
        NormalizePixels(VIT_MEAN, VIT_STD)(torch.zeros(3, 4, 4))
