"""``svllreid config``: inspect configurations."""

from __future__ import annotations

import argparse

from svllreid.config import config_to_yaml, load_config


def cmd_config_show(args: argparse.Namespace) -> int:
    path = args.config
    if args.config == "defaults":
        path = None
    elif args.config in ("demo", "own-data"):
        from svllreid.training.demo import DEMO_RECIPE, OWN_DATA_RECIPE

        path = str(DEMO_RECIPE if args.config == "demo" else OWN_DATA_RECIPE)
    cfg = load_config(path, args.overrides)
    print(config_to_yaml(cfg), end="")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    config = subparsers.add_parser("config", help="inspect configurations", description="Inspect configurations.")
    config_cmds = config.add_subparsers(dest="config_command", metavar="SUBCOMMAND", required=True)
    show = config_cmds.add_parser(
        "show",
        help="print the resolved config of a YAML file plus overrides",
        description="Print the fully resolved configuration (bases merged, overrides applied, defaults filled).",
    )
    show.add_argument(
        "config",
        help="YAML config file, 'defaults' for the built-in defaults, 'demo' for the demo's recipe or 'own-data' "
        "for the recipe of your own photos",
    )
    show.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="overrides such as stage2.lr=1e-5")
    show.set_defaults(func=cmd_config_show)
