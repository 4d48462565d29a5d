"""``svllreid tune``: choose the settings of a run on your own data, on its validation split."""

from __future__ import annotations

import argparse
import logging
import time

from svllreid.cli.common import add_recipe_args, recipe_config


def cmd_tune(args: argparse.Namespace) -> int:
    from svllreid.training.tune import tune

    if args.budget <= 0:
        raise ValueError(f"--budget must be a positive number of minutes; got {args.budget}")
    out = args.out or f"runs/tune-{args.dataset or 'synthetic'}-{time.strftime('%Y%m%d-%H%M%S')}"
    cfg = recipe_config(args, out="runs", name="")
    logging.getLogger("svllreid").setLevel(logging.WARNING)  # the trials' own logs would bury the table
    print(f"tuning on {cfg.data.dataset} at {cfg.data.root or '(built in)'}, budget {args.budget:g} min, into {out}")
    result = tune(cfg, out=out, budget_s=60 * args.budget, seeds=args.seeds, keep_checkpoints=args.keep_checkpoints)
    print(f"chosen: {' '.join(f'{k}={v}' for k, v in result.chosen.items()) or 'the recipe as it was'}")
    print(f"config: {result.config_path}  ({result.seconds:.0f} s)")
    print(f"train it: svllreid train {result.config_path}")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    tune = subparsers.add_parser(
        "tune",
        help="choose the learning rate, loss weights and epochs for your own data, on its validation split",
        description="A small, time-budgeted search on your own data: the stage-2 learning rate, then the weight of "
        "the image-to-text loss, then λ_V, then the number of epochs, each chosen on the validation split held out "
        "of the training identities (data.validation_ids=auto); the test set is not evaluated. Prints every trial "
        "and writes the chosen config (OUT/chosen.yaml) for 'svllreid train'. The starting recipe is the own-data "
        "recipe (svllreid config show own-data: a tiny ViT from svll-synth, for the CPU), or --config with "
        "--pretrained for real CLIP weights.",
    )
    add_recipe_args(tune)
    tune.add_argument("--budget", type=float, default=30.0, help="minutes the search may take (default 30)")
    tune.add_argument("--seeds", type=int, nargs="+", default=[1], help="seeds per trial; the score is their mean")
    tune.add_argument("--out", default=None, help="folder of the trials and chosen.yaml (default runs/tune-<time>)")
    tune.add_argument("--keep-checkpoints", action="store_true", help="keep each trial's checkpoints (large)")
    tune.set_defaults(func=cmd_tune)
