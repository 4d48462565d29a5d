"""Latency of an exported image branch: torch (eager, the network itself) against onnxruntime on the CPU.

For each network (random weights: speed does not depend on training) this script exports the ONNX file
with ``svllreid.export.exporter.export_image_branch`` and times one forward pass at each batch size, torch
under ``torch.no_grad()`` and onnxruntime's CPU provider with its default graph optimisations, both
with the same number of threads. Each figure is the median of ``--repeats`` runs after one warm-up run.
It prints measured numbers only:
    python benchmarks/export_speed.py                       # the tiny networks and ViT-B/16 (stride 12)
    python benchmarks/export_speed.py --networks tiny-vit --batches 1 16 --repeats 3
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
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    import onnxruntime as ort

    from svllreid.export.exporter import export_image_branch
    from svllreid.inference.image_branch import ImageBranch

    threads = torch.get_num_threads()
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        for name in args.networks:
            arch, size, stride = NETWORKS[name]
            trained = trained_model(arch, size, stride, folder)
            report = export_image_branch(trained, folder / f"{name}.onnx", fmt="onnx")
            session = ort.InferenceSession(str(report.path), options, providers=["CPUExecutionProvider"])
            network = ImageBranch(trained.model).eval()
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
                rows.append(
                    {
                        "network": f"{arch} {size[0]}x{size[1]}" + (f" stride {stride}" if stride else ""),
                        "batch": batch,
                        "torch_ms": 1000 * torch_s,
                        "onnxruntime_ms": 1000 * onnx_s,
                        "ratio": onnx_s / torch_s,
                        "exporter": report.exporter,
                        "max_abs_diff": report.max_abs_diff,
                    }
                )
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
    print(f"{'network':<34}{'batch':>6}{'torch ms':>11}{'onnxrt ms':>11}{'onnxrt/torch':>14}")
    for row in rows:
        print(
            f"{row['network']:<34}{row['batch']:>6}{row['torch_ms']:11.1f}{row['onnxruntime_ms']:11.1f}"
            f"{row['ratio']:13.2f}×"
        )


if __name__ == "__main__":
    main()
