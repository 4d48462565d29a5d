"""A gallery index for text and image search tests: a ReID network whose CLIP is the shipped svll-synth
(untrained heads), a captioned synthetic world of 14 people (12 in the test split) it never saw (another
seed), and an index of their test images built by the CLI."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

import svllreid
from svllreid.cli import main
from svllreid.config import config_to_dict, load_config
from svllreid.data.datasets import load_caption_dataset
from svllreid.data.synthesis import generate_synthetic
from svllreid.inference.checkpoint import write_checkpoint


def build_captioned_gallery(folder: Path, *index_args: str) -> dict[str, Any]:
    """The world, checkpoint and index under ``folder``; ``index_args`` go to ``svllreid index build``
    (label options, say). Returns the folder, checkpoint, index, image paths and test captions."""
    root = folder / "world"
    generate_synthetic(root, num_ids=14, num_cameras=3, images_per_camera=2, seed=41, workers=1, train_ids=2)
    captions = load_caption_dataset("synthetic_captions", str(root)).split("test")
    torch.manual_seed(0)
    model = svllreid.create_model("svll-tiny-vit", num_classes=4, image_size=(64, 32), pretrained="svll-synth")
    config = load_config(None, ["data.image_size=[64,32]", "model.arch=svll-tiny-vit", "model.pretrained=svll-synth"])
    meta = {"spec": model.spec.to_dict(), "quick_gelu": False, "config": config_to_dict(config), "stage": 2}
    checkpoint = write_checkpoint(folder / "model.safetensors", model, meta)
    images = sorted({c.path for c in captions})
    (folder / "gallery.txt").write_text("\n".join(images) + "\n")
    index = folder / "gallery.npz"
    assert main(["index", "build", "--checkpoint", str(checkpoint), "--images", str(folder / "gallery.txt"),
                 "--out", str(index), "--no-progress", "--device", "cpu", *index_args]) == 0  # fmt: skip
    return {"folder": folder, "checkpoint": checkpoint, "index": index, "images": images, "captions": captions}
