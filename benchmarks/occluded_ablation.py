"""Does vision self-supervision help on occluded queries? CLIP-ReID, + vision SSL and SVLL-ReID, each
trained once per seed and tested on the holistic and on the occluded test split of the same identities.

The dataset option ``occluded_queries`` (Occluded-Duke style: every query has a natural occluder over a
share of the person, 10 % of the synthetic gallery too; see docs/RESULTS.md) leaves the training images
as they are, so one training run serves both test splits: the run tests on the occluded split, and the
delivered model is then evaluated on the holistic one (the same dataset without the option). Prints
mean ± std over the seeds and every run's figures, and writes ``occluded_ablation.json`` and ``.md``.

    python benchmarks/occluded_ablation.py --dataset synthetic
    python benchmarks/occluded_ablation.py --dataset pku --seeds 1 2 3
    python benchmarks/occluded_ablation.py --dataset pku stage2.epochs=8   # any config override
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
VARIANTS: dict[str, list[str]] = {
    "CLIP-ReID": ["stage1.lang_ssl=false", "stage2.vis_ssl=false"],
    "+ vision SSL": ["stage1.lang_ssl=false", "stage2.vis_ssl=true"],
    "SVLL-ReID": ["stage1.lang_ssl=true", "stage2.vis_ssl=true"],
}
TESTS = ("holistic", "occluded")
START = "start (before stage 2)"


def mean_std(values: list[float]) -> str:
    spread = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{100 * statistics.fmean(values):5.2f} ± {100 * spread:4.2f}"


def table(results: dict[str, list[dict]]) -> str:
    lines = [
        "| variant | holistic mAP | holistic Rank-1 | occluded mAP | occluded Rank-1 "
        "| per seed mAP (holistic / occluded) |",
        "|---|---|---|---|---|---|",
    ]
    for name, runs in results.items():
        if not runs:
            continue
        cells = [mean_std([r[t][k] for r in runs]) for t in TESTS for k in ("mAP", "rank1")]
        seeds = ", ".join(f"{100 * r['holistic']['mAP']:.2f} / {100 * r['occluded']['mAP']:.2f}" for r in runs)
        lines.append(f"| {name} | {' | '.join(cells)} | {seeds} |")
    return "\n".join(lines)


def differences(results: dict[str, list[dict]]) -> str:
    """Per test split, each variant minus CLIP-ReID, paired by seed."""
    base = {r["seed"]: r for r in results.get("CLIP-ReID", [])}
    lines = ["| variant − CLIP-ReID | holistic mAP | occluded mAP |", "|---|---|---|"]
    for name in list(VARIANTS)[1:]:
        runs = [r for r in results.get(name, []) if r["seed"] in base]
        if not runs:
            continue
        cells = [mean_std([r[t]["mAP"] - base[r["seed"]][t]["mAP"] for r in runs]) for t in TESTS]
        lines.append(f"| {name} | {cells[0]} | {cells[1]} |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="config overrides for every run")
    parser.add_argument("--dataset", choices=sorted(CONFIGS), default="synthetic")
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--cover", default="0.2-0.5", help="fraction of the person each query occluder covers")
    parser.add_argument(
        "--variants", nargs="+", choices=list(VARIANTS), default=list(VARIANTS), help="which variants (default all)"
    )
    parser.add_argument("--out", default=None, help="output folder (default runs/occluded-<dataset>-<time>)")
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()

    import torch

    from svllreid.config import load_config
    from svllreid.evaluation.checkpoint_eval import evaluate_checkpoint
    from svllreid.training.run import train

    if args.threads:
        torch.set_num_threads(args.threads)
    config = CONFIGS[args.dataset]
    out = Path(args.out or REPO / "runs" / f"occluded-{args.dataset}-{time.strftime('%Y%m%d-%H%M%S')}")
    out.mkdir(parents=True, exist_ok=True)
    chosen = {name: VARIANTS[name] for name in args.variants}
    results: dict[str, list[dict]] = {START: [], **{name: [] for name in chosen}}
    started = time.perf_counter()
    for seed in args.seeds:
        for number, (name, variant) in enumerate(chosen.items()):
            overrides = [
                *args.overrides,
                *variant,
                f"data.options.occluded_queries={args.cover}",
                f"run.seed={seed}",
                f"run.output_dir={out}",
                f"run.name=s{seed}-v{number + 1}",
                "run.report=false",
                f"eval.before_training={'true' if number == 0 else 'false'}",
            ]
            cfg = load_config(config, overrides)
            t0 = time.perf_counter()
            result = train(cfg, progress=False)
            seconds = time.perf_counter() - t0
            holistic_options = {k: v for k, v in cfg.data.options.items() if k != "occluded_queries"}
            holistic = evaluate_checkpoint(
                result.run_dir,
                dataset=cfg.data.dataset,
                root=cfg.data.root,
                options=holistic_options,
                out_dir=result.run_dir / "holistic",
            ).evaluation.summary
            entry = {"seed": seed, "occluded": result.evaluation, "holistic": holistic, "seconds": seconds}
            results[name].append(entry)
            if result.untrained is not None and number == 0:
                results[START].append({"seed": seed, "occluded": result.untrained, "holistic": {}})
            print(
                f"seed {seed}  {name:<14} mAP holistic {100 * holistic['mAP']:6.2f}  "
                f"occluded {100 * result.evaluation['mAP']:6.2f}  ({seconds:.0f} s)",
                flush=True,
            )
    hardware = f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPU cores, torch {torch.__version__}"
    header = (
        f"config {config.relative_to(REPO)}, occluded_queries {args.cover}"
        f"{' ' + ' '.join(args.overrides) if args.overrides else ''}; seeds {args.seeds}; {hardware}; "
        f"total {time.perf_counter() - started:.0f} s"
    )
    starts = results.pop(START)
    start_line = "start (occluded test, mAP): " + ", ".join(f"{100 * r['occluded']['mAP']:.2f}" for r in starts)
    text = f"{table(results)}\n\n{differences(results)}\n\n{start_line}"
    print(header)
    print(text)
    payload = {
        "config": str(config),
        "cover": args.cover,
        "overrides": args.overrides,
        "seeds": args.seeds,
        "hardware": hardware,
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "start": starts,
        "results": results,
    }
    (out / "occluded_ablation.json").write_text(json.dumps(payload, indent=2, default=str))
    (out / "occluded_ablation.md").write_text(header + "\n\n" + text + "\n")
    print(f"wrote {out / 'occluded_ablation.json'} and {out / 'occluded_ablation.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
