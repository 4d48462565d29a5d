"""The demo's two claims, measured: the text side works when the CLIP is pretrained.

Runs the demo recipe (``svllreid config show demo``) twice with the same seed: from svllreid's
pretrained ``svll-synth`` CLIP, and from random weights (``model.pretrained=none``). Prints, for
each, the stage-2 image-to-text loss of the first and last epochs (means over their logged steps)
and the test mAP; then the ratio of the last to the first i2t loss (the demo's target: at most 0.6
from the pretrained CLIP) and of the pretrained run's mAP to the scratch run's (target: at least 1.5).

    python benchmarks/demo_figures.py
    python benchmarks/demo_figures.py stage2.epochs=10     # any config override, applied to both
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def epoch_means(metrics: Path, stage: str, key: str) -> dict[int, float]:
    """Per epoch, the mean of ``key`` over the logged records of ``stage``."""
    values: dict[int, list[float]] = {}
    for line in metrics.read_text().splitlines():
        record = json.loads(line)
        if record.get("stage") == stage and key in record:
            values.setdefault(int(record["epoch"]), []).append(float(record[key]))
    return {epoch: statistics.fmean(v) for epoch, v in sorted(values.items())}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE")
    parser.add_argument("--out", default=None, help="folder for the two runs (default: a temporary one)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    import torch

    from svllreid.config import load_config
    from svllreid.training.demo import DEMO_RECIPE
    from svllreid.training.run import train

    out = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="svllreid-demo-figures-"))
    rows = {}
    for name, weights in (("pretrained (svll-synth)", "svll-synth"), ("from scratch", "none")):
        overrides = [f"run.output_dir={out}", f"run.name={weights}", f"model.pretrained={weights}", *args.overrides]
        started = time.perf_counter()
        result = train(load_config(DEMO_RECIPE, overrides), progress=False)
        i2t = epoch_means(result.run_dir / "metrics.jsonl", "stage2", "loss_i2t")
        first, last = i2t[min(i2t)], i2t[max(i2t)]
        rows[name] = {
            "mAP": result.evaluation["mAP"],
            "rank1": result.evaluation["rank1"],
            "start_mAP": result.untrained["mAP"] if result.untrained else None,
            "i2t_first_epoch": first,
            "i2t_last_epoch": last,
            "i2t_last_over_first": last / first,
            "seconds": time.perf_counter() - started,
            "run": str(result.run_dir),
        }
    pre, scratch = rows["pretrained (svll-synth)"], rows["from scratch"]
    report = {
        "device": "cpu" if not torch.cuda.is_available() else torch.cuda.get_device_name(),
        "cpu": platform.processor() or platform.machine(),
        "cores": os.cpu_count(),
        "threads": torch.get_num_threads(),
        "recipe": "svllreid demo (svll-tiny-vit, 64x32, stride 8; P×K 8×4; fp32 on CPU)",
        "overrides": args.overrides,
        "rows": rows,
        "i2t_last_over_first": pre["i2t_last_over_first"],
        "map_pretrained_over_scratch": pre["mAP"] / max(scratch["mAP"], 1e-12),
    }
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    print(f"{report['recipe']}; {report['cores']} cores, {report['threads']} threads")
    print(f"{'':<26}{'start mAP':>10}{'mAP':>8}{'R-1':>8}{'i2t ep1':>9}{'i2t last':>9}{'last/ep1':>9}{'s':>6}")
    for name, row in rows.items():
        start = "–" if row["start_mAP"] is None else f"{100 * row['start_mAP']:.2f}"
        print(
            f"{name:<26}{start:>10}{100 * row['mAP']:8.2f}{100 * row['rank1']:8.2f}{row['i2t_first_epoch']:9.3f}"
            f"{row['i2t_last_epoch']:9.3f}{row['i2t_last_over_first']:9.2f}{row['seconds']:6.0f}"
        )
    print(f"stage-2 i2t loss, last epoch / first epoch (pretrained): {report['i2t_last_over_first']:.2f}")
    print(f"trained mAP, pretrained / from scratch: {report['map_pretrained_over_scratch']:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
