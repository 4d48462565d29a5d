"""Full-size photos: extraction and a stage-2 epoch in images/s, with and without reduced JPEG decoding.

A user's camera photos are often 1-2 megapixels while the network sees 64×64 to 256×128 pixels.
Decoding the whole JPEG and then shrinking it dominates the time. svllreid now decodes such JPEGs at the
smallest DCT scale (1/2, 1/4 or 1/8) that still leaves twice the input size
(``svllreid.data.loaders.REDUCED_DECODING``), and keeps the resized copy on disk
(``RESIZE_CACHE``), so that later epochs and runs skip the decoding.

This script makes ``--count`` photos of ``--size`` pixels (PIL-drawn JPEGs, quality 90, in identity
folders with left/right cameras), then measures side by side in one run: full decoding (as before),
reduced decoding on a first pass (the cache being written) and again (read from the cache):
- extract: features of every photo (``inference.features.extract_file_features``, tiny ViT, batch 64);
- stage 2: one epoch of stage 2 on them (``svllreid train``'s own images/s from metrics.jsonl).
It prints measured numbers only. Example (the issue's setting, about 6 minutes on 2 cores):
    python benchmarks/large_photos.py --count 1000 --size 1500 1200
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image


def make_photos(folder: Path, count: int, size: tuple[int, int], ids: int) -> list[Path]:
    """Smooth random scenes with noise (so the JPEGs cost what photos cost to decode)."""
    rng = np.random.default_rng(0)
    width, height = size
    paths = []
    for i in range(count):
        low = rng.integers(0, 256, (12, 15, 3), dtype=np.uint8)
        image = Image.fromarray(low).resize((width, height), Image.Resampling.BILINEAR)
        pixels = np.asarray(image).astype(np.int16) + rng.integers(-12, 13, (height, width, 3), dtype=np.int16)
        identity = folder / f"id{i % ids:03d}"
        identity.mkdir(parents=True, exist_ok=True)
        path = identity / f"{i:05d}_{'left' if (i // ids) % 2 else 'right'}.jpg"  # both cameras per identity
        Image.fromarray(pixels.clip(0, 255).astype(np.uint8)).save(path, quality=90)
        paths.append(path)
    return paths


def extract_rate(paths: list[Path], image_size: tuple[int, int]) -> float:
    import torch

    from svllreid.data.transforms import build_test_transform
    from svllreid.inference.features import extract_file_features
    from svllreid.models import create_model

    torch.manual_seed(0)
    model = create_model("svll-tiny-vit", num_classes=2, image_size=image_size)
    transform = build_test_transform(list(image_size), [0.5] * 3, [0.5] * 3, "bilinear")
    files = extract_file_features(
        model,
        [str(p) for p in paths],
        transform=transform,
        image_size=image_size,
        device=torch.device("cpu"),
        batch_size=64,
        progress=False,
        interpolation="bilinear",
    )
    return files.images_per_s


def stage2_rate(photos: Path, out: Path, name: str, image_size: tuple[int, int]) -> float:
    from svllreid.config import load_config
    from svllreid.training.run import train

    overrides = [
        "data.dataset=folder",
        f"data.root={photos}",
        "data.options={camera_regex: '_(left|right)\\.'}",
        f"data.image_size=[{image_size[0]}, {image_size[1]}]",
        "data.cache_images=false",
        "data.num_workers=0",
        "data.check=off",
        "model.arch=svll-tiny-vit",
        "model.pretrained=none",
        "model.stride=null",
        "stage1.epochs=0",
        "stage2.epochs=1",
        "stage2.ids_per_batch=8",
        "stage2.images_per_id=4",
        "stage2.warmup_epochs=0",
        "stage2.milestones=[1]",
        "eval.before_training=false",
        "run.report=false",
        f"run.output_dir={out}",
        f"run.name={name}",
        "run.log_every=5",
    ]
    result = train(load_config(None, overrides), progress=False)
    records = [json.loads(line) for line in (result.run_dir / "metrics.jsonl").read_text().splitlines()]
    rates = [r["images_per_s"] for r in records if r.get("stage") == "stage2" and "images_per_s" in r]
    return statistics.fmean(rates)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=1000, help="photos (default 1000)")
    parser.add_argument("--size", type=int, nargs=2, default=[1500, 1200], metavar=("W", "H"))
    parser.add_argument("--ids", type=int, default=100, help="identities (default 100)")
    parser.add_argument("--image-size", type=int, nargs=2, default=[64, 64], metavar=("H", "W"))
    parser.add_argument("--skip-train", action="store_true", help="only the extraction")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="svllreid-large-photos-"))
    os.environ["SVLLREID_CACHE"] = str(work / "cache")  # the resized copies go there, not to ~/.cache
    import svllreid.data.loaders as loaders

    started = time.perf_counter()
    paths = make_photos(work / "photos", args.count, (args.size[0], args.size[1]), args.ids)
    made = time.perf_counter() - started
    size = (args.image_size[0], args.image_size[1])
    rows = {}
    settings = (
        ("full decoding", False, False),  # what svllreid did before: decode all, resize, every time
        ("reduced, 1st pass", True, True),  # reduced JPEG decoding; the resized copies are written
        ("reduced, cached", True, True),  # the same again: read from the on-disk copies
    )
    for number, (label, reduced, cache) in enumerate(settings):
        loaders.REDUCED_DECODING, loaders.RESIZE_CACHE = reduced, cache
        row = {"extract_images_per_s": extract_rate(paths, size)}
        if not args.skip_train:
            row["stage2_images_per_s"] = stage2_rate(work / "photos", work / "runs", f"run{number}", size)
        rows[label] = row
    loaders.REDUCED_DECODING = loaders.RESIZE_CACHE = True
    report = {
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs",
        "photos": f"{args.count} JPEGs of {args.size[0]}×{args.size[1]} (made in {made:.0f} s)",
        "input": f"{size[0]}×{size[1]}",
        "rows": rows,
    }
    if args.json:
        print(json.dumps(report, indent=2))
        return
    print(f"{report['photos']} → network input {report['input']} on {report['machine']}")
    columns = ["extract_images_per_s"] + ([] if args.skip_train else ["stage2_images_per_s"])
    print(f"{'':<18}" + "".join(f"{c.replace('_images_per_s', ' img/s'):>16}" for c in columns))
    for label, row in rows.items():
        print(f"{label:<18}" + "".join(f"{row[c]:16.1f}" for c in columns))
    full = rows["full decoding"]
    for label in ("reduced, 1st pass", "reduced, cached"):
        print(f"{'× ' + label:<18}" + "".join(f"{rows[label][c] / full[c]:15.2f}×" for c in columns))


if __name__ == "__main__":
    main()
