"""What each of BoxMOT's preprocessing differences costs in mAP, on the PKU-Reid subset.

BoxMOT (see docs/DEPLOY.md) feeds every ReID network crops resized to 256×128 with OpenCV's bilinear
filter (no antialiasing), normalised with ImageNet's statistics, and its CLIP builder takes the features
after the BNNecks. svllreid evaluates with PIL's antialiased resize by the network's test filter
(bilinear), the statistics it trained with (0.5 for CLIP ViTs), and the features before the BNNecks.

This script trains a tiny network on the subset (``configs/pku_tiny.yaml``, shortened by the options
below; the test split is only evaluated, never used to choose anything), then evaluates its test split
with one difference at a time, all of BoxMOT's ``.pt`` route together, and the ``--format boxmot`` ONNX
route (BoxMOT's crops through the graph's adapter). OpenCV is not a dependency: its bilinear filter is
taken as torch's bilinear interpolation without antialiasing (half-pixel centres, as OpenCV's). Prints
measured numbers only:
    python benchmarks/boxmot_preprocessing.py   # the repository's data/pku-reid-subset, or --root FOLDER
"""

from __future__ import annotations

import argparse
import json
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

REPO = Path(__file__).resolve().parents[1]

Resize = Callable[[Image.Image, tuple[int, int]], torch.Tensor]


def pil_resize(filter_: Image.Resampling) -> Resize:
    def resize(image: Image.Image, size: tuple[int, int]) -> torch.Tensor:
        pixels = np.asarray(image.convert("RGB").resize((size[1], size[0]), filter_))
        return torch.from_numpy(pixels.copy()).permute(2, 0, 1).float() / 255

    return resize


def opencv_like_resize(image: Image.Image, size: tuple[int, int]) -> torch.Tensor:
    pixels = torch.from_numpy(np.asarray(image.convert("RGB")).copy()).permute(2, 0, 1).float()[None]
    resized = F.interpolate(pixels, size=size, mode="bilinear", align_corners=False, antialias=False)
    return resized[0].round().clamp(0, 255) / 255  # OpenCV returns uint8


def encoder(model) -> Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]]:
    """The test feature (f12 and f_proj, L2-normalised) before and after the BNNecks, cameras unknown: one
    pass of the network for both."""

    def encode(batch: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        unknown = torch.full((len(batch),), -1, dtype=torch.long)
        feats = model.image_features(batch, unknown, unknown)
        f12, proj = feats.f12, feats.f_proj
        before = F.normalize(torch.cat([f12, proj], dim=1), dim=1)
        after = F.normalize(torch.cat([model.neck.bn(f12), model.neck_proj.bn(proj)], dim=1), dim=1)
        return before, after

    return encode


def graph(module: torch.nn.Module) -> Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]]:
    """An exported graph's output, which is its only feature."""

    def encode(batch: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out = module(batch)
        return out, out

    return encode


def features(encode, images: list[Image.Image], *, size, resize: Resize, stats) -> tuple[torch.Tensor, torch.Tensor]:
    mean = torch.tensor(stats[0]).view(3, 1, 1)
    std = torch.tensor(stats[1]).view(3, 1, 1)
    before, after = [], []
    with torch.no_grad():
        for start in range(0, len(images), 64):
            batch = torch.stack([(resize(image, size) - mean) / std for image in images[start : start + 64]])
            rows = encode(batch)
            before.append(rows[0])
            after.append(rows[1])
    return torch.cat(before), torch.cat(after)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", default=str(REPO / "data" / "pku-reid-subset"))
    parser.add_argument("--stage1-epochs", type=int, default=10)
    parser.add_argument("--stage2-epochs", type=int, default=20)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    from svllreid.config import load_config
    from svllreid.data.transforms import IMAGENET_MEAN, IMAGENET_STD
    from svllreid.export.boxmot import BOXMOT_INPUT, BoxmotInput
    from svllreid.inference.trained import load_trained_model
    from svllreid.metrics.ranking import evaluate
    from svllreid.training.run import train

    with tempfile.TemporaryDirectory() as tmp:
        overrides = [
            f"data.root={args.root}",
            f"stage1.epochs={args.stage1_epochs}",
            f"stage2.epochs={args.stage2_epochs}",
            f"stage2.milestones=[{max(1, args.stage2_epochs - 5)}]",
            "run.report=false",
            f"run.output_dir={tmp}",
            "run.name=pku",
        ]
        result = train(load_config(REPO / "configs" / "pku_tiny.yaml", overrides), progress=False)
        trained = load_trained_model(result.run_dir, "cpu")
        from svllreid.data.datasets import load_dataset

        dataset = load_dataset("pku", args.root)
    model, size = trained.model, trained.image_size
    own = (tuple(trained.config.data.pixel_mean), tuple(trained.config.data.pixel_std))
    imagenet = (IMAGENET_MEAN, IMAGENET_STD)
    test_filter = {"bilinear": Image.Resampling.BILINEAR, "bicubic": Image.Resampling.BICUBIC}[trained.interpolation]
    svllreid_resize = pil_resize(test_filter)
    network, onnx_route = encoder(model), graph(BoxmotInput(trained).eval())
    # name -> (encoder, input size, resize, statistics, whether the features are after the BNNecks)
    variants = {
        "svllreid (PIL bilinear antialiased, own statistics, before BNNeck)": (network, size, svllreid_resize, own, 0),
        "bicubic instead of bilinear": (network, size, pil_resize(Image.Resampling.BICUBIC), own, 0),
        "bilinear without antialiasing (OpenCV's, BoxMOT)": (network, size, opencv_like_resize, own, 0),
        "ImageNet statistics instead of the network's": (network, size, svllreid_resize, imagenet, 0),
        "features after the BNNecks (BoxMOT's CLIP builder)": (network, size, svllreid_resize, own, 1),
        "BoxMOT's .pt route: OpenCV resize, ImageNet, after BNNeck": (network, size, opencv_like_resize, imagenet, 1),
        # What the --format boxmot ONNX graph computes from BoxMOT's 256x128 ImageNet-normalised crops.
        "--format boxmot ONNX: BoxMOT's crops, the graph's adapter": (
            onnx_route,
            BOXMOT_INPUT,
            opencv_like_resize,
            imagenet,
            0,
        ),
    }
    samples = {s.path: s for split in dataset.splits for s in split.query + split.gallery}
    paths = sorted(samples)
    row = {p: i for i, p in enumerate(paths)}
    # Each image decoded once, and one pass of the network per input (the features before and after the
    # BNNecks come from the same pass): the variants differ only in what follows.
    images = []
    for path in paths:
        with Image.open(path) as image:
            images.append(image.convert("RGB"))
    passes: dict[tuple, tuple[torch.Tensor, torch.Tensor]] = {}
    rows = []
    for name, (encode, input_size, resize, stats, after_bn) in variants.items():
        key = (encode, input_size, resize, stats)
        if key not in passes:
            passes[key] = features(encode, images, size=input_size, resize=resize, stats=stats)
        feats = passes[key][after_bn]
        maps = []
        for split in dataset.splits:
            q = torch.tensor([row[s.path] for s in split.query])
            g = torch.tensor([row[s.path] for s in split.gallery])
            cams = dataset.has_cameras
            outcome = evaluate(
                feats[q],
                feats[g],
                np.array([s.pid for s in split.query]),
                np.array([s.pid for s in split.gallery]),
                np.array([s.camid for s in split.query]) if cams else None,
                np.array([s.camid for s in split.gallery]) if cams else None,
            )
            maps.append(100 * outcome.mAP)
        rows.append({"variant": name, "mAP": float(np.mean(maps))})
    base = rows[0]["mAP"]
    for r in rows:
        r["difference"] = r["mAP"] - base
    report = {
        "network": f"{trained.spec.arch} {size[0]}x{size[1]}, trained {args.stage1_epochs}+{args.stage2_epochs} epochs",
        "dataset": f"PKU-Reid subset ({len(dataset.splits)} splits, mean)",
        "training_run_mAP": 100 * float(result.evaluation["mAP"]),  # svllreid's own evaluation, for a check
        "rows": rows,
    }
    if args.json:
        print(json.dumps(report, indent=2))
        return
    print(f"{report['network']} on the {report['dataset']}; mAP in %, and the difference from the first row")
    print(f"(the training run's own evaluation: {report['training_run_mAP']:.2f})")
    for r in rows:
        print(f"{r['variant']:<78}{r['mAP']:7.2f}{r['difference']:+8.2f}")


if __name__ == "__main__":
    main()
