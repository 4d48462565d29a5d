"""``svllreid model``: inspect networks."""

from __future__ import annotations

import argparse
import json


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


def register(subparsers: argparse._SubParsersAction) -> None:
    model = subparsers.add_parser("model", help="inspect networks", description="Inspect networks.")
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
    save = model_cmds.add_parser(
        "save",
        help="write a trained model as a folder to share: model.safetensors, config.json, README.md (model card)",
        description="Write a run, checkpoint or model folder as a self-describing folder: the weights "
        "(safetensors), config.json (network, preprocessing, training recipe, results) and a model card whose "
        "metrics come from the run's eval.json. Load it with svllreid.from_pretrained(DIR) or pass DIR to any "
        "command that takes a checkpoint; 'svllreid push' uploads it to the Hugging Face Hub.",
    )
    save.add_argument("source", help="a run directory, a checkpoint file, a model folder or an hf-hub: name")
    save.add_argument("--out", required=True, help="the folder to write")
    add_card_options(save)
    save.add_argument("--overwrite", action="store_true", help="replace an existing folder (once the new one is done)")
    save.set_defaults(func=cmd_model_save)


def add_card_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--identities",
        action="store_true",
        help="include the training set's identity names (read from the training set, which must be readable)",
    )
    parser.add_argument("--license", default=None, help="the card's license id, e.g. cc-by-nc-4.0 (default: other)")


def cmd_model_save(args: argparse.Namespace) -> int:
    from svllreid.export.pretrained import CALIBRATION_FILE, headline_result, save_pretrained
    from svllreid.inference.calibration import UNCALIBRATED

    saved = save_pretrained(
        args.source, args.out, identities=args.identities, license=args.license, overwrite=args.overwrite
    )
    final = headline_result(saved.config.get("results") or {})
    measured = f"mAP {100 * final['mAP']:.2f}" if final else "no results of these weights in the source (no eval.json)"
    print(f"wrote {saved.folder}: {', '.join(p.name for p in saved.files)} ({measured})")
    if saved.calibration is None:
        print(f"  {UNCALIBRATED}; then save again")
    else:
        print(f"  threshold: {saved.calibration.describe()}; in {CALIBRATION_FILE} and the card")
    print(f"  load it with svllreid.from_pretrained('{saved.folder}') or --checkpoint {saved.folder}")
    return 0
