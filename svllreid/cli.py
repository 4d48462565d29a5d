"""The ``svllreid`` command line. With the factories, the only code that sees a whole config."""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from collections.abc import Sequence
from typing import Any

from svllreid import __version__
from svllreid.config import ConfigError, config_to_yaml, load_config, parse_override
from svllreid.data.types import DatasetError

EXAMPLES = """\
examples:
  svllreid demo
  svllreid data synth --out data/synthetic --ids 100 --cameras 6
  svllreid data stats --dataset market1501 --root /data/Market-1501-v15.09.15 --json
  svllreid data check --dataset vehicleid --root /data/VehicleID_V1.0 -o test_size=1600
  svllreid config show configs/synthetic_tiny.yaml stage2.lr=1e-5
"""


def _parse_options(pairs: Sequence[str]) -> dict[str, Any]:
    options = {}
    for text in pairs:
        try:
            key, value = parse_override(text)
        except ConfigError as err:
            raise ConfigError(f"dataset option {text!r} must look like key=value") from err
        options[key] = value
    return options


def _add_dataset_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dataset", required=True, help="registered dataset name (see 'svllreid data list')")
    parser.add_argument(
        "--root",
        default="",
        help="dataset folder (a CSV manifest for 'folder'; may be empty for 'synthetic')",
    )
    parser.add_argument(
        "-o",
        "--option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="dataset option, repeatable (e.g. test_size=1600, camera_regex='c(\\d+)')",
    )


def _add_synth_size_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--ids", type=int, default=100, help="identities (default 100)")
    parser.add_argument("--cameras", type=int, default=6, help="cameras, 2-9 (default 6)")
    parser.add_argument("--images-per-camera", type=int, default=4, help="images per identity and camera (default 4)")


def cmd_config_show(args: argparse.Namespace) -> int:
    path = None if args.config == "defaults" else args.config
    cfg = load_config(path, args.overrides)
    print(config_to_yaml(cfg), end="")
    return 0


def cmd_data_list(args: argparse.Namespace) -> int:
    from svllreid.data.datasets import available_datasets, get_dataset_entry

    for name in available_datasets():
        entry = get_dataset_entry(name)
        options = ", ".join(f"{k}={v!r}" for k, v in entry.options.items()) or "no options"
        print(f"{name:<14} {entry.kind:<8} {entry.description}\n{'':<24}options: {options}")
    return 0


def cmd_data_synth(args: argparse.Namespace) -> int:
    from svllreid.data.synthetic import generate_synthetic

    summary = generate_synthetic(
        args.out,
        num_ids=args.ids,
        num_cameras=args.cameras,
        images_per_camera=args.images_per_camera,
        seed=args.seed,
        workers=args.workers,
    )
    counts = ", ".join(f"{split} {n}" for split, n in summary.images.items())
    print(
        f"wrote {sum(summary.images.values())} images of {summary.num_ids} identities × {summary.num_cameras} "
        f"cameras to {summary.root} in {summary.seconds:.1f} s ({counts})"
    )
    return 0


def cmd_data_stats(args: argparse.Namespace) -> int:
    from svllreid.data.stats import dataset_stats, format_stats

    stats = dataset_stats(args.dataset, args.root, **_parse_options(args.option))
    if args.json:
        print(json.dumps(stats, indent=2))
    else:
        print(f"dataset {args.dataset} at {args.root or '(default location)'}")
        print(format_stats(stats))
    return 0


def cmd_data_check(args: argparse.Namespace) -> int:
    from svllreid.data.check import check_dataset

    mode = "quick" if args.quick else "full"
    report = check_dataset(args.dataset, args.root, mode=mode, workers=args.workers, **_parse_options(args.option))
    print(report.format())
    return 0 if report.ok else 1


def cmd_demo(args: argparse.Namespace) -> int:
    from svllreid.data.check import check_loaded_dataset
    from svllreid.data.datasets import load_dataset
    from svllreid.data.stats import format_stats, summarize

    print(f"svllreid {__version__} demo")
    where = args.root or "the cache folder"
    print(
        f"[1/3] synthetic dataset: {args.ids} identities × {args.cameras} cameras in {where} (made once, then reused)"
    )
    start = time.perf_counter()
    dataset = load_dataset(
        "synthetic", args.root, ids=args.ids, cameras=args.cameras, images_per_camera=args.images_per_camera
    )
    print(f"      ready at {dataset.root} ({time.perf_counter() - start:.1f} s)")
    print("[2/3] checking every image")
    report = check_loaded_dataset(dataset, mode="full")
    print("      " + report.format().replace("\n", "\n      "))
    print("[3/3] statistics")
    print("      " + format_stats(summarize(dataset)).replace("\n", "\n      "))
    return 0 if report.ok else 1


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="svllreid",
        description="SVLL-ReID / CLIP-ReID image re-identification: data, configs, training and evaluation.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"svllreid {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    demo = commands.add_parser(
        "demo",
        help="the built-in default job: make the synthetic dataset, check it and print its statistics",
        description="Generate (or reuse) the synthetic dataset, check every image and print per-split counts.",
    )
    demo.add_argument("--root", default="", help="where to put the synthetic data (default: the cache folder)")
    _add_synth_size_args(demo)
    demo.set_defaults(func=cmd_demo)

    config = commands.add_parser("config", help="inspect configurations", description="Inspect configurations.")
    config_cmds = config.add_subparsers(dest="config_command", metavar="SUBCOMMAND", required=True)
    show = config_cmds.add_parser(
        "show",
        help="print the resolved config of a YAML file plus overrides",
        description="Print the fully resolved configuration (bases merged, overrides applied, defaults filled).",
    )
    show.add_argument("config", help="YAML config file, or 'defaults' for the built-in defaults")
    show.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="overrides such as stage2.lr=1e-5")
    show.set_defaults(func=cmd_config_show)

    data = commands.add_parser("data", help="datasets: list, generate, count, validate", description="Datasets.")
    data_cmds = data.add_subparsers(dest="data_command", metavar="SUBCOMMAND", required=True)

    listing = data_cmds.add_parser("list", help="list the supported datasets and their options")
    listing.set_defaults(func=cmd_data_list)

    synth = data_cmds.add_parser(
        "synth",
        help="generate the synthetic dataset (Market-1501 layout)",
        description="Draw a synthetic pedestrian dataset in the Market-1501 layout; deterministic for a seed.",
    )
    synth.add_argument("--out", required=True, help="output folder")
    _add_synth_size_args(synth)
    synth.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    synth.add_argument("--workers", type=int, default=None, help="processes (default: all CPUs)")
    synth.set_defaults(func=cmd_data_synth)

    stats = data_cmds.add_parser(
        "stats",
        help="identities, images and cameras per split",
        description="Print identities, images and cameras of train / query / gallery "
        "(VehicleID: train and every test size).",
    )
    _add_dataset_args(stats)
    stats.add_argument("--json", action="store_true", help="print JSON instead of a table")
    stats.set_defaults(func=cmd_data_stats)

    check = data_cmds.add_parser(
        "check",
        help="validate a dataset before training on it",
        description="Validate layout, list files, file names, camera ids, images and splits. "
        "Exit status 1 when errors are found.",
    )
    _add_dataset_args(check)
    check.add_argument("--quick", action="store_true", help="do not decode every image (what training runs)")
    check.add_argument("--workers", type=int, default=None, help="threads that open images")
    check.set_defaults(func=cmd_data_check)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO, format="%(levelname)s %(name)s: %(message)s"
    )
    try:
        return int(args.func(args))
    except (ConfigError, DatasetError, ValueError, OSError) as err:
        print(f"svllreid: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("svllreid: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
