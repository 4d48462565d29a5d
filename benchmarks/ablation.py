"""Ablation of SVLL-ReID on real or synthetic images with the tiny CPU recipe.

The recipe starts from svllreid's pretrained tiny CLIP (``svll-synth``); ``model.pretrained=none``
repeats it from random weights. Trains and evaluates, with the same network, budget and seeds:

1. image-only baseline: ID + triplet losses on the image encoder, no prompts (stage 2 only,
   image-to-text loss weight 0);
2. CLIP-ReID: stage 1 prompts, stage 2 with the image-to-text loss;
3. CLIP-ReID + language self-supervision (stage 1);
4. CLIP-ReID + vision self-supervision (stage 2);
5. SVLL-ReID: both;

and the network before training (the pretrained CLIP zero-shot, or the random network), over
several seeds; prints mean ± std of mAP and Rank-1 per variant and
writes them (with every run's numbers) to ``ablation.json`` and ``ablation.md`` in the output folder.

    python benchmarks/ablation.py                      # PKU-Reid subset (configs/pku_tiny.yaml), seeds 1 2 3
    python benchmarks/ablation.py --dataset synthetic  # the built-in synthetic set
    python benchmarks/ablation.py stage2.epochs=8      # any config override
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CONFIGS = {"pku": REPO / "configs" / "pku_tiny.yaml", "synthetic": REPO / "configs" / "synthetic_tiny.yaml"}

#: name -> (stages, overrides)
VARIANTS: dict[str, tuple[tuple[int, ...], list[str]]] = {
    "image-only (ID + triplet)": ((2,), ["stage1.lang_ssl=false", "stage2.vis_ssl=false", "stage2.i2t_weight=0"]),
    "CLIP-ReID": ((1, 2), ["stage1.lang_ssl=false", "stage2.vis_ssl=false"]),
    "CLIP-ReID + language SSL": ((1, 2), ["stage1.lang_ssl=true", "stage2.vis_ssl=false"]),
    "CLIP-ReID + vision SSL": ((1, 2), ["stage1.lang_ssl=false", "stage2.vis_ssl=true"]),
    "SVLL-ReID (both)": ((1, 2), ["stage1.lang_ssl=true", "stage2.vis_ssl=true"]),
}
UNTRAINED = "before training (starting network)"


def mean_std(values: list[float]) -> str:
    mean = 100 * statistics.fmean(values)
    spread = 100 * statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{mean:5.2f} ± {spread:4.2f}"


def table(results: dict[str, list[dict[str, float]]]) -> str:
    lines = [
        "| variant | mAP (%) | Rank-1 (%) | runs | mean time (s) |",
        "|---|---|---|---|---|",
    ]
    for name, runs in results.items():
        if not runs:
            continue
        maps, r1s = [r["mAP"] for r in runs], [r["rank1"] for r in runs]
        seconds = statistics.fmean(r.get("seconds", 0.0) for r in runs)
        lines.append(f"| {name} | {mean_std(maps)} | {mean_std(r1s)} | {len(runs)} | {seconds:.0f} |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="config overrides for every run")
    parser.add_argument("--dataset", choices=sorted(CONFIGS), default="pku", help="which tiny recipe (default pku)")
    parser.add_argument("--config", default=None, help="another recipe instead")
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3], help="seeds (default 1 2 3)")
    parser.add_argument(
        "--variants",
        nargs="+",
        type=int,
        choices=range(1, len(VARIANTS) + 1),
        default=None,
        help="only these variants (1-5, in the order above)",
    )
    parser.add_argument("--out", default=None, help="output folder (default runs/ablation-<dataset>-<time>)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    args = parser.parse_args()

    import torch

    from svllreid.config import load_config
    from svllreid.training.run import train

    if args.threads:
        torch.set_num_threads(args.threads)
    config = Path(args.config) if args.config else CONFIGS[args.dataset]
    out = Path(args.out or REPO / "runs" / f"ablation-{args.dataset}-{time.strftime('%Y%m%d-%H%M%S')}")
    out.mkdir(parents=True, exist_ok=True)
    chosen = [name for i, name in enumerate(VARIANTS, 1) if args.variants is None or i in args.variants]
    results: dict[str, list[dict[str, float]]] = {UNTRAINED: [], **{name: [] for name in chosen}}
    started = time.perf_counter()
    for seed in args.seeds:
        for number, name in enumerate(chosen):
            stages, variant = VARIANTS[name]
            run_name = f"s{seed}-v{list(VARIANTS).index(name) + 1}"
            overrides = [
                *args.overrides,
                *variant,
                f"run.seed={seed}",
                f"run.output_dir={out}",
                f"run.name={run_name}",
                "run.report=false",
                # The starting network depends only on the seed: evaluate it once per seed.
                f"eval.before_training={'true' if number == 0 else 'false'}",
            ]
            cfg = load_config(config, overrides)
            t0 = time.perf_counter()
            result = train(cfg, stages=stages, progress=False)
            seconds = time.perf_counter() - t0
            entry = {"seed": seed, "mAP": result.evaluation["mAP"], "rank1": result.evaluation["rank1"]}
            results[name].append({**entry, "seconds": seconds})
            if result.untrained is not None:
                results[UNTRAINED].append(
                    {"seed": seed, "mAP": result.untrained["mAP"], "rank1": result.untrained["rank1"]}
                )
            print(
                f"seed {seed}  {name:<28} mAP {100 * entry['mAP']:6.2f}  Rank-1 {100 * entry['rank1']:6.2f}  "
                f"({seconds:.0f} s)",
                flush=True,
            )
    text = table(results)
    hardware = f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPU cores, torch {torch.__version__}"
    header = (
        f"config {config.relative_to(REPO) if config.is_relative_to(REPO) else config}"
        f"{' ' + ' '.join(args.overrides) if args.overrides else ''}; seeds {args.seeds}; {hardware}; "
        f"total {time.perf_counter() - started:.0f} s"
    )
    print(header)
    print(text)
    payload = {
        "config": str(config),
        "overrides": args.overrides,
        "seeds": args.seeds,
        "hardware": hardware,
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "results": results,
    }
    (out / "ablation.json").write_text(json.dumps(payload, indent=2))
    (out / "ablation.md").write_text(header + "\n\n" + text + "\n")
    print(f"wrote {out / 'ablation.json'} and {out / 'ablation.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
