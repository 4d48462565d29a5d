"""Latency of an exported image branch: torch (eager, the network itself) against onnxruntime on the CPU.

For each network (random weights: speed does not depend on training) this script exports the ONNX file
with ``svllreid.export.exporter.export_image_branch`` and times one forward pass at each batch size, torch
under ``torch.no_grad()`` and onnxruntime's CPU provider with its default graph optimisations, both
with the same number of threads. Each figure is the median of ``--repeats`` runs after one warm-up run.
With ``--int8`` each network is also exported as INT8 ONNX (``export_image_branch(int8_images=...)``),
calibrated on 32 synthetic pedestrian crops, and timed the same way; a file that misses the exporter's
cosine tolerance is reported with the exporter's message instead of a time. It prints measured numbers
only:
    python benchmarks/export_speed.py                       # the tiny networks and ViT-B/16 (stride 12)
    python benchmarks/export_speed.py --networks tiny-vit --batches 1 16 --repeats 3
    python benchmarks/export_speed.py --networks vit-b16-s12 --batches 1 16 64 --int8
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

#: name -> (arch, image size, stride)
NETWORKS = {
    "tiny-vit": ("svll-tiny-vit", (64, 32), None),
    "tiny-rn": ("svll-tiny-rn", (64, 32), None),
    "vit-b16-s12": ("ViT-B-16", (256, 128), 12),
}


def trained_model(arch: str, image_size: tuple[int, int], stride: int | None, folder: Path):
    from svllreid.config import config_to_dict, load_config
    from svllreid.inference.checkpoint import write_checkpoint
    from svllreid.inference.trained import load_trained_model
    from svllreid.models import create_model

    torch.manual_seed(0)
    model = create_model(arch, num_classes=10, image_size=image_size, stride=stride)
    config = load_config(None, [f"data.image_size=[{image_size[0]},{image_size[1]}]", f"model.arch={arch}"])
    meta = {"spec": model.spec.to_dict(), "quick_gelu": False, "config": config_to_dict(config), "stage": 2}
    return load_trained_model(write_checkpoint(folder / f"{arch}.safetensors", model, meta), "cpu")


def median_seconds(run, repeats: int) -> float:
    run()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--networks", nargs="+", choices=list(NETWORKS), default=list(NETWORKS))
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 16, 64])
    parser.add_argument("--repeats", type=int, default=5, help="timed runs per figure (median; default 5)")
    parser.add_argument("--int8", action="store_true", help="also an INT8 ONNX file of each network")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    import onnxruntime as ort

    from svllreid.errors import ExportError
    from svllreid.export.exporter import export_image_branch
    from svllreid.inference.image_branch import ImageBranch

    threads = torch.get_num_threads()
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        crops: list[str] = []
        if args.int8:
            from svllreid.data.synthesis import generate_synthetic

            generate_synthetic(folder / "crops", num_ids=8, num_cameras=2, images_per_camera=2, seed=3, workers=1)
            crops = [str(p) for p in sorted((folder / "crops").rglob("*.jpg"))][:32]
        for name in args.networks:
            arch, size, stride = NETWORKS[name]
            trained = trained_model(arch, size, stride, folder)
            report = export_image_branch(trained, folder / f"{name}.onnx", fmt="onnx")
            session = ort.InferenceSession(str(report.path), options, providers=["CPUExecutionProvider"])
            network = ImageBranch(trained.model).eval()
            int8_path, int8_facts, int8_error = None, None, None
            if args.int8:
                try:
                    int8 = export_image_branch(trained, folder / f"{name}.int8.onnx", fmt="onnx", int8_images=crops)
                    int8_path, int8_facts = int8.path, int8.int8
                except ExportError as err:
                    int8_error = str(err)
            timed = []
            for batch in args.batches:
                images = torch.randn(batch, 3, *size, generator=torch.Generator().manual_seed(batch))
                pixels = images.numpy()

                def torch_run(images: torch.Tensor = images, network: torch.nn.Module = network) -> None:
                    with torch.no_grad():
                        network(images)

                def onnx_run(pixels: np.ndarray = pixels, session: ort.InferenceSession = session) -> None:
                    session.run(None, {"images": pixels})

                torch_s = median_seconds(torch_run, args.repeats)
                onnx_s = median_seconds(onnx_run, args.repeats)
                row = {
                    "network": f"{arch} {size[0]}x{size[1]}" + (f" stride {stride}" if stride else ""),
                    "batch": batch,
                    "torch_ms": 1000 * torch_s,
                    "onnxruntime_ms": 1000 * onnx_s,
                    "ratio": onnx_s / torch_s,
                    "exporter": report.exporter,
                    "max_abs_diff": report.max_abs_diff,
                }
                if int8_error is not None:
                    row["int8_error"] = int8_error
                rows.append(row)
                timed.append((row, pixels, onnx_s))
            if int8_path is not None:
                # Timed after the fp32 session is gone: an idle onnxruntime session's threads spin for a
                # while after each run, and on two cores they would slow whichever session runs next.
                del session
                int8_session = ort.InferenceSession(str(int8_path), options, providers=["CPUExecutionProvider"])
                for row, pixels, onnx_s in timed:

                    def int8_run(pixels: np.ndarray = pixels, session: ort.InferenceSession = int8_session) -> None:
                        session.run(None, {"images": pixels})

                    int8_s = median_seconds(int8_run, args.repeats)
                    row.update(int8_ms=1000 * int8_s, int8_speedup=onnx_s / int8_s, int8=int8_facts)
    report_json = {
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs",
        "threads": threads,
        "precision": "fp32",
        "torch": torch.__version__,
        "onnxruntime": ort.__version__,
        "repeats": args.repeats,
        "rows": rows,
    }
    if args.json:
        print(json.dumps(report_json, indent=2))
        return
    print(
        f"{report_json['machine']}, {threads} threads, fp32, torch {torch.__version__}, onnxruntime "
        f"{ort.__version__}; median of {args.repeats} runs after a warm-up"
    )
    int8_header = f"{'int8 ms':>10}{'fp32/int8':>11}{'min cos':>9}" if args.int8 else ""
    print(f"{'network':<34}{'batch':>6}{'torch ms':>11}{'onnxrt ms':>11}{'onnxrt/torch':>14}{int8_header}")
    for row in rows:
        int8_cells = ""
        if "int8_ms" in row:
            int8_cells = f"{row['int8_ms']:10.1f}{row['int8_speedup']:10.2f}×{row['int8']['min_cosine']:9.4f}"
        elif "int8_error" in row:
            int8_cells = "  INT8 not kept: " + row["int8_error"]
        print(
            f"{row['network']:<34}{row['batch']:>6}{row['torch_ms']:11.1f}{row['onnxruntime_ms']:11.1f}"
            f"{row['ratio']:13.2f}×{int8_cells}"
        )


if __name__ == "__main__":
    main()
