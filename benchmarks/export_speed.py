"""Speed of an exported image branch on the CPU: torch eager against onnxruntime and OpenVINO, fp32 and INT8.

For each network (random weights: speed does not depend on training) this script exports the files with
``svllreid.export.exporter.export_image_branch`` and times one forward pass at each batch size in each
runtime, all with the same number of threads:
- ``torch``: the network itself under ``torch.no_grad()``, eager;
- ``onnxruntime``: the fp32 ONNX file on onnxruntime's CPU provider, default graph optimisations;
- ``onnxruntime-int8``: the INT8 ONNX file (onnxruntime static quantisation, QDQ);
- ``openvino``: the fp32 OpenVINO IR on OpenVINO's CPU plugin, compiled with fp32 arithmetic;
- ``openvino-int8``: the INT8 IR (NNCF).
INT8 files are calibrated on 32 synthetic pedestrian crops; a file that misses the exporter's cosine
tolerance is reported with the exporter's message instead of a time. The runtimes are timed one after
another, each session released before the next is made: an idle session's threads spin for a while after
each run, and on a small CPU they would slow whichever session runs next. Each figure is the median of
``--repeats`` runs after one warm-up run: milliseconds per batch (the latency of a batch) and images per
second. The load averages before and after are printed. It prints measured numbers only:
    python benchmarks/export_speed.py                       # every network and runtime, batches 1 16 64
    python benchmarks/export_speed.py --networks tiny-vit --batches 1 16 --repeats 3
    python benchmarks/export_speed.py --networks vit-b16 --runtimes torch onnxruntime onnxruntime-int8
The paper's network is ViT-B/16 with stride 12 (``vit-b16-s12``: 231 tokens at 256x128; stride 16: 129).
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import os
import platform
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

#: name -> (arch, image size, stride)
NETWORKS = {
    "tiny-vit": ("svll-tiny-vit", (64, 32), None),
    "tiny-rn": ("svll-tiny-rn", (64, 32), None),
    "vit-b16": ("ViT-B-16", (256, 128), 16),
    "vit-b16-s12": ("ViT-B-16", (256, 128), 12),
}
#: runtime -> (export format, INT8)
RUNTIMES = {
    "torch": (None, False),
    "onnxruntime": ("onnx", False),
    "onnxruntime-int8": ("onnx", True),
    "openvino": ("openvino", False),
    "openvino-int8": ("openvino", True),
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
    name = f"{arch}-s{stride}" if stride else arch
    return load_trained_model(write_checkpoint(folder / f"{name}.safetensors", model, meta), "cpu")


def median_seconds(run: Callable[[], object], repeats: int) -> float:
    run()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def runner(runtime: str, trained: Any, path: Path | None, threads: int) -> Callable[[np.ndarray], object]:
    """A function that runs one batch of pixels through ``runtime``."""
    if runtime == "torch":
        from svllreid.inference.image_branch import ImageBranch

        network = ImageBranch(trained.model).eval()

        def run_torch(pixels: np.ndarray) -> object:
            with torch.no_grad():
                return network(torch.from_numpy(pixels))

        return run_torch
    if runtime.startswith("onnxruntime"):
        from svllreid.inference.onnx_backend import cpu_session

        session = cpu_session(str(path), float16=False, threads=threads)
        return lambda pixels: session.run(None, {"images": pixels})
    from svllreid.inference.openvino_backend import compile_cpu, import_openvino

    compiled = compile_cpu(import_openvino().Core().read_model(str(path)), threads=threads)
    request = compiled.create_infer_request()
    return lambda pixels: request.infer({"images": pixels})


def versions() -> dict[str, str]:
    found = {"torch": torch.__version__}
    for module in ("onnxruntime", "openvino", "nncf"):
        with contextlib.suppress(ImportError):
            found[module] = __import__(module).__version__
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--networks", nargs="+", choices=list(NETWORKS), default=["tiny-vit", "tiny-rn", "vit-b16-s12"])
    parser.add_argument("--runtimes", nargs="+", choices=list(RUNTIMES), default=list(RUNTIMES))
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 16, 64])
    parser.add_argument("--repeats", type=int, default=5, help="timed runs per figure (median; default 5)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    from svllreid.errors import ExportError
    from svllreid.export.exporter import export_image_branch

    threads = torch.get_num_threads()
    load_before = os.getloadavg()
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        crops: list[str] = []
        if any(RUNTIMES[r][1] for r in args.runtimes):
            from svllreid.data.synthesis import generate_synthetic

            generate_synthetic(folder / "crops", num_ids=8, num_cameras=2, images_per_camera=2, seed=3, workers=1)
            crops = [str(p) for p in sorted((folder / "crops").rglob("*.jpg"))][:32]
        for name in args.networks:
            arch, size, stride = NETWORKS[name]
            trained = trained_model(arch, size, stride, folder)
            label = f"{arch} {size[0]}x{size[1]}" + (f" stride {stride}" if stride else "")
            pixels = {
                b: torch.randn(b, 3, *size, generator=torch.Generator().manual_seed(b)).numpy() for b in args.batches
            }
            for runtime in args.runtimes:
                fmt, int8 = RUNTIMES[runtime]
                row: dict[str, Any] = {"network": label, "runtime": runtime}
                path = None
                if fmt is not None:
                    suffix = ".xml" if fmt == "openvino" else ".onnx"
                    path = folder / f"{name}.{runtime}{suffix}"
                    try:
                        report = export_image_branch(trained, path, fmt=fmt, int8_images=crops if int8 else None)
                    except ExportError as err:
                        rows.append({**row, "error": str(err)})
                        continue
                    row["max_abs_diff"] = report.max_abs_diff
                    if report.int8 is not None:
                        row["int8"] = report.int8
                run = runner(runtime, trained, path, threads)
                for batch in args.batches:
                    seconds = median_seconds(lambda run=run, batch=pixels[batch]: run(batch), args.repeats)
                    rows.append({**row, "batch": batch, "ms": 1000 * seconds, "images_per_s": batch / seconds})
                del run
                gc.collect()  # the session and its threads go before the next runtime's are made
    report_json = {
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs",
        "threads": threads,
        "versions": versions(),
        "repeats": args.repeats,
        "load_average_before": load_before,
        "load_average_after": os.getloadavg(),
        "rows": rows,
    }
    if args.json:
        print(json.dumps(report_json, indent=2))
        return
    print(
        f"{report_json['machine']}, {threads} threads; "
        + ", ".join(f"{k} {v}" for k, v in report_json["versions"].items())
        + f"; median of {args.repeats} runs after a warm-up"
    )
    print("load average (1, 5, 15 min) before: {:.2f} {:.2f} {:.2f}".format(*load_before))
    print(f"{'network':<32}{'runtime':<18}{'batch':>6}{'ms/batch':>10}{'images/s':>10}{'vs torch':>10}{'min cos':>9}")
    torch_ms = {(r["network"], r["batch"]): r["ms"] for r in rows if r["runtime"] == "torch" and "ms" in r}
    for row in rows:
        if "error" in row:
            print(f"{row['network']:<32}{row['runtime']:<18}  not kept: {row['error']}")
            continue
        base = torch_ms.get((row["network"], row["batch"]))
        speedup = f"{base / row['ms']:9.2f}×" if base else f"{'':>10}"
        cosine = f"{row['int8']['min_cosine']:9.4f}" if "int8" in row else ""
        print(
            f"{row['network']:<32}{row['runtime']:<18}{row['batch']:>6}{row['ms']:10.1f}"
            f"{row['images_per_s']:10.1f}{speedup}{cosine}"
        )
    print("load average (1, 5, 15 min) after: {:.2f} {:.2f} {:.2f}".format(*report_json["load_average_after"]))


if __name__ == "__main__":
    main()
