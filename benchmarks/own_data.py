"""Training on your own photos, measured: start, best and last, on the validation split and the test set,
over several seeds, with the spread of the features.

``run`` trains the own-data recipe (as ``svllreid demo --dataset ... --root ...`` does), or a config such as
``svllreid tune`` writes, once per seed; ``measure`` reads finished run directories, of this svllreid or of
an older one (whose runs have no validation split: their start and trained checkpoints are evaluated here
for the features' spread). Both print a table and write ``own_data.json`` and ``own_data.md``.

    python benchmarks/own_data.py run --dataset pku --out runs/own-pku
    python benchmarks/own_data.py run --dataset folder --root photos.csv -o identity_names=true --out runs/own-x
    python benchmarks/own_data.py run --config runs/tune-x/chosen.yaml --out runs/own-x-tuned --seeds 1 2 3
    python benchmarks/own_data.py measure runs/before/seed1 runs/before/seed2 --out runs/before
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
from typing import Any

REPO = Path(__file__).resolve().parents[1]
ROWS = ("start", "best", "last")


def _mean_std(values: list[float], scale: float = 100.0, digits: int = 2) -> str:
    if not values:
        return "–"
    mean = scale * statistics.fmean(values)
    spread = scale * statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{mean:.{digits}f} ± {spread:.{digits}f}"


def measure_run(run_dir: Path) -> dict[str, Any]:
    """Start, best and last of one finished run (``{row: {"test": summary, "validation": summary}}``)."""
    evaluation = json.loads((run_dir / "eval.json").read_text())
    rows: dict[str, dict[str, Any]] = {row: {} for row in ROWS}
    validation = evaluation.get("validation") or {}
    rows["start"]["test"] = evaluation.get("untrained")
    rows["best"]["test"] = evaluation.get("final")
    rows["last"]["test"] = evaluation.get("last", evaluation.get("final"))  # without a choice the last is delivered
    for row in ROWS:
        rows[row]["validation"] = validation.get(row)
    selection = evaluation.get("selection") or {}
    missing_spread = [row for row in ROWS if rows[row]["test"] and "spread" not in rows[row]["test"]]
    if missing_spread:  # a run of an older svllreid: its checkpoints are evaluated here
        from svllreid.evaluation.checkpoint_eval import evaluate_checkpoint

        checkpoints = {"start": "stage1", "best": "model", "last": "model"}
        for row in missing_spread:
            result = evaluate_checkpoint(run_dir / "checkpoints" / f"{checkpoints[row]}.safetensors", out_dir=None)
            rows[row]["test"] = {**rows[row]["test"], "spread": result.summary["spread"]}
    curve = []
    metrics = run_dir / "metrics.jsonl"
    if metrics.is_file():
        for line in metrics.read_text().splitlines():
            record = json.loads(line)
            if record.get("stage") == "validation":
                curve.append({k: record.get(k) for k in ("epoch", "mAP", "mean_cosine")})
    return {"run": str(run_dir), "rows": rows, "best_epoch": selection.get("best_epoch"), "curve": curve}


def curves(runs: list[dict[str, Any]]) -> str:
    """Each run's validation mAP and gallery mean cosine after every evaluated stage-2 epoch."""
    lines = []
    for run in runs:
        points = " ".join(f"{p['epoch']}:{100 * p['mAP']:.1f}/{p['mean_cosine']:.3f}" for p in run.get("curve", []))
        if points:
            lines.append(f"{Path(run['run']).name}: {points}")
    return "\n".join(["epoch:validation mAP/mean cosine", *lines]) if lines else ""


def table(runs: list[dict[str, Any]]) -> str:
    """Mean ± std over the runs of each row's validation and test mAP / Rank-1 and test mean cosine."""
    lines = [
        "| network | validation mAP | validation Rank-1 | test mAP | test Rank-1 | test mean cosine | test eff. rank |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in ROWS:

        def values(split: str, key: str, row: str = row) -> list[float]:
            found = [r["rows"][row].get(split) for r in runs]
            return [float(s[key]) for s in found if s and s.get(key) is not None]

        def spread(key: str, row: str = row) -> list[float]:
            found = [r["rows"][row].get("test") for r in runs]
            return [float(s["spread"][key]) for s in found if s and "spread" in s]

        epochs = [r["best_epoch"] for r in runs if r.get("best_epoch") is not None]
        name = row if row != "best" or not epochs else f"best (epochs {', '.join(map(str, epochs))})"
        lines.append(
            f"| {name} | {_mean_std(values('validation', 'mAP'))} | {_mean_std(values('validation', 'rank1'))} "
            f"| {_mean_std(values('test', 'mAP'))} | {_mean_std(values('test', 'rank1'))} "
            f"| {_mean_std(spread('mean_cosine'), 1.0, 4)} | {_mean_std(spread('effective_rank'), 1.0, 1)} |"
        )
    return "\n".join(lines)


def write(out: Path, header: str, runs: list[dict[str, Any]]) -> None:
    text = table(runs)
    if curves(runs):
        text += "\n\n" + curves(runs)
    print(header)
    print(text)
    out.mkdir(parents=True, exist_ok=True)
    (out / "own_data.json").write_text(json.dumps({"header": header, "runs": runs}, indent=2))
    (out / "own_data.md").write_text(header + "\n\n" + text + "\n")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="train once per seed and measure")
    run.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="config overrides for every run")
    run.add_argument("--dataset", default=None)
    run.add_argument("--root", default=None)
    run.add_argument("-o", "--option", action="append", default=[], metavar="KEY=VALUE", help="dataset option")
    run.add_argument("--config", default=None, help="a config (e.g. tune's chosen.yaml) instead of the recipe")
    run.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    run.add_argument("--out", required=True)
    run.add_argument("--threads", type=int, default=None)
    measure = commands.add_parser("measure", help="measure finished run directories")
    measure.add_argument("runs", nargs="+", type=Path)
    measure.add_argument("--out", required=True)
    args = parser.parse_args()

    import torch

    hardware = f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPU cores, torch {torch.__version__}"
    out = Path(args.out)
    if args.command == "measure":
        write(out, f"{len(args.runs)} runs measured; {hardware}", [measure_run(r) for r in args.runs])
        return 0

    from svllreid.cli.common import parse_options
    from svllreid.config import load_config
    from svllreid.training.demo import demo_config
    from svllreid.training.run import train

    if args.threads:
        torch.set_num_threads(args.threads)
    runs, started = [], time.perf_counter()
    for seed in args.seeds:
        settings = [*args.overrides, f"run.seed={seed}", f"run.output_dir={out}", f"run.name=seed{seed}"]
        if args.config and not args.dataset:
            cfg = load_config(args.config, settings)
        else:
            options = parse_options(args.option)
            cfg = demo_config(
                overrides=settings, config=args.config, dataset=args.dataset, root=args.root, options=options
            )
        if (out / f"seed{seed}" / "eval.json").is_file():
            print(f"seed {seed}: measured before, reading it")
        else:
            t0 = time.perf_counter()
            train(cfg, progress=False)
            print(f"seed {seed}: {time.perf_counter() - t0:.0f} s", flush=True)
        runs.append(measure_run(out / f"seed{seed}"))
    what = args.config or f"the own-data recipe on {args.dataset} at {args.root}"
    header = (
        f"{what}{' ' + ' '.join(args.overrides) if args.overrides else ''}; seeds {args.seeds}; {hardware}; "
        f"total {time.perf_counter() - started:.0f} s"
    )
    write(out, header, runs)
    return 0


if __name__ == "__main__":
    sys.exit(main())
