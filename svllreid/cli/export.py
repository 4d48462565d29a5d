"""``svllreid export``: a trained network's image branch as an ONNX file, an OpenVINO IR or a TorchScript
file for deployment."""

from __future__ import annotations

import argparse
import json
from typing import TYPE_CHECKING

from svllreid.cli.common import positive_int

if TYPE_CHECKING:
    from svllreid.inference.calibration import Calibration


def _calibration_line(calibration: Calibration | None, where: str) -> str:
    """One line: the same-identity threshold a written file carries (``where``), or that there is none."""
    from svllreid.inference.calibration import UNCALIBRATED

    if calibration is None:
        return f"  {UNCALIBRATED}; then export again"
    return (
        f"  threshold: {calibration.describe()}; max cosine distance {1 - calibration.threshold:.4f} for a "
        f"tracker; in {where}"
    )


def cmd_export(args: argparse.Namespace) -> int:
    from svllreid.export.exporter import (
        TORCHSCRIPT_CALIBRATION,
        check_export_options,
        check_suffix,
        export_image_branch,
    )
    from svllreid.fileio import check_writable
    from svllreid.inference.onnx_backend import CALIBRATION_KEY, DISTANCE_KEY
    from svllreid.inference.trained import load_trained_model

    if args.format == "boxmot":
        return _export_boxmot(args)
    check_export_options(args.format, opset=args.opset, fp16=args.fp16)  # before the network is loaded
    check_suffix(args.out, args.format)
    check_writable(args.out)
    int8_images = None
    if args.int8 or args.calibration_images:
        from svllreid.data.images import list_images
        from svllreid.export.int8 import check_int8_options

        if not (args.int8 and args.calibration_images):
            raise ValueError("--int8 and --calibration-images go together: INT8 calibrates on your images")
        int8_images = list_images(args.calibration_images)
        check_int8_options(args.format, fp16=args.fp16, images=int8_images)
    trained = load_trained_model(args.checkpoint, "cpu")  # exported from the CPU: the file runs anywhere
    print(f"model: {trained.describe()}")
    report = export_image_branch(
        trained,
        args.out,
        fmt=args.format,
        fp16=args.fp16,
        opset=args.opset,
        side_info=args.side_info,
        int8_images=int8_images,
    )
    facts = report.facts
    pre = facts["preprocessing"]
    print(
        f"wrote {report.path}: {report.format} ({report.exporter}, {facts['precision']}), inputs "
        f"{', '.join(report.inputs)} (dynamic batch) -> features [B, {report.feature_dim}], L2-normalised"
    )
    print(f"  side information: {facts['side_info']}")
    if report.int8 is not None:
        q = report.int8
        print(
            f"  INT8: {q['method']}, calibrated on {q['images']} images; against the fp32 network their features "
            f"keep a cosine similarity of {q['min_cosine']:.4f} at least (mean {q['mean_cosine']:.4f}, allowed "
            f"down to {q['tolerance']}); each image ranking the others, the first hit agrees for "
            f"{100 * q['top1_agreement']:.1f}% and the top {q['topk']} overlap {100 * q['topk_overlap']:.1f}%"
        )
        if report.calibration is not None:
            print(
                "  note: the same-identity threshold below was chosen on the fp32 network's features; INT8 moves "
                f"scores by up to {1 - q['min_cosine']:.1e} here: check it on your data before relying on it"
            )
    print(
        f"  preprocessing: resize to {pre['image_size'][0]}x{pre['image_size'][1]} ({pre['resize']}), "
        f"(pixel / 255 - mean) / std with mean {pre['mean']}, std {pre['std']}"
    )
    print(f"  checked with {report.checked_with}: max abs difference {report.max_abs_diff:.2e} from the network")
    if report.format == "openvino":
        print(f"  weights: {report.path.with_suffix('.bin')} (keep it beside {report.path.name})")
    where = {
        "onnx": f"metadata {CALIBRATION_KEY} and {DISTANCE_KEY}",
        "openvino": f"rt_info {CALIBRATION_KEY} and {DISTANCE_KEY}",
    }.get(report.format, f"extra file {TORCHSCRIPT_CALIBRATION}")
    print(_calibration_line(report.calibration, where))
    if args.json:
        calibration = report.calibration.to_dict() if report.calibration else None
        summary = {"path": str(report.path), "max_abs_diff": report.max_abs_diff, **facts, "calibration": calibration}
        print(json.dumps(summary, indent=2))
    return 0


def _export_boxmot(args: argparse.Namespace) -> int:
    from svllreid.export.boxmot import PT_UNCALIBRATED, export_boxmot, uses_imagenet_statistics
    from svllreid.inference.onnx_backend import CALIBRATION_KEY, DISTANCE_KEY
    from svllreid.inference.trained import load_trained_model

    if args.fp16 or args.opset or args.side_info or args.int8:
        raise ValueError(
            "--format boxmot takes no --fp16, --int8, --opset or --side-info: BoxMOT feeds fp32 crops, one input"
        )
    trained = load_trained_model(args.checkpoint, "cpu")
    print(f"model: {trained.describe()}")
    written = export_boxmot(trained, args.out, route=args.boxmot_route)
    if written.kind == "pt":
        print(
            f"wrote {written.path}: {written.tensors} tensors under CLIP-ReID's names for BoxMOT's CLIP builder "
            "(it takes the features after the BNNecks and feeds ImageNet statistics)"
        )
        if not uses_imagenet_statistics(trained):
            data = trained.config.data
            print(
                f"  warning: this network was trained with mean {data.pixel_mean} and std {data.pixel_std}, not "
                "ImageNet's, which BoxMOT feeds it: that cost 5.3 mAP points on the PKU subset (docs/DEPLOY.md). "
                "--boxmot-route onnx writes a file that keeps the network's own features"
            )
    elif written.kind == "onnx":
        print(
            f"wrote {written.path}: ONNX for BoxMOT's ONNX backend ({written.why_onnx}); the graph takes BoxMOT's "
            "256x128 ImageNet-normalised crops and gives the network's own features"
        )
    else:
        print(
            f"wrote {written.path} and its .bin: an OpenVINO IR for BoxMOT's OpenVINO backend; the graph takes "
            "BoxMOT's 256x128 ImageNet-normalised crops and gives the network's own features. BoxMOT compiles it "
            "with OpenVINO's default precision, bfloat16 on processors that have it (features move by about 1e-3)"
        )
    if written.calibration is not None and not written.carries_calibration:
        print(f"  note: {PT_UNCALIBRATED}")
    else:
        where = "rt_info" if written.kind == "openvino" else "metadata"
        print(_calibration_line(written.calibration, f"{where} {DISTANCE_KEY} and {CALIBRATION_KEY}"))
    given = written.path.parent if written.kind == "openvino" else written.path
    print(f"  use it with BoxMOT as --reid-model {given} (keep the name: BoxMOT reads it)")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    export = subparsers.add_parser(
        "export",
        help="write a trained network's image branch as ONNX, OpenVINO or TorchScript (dynamic batch, metadata)",
        description="Export the test-time image branch of a trained checkpoint: images [B, 3, H, W] (resized, "
        "scaled to [0, 1] and normalised as the file's metadata states) in, L2-normalised features [B, D] out. "
        "The written file is run once and compared with the network. ONNX needs pip install 'svllreid[onnx]', "
        "OpenVINO pip install 'svllreid[openvino]'.",
    )
    export.add_argument(
        "--checkpoint", required=True, help="checkpoint file, run directory, model folder or hf-hub:ORG/NAME"
    )
    export.add_argument(
        "--format",
        required=True,
        choices=["onnx", "openvino", "torchscript", "boxmot"],
        help="file format (openvino: an IR, NAME.xml and NAME.bin; boxmot: what the BoxMOT tracker loads, a .pt "
        "state dict, an ONNX file or an OpenVINO folder)",
    )
    export.add_argument(
        "--out",
        required=True,
        help="file to write (.onnx, .xml, .pt); for boxmot a folder, where the file gets the name BoxMOT reads",
    )
    export.add_argument("--fp16", action="store_true", help="half precision (for GPUs)")
    export.add_argument(
        "--int8",
        action="store_true",
        help="quantised to INT8 for CPUs (ONNX: onnxruntime static quantisation; OpenVINO: NNCF); needs "
        "--calibration-images",
    )
    export.add_argument(
        "--calibration-images",
        metavar="DIR",
        default=None,
        help="with --int8: a folder (or list file) of at least 16 images like those the model will see",
    )
    export.add_argument("--opset", type=positive_int, default=None, help="ONNX opset (default: the exporter's)")
    export.add_argument(
        "--side-info",
        action="store_true",
        help="a second input side_info [B, 2] (camera, view; -1 unknown) for networks with SIE "
        "(default: cameras and views fixed as unknown)",
    )
    export.add_argument(
        "--boxmot-route",
        choices=["auto", "pt", "onnx", "openvino"],
        default="auto",
        help="for --format boxmot: auto (a .pt state dict where BoxMOT's CLIP builder can hold the network, "
        "else ONNX), pt, onnx (keeps the network's own preprocessing and features), or openvino (the ONNX route's "
        "graph as an OpenVINO IR in a *_openvino_model folder)",
    )
    export.add_argument("--json", action="store_true", help="also print the file's metadata as JSON")
    export.set_defaults(func=cmd_export)
