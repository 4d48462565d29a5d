"""Zero-shot text-to-image retrieval of CLIP weights on held-out synthetic identities.

By default: svllreid's shipped ``svll-synth`` weights of ``svll-tiny-vit`` on the test split of the
pretraining world (identities 2001-2400, never seen in pretraining), against the same network with
random weights and against chance (the expected R@1 of a random ranking: the mean, over captions,
of the fraction of images that show the caption's identity).

    python benchmarks/zero_shot.py                        # the shipped weights
    python benchmarks/zero_shot.py --pretrained runs/pretrain-svll-synth-vit/clip.safetensors
    python benchmarks/zero_shot.py --min-ratio 5          # exit 1 if R@1 is under 5x chance
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time

import numpy as np


def chance_r1(caption_ids: np.ndarray, image_ids: np.ndarray) -> float:
    """Expected R@1 of a random ranking."""
    counts = {pid: int((image_ids == pid).sum()) for pid in np.unique(caption_ids)}
    return float(np.mean([counts[pid] / len(image_ids) for pid in caption_ids]))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--arch", default="svll-tiny-vit")
    parser.add_argument("--pretrained", default="svll-synth", help="weights file or tag (default svll-synth)")
    parser.add_argument("--dataset", default="synthetic_captions")
    parser.add_argument("--root", default="", help="dataset folder (default: the cached pretraining world)")
    parser.add_argument("--split", default="test")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch-size", type=int, default=512)
    parser.add_argument("--min-ratio", type=float, default=None, help="fail when R@1 / chance is below this")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    import torch

    from svllreid.data.datasets import load_caption_dataset
    from svllreid.evaluation.text_eval import evaluate_loaded_sides, retrieval_targets
    from svllreid.inference.text_encoding import load_sides

    torch.manual_seed(0)
    dataset = load_caption_dataset(args.dataset, args.root)
    captions = dataset.split(args.split)
    targets = retrieval_targets(captions)
    chance = chance_r1(targets.caption_ids, targets.image_ids)
    rows = {}
    for name, weights in (("random weights", None), (f"pretrained ({args.pretrained})", args.pretrained)):
        started = time.perf_counter()
        loaded = load_sides(arch=args.arch, pretrained=weights, device=args.device)
        evaluation = evaluate_loaded_sides(
            loaded, captions, dataset=dataset.name, split=args.split, batch_size=args.batch_size
        )
        rows[name] = {**evaluation.summary, "seconds": time.perf_counter() - started, "r1_over_chance":
                      evaluation.summary["R@1"] / chance}  # fmt: skip
    pretrained = rows[f"pretrained ({args.pretrained})"]
    report = {
        "device": args.device,
        "cpu": platform.processor() or platform.machine(),
        "threads": torch.get_num_threads(),
        "cores": os.cpu_count(),
        "arch": args.arch,
        "dataset": f"{dataset.name} ({dataset.root}), {args.split} split",
        "captions": len(captions),
        "images": len(targets.image_paths),
        "identities": len(np.unique(targets.image_ids)),
        "chance_r1": chance,
        "rows": rows,
    }
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(
            f"zero-shot text-to-image, {report['dataset']}: {report['captions']} captions rank {report['images']} "
            f"images of {report['identities']} identities; {args.device} ({report['threads']} threads), fp32"
        )
        print(f"{'':<28}{'R@1':>8}{'R@5':>8}{'R@10':>8}{'mAP':>8}{'mINP':>8}{'R@1/chance':>12}{'s':>7}")
        print(f"{'chance':<28}{100 * chance:8.2f}")
        for name, row in rows.items():
            cells = "".join(f"{100 * row[k]:8.2f}" for k in ("R@1", "R@5", "R@10", "mAP", "mINP"))
            print(f"{name:<28}{cells}{row['r1_over_chance']:12.1f}{row['seconds']:7.1f}")
    if args.min_ratio is not None and pretrained["r1_over_chance"] < args.min_ratio:
        print(
            f"R@1 is {pretrained['r1_over_chance']:.1f}x chance, under the required {args.min_ratio}x", file=sys.stderr
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
