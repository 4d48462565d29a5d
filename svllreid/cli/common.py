"""Arguments shared by several commands, and the reading of a few of them."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from svllreid.config import Config, load_config, parse_override
from svllreid.errors import ConfigError


def parse_options(pairs: Sequence[str]) -> dict[str, Any]:
    """``-o KEY=VALUE`` dataset options as a dict (values parsed as YAML scalars)."""
    options = {}
    for text in pairs:
        try:
            key, value = parse_override(text)
        except ConfigError as err:
            raise ConfigError(f"dataset option {text!r} must look like key=value") from err
        options[key] = value
    return options


def positive_int(text: str) -> int:
    """An argparse type: a positive integer, refused when the arguments are parsed (before any work)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a positive integer; got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer; got {value}")
    return value


def add_dataset_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dataset", required=True, help="registered dataset name (see 'svllreid data list')")
    parser.add_argument(
        "--root",
        default="",
        help="dataset folder (a CSV manifest for 'folder'; may be empty for 'synthetic')",
    )
    add_option_arg(parser)


def add_option_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "-o",
        "--option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="dataset option, repeatable (e.g. test_size=1600, camera_regex='c(\\d+)')",
    )


def add_recipe_args(parser: argparse.ArgumentParser) -> None:
    """The arguments that say what a built-in recipe runs on (``demo``, ``tune``): overrides, a dataset of
    your own, another recipe and CLIP weights."""
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="config overrides, e.g. stage2.epochs=5")
    parser.add_argument("--dataset", default=None, help="your dataset (folder, pku, ...) instead of the synthetic one")
    parser.add_argument("--root", default=None, help="its folder or CSV manifest (with --dataset)")
    add_option_arg(parser)
    parser.add_argument("--config", default=None, help="a recipe of your own instead of the built-in one")
    parser.add_argument("--pretrained", default=None, help="CLIP weights (with --config of the paper's settings)")


def recipe_config(args: argparse.Namespace, *, out: str, name: str | None) -> Config:
    """The config that :func:`add_recipe_args`' arguments describe (:func:`svllreid.training.demo.demo_config`)."""
    from svllreid.training.demo import demo_config

    return demo_config(
        overrides=args.overrides,
        out=out,
        name=name,
        config=args.config,
        pretrained=args.pretrained,
        dataset=args.dataset,
        root=args.root,
        options=parse_options(args.option),
    )


def add_synth_size_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--ids", type=int, default=100, help="identities (default 100)")
    parser.add_argument("--cameras", type=int, default=6, help="cameras, 2-9 (default 6)")
    parser.add_argument("--images-per-camera", type=int, default=4, help="images per identity and camera (default 4)")


def add_inference_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--device", default="auto", help="cpu, cuda, cuda:1 or auto (default)")
    parser.add_argument("--batch-size", type=positive_int, default=64, help="images per batch (default 64)")
    parser.add_argument("--workers", type=int, default=0, help="image-loading processes (default 0: in process)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def config_or_resume(args: argparse.Namespace) -> Config:
    """The config of ``train`` / ``pretrain``: CONFIG plus overrides, or a run's own with --resume."""
    if args.resume:
        if args.config and not Path(args.config).is_file() and "=" in args.config:
            args.overrides.insert(0, args.config)
            args.config = None
        if args.config or args.overrides:
            raise ConfigError("--resume continues a run with its own config.yaml; leave out CONFIG and overrides")
        return load_config(Path(args.resume) / "config.yaml" if Path(args.resume).is_dir() else None)
    if not args.config:
        raise ConfigError("pass a CONFIG file (see configs/), or --resume RUN_DIR")
    return load_config(args.config, args.overrides)
