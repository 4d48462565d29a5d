"""Does ReID training keep text search working? Text-to-image retrieval at three points.

The caption protocol of ``svllreid eval-text`` (each caption ranks the split's images; a match shows
the caption's identity) on held-out synthetic identities, by default the test split of the
pretraining world (identities 2001-2400: never seen in pretraining, nor in the ReID training set):

1. after pretraining: the shipped ``svll-synth`` CLIP itself;
2. after CLIP-ReID: the demo recipe from ``svll-synth`` without the two self-supervision branches;
3. after SVLL-ReID: the demo recipe as it is.

A trained ReID run is evaluated as ``search --text`` ranks a gallery: its projected image feature
f_proj against its (frozen) text encoder on the caption's tokens. Each run's own ReID test mAP is
printed beside it.

    python benchmarks/text_retention.py
    python benchmarks/text_retention.py stage2.epochs=25 "stage2.milestones=[20]"   # applied to both runs
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

VARIANTS = {
    "after CLIP-ReID": ["stage1.lang_ssl=false", "stage2.vis_ssl=false"],
    "after SVLL-ReID": [],
}
METRICS = ("R@1", "R@5", "R@10", "mAP", "mINP")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="demo-recipe overrides for both runs")
    parser.add_argument("--dataset", default="synthetic_captions")
    parser.add_argument("--root", default="", help="caption dataset folder (default: the cached pretraining world)")
    parser.add_argument("--split", default="test")
    parser.add_argument("--out", default=None, help="folder for the two training runs (default: a temporary one)")
    parser.add_argument("--batch-size", type=int, default=512)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    import torch

    from svllreid.config import load_config
    from svllreid.data.datasets import load_caption_dataset
    from svllreid.evaluation.text_eval import evaluate_loaded_sides
    from svllreid.inference.text_encoding import load_sides
    from svllreid.training.demo import DEMO_RECIPE
    from svllreid.training.run import train

    dataset = load_caption_dataset(args.dataset, args.root)
    captions = dataset.split(args.split)
    out = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="svllreid-text-retention-"))
    rows: dict[str, dict] = {}

    def evaluate(name: str, started: float, reid_map: float | None, **where: str | None) -> None:
        sides = load_sides(device="cpu", **where)  # type: ignore[arg-type]
        summary = evaluate_loaded_sides(
            sides, captions, dataset=dataset.name, split=args.split, batch_size=args.batch_size
        ).summary
        rows[name] = {
            **{k: summary[k] for k in METRICS},
            "reid_mAP": reid_map,
            "seconds": time.perf_counter() - started,
        }

    evaluate("after pretraining (svll-synth)", time.perf_counter(), None, arch="svll-tiny-vit", pretrained="svll-synth")
    for name, variant in VARIANTS.items():
        started = time.perf_counter()
        overrides = [f"run.output_dir={out}", f"run.name={name.split()[-1]}", *variant, *args.overrides]
        result = train(load_config(DEMO_RECIPE, overrides), progress=False)
        evaluate(name, started, float(result.evaluation["mAP"]), checkpoint=str(result.run_dir))
    report = {
        "device": "cpu",
        "cpu": platform.processor() or platform.machine(),
        "cores": os.cpu_count(),
        "threads": torch.get_num_threads(),
        "dataset": f"{dataset.name} ({dataset.root}), {args.split} split",
        "captions": len(captions),
        "recipe": "svllreid demo recipe from svll-synth (svll-tiny-vit 64x32, stride 8), fp32",
        "overrides": args.overrides,
        "rows": rows,
    }
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    print(f"text-to-image on {report['dataset']}: {report['captions']} captions; {report['recipe']}")
    print(f"{'':<32}" + "".join(f"{k:>8}" for k in METRICS) + f"{'ReID mAP':>10}{'s':>7}")
    for name, row in rows.items():
        reid = f"{100 * row['reid_mAP']:10.2f}" if row["reid_mAP"] is not None else f"{'':>10}"
        print(f"{name:<32}" + "".join(f"{100 * row[k]:8.2f}" for k in METRICS) + f"{reid}{row['seconds']:7.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
