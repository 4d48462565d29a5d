"""``svllreid demo``: the built-in default job, narrated."""

from __future__ import annotations

import argparse
import logging
import sys

from svllreid.cli.common import add_recipe_args, recipe_config


def cmd_demo(args: argparse.Namespace) -> int:
    from svllreid.training.demo import run_demo

    cfg = recipe_config(args, out=args.out, name=args.name)
    # The steps narrate; the library's own messages are indented under them, without logger names.
    for handler in logging.getLogger().handlers:
        handler.setFormatter(logging.Formatter("      %(message)s"))
    if hasattr(sys.stdout, "reconfigure"):  # keep the steps in order with the log when both go to a file
        sys.stdout.reconfigure(line_buffering=True)
    run_demo(cfg, say=print, own_config=bool(args.config), progress=not args.no_progress)
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    demo = subparsers.add_parser(
        "demo",
        help="the built-in default job: SVLL-ReID end to end on synthetic data in a few minutes",
        description="Generate (or reuse) the synthetic dataset, build a tiny CLIP ViT from svllreid's shipped "
        "'svll-synth' weights (language-image pretraining on other synthetic people), evaluate it with random "
        "weights and as pretrained, train stage 1 and stage 2 of SVLL-ReID, evaluate again and write the run's "
        "report.html. --dataset/--root run the same recipe on real images; --config and --pretrained turn it "
        "into a real run; KEY=VALUE overrides any setting.",
    )
    add_recipe_args(demo)
    demo.add_argument("--out", default="runs", help="folder of run directories (default runs)")
    demo.add_argument("--name", default=None, help="run name (default demo-<time>)")
    demo.add_argument("--no-progress", action="store_true", help="no progress bars")
    demo.set_defaults(func=cmd_demo)
