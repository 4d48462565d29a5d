"""What a checkpoint tells inference about its test pipeline."""

from __future__ import annotations

from pathlib import Path

import torch
from PIL import Image

from svllreid.config import config_to_dict, load_config
from svllreid.data.transforms import build_test_transform
from svllreid.inference.checkpoint import Checkpoint
from svllreid.inference.trained import TrainedModel


def trained_with(data_section: dict) -> TrainedModel:
    config = load_config(None, ["data.image_size=[32,16]"])
    meta = {"config": {**config_to_dict(config), "data": data_section}}
    return TrainedModel(None, Checkpoint(Path("x.safetensors"), meta, {}), config, torch.device("cpu"))


def test_the_test_resize_follows_the_checkpoint_and_older_ones_keep_bicubic():
    saved = config_to_dict(load_config(None, ["data.image_size=[32,16]"]))["data"]
    assert trained_with(saved).interpolation == "bilinear"  # written with the option: its value
    older = {k: v for k, v in saved.items() if k != "test_interpolation"}
    trained = trained_with(older)
    assert trained.interpolation == "bicubic"  # evaluated bicubically when it was trained: reproducible
    image = Image.new("RGB", (40, 70))
    image.putdata([(x * 9 % 256, y * 5 % 256, 7) for y in range(70) for x in range(40)])
    bicubic = build_test_transform((32, 16), interpolation="bicubic")
    assert torch.equal(trained.transform(image), bicubic(image))
