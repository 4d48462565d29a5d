"""The setting moved toward the paper's, one factor at a time and then all together: what each does to the
difference mAP(+ vision SSL) − mAP(CLIP-ReID), measured on a validation split of held-out training
identities whose queries are occluded, never on the test split.

Factors (on top of the tiny recipe, with occluded queries):

- erasing matched to the paper's token coverage: the SSL views' erased rectangle touches about 45 % of the
  patch tokens at the paper's 256×128, stride 12; at the recipe's small input the same third of the image
  touches far more. The area that touches as many is found here, and both coverages are printed;
- input 128×64;
- a stage-2 learning rate ten times lower, for twice the epochs;
- the paper's projector width (4096 → 256);
- ID loss weight 0.25 (the paper's);
- SIE on the cameras;
- all of them combined.

Each factor trains CLIP-ReID and CLIP-ReID + vision SSL (factors that only touch the SSL branch reuse the
recipe's CLIP-ReID run) per seed, and reads the validation mAP after the last epoch. Prints the table and
writes ``factors.json`` and ``factors.md``.

    python benchmarks/vision_ssl_factors.py --dataset synthetic --seeds 1 2
    python benchmarks/vision_ssl_factors.py --dataset pku --only recipe combined
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
#: The paper's geometry: 256×128 input, 16-pixel patches every 12 pixels, a third of the image erased.
PAPER = {"size": (256, 128), "patch": 16, "stride": 12, "area": 0.33}
BIG_INPUT = (128, 64)


def matching_area(size: tuple[int, int], patch: int, stride: int, target: float) -> float:
    """The erased area whose rectangle touches ``target`` of the tokens at this geometry (bisection)."""
    from svllreid.data.transforms import erased_token_share

    low, high = 0.01, 0.33
    for _ in range(10):
        mid = (low + high) / 2
        if erased_token_share(size, patch, stride, mid, draws=1000) < target:
            low = mid
        else:
            high = mid
    return round((low + high) / 2, 3)


def settings(cfg, paper_share: float) -> tuple[dict[str, tuple[list[str], bool]], list[str]]:
    """name -> (overrides, whether CLIP-ReID changes too), and lines saying the erasing coverages."""
    from svllreid.data.transforms import erased_token_share

    patch, stride = 16, cfg.model.stride
    size = tuple(cfg.data.size)
    s2 = cfg.stage2
    recipe_share = erased_token_share(size, patch, stride, cfg.data.ssl_erasing_area)
    matched = matching_area(size, patch, stride, paper_share)
    matched_big = matching_area(BIG_INPUT, patch, stride, paper_share)
    big_share = erased_token_share(BIG_INPUT, patch, stride, matched_big)
    lines = [
        f"erased tokens, paper (256x128, stride 12, area 0.33): {100 * paper_share:.1f} %",
        f"erased tokens, recipe ({size[0]}x{size[1]}, stride {stride}, area {cfg.data.ssl_erasing_area}): "
        f"{100 * recipe_share:.1f} %",
        f"matched: area {matched} at {size[0]}x{size[1]} touches "
        f"{100 * erased_token_share(size, patch, stride, matched):.1f} %; area {matched_big} at "
        f"{BIG_INPUT[0]}x{BIG_INPUT[1]} touches {100 * big_share:.1f} %",
    ]
    epochs = 2 * s2.epochs
    slow = [
        f"stage2.lr={s2.lr / 10:g}",
        f"stage2.epochs={epochs}",
        f"stage2.milestones=[{','.join(str(2 * m) for m in s2.milestones)}]",
        f"stage2.warmup_epochs={2 * s2.warmup_epochs}",
    ]
    big = [f"data.image_size=[{BIG_INPUT[0]},{BIG_INPUT[1]}]"]
    factors: dict[str, tuple[list[str], bool]] = {
        "recipe": ([], True),
        f"erasing matched (area {matched})": ([f"data.ssl_erasing_area={matched}"], False),
        "input 128x64": (big, True),
        f"lr {s2.lr / 10:g} for {epochs} epochs": (slow, True),
        "projector 4096/256": (["model.ssl_hidden_dim=4096", "model.ssl_out_dim=256"], False),
        "ID weight 0.25": (["stage2.id_weight=0.25"], True),
        "SIE on cameras": (["model.sie=camera"], True),
        "combined": (
            [
                *big,
                f"data.ssl_erasing_area={matched_big}",
                *slow,
                "model.ssl_hidden_dim=4096",
                "model.ssl_out_dim=256",
                "stage2.id_weight=0.25",
                "model.sie=camera",
            ],
            True,
        ),
    }
    return factors, lines


def mean_std(values: list[float]) -> str:
    spread = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{100 * statistics.fmean(values):6.2f} ± {100 * spread:4.2f}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="config overrides for every run")
    parser.add_argument("--dataset", choices=sorted(CONFIGS), default="synthetic")
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--cover", default="0.2-0.5", help="fraction of the person each query occluder covers")
    parser.add_argument("--validation-ids", type=int, default=None, help="held-out identities (default: a fifth)")
    parser.add_argument("--only", nargs="+", default=None, help="factors whose name starts with these words")
    parser.add_argument("--out", default=None)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()

    import torch

    from svllreid.config import load_config
    from svllreid.data.transforms import erased_token_share
    from svllreid.training.run import train

    if args.threads:
        torch.set_num_threads(args.threads)
    config = CONFIGS[args.dataset]
    out = Path(args.out or REPO / "runs" / f"vis-ssl-factors-{args.dataset}-{time.strftime('%Y%m%d-%H%M%S')}")
    out.mkdir(parents=True, exist_ok=True)
    base = [*args.overrides, f"data.options.occluded_queries={args.cover}", "stage1.lang_ssl=false"]
    paper_share = erased_token_share(PAPER["size"], PAPER["patch"], PAPER["stride"], PAPER["area"])
    factors, coverage_lines = settings(load_config(config, base), paper_share)
    for line in coverage_lines:
        print(line, flush=True)
    if args.only:
        factors = {k: v for k, v in factors.items() if k == "recipe" or any(k.startswith(w) for w in args.only)}
    validation = args.validation_ids or (16 if args.dataset == "synthetic" else 8)
    results: dict[str, dict[str, list[dict]]] = {name: {"CLIP-ReID": [], "+ vision SSL": []} for name in factors}
    started = time.perf_counter()
    for seed in args.seeds:
        for name, (overrides, changes_clip) in factors.items():
            for variant, ssl in (("CLIP-ReID", False), ("+ vision SSL", True)):
                if variant == "CLIP-ReID" and not changes_clip:
                    results[name][variant].append({**results["recipe"][variant][-1], "reused": "recipe"})
                    continue
                cfg = load_config(
                    config,
                    [
                        *base,
                        *overrides,
                        f"stage2.vis_ssl={'true' if ssl else 'false'}",
                        f"data.validation_ids={validation}",
                        f"run.seed={seed}",
                        f"run.output_dir={out}",
                        f"run.name=s{seed}-{list(factors).index(name)}-{'ssl' if ssl else 'clip'}",
                        "run.report=false",
                        "eval.test=false",
                        "eval.before_training=false",
                    ],
                )
                cfg.eval.every = cfg.stage2.epochs  # the start and the last epoch only
                t0 = time.perf_counter()
                result = train(cfg, progress=False)
                seconds = time.perf_counter() - t0
                assert result.validation is not None
                entry = {
                    "seed": seed,
                    "last": result.validation["last"]["mAP"],
                    "start": result.validation["start"]["mAP"],
                    "seconds": seconds,
                }
                results[name][variant].append(entry)
                print(
                    f"seed {seed}  {name:<34} {variant:<13} validation mAP {100 * entry['last']:6.2f} "
                    f"(start {100 * entry['start']:.2f}, {seconds:.0f} s)",
                    flush=True,
                )
    lines = [
        "| setting | CLIP-ReID | + vision SSL | difference (paired) | per seed: CLIP / + SSL |",
        "|---|---|---|---|---|",
    ]
    for name, runs in results.items():
        clip, ssl = runs["CLIP-ReID"], runs["+ vision SSL"]
        if not clip or not ssl:
            continue
        diffs = [s["last"] - c["last"] for c, s in zip(clip, ssl, strict=True)]
        seeds = ", ".join(f"{100 * c['last']:.2f} / {100 * s['last']:.2f}" for c, s in zip(clip, ssl, strict=True))
        lines.append(
            f"| {name} | {mean_std([r['last'] for r in clip])} | {mean_std([r['last'] for r in ssl])} "
            f"| {mean_std(diffs)} | {seeds} |"
        )
    hardware = f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPU cores, torch {torch.__version__}"
    header = (
        f"config {config.relative_to(REPO)}, occluded_queries {args.cover}, data.validation_ids={validation} "
        f"(occluded validation queries){' ' + ' '.join(args.overrides) if args.overrides else ''}; "
        f"seeds {args.seeds}; {hardware}; total {time.perf_counter() - started:.0f} s"
    )
    text = "\n".join([header, "", *coverage_lines, "", *lines])
    print(text)
    payload = {"header": header, "coverage": coverage_lines, "results": results, "command": " ".join(sys.argv)}
    (out / "factors.json").write_text(json.dumps(payload, indent=2))
    (out / "factors.md").write_text(text + "\n")
    print(f"wrote {out / 'factors.json'} and {out / 'factors.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
