"""GPU check: stage-1 and stage-2 training steps and feature extraction of ViT-B/16 at 256×128.

On a CUDA device it times, in bf16 autocast, for patch stride 16 and 12:
  - a stage-1 step (prompt learning, batch 256, with language self-supervision),
  - a stage-2 step (P×K 64 images plus two views each, SIE, vision self-supervision),
  - feature extraction (batch 256),
and prints images/s and MFU (achieved FLOPs / the device's peak; FLOPs counted by torch's
FLOP counter on the same step). ``--small`` runs the same code with a tiny model on the CPU (fp32)
so the script is tested without a GPU. Prints measured numbers only.

    python benchmarks/gpu_check.py                 # on a GPU machine
    python benchmarks/gpu_check.py --small         # anywhere, seconds
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from collections.abc import Callable

import torch

import svllreid
from svllreid.models.info import count_flops
from svllreid.training.tasks import ImageStageTask, PromptStageTask, Stage2Losses

#: Dense bf16 tensor-core peaks (TFLOP/s) of known devices, for MFU.
PEAK_TFLOPS = {"H100": 989.0, "H200": 989.0, "A100": 312.0, "L40S": 362.0, "A10": 125.0, "RTX 4090": 165.0}


def device_peak(device: torch.device, override: float | None) -> float | None:
    if override:
        return override * 1e12
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    for key, tflops in PEAK_TFLOPS.items():
        if key in name:
            return tflops * 1e12
    return None


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure(step: Callable[[], object], device: torch.device, warmup: int, iters: int) -> float:
    """Median seconds per call (after warm-up), synchronised on the device."""
    for _ in range(warmup):
        step()
    sync(device)
    times = []
    for _ in range(iters):
        start = time.perf_counter()
        step()
        sync(device)
        times.append(time.perf_counter() - start)
    return sorted(times)[len(times) // 2]


def run(args: argparse.Namespace) -> list[dict]:
    small = args.small
    device = torch.device("cpu" if small or not torch.cuda.is_available() else "cuda")
    amp = None if device.type == "cpu" else torch.bfloat16
    arch = "svll-tiny-vit" if small else "ViT-B-16"
    size = (64, 32) if small else (256, 128)
    s1_batch, p, k, extract_batch = (16, 4, 2, 16) if small else (256, 16, 4, 256)
    hidden = 64 if small else 4096
    peak = device_peak(device, args.peak_tflops)
    rows = []
    for stride in (16, 12):
        torch.manual_seed(0)
        model = svllreid.create_model(
            arch,
            num_classes=751 if not small else 32,
            num_cameras=6,
            image_size=size,
            stride=stride,
            sie="camera",
            lang_ssl_head=True,
            vis_ssl_head=True,
            ssl_hidden_dim=hidden,
        ).to(device)
        classes = model.num_classes

        def autocast():
            return torch.autocast(device.type, dtype=amp) if amp is not None else torch.autocast("cpu", enabled=False)

        # Stage 1
        params = model.prepare_stage(1)
        labels = torch.arange(s1_batch, device=device) % classes
        task1 = PromptStageTask(
            model, torch.randn(s1_batch, model.text_encoder.output_dim, device=device), labels, lang_ssl_weight=0.8
        )
        opt1 = torch.optim.Adam(params.values(), lr=1e-6)
        batch1 = {"features": task1.features, "pids": labels}

        def step1(task1=task1, opt1=opt1, batch1=batch1) -> None:
            with autocast():
                loss = sum(task1(batch1).values())
            opt1.zero_grad(set_to_none=True)
            loss.backward()
            opt1.step()

        # Stage 2
        params = model.prepare_stage(2)
        b = p * k
        text = torch.randn(classes, model.text_encoder.output_dim, device=device)
        task2 = ImageStageTask(model, text, Stage2Losses(vis_ssl_weight=0.8), single_pass=True)
        opt2 = torch.optim.Adam(params.values(), lr=1e-6)
        batch2 = {
            "image": torch.randn(b, 3, *size, device=device),
            "views": torch.randn(b, 2, 3, *size, device=device),
            "pid": torch.arange(b, device=device) // k,
            "camid": torch.arange(b, device=device) % 6,
            "viewid": torch.full((b,), -1, device=device),
        }

        def step2(task2=task2, opt2=opt2, batch2=batch2) -> None:
            with autocast():
                loss = sum(task2(batch2).values())
            opt2.zero_grad(set_to_none=True)
            loss.backward()
            opt2.step()

        images = torch.randn(extract_batch, 3, *size, device=device)
        camids = torch.zeros(extract_batch, dtype=torch.long, device=device)

        @torch.no_grad()
        def extract(model=model, images=images, camids=camids) -> None:
            model.eval()
            with autocast():
                model.encode_image(images, camids)
            model.train()

        for name, step, count, stage in (
            ("stage 1 step", step1, s1_batch, 1),
            ("stage 2 step", step2, 3 * b, 2),
            ("extraction", extract, extract_batch, 2),
        ):
            model.prepare_stage(stage)
            flops = count_flops(step, inference=name == "extraction")
            seconds = measure(step, device, args.warmup, args.iters)
            rows.append(
                {
                    "model": arch,
                    "stride": stride,
                    "what": name,
                    "batch": count,
                    "precision": "bf16" if amp is not None else "fp32",
                    "seconds": seconds,
                    "images_per_s": count / seconds,
                    "tflops_per_s": flops / seconds / 1e12,
                    "mfu": flops / seconds / peak if peak else None,
                }
            )
        del model, task1, task2, opt1, opt2
        if device.type == "cuda":
            torch.cuda.empty_cache()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--small", action="store_true", help="tiny model on the CPU (a test of the script)")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--iters", type=int, default=10)
    parser.add_argument("--peak-tflops", type=float, default=None, help="device peak for MFU if not known")
    parser.add_argument("--json", action="store_true", help="print JSON rows")
    args = parser.parse_args()
    rows = run(args)
    if torch.cuda.is_available() and not args.small:
        device_name = torch.cuda.get_device_name()
    else:
        device_name = f"cpu ({platform.machine()}, {torch.get_num_threads()} threads)"
    if args.json:
        print(json.dumps({"device": device_name, "rows": rows}, indent=2))
        return
    print(f"device: {device_name}; torch {torch.__version__}")
    header = ("model", "stride", "what", "batch", "prec", "ms", "img/s", "TFLOP/s", "MFU")
    print("{:<14} {:>6} {:<13} {:>6} {:>5} {:>9} {:>9} {:>8} {:>6}".format(*header))
    for r in rows:
        mfu = f"{100 * r['mfu']:.1f}%" if r["mfu"] is not None else "n/a"
        print(
            f"{r['model']:<14} {r['stride']:>6} {r['what']:<13} {r['batch']:>6} {r['precision']:>5} "
            f"{1000 * r['seconds']:9.1f} {r['images_per_s']:9.1f} {r['tflops_per_s']:8.3f} {mfu:>6}"
        )


if __name__ == "__main__":
    main()
