"""``svllreid calibrate``: a model's same-identity threshold, chosen on held-out identities and stored
beside the checkpoint (and in an index with ``--index``)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from svllreid.cli.common import add_inference_args, add_option_arg, parse_options
from svllreid.errors import ConfigError


def _rates(rates: dict[str, float | int]) -> str:
    uncertain = int(rates.get("false_accepts_bound", 0))
    binned = f", of which up to {uncertain:,} may lie below it (binned scores)" if uncertain else ""
    return (
        f"TPR {100 * float(rates['tpr']):.2f}% ({int(rates['true_accepts']):,} of {int(rates['positive_pairs']):,} "
        f"same-identity pairs), FPR {100 * float(rates['fpr']):.4f}% ({int(rates['false_accepts']):,} of "
        f"{int(rates['negative_pairs']):,} different-identity pairs{binned})"
    )


def cmd_calibrate(args: argparse.Namespace) -> int:
    from svllreid.evaluation.calibration import calibrate_model, check_target, default_sidecar
    from svllreid.fileio import check_writable
    from svllreid.inference.calibration import write_calibration
    from svllreid.inference.trained import load_trained_model

    if args.root is not None and args.dataset is None:
        raise ConfigError("--root needs --dataset (the dataset's name, see 'svllreid data list')")
    check_target(args.fpr, args.tpr)  # a bad rate is refused before the model loads
    index = None
    checkpoint = args.checkpoint
    if args.index:
        from svllreid.search import GalleryIndex

        index = GalleryIndex.load(args.index)
        checkpoint = checkpoint or index.meta.get("checkpoint")
        if not checkpoint:
            raise ConfigError(f"{args.index} names no checkpoint; pass --checkpoint CKPT (the network that built it)")
    if not checkpoint:
        raise ConfigError("pass --checkpoint CKPT (a checkpoint, run directory or model folder), or --index INDEX")
    trained = load_trained_model(checkpoint, args.device)
    flip = args.flip
    if index is not None:  # the threshold must hold for the index's features: same network, same encoding
        trained.check_same_features(index.meta, str(args.index), checkpoint=str(checkpoint))
        flip = bool(index.meta.get("flip", False))
    # Beside the checkpoint by default; with --index, into the index (its flip setting may not be the
    # checkpoint's other users'), and beside it too only with --out.
    sidecar = None if args.no_sidecar or index is not None else default_sidecar(trained)
    out = Path(args.out) if args.out else sidecar
    for target in [out, Path(args.index) if index is not None else None]:
        if target is not None:
            check_writable(target)  # before the features are computed
    run = calibrate_model(
        trained,
        dataset=args.dataset,
        root=args.root,
        options=parse_options(args.option) if args.option else None,
        fpr=args.fpr,
        tpr=args.tpr,
        validation_ids=args.validation_ids,
        flip=flip,
        batch_size=args.batch_size,
        num_workers=args.workers,
        test=not args.no_test,
    )
    calibration = run.calibration
    written = []
    if out is not None:
        written.append(write_calibration(out, calibration))
    if index is not None:
        from svllreid.search import GalleryIndex

        index = GalleryIndex.load(args.index)  # as it is now (the features took a while), checked again
        trained.check_same_features(index.meta, str(args.index), checkpoint=str(checkpoint))
        index.meta["calibration"] = calibration.to_dict()
        written.append(index.save(args.index))
    if args.json:
        print(json.dumps({**calibration.to_dict(), "written": [str(p) for p in written]}, indent=2))
        return 0
    print(f"model: {trained.describe()}")
    for note in run.notes:
        print(f"note: {note}")
    print(
        f"calibration set: the validation split of {run.dataset.name} at {run.dataset.root}: {run.validation_ids} "
        "identities the model did not train on (features without camera information"
        + (", with flipped images" if flip else "")
        + ")"
    )
    print(f"threshold: {calibration.threshold:.6f} ({calibration.operating_point}: similarity >= it)")
    print(f"  on validation: {_rates(calibration.validation)}")
    if calibration.test is not None:
        print(f"  on the test split at this threshold: {_rates(calibration.test)}")
    else:
        print("  the test split was not measured")
    for path in written:
        print(f"wrote {path}")
    if not written:
        print("nothing written (--no-sidecar without --out or --index)")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "calibrate",
        help="choose a model's same-identity threshold on held-out identities (for search, serve, exports)",
        description="Choose the cosine-similarity threshold above which two images show the same identity, on "
        "labelled identities the model never trained on: the validation split of its training set "
        "(data.validation_ids), or of another dataset with --dataset/--root and --validation-ids N. The threshold "
        "gives the asked false positive rate (--fpr, default 1e-3) or true positive rate (--tpr) on that split's "
        "query-gallery pairs; the test split's rates at it are measured to show how it transfers, never used to "
        "choose it. Writes it beside the checkpoint (NAME.calibration.json), where search, serve, "
        "FeatureExtractor and exports find it; with --index, in that index instead (features made as the index's: "
        "flipped or not), and --out FILE writes a copy.",
    )
    parser.add_argument("--checkpoint", default=None, help="checkpoint file, run directory or model folder")
    parser.add_argument("--index", default=None, help="store it in this index (default checkpoint: the index's)")
    parser.add_argument("--dataset", default=None, help="dataset name (default: the model's training set)")
    parser.add_argument("--root", default=None, help="dataset folder (with --dataset)")
    add_option_arg(parser)
    target = parser.add_mutually_exclusive_group()
    target.add_argument("--fpr", type=float, default=None, help="false positive rate to hold (default 1e-3)")
    target.add_argument("--tpr", type=float, default=None, help="true positive rate to reach, instead of --fpr")
    parser.add_argument(
        "--validation-ids",
        type=int,
        default=None,
        help="training identities of --dataset to hold out and calibrate on (another dataset than the model's)",
    )
    parser.add_argument(
        "--flip", action="store_true", help="features with their flipped images' added (as extract --flip)"
    )
    parser.add_argument("--out", default=None, help="write the calibration here instead of beside the checkpoint")
    parser.add_argument("--no-sidecar", action="store_true", help="do not write beside the checkpoint")
    parser.add_argument("--no-test", action="store_true", help="skip measuring the test split at the threshold")
    parser.add_argument("--json", action="store_true", help="print the calibration as JSON")
    add_inference_args(parser)
    parser.set_defaults(func=cmd_calibrate)
