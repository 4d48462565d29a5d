"""``svllreid data``: list, generate, count and validate datasets."""

from __future__ import annotations

import argparse
import json
import sys

from svllreid.cli.common import add_dataset_args, add_synth_size_args, parse_options


def cmd_data_list(args: argparse.Namespace) -> int:
    from svllreid.data.datasets import available_datasets, get_dataset_entry

    for name in available_datasets():
        entry = get_dataset_entry(name)
        options = ", ".join(f"{k}={v!r}" for k, v in entry.options.items()) or "no options"
        print(f"{name:<18} {entry.task:<8} {entry.kind:<8} {entry.description}\n{'':<36}options: {options}")
    return 0


def cmd_data_synth(args: argparse.Namespace) -> int:
    from svllreid.data.synthesis import generate_pretraining_world, generate_synthetic

    if args.pretraining_world:
        summary = generate_pretraining_world(args.out, workers=args.workers)
    else:
        summary = generate_synthetic(
            args.out,
            num_ids=args.ids,
            num_cameras=args.cameras,
            images_per_camera=args.images_per_camera,
            seed=args.seed,
            train_ids=args.train_ids,
            workers=args.workers,
        )
    counts = ", ".join(f"{split} {n}" for split, n in summary.images.items())
    print(
        f"wrote {sum(summary.images.values())} images of {summary.num_ids} identities × {summary.num_cameras} "
        f"cameras to {summary.root} in {summary.seconds:.1f} s ({counts}), with their captions in captions.jsonl"
    )
    return 0


def cmd_data_stats(args: argparse.Namespace) -> int:
    from svllreid.data.stats import format_stats, stats_and_findings

    stats, report = stats_and_findings(args.dataset, args.root, **parse_options(args.option))
    if args.json:
        print(json.dumps(stats, indent=2))
    else:
        print(f"dataset {args.dataset} at {args.root or '(default location)'}")
        print(format_stats(stats))
    if report is not None and (report.errors or report.warnings):
        if report.errors:
            print(
                f"warning: 'svllreid data check' refuses this dataset, and training would too "
                f"({len(report.errors)} error(s)):",
                file=sys.stderr,
            )
        for line in [f"  error: {e}" for e in report.errors] + [f"  warning: {w}" for w in report.warnings]:
            print(line, file=sys.stderr)
    return 0


def cmd_data_check(args: argparse.Namespace) -> int:
    from svllreid.data.check import Mode, check_dataset

    mode: Mode = "quick" if args.quick else "full"
    report = check_dataset(args.dataset, args.root, mode=mode, workers=args.workers, **parse_options(args.option))
    print(report.format())
    return 0 if report.ok else 1


def register(subparsers: argparse._SubParsersAction) -> None:
    data = subparsers.add_parser("data", help="datasets: list, generate, count, validate", description="Datasets.")
    data_cmds = data.add_subparsers(dest="data_command", metavar="SUBCOMMAND", required=True)

    listing = data_cmds.add_parser("list", help="list the supported datasets and their options")
    listing.set_defaults(func=cmd_data_list)

    synth = data_cmds.add_parser(
        "synth",
        help="generate the synthetic dataset (Market-1501 layout)",
        description="Draw a synthetic pedestrian dataset in the Market-1501 layout; deterministic for a seed.",
    )
    synth.add_argument("--out", required=True, help="output folder")
    add_synth_size_args(synth)
    synth.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    synth.add_argument(
        "--train-ids", type=int, default=None, help="training identities (default: half); the rest are the test split"
    )
    synth.add_argument(
        "--pretraining-world",
        action="store_true",
        help="the pretraining world of the shipped svll-synth weights (2,400 identities, 400 held out, its own seed); "
        "sizes and seed come from it",
    )
    synth.add_argument("--workers", type=int, default=None, help="processes (default: all CPUs)")
    synth.set_defaults(func=cmd_data_synth)

    stats = data_cmds.add_parser(
        "stats",
        help="identities, images and cameras per split",
        description="Print identities, images and cameras of train / query / gallery "
        "(VehicleID: train and every test size).",
    )
    add_dataset_args(stats)
    stats.add_argument("--json", action="store_true", help="print JSON instead of a table")
    stats.set_defaults(func=cmd_data_stats)

    check = data_cmds.add_parser(
        "check",
        help="validate a dataset before training on it",
        description="Validate layout, list files, file names, camera ids, images and splits. "
        "Exit status 1 when errors are found.",
    )
    add_dataset_args(check)
    check.add_argument("--quick", action="store_true", help="do not decode every image (what training runs)")
    check.add_argument("--workers", type=int, default=None, help="threads that open images")
    check.set_defaults(func=cmd_data_check)
