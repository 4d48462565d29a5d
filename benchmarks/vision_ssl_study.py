"""What vision self-supervision does to CLIP-ReID, setting by setting, on a validation split.

Trains CLIP-ReID without and with the vision SSL branch under several settings of that branch (its
weight λ_V, the NT-Xent temperature, same-identity negatives excluded, the occlusion strength of
the two views) and evaluates each on a validation split carved from the training identities
(``data.validation_ids``), never on the test split. Prints mean ± std of the validation mAP over the
seeds and the difference to CLIP-ReID; writes ``study.json`` and ``study.md`` to the output folder.

    python benchmarks/vision_ssl_study.py --dataset pku --validation-ids 12
    python benchmarks/vision_ssl_study.py --dataset synthetic --validation-ids 16
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
CLIP_REID = ["stage1.lang_ssl=false"]
#: name -> stage-2 overrides (all on top of CLIP-ReID)
SETTINGS: dict[str, list[str]] = {
    "CLIP-ReID (no vision SSL)": ["stage2.vis_ssl=false"],
    "+ vision SSL (reference: λ_V 0.8, T 0.1, occlusion p 0.5 area 0.33)": ["stage2.vis_ssl=true"],
    "λ_V 0.2": ["stage2.vis_ssl=true", "stage2.vis_ssl_weight=0.2"],
    "temperature 0.5": ["stage2.vis_ssl=true", "stage2.ssl_temperature=0.5"],
    "same-identity negatives excluded": ["stage2.vis_ssl=true", "stage2.ssl_exclude_same_id=true"],
    "weaker occlusion (area 0.15)": ["stage2.vis_ssl=true", "data.ssl_erasing_area=0.15"],
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="config overrides for every run")
    parser.add_argument("--dataset", choices=sorted(CONFIGS), default="pku")
    parser.add_argument("--validation-ids", type=int, required=True, help="training identities held out")
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--out", default=None)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()

    import torch

    from svllreid.config import load_config
    from svllreid.training.run import train

    if args.threads:
        torch.set_num_threads(args.threads)
    out = Path(args.out or REPO / "runs" / f"vis-ssl-study-{args.dataset}-{time.strftime('%Y%m%d-%H%M%S')}")
    out.mkdir(parents=True, exist_ok=True)
    results: dict[str, list[dict[str, float]]] = {name: [] for name in SETTINGS}
    started = time.perf_counter()
    for seed in args.seeds:
        for number, (name, setting) in enumerate(SETTINGS.items()):
            overrides = [
                *args.overrides,
                *CLIP_REID,
                *setting,
                f"data.validation_ids={args.validation_ids}",
                f"run.seed={seed}",
                f"run.output_dir={out}",
                f"run.name=s{seed}-{number}",
                "run.report=false",
                "eval.before_training=false",
            ]
            t0 = time.perf_counter()
            result = train(load_config(CONFIGS[args.dataset], overrides), progress=False)
            assert result.validation is not None  # data.validation_ids holds identities out
            # The last epoch, as the study was made: every setting trains the same fixed budget.
            last = result.validation["last"]
            entry = {"seed": seed, "mAP": last["mAP"], "rank1": last["rank1"]}
            results[name].append({**entry, "seconds": time.perf_counter() - t0})
            print(f"seed {seed}  {name:<70} val mAP {100 * entry['mAP']:6.2f}", flush=True)
    base = statistics.fmean(r["mAP"] for r in results["CLIP-ReID (no vision SSL)"])
    lines = ["| setting | validation mAP (%) | Δ to CLIP-ReID | Rank-1 (%) |", "|---|---|---|---|"]
    for name, runs in results.items():
        maps = [100 * r["mAP"] for r in runs]
        r1 = [100 * r["rank1"] for r in runs]
        spread = statistics.stdev(maps) if len(maps) > 1 else 0.0
        delta = statistics.fmean(maps) - 100 * base
        lines.append(
            f"| {name} | {statistics.fmean(maps):.2f} ± {spread:.2f} | {delta:+.2f} | {statistics.fmean(r1):.2f} |"
        )
    table = "\n".join(lines)
    hardware = f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPU cores, torch {torch.__version__}"
    header = (
        f"{CONFIGS[args.dataset].relative_to(REPO)} with data.validation_ids={args.validation_ids}"
        f"{' ' + ' '.join(args.overrides) if args.overrides else ''}; seeds {args.seeds}; {hardware}; "
        f"total {time.perf_counter() - started:.0f} s"
    )
    print(header)
    print(table)
    payload = {"header": header, "settings": SETTINGS, "results": results}
    (out / "study.json").write_text(json.dumps(payload, indent=2))
    (out / "study.md").write_text(header + "\n\n" + table + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
