"""The ``svllreid`` command line. With the factories, the only code that sees a whole config."""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from svllreid import __version__
from svllreid.config import ConfigError, config_to_yaml, load_config, parse_override
from svllreid.data.types import DatasetError
from svllreid.errors import TrainingDiverged

EXAMPLES = """\
examples:
  svllreid demo
  svllreid data synth --out data/synthetic --ids 100 --cameras 6
  svllreid data stats --dataset market1501 --root /data/Market-1501-v15.09.15 --json
  svllreid data check --dataset vehicleid --root /data/VehicleID_V1.0 -o test_size=1600
  svllreid config show configs/synthetic_tiny.yaml stage2.lr=1e-5
  svllreid model info --arch ViT-B-16 --image-size 256 128 --stride 12 --sie camera --num-cameras 6
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


def cmd_train(args: argparse.Namespace) -> int:
    from svllreid.engine.run import train
    from svllreid.eval.features import format_summary

    if args.resume:
        if args.config and not Path(args.config).is_file() and "=" in args.config:
            args.overrides.insert(0, args.config)
            args.config = None
        if args.config or args.overrides:
            raise ConfigError("--resume continues a run with its own config.yaml; leave out CONFIG and overrides")
        cfg = load_config(Path(args.resume) / "config.yaml" if Path(args.resume).is_dir() else None)
    else:
        if not args.config:
            raise ConfigError("pass a CONFIG file (see configs/), or --resume RUN_DIR")
        cfg = load_config(args.config, args.overrides)
    if args.stage == "2" and not (args.init_from or args.resume):
        raise ConfigError("--stage 2 needs --from CKPT (a stage-1 checkpoint), or --resume")
    stages = {"both": (1, 2), "1": (1,), "2": (2,)}[args.stage]
    result = train(cfg, stages=stages, init_from=args.init_from, resume=args.resume, progress=not args.no_progress)
    print(f"run directory: {result.run_dir}")
    if result.untrained is not None:
        print("untrained  " + format_summary(result.untrained))
    if result.evaluation is not None:
        print("trained    " + format_summary(result.evaluation))
    return 0


def _read_feature_file(path: str, side: str) -> dict[str, Any]:
    import numpy as np

    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {key: data[key] for key in data.files}
    except (OSError, ValueError) as err:
        raise ValueError(f"cannot read {side} features from {path}: {err}") from err
    missing = [key for key in ("feats", "pids") if key not in arrays]
    if missing:
        raise ValueError(
            f"{path} lacks the array(s) {', '.join(missing)}; a feature file is an .npz with 'feats' [N, D], "
            f"'pids' [N] and optionally 'camids' [N] (found: {', '.join(arrays) or 'nothing'})"
        )
    return arrays


def cmd_eval_features(args: argparse.Namespace) -> int:
    from svllreid.eval import evaluate

    query = _read_feature_file(args.query, "query")
    gallery = _read_feature_file(args.gallery, "gallery")
    if ("camids" in query) != ("camids" in gallery):
        raise ValueError("'camids' must be in both feature files or in neither")
    result = evaluate(
        query["feats"],
        gallery["feats"],
        query["pids"],
        gallery["pids"],
        query.get("camids"),
        gallery.get("camids"),
        max_rank=args.max_rank,
    )
    if args.json:
        print(json.dumps(result.to_dict(), indent=2))
        return 0
    rule = {
        "camera": "same-identity-same-camera gallery images are junk",
        "no-camera": "no camera labels: nothing is excluded",
    }[result.protocol]
    print(f"protocol: {result.protocol} ({rule})")
    print(f"queries: {result.num_queries} ({result.num_skipped} skipped without a true match)")
    ranks = "  ".join(f"Rank-{k} {100 * result.rank(k):.2f}" for k in (1, 5, 10) if k <= args.max_rank)
    print(f"mAP {100 * result.mAP:.2f}  mINP {100 * result.mINP:.2f}  {ranks}")
    return 0


def cmd_model_info(args: argparse.Namespace) -> int:
    from svllreid.models.factory import create_model
    from svllreid.models.info import format_info, model_info

    model = create_model(
        args.arch,
        num_classes=args.num_classes,
        num_cameras=args.num_cameras,
        num_views=args.num_views,
        image_size=tuple(args.image_size),
        stride=args.stride,
        sie=args.sie,
        pretrained=args.pretrained,
        kind="vehicle" if args.vehicle else "person",
        last_stride=args.last_stride,
        lang_ssl_head=args.ssl_heads,
        vis_ssl_head=args.ssl_heads,
    )
    info = model_info(model)
    print(json.dumps(info, indent=2) if args.json else format_info(info))
    return 0


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

    train = commands.add_parser(
        "train",
        help="train (stage 1, stage 2) and evaluate",
        description="Train CLIP-ReID / SVLL-ReID: stage 1 (prompt learning), stage 2 (image encoder), then "
        "evaluate. Writes a run directory with the resolved config, metrics, TensorBoard events, "
        "checkpoints and eval.json. Multi-GPU: torchrun --nproc-per-node N -m svllreid train CONFIG.",
    )
    train.add_argument("config", nargs="?", help="YAML config (see configs/)")
    train.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="overrides such as stage2.lr=1e-5")
    train.add_argument("--stage", choices=["both", "1", "2"], default="both", help="which stage(s) to run")
    train.add_argument("--from", dest="init_from", metavar="CKPT", help="start stage 2 from this checkpoint")
    train.add_argument("--resume", metavar="RUN_DIR", help="continue an interrupted run exactly")
    train.add_argument("--no-progress", action="store_true", help="no progress bars (logs only)")
    train.set_defaults(func=cmd_train)

    eval_features = commands.add_parser(
        "eval-features",
        help="mAP / CMC / mINP of features extracted elsewhere",
        description="Evaluate query and gallery features saved as .npz files with arrays 'feats' [N, D], "
        "'pids' [N] and optionally 'camids' [N] (with cameras, same-identity-same-camera gallery images are "
        "junk; without, nothing is excluded). Ranking is by Euclidean distance of the given features.",
    )
    eval_features.add_argument("--query", required=True, help="query .npz")
    eval_features.add_argument("--gallery", required=True, help="gallery .npz")
    eval_features.add_argument("--max-rank", type=int, default=50, help="length of the CMC curve (default 50)")
    eval_features.add_argument("--json", action="store_true", help="print JSON (with the whole CMC curve)")
    eval_features.set_defaults(func=cmd_eval_features)

    model = commands.add_parser("model", help="inspect networks", description="Inspect networks.")
    model_cmds = model.add_subparsers(dest="model_command", metavar="SUBCOMMAND", required=True)
    info = model_cmds.add_parser(
        "info",
        help="parameters, features, token grid and FLOPs of a network",
        description="Build a network (randomly initialised unless --pretrained is given) and print its "
        "parameters (total and trainable per stage), feature sizes, token grid and FLOPs per image.",
    )
    info.add_argument("--arch", default="ViT-B-16", help="open_clip architecture (default ViT-B-16)")
    info.add_argument("--num-classes", type=int, default=751, help="training identities (default 751, Market-1501)")
    info.add_argument(
        "--image-size", type=int, nargs=2, default=[256, 128], metavar=("H", "W"), help="input size (default 256 128)"
    )
    info.add_argument("--stride", type=int, default=None, help="ViT patch stride (default: the patch size)")
    info.add_argument("--last-stride", type=int, default=1, help="ResNet last-stage stride (default 1)")
    info.add_argument("--sie", choices=["none", "camera", "view", "camera_view"], default="none", help="SIE mode")
    info.add_argument("--num-cameras", type=int, default=0, help="cameras for SIE")
    info.add_argument("--num-views", type=int, default=0, help="viewpoints for SIE")
    info.add_argument("--vehicle", action="store_true", help="vehicle prompt template")
    info.add_argument("--ssl-heads", action="store_true", help="include SVLL's two projection heads")
    info.add_argument("--pretrained", default=None, help="weights file or open_clip tag")
    info.add_argument("--json", action="store_true", help="print JSON")
    info.set_defaults(func=cmd_model_info)

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
    args, extra = parser.parse_known_args(argv)
    # KEY=VALUE overrides may also follow options (svllreid train CFG --stage 1 stage1.epochs=3).
    if extra and hasattr(args, "overrides") and all("=" in e and not e.startswith("-") for e in extra):
        args.overrides = [*args.overrides, *extra]
    elif extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    # Our own messages at INFO; other libraries (open_clip logs progress on the root logger) only
    # at WARNING unless --verbose.
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s"
    )
    logging.getLogger("svllreid").setLevel(logging.DEBUG if args.verbose else logging.INFO)
    try:
        return int(args.func(args))
    except (ConfigError, DatasetError, ValueError, OSError) as err:
        print(f"svllreid: error: {err}", file=sys.stderr)
        return 2
    except TrainingDiverged as err:
        print(f"svllreid: error: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("svllreid: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
