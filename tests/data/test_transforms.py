"""Transform output shapes and value ranges."""

from __future__ import annotations

import pytest
import torch
from PIL import Image

from svllreid.data.transforms import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    build_ssl_view_transform,
    build_test_transform,
    build_train_transform,
)


def gradient_image(width: int = 48, height: int = 96) -> Image.Image:
    image = Image.new("RGB", (width, height))
    image.putdata([(x * 5 % 256, y * 2 % 256, 128) for y in range(height) for x in range(width)])
    return image


def test_test_transform_is_deterministic_and_normalised():
    t = build_test_transform((256, 128))
    out = t(gradient_image())
    assert out.shape == (3, 256, 128) and out.dtype == torch.float32
    assert out.min() >= -1.0 - 1e-6 and out.max() <= 1.0 + 1e-6  # mean = std = 0.5
    assert torch.equal(out, t(gradient_image()))


def test_test_transform_accepts_uint8_tensors_like_pil():
    image = gradient_image(128, 256)  # already at the target size: resize is a no-op
    tensor = torch.from_numpy(__import__("numpy").asarray(image).copy()).permute(2, 0, 1)
    t = build_test_transform((256, 128))
    assert torch.allclose(t(image), t(tensor))


def test_imagenet_statistics():
    t = build_test_transform((32, 16), IMAGENET_MEAN, IMAGENET_STD)
    white = t(Image.new("RGB", (16, 32), (255, 255, 255)))
    expected = torch.tensor([(1 - m) / s for m, s in zip(IMAGENET_MEAN, IMAGENET_STD, strict=True)])
    assert torch.allclose(white[:, 0, 0], expected, atol=1e-5)


def test_train_transform_shapes_and_randomness():
    torch.manual_seed(0)
    t = build_train_transform((64, 32), padding=4)
    outs = [t(gradient_image()) for _ in range(4)]
    assert all(o.shape == (3, 64, 32) for o in outs)
    assert not all(torch.equal(outs[0], o) for o in outs[1:])


def test_train_transform_without_augmentation_equals_test_transform_up_to_crop():
    # flip, erasing off and no padding: the crop is the whole image, so train == a bicubic test transform.
    t = build_train_transform((64, 32), padding=0, flip_prob=0.0, erasing_prob=0.0)
    assert torch.equal(t(gradient_image()), build_test_transform((64, 32), interpolation="bicubic")(gradient_image()))
    # The default test transform resizes bilinearly, as the reference's (torchvision's default).
    assert not torch.equal(t(gradient_image()), build_test_transform((64, 32))(gradient_image()))
    with pytest.raises(ValueError, match="interpolation must be one of bilinear, bicubic; got 'nearest'"):
        build_test_transform((64, 32), interpolation="nearest")


def test_erasing_fills_with_noise_outside_the_image_range():
    torch.manual_seed(1)
    t = build_train_transform((64, 32), padding=0, flip_prob=0.0, erasing_prob=1.0)
    out = t(Image.new("RGB", (32, 64), (128, 128, 128)))
    plain = build_test_transform((64, 32))(Image.new("RGB", (32, 64), (128, 128, 128)))
    changed = (out != plain).any(dim=0)
    assert 0.02 * 64 * 32 * 0.5 <= changed.sum() <= 0.33 * 64 * 32 * 1.1
    assert out.std() > plain.std()


def test_ssl_view_erases_about_a_third():
    torch.manual_seed(2)
    t = build_ssl_view_transform((96, 48), padding=0, flip_prob=0.0, erasing_prob=1.0, erasing_area=1 / 3)
    plain = build_test_transform((96, 48))(Image.new("RGB", (48, 96), (90, 90, 90)))
    fractions = []
    for _ in range(10):
        out = t(Image.new("RGB", (48, 96), (90, 90, 90)))
        fractions.append(((out != plain).any(dim=0)).float().mean().item())
    assert all(0.25 <= f <= 0.40 for f in fractions), fractions


def test_erased_token_share_grows_as_the_input_shrinks():
    from svllreid.data.transforms import erased_token_share

    paper = erased_token_share((256, 128), 16, 12, 0.33, draws=500)
    small = erased_token_share((64, 32), 16, 8, 0.33, draws=500)
    assert 0.42 < paper < 0.48 and 0.72 < small < 0.80  # a third of the image: 45 % of the tokens vs 76 %
    assert erased_token_share((64, 32), 16, 8, 0.05, draws=500) < small
    assert erased_token_share((64, 32), 16, 8, 0.33, draws=500, seed=3) == pytest.approx(small, abs=0.03)
