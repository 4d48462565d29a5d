"""Training-step benchmarks on the CPU (or any device): exact shortcuts against the plain way.

1. Stage 1: the text encoder on the 12 positions of the prompt template against all 77
   (identical losses, the causal mask makes them equal).
2. Stage 2 with SVLL's vision self-supervision: the image and its two views in one batched
   encoder pass against three passes (identical losses for BatchNorm-free encoders).

Prints measured times only. Example:
    python benchmarks/train_steps.py --arch svll-tiny-vit --arch ViT-B-16 --steps 3
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time

import torch

import svllreid
from svllreid.training.tasks import ImageStageTask, PromptStageTask, Stage2Losses


def timed(step, steps: int) -> tuple[float, torch.Tensor]:
    step()  # warm-up
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        loss = step()
        times.append(time.perf_counter() - start)
    return statistics.median(times), loss


def stage1_step(task: PromptStageTask, batch: dict, optimizer: torch.optim.Optimizer, full: bool):
    model = task.model

    def step() -> torch.Tensor:
        torch.manual_seed(0)
        pids = batch["pids"]
        if full:  # the 77-position computation
            prompts = model.prompt_learner(pids, full=True)
            eot = model.prompt_learner.eot_index(len(pids), prompts.device)
            text = model.text_encoder(prompts, eot, length=prompts.shape[1])
        else:
            text = model.encode_text(pids)
        image = batch["features"]
        from svllreid.losses import supcon_loss

        loss = supcon_loss(image, text, pids, pids) + supcon_loss(text, image, pids, pids)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        return loss.detach()

    return step


def stage2_step(task: ImageStageTask, batch: dict, optimizer: torch.optim.Optimizer):
    def step() -> torch.Tensor:
        torch.manual_seed(0)
        loss = sum(task(batch).values())
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        return loss.detach()

    return step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--arch", action="append", help="architectures (default: svll-tiny-vit and ViT-B-16)")
    parser.add_argument("--steps", type=int, default=3, help="timed steps per variant (median reported)")
    parser.add_argument("--stage1-batch", type=int, default=64)
    parser.add_argument("--stage2-batch", type=int, default=8, help="images per stage-2 step (each with 2 views)")
    parser.add_argument("--image-size", type=int, nargs=2, default=[256, 128])
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    archs = args.arch or ["svll-tiny-vit", "ViT-B-16"]
    print(f"device cpu ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads), fp32")
    size = tuple(args.image_size)
    rows = []
    for arch in archs:
        torch.manual_seed(0)
        model = svllreid.create_model(
            arch, num_classes=32, num_cameras=4, image_size=size, sie="camera", vis_ssl_head=True
        ).train()
        dim = model.text_encoder.output_dim
        # Stage 1
        params = model.prepare_stage(1)
        labels = torch.arange(args.stage1_batch) % 32
        task1 = PromptStageTask(model, torch.randn(args.stage1_batch, dim), labels)
        batch1 = {"features": task1.features, "pids": labels}
        optimizer = torch.optim.Adam(params.values(), lr=0.0)  # same weights for both variants
        t12, l12 = timed(stage1_step(task1, batch1, optimizer, full=False), args.steps)
        t77, l77 = timed(stage1_step(task1, batch1, optimizer, full=True), args.steps)
        rows.append((arch, f"stage 1, batch {args.stage1_batch}", "12 tokens", t12, "77 tokens", t77, l12, l77))
        # Stage 2
        params = model.prepare_stage(2)
        b = args.stage2_batch
        batch2 = {
            "image": torch.randn(b, 3, *size),
            "views": torch.randn(b, 2, 3, *size),
            "pid": torch.arange(b) // 2,
            "camid": torch.arange(b) % 4,
            "viewid": torch.full((b,), -1),
        }
        text = torch.randn(32, dim)
        optimizer = torch.optim.Adam(params.values(), lr=0.0)  # lr 0: both variants see the same weights
        one = ImageStageTask(model, text, Stage2Losses(vis_ssl_weight=0.8), single_pass=True)
        three = ImageStageTask(model, text, Stage2Losses(vis_ssl_weight=0.8), single_pass=False)
        t1, loss1 = timed(stage2_step(one, batch2, optimizer), args.steps)
        t3, loss3 = timed(stage2_step(three, batch2, optimizer), args.steps)
        rows.append(
            (arch, f"stage 2, batch {b} (+2 views), {size[0]}x{size[1]}", "1 pass", t1, "3 passes", t3, loss1, loss3)
        )
    header = ("model", "step", "fast", "s/step", "plain", "s/step", "speed-up", "loss diff")
    print("{:<15} {:<38} {:>10} {:>8} {:>10} {:>8} {:>9} {:>10}".format(*header))
    for arch, what, fast, t_fast, plain, t_plain, l_fast, l_plain in rows:
        diff = abs(float(l_fast) - float(l_plain))
        print(
            f"{arch:<15} {what:<38} {fast:>10} {t_fast:8.3f} {plain:>10} {t_plain:8.3f} {t_plain / t_fast:8.2f}x "
            f"{diff:10.2e}"
        )


if __name__ == "__main__":
    main()
