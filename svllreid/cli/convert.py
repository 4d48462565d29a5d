"""``svllreid convert``: the CLIP-ReID and SVLL-ReID authors' checkpoints in (``--from``) and out (``--to``)."""

from __future__ import annotations

import argparse
import json


def cmd_convert(args: argparse.Namespace) -> int:
    from svllreid.convert.settings import load_settings, released, released_names
    from svllreid.errors import ConversionError

    if args.list:
        for name in released_names():
            setting = released(name)
            height, width = setting.image_size or (0, 0)
            print(f"{name:<36} {setting.arch:<9} {height}x{width}  {setting.url}")
        return 0
    if not args.file or not args.out:
        raise ConversionError("convert needs a FILE and --out (or --list); see 'svllreid convert --help'")
    if (args.source is None) == (args.target is None):
        raise ConversionError(
            "pass --from clip-reid|svll-reid (import their FILE.pth) or --to clip-reid|svll-reid (export)"
        )
    if args.target is not None:
        return _to_authors(args)
    from svllreid.convert.importer import convert_authors_checkpoint

    settings = load_settings(args.config)
    result = convert_authors_checkpoint(
        args.file,
        args.source,
        args.out,
        settings=settings,
        clip_weights=args.clip_weights,
        overwrite=args.overwrite,
    )
    print(result.summary())
    if args.json:
        print(json.dumps(result.record(), indent=2))
    print(
        f"use it as any checkpoint: svllreid eval --checkpoint {args.out} --dataset NAME --root DATA, "
        f"svllreid index build --checkpoint {args.out} --images DIR --out INDEX, ..."
    )
    return 0


def _to_authors(args: argparse.Namespace) -> int:
    from svllreid.convert.to_authors import write_authors_checkpoint
    from svllreid.errors import ConversionError
    from svllreid.inference.trained import load_trained_model

    if args.config or args.clip_weights:
        raise ConversionError("--config and --clip-weights are for --from (import); --to writes the config itself")
    trained = load_trained_model(args.file, "cpu")
    print(f"model: {trained.describe()}")
    written = write_authors_checkpoint(trained, args.target, args.out, overwrite=args.overwrite)
    print(f"wrote {written.checkpoint}: {written.tensors} tensors under the {args.target} authors' names")
    print(f"  and {written.config}: their config for it (set DATASETS.ROOT_DIR, then run their test script with it)")
    for note in written.notes:
        print(f"  note: {note}")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "convert",
        help="import the CLIP-ReID / SVLL-ReID authors' checkpoints (--from), or write theirs (--to)",
        description="--from clip-reid|svll-reid FILE.pth --out DIR: an authors' checkpoint (their make_model's "
        "state_dict) as an svllreid model folder that every command takes. What the tensors tell is inferred; "
        "--config adds the rest (a released setting's name from --list, their own YAML config, or a YAML of "
        "settings). --to clip-reid|svll-reid CHECKPOINT --out FILE.pth: the reverse, with their config beside it.",
    )
    parser.add_argument("file", nargs="?", help="the authors' .pth (with --from) or an svllreid checkpoint (with --to)")
    direction = parser.add_mutually_exclusive_group()
    direction.add_argument(
        "--from", dest="source", choices=["clip-reid", "svll-reid"], help="import this codebase's file"
    )
    direction.add_argument("--to", dest="target", choices=["clip-reid", "svll-reid"], help="write this codebase's file")
    parser.add_argument("--out", help="with --from: the folder to write; with --to: the .pth file (or a folder)")
    parser.add_argument(
        "--config",
        help="what the file does not tell: a released setting (e.g. clip-reid/vit-sie-olp/msmt17), the authors' "
        "config .yml, or a YAML of settings",
    )
    parser.add_argument(
        "--clip-weights",
        help="the CLIP the checkpoint was trained from (file or open_clip tag, e.g. openai): its token embedding "
        "makes free-text search possible",
    )
    parser.add_argument(
        "--overwrite", action="store_true", help="replace an earlier conversion in --out (with --to: the file there)"
    )
    parser.add_argument("--list", action="store_true", help="list the released checkpoints' settings and links")
    parser.add_argument("--json", action="store_true", help="also print the conversion record as JSON")
    parser.set_defaults(func=cmd_convert)
