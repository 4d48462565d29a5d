"""What INT8 costs a trained model: its test-set metrics in torch, as fp32 ONNX and OpenVINO files, and as
their INT8 versions, on the checkpoint's own test protocol.

Each file is written by ``svllreid.export.exporter.export_image_branch`` (INT8 calibrated on
``--calibration-images``, which should be training crops, never test images) and evaluated by
``svllreid.evaluation.checkpoint_eval.evaluate_checkpoint(model_file=...)``, the code behind
``svllreid eval --model``: the same queries, gallery and protocol as the checkpoint's own evaluation.
It prints measured numbers only, with the load averages (the metrics do not depend on them):
    python benchmarks/int8_cost.py --checkpoint runs/pku/checkpoints/model.safetensors --calibration-images crops/
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from pathlib import Path
from typing import Any

#: label -> (export format, INT8); None: the checkpoint's network in torch.
VARIANTS = {
    "torch fp32": None,
    "onnxruntime fp32": ("onnx", False),
    "onnxruntime INT8": ("onnx", True),
    "OpenVINO fp32": ("openvino", False),
    "OpenVINO INT8": ("openvino", True),
}


def file_bytes(path: Path) -> int:
    """The size of an exported file, an OpenVINO IR's ``.bin`` included."""
    weights = path.with_suffix(".bin")
    return path.stat().st_size + (weights.stat().st_size if path.suffix == ".xml" else 0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", required=True, help="a trained checkpoint (its test set is used)")
    parser.add_argument("--calibration-images", required=True, help="a folder of training crops (at least 16)")
    parser.add_argument("--variants", nargs="+", choices=list(VARIANTS), default=list(VARIANTS))
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    from svllreid.data.images import list_images
    from svllreid.evaluation.checkpoint_eval import evaluate_checkpoint
    from svllreid.export.exporter import export_image_branch
    from svllreid.inference.trained import load_trained_model

    trained = load_trained_model(args.checkpoint, "cpu")
    crops = list_images(args.calibration_images)
    load_before = os.getloadavg()
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        for label in args.variants:
            variant = VARIANTS[label]
            path, facts = None, {}
            if variant is not None:
                fmt, int8 = variant
                path = Path(tmp) / f"model{'.int8' if int8 else ''}{'.xml' if fmt == 'openvino' else '.onnx'}"
                report = export_image_branch(trained, path, fmt=fmt, int8_images=crops if int8 else None)
                facts = {"max_abs_diff": report.max_abs_diff, **({"int8": report.int8} if report.int8 else {})}
            result = evaluate_checkpoint(args.checkpoint, out_dir=Path(tmp) / "eval", device="cpu", model_file=path)
            summary = result.summary
            rows.append(
                {
                    "variant": label,
                    "mAP": summary["mAP"],
                    "rank1": summary["rank1"],
                    "auc": (summary.get("verification") or {}).get("auc"),
                    "bytes": None if path is None else file_bytes(path),
                    **facts,
                }
            )
    report_json = {
        "checkpoint": str(args.checkpoint),
        "model": trained.describe(),
        "calibration_images": len(crops),
        "dataset": result.dataset.name,
        "splits": [s["split"] for s in summary["splits"]],
        "load_average_before": load_before,
        "load_average_after": os.getloadavg(),
        "rows": rows,
    }
    if args.json:
        print(json.dumps(report_json, indent=2))
        return
    print(f"model: {report_json['model']}")
    print(f"test set: {report_json['dataset']}, splits {', '.join(report_json['splits'])} (means over them)")
    print(f"INT8 calibrated on {len(crops)} images of {args.calibration_images}")
    print("load average (1, 5, 15 min) before: {:.2f} {:.2f} {:.2f}".format(*load_before))
    base = rows[0]
    print(f"{'variant':<20}{'mAP':>8}{'R-1':>8}{'AUC':>8}{'Δ mAP':>8}{'MB':>8}{'min cos':>9}")
    for row in rows:
        auc = f"{100 * row['auc']:8.2f}" if row["auc"] is not None else f"{'–':>8}"
        size = f"{row['bytes'] / 1e6:8.1f}" if row["bytes"] else f"{'':>8}"
        cosine = f"{row['int8']['min_cosine']:9.4f}" if "int8" in row else ""
        print(
            f"{row['variant']:<20}{100 * row['mAP']:8.2f}{100 * row['rank1']:8.2f}{auc}"
            f"{100 * (row['mAP'] - base['mAP']):8.2f}{size}{cosine}"
        )
    print("load average (1, 5, 15 min) after: {:.2f} {:.2f} {:.2f}".format(*report_json["load_average_after"]))


if __name__ == "__main__":
    main()
