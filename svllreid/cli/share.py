"""``svllreid push``: upload a trained model to the Hugging Face Hub."""

from __future__ import annotations

import argparse

from svllreid.cli.model import add_card_options


def cmd_push(args: argparse.Namespace) -> int:
    from svllreid.export.hub_push import push_to_hub

    pushed = push_to_hub(
        args.source,
        args.repo,
        token=args.token,
        private=args.private,
        identities=args.identities,
        license=args.license,
        message=args.message,
    )
    print(f"pushed {', '.join(p.name for p in pushed.folder.files)} to {pushed.url}")
    print(f"  load it anywhere as {pushed.name} (svllreid.from_pretrained or --checkpoint)")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    push = subparsers.add_parser(
        "push",
        help="upload a trained model to the Hugging Face Hub (a model folder with its card)",
        description="Save a run, checkpoint or model folder as a model folder ('svllreid model save') and upload "
        "it to the Hugging Face Hub repository ORG/NAME (created if missing) with huggingface_hub. Needs a token "
        "with write access: 'hf auth login', HF_TOKEN or --token.",
    )
    push.add_argument("source", help="a run directory, a checkpoint file or a model folder")
    push.add_argument("--repo", required=True, help="the Hub repository, ORG/NAME")
    push.add_argument("--token", default=None, help="a Hub token (default: HF_TOKEN or the one 'hf auth login' saved)")
    push.add_argument("--private", action="store_true", help="create the repository private")
    push.add_argument("--message", default=None, help="the commit message")
    add_card_options(push)
    push.set_defaults(func=cmd_push)
