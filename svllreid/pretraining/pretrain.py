"""Language-image pretraining (``svllreid pretrain``): CLIP's contrastive loss on captioned images.

A third task on the one fit loop (precision, DDP, checkpoints and exact resume, progress bar,
metrics.jsonl, TensorBoard). It trains every weight of an open_clip CLIP, from random weights or
from given ones, with open_clip's ``ClipLoss`` and a learnable logit scale, and evaluates
text-to-image retrieval on a held-out split before and after. A run directory holds::

    config.yaml, metrics.jsonl, tensorboard/
    checkpoints/last.safetensors     every epoch: weights, optimiser and RNG states (--resume)
    clip.safetensors                 the final weights alone: open_clip.create_model(ARCH, pretrained=...)
                                     and svllreid.create_model(ARCH, ..., pretrained=...) both load it
    eval.json, losses.png, report.html

This is the factory level for pretraining: it reads the config and passes plain values down.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import open_clip
import torch
from safetensors.torch import load_file
from torch import nn
from torch.utils.data import DataLoader, Dataset

from svllreid.config import Config, config_to_dict
from svllreid.data.datasets import load_caption_dataset
from svllreid.data.factory import build_transforms
from svllreid.data.loaders import ImageCache, Transform, read_resized, set_loader_epoch
from svllreid.data.samplers import RandomBatchSampler
from svllreid.data.types import Caption, CaptionDataset
from svllreid.distributed import DistInfo, barrier, init_distributed, resolve_device, shutdown
from svllreid.evaluation.text_eval import evaluate_text_retrieval
from svllreid.fileio import atomic_write_safetensors, atomic_write_text
from svllreid.inference.checkpoint import (
    PRETRAIN_TASK,
    load_model_state,
    load_optimizer_state,
    restore_rng,
    write_checkpoint,
)
from svllreid.inference.text_encoding import ClipSides
from svllreid.metrics.text_retrieval import format_retrieval
from svllreid.models.pretrained import build_clip, native_image_size
from svllreid.training.optim import build_adamw, cosine_with_warmup
from svllreid.training.run_setup import build_trainer, prepare_run_dir, seed_everything, training_device
from svllreid.training.tasks import ContrastiveTask
from svllreid.training.trainer import MetricsLog, StagePlan

__all__ = [
    "CLIP_WEIGHTS_FORMAT",
    "STAGE_NAME",
    "CaptionPairs",
    "PretrainResult",
    "PretrainRun",
    "check_caption_dataset",
    "pretrain",
    "write_clip_weights",
    "write_pretrain_report",
]

log = logging.getLogger(__name__)

#: safetensors metadata of :func:`write_clip_weights` files.
CLIP_WEIGHTS_FORMAT = "svllreid-clip-weights"
STAGE_NAME = PRETRAIN_TASK


class CaptionPairs(Dataset):
    """(image, caption tokens) pairs as ``{"image", "tokens"}``.

    Args:
        captions: the pairs.
        tokens: ``[N, L]`` token ids of their captions (tokenised once).
        transform: applied to the resized uint8 image.
        size: (height, width) every image is resized to first.
        cache: decoded images of these paths, or None to decode each time.
    """

    def __init__(
        self,
        captions: Sequence[Caption],
        tokens: torch.Tensor,
        transform: Transform,
        *,
        size: Sequence[int],
        cache: ImageCache | None = None,
        interpolation: str = "bicubic",
    ):
        if len(captions) != tokens.shape[0]:
            raise ValueError(f"{len(captions)} captions but {tokens.shape[0]} token rows")
        self.paths = [c.path for c in captions]
        self.tokens = tokens
        self.transform = transform
        self.size = (int(size[0]), int(size[1]))
        self.cache = cache
        self.interpolation = interpolation

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        path = self.paths[index]
        image = self.cache.get(path) if self.cache is not None else read_resized(path, self.size, self.interpolation)
        return {"image": self.transform(image), "tokens": self.tokens[index]}


def write_clip_weights(
    path: str | Path,
    clip: nn.Module,
    *,
    arch: str,
    facts: dict[str, Any],
    preprocess: dict[str, Any],
    fp16: bool = False,
) -> Path:
    """Atomically write ``clip``'s state dict alone (safetensors), loadable by open_clip and svllreid.

    The file's metadata records the architecture, ``facts`` (data, steps, ...) and ``preprocess``
    (``pixel_mean``, ``pixel_std``, test ``interpolation``: how images were fed in training).
    """
    dtype = torch.float16 if fp16 else None
    tensors = {
        k: (v.to(dtype) if dtype is not None and v.is_floating_point() else v).detach().cpu().contiguous().clone()
        for k, v in clip.state_dict().items()
    }
    meta = {
        "format": CLIP_WEIGHTS_FORMAT,
        "arch": arch,
        "facts": json.dumps(facts),
        "preprocess": json.dumps(preprocess),
    }
    return atomic_write_safetensors(path, tensors, meta)


@dataclass
class PretrainResult:
    run_dir: Path
    weights: Path | None = None
    before: dict[str, Any] | None = None
    after: dict[str, Any] | None = None
    report: Path | None = None
    steps: int = 0
    seconds: float = 0.0
    checkpoints: dict[str, Path] = field(default_factory=dict)


def check_caption_dataset(dataset: CaptionDataset, eval_split: str) -> None:
    if not dataset.split("train"):
        raise ValueError(
            f"{dataset.name} at {dataset.root} has no train split to pretrain on (its splits: "
            f"{', '.join(dataset.splits) or 'none'})"
        )
    if eval_split and not dataset.split(eval_split):
        raise ValueError(
            f"{dataset.name} has no {eval_split} split to evaluate on; set pretrain.eval_split to one of "
            f"{', '.join(dataset.splits)}, or to '' for none"
        )


class PretrainRun:
    """State of one pretraining run (built by :func:`pretrain`)."""

    def __init__(self, cfg: Config, run_dir: Path, dist: DistInfo, progress: bool = True):
        self.cfg, self.run_dir, self.dist = cfg, run_dir, dist
        self.device, self.amp_dtype = training_device(cfg, dist)
        d = cfg.data
        self.dataset = load_caption_dataset(d.dataset, d.root, **d.options)
        check_caption_dataset(self.dataset, cfg.pretrain.eval_split)
        self.clip, self.load_report = build_clip(cfg.model.arch, cfg.model.pretrained, cfg.model.force_quick_gelu)
        self.size = native_image_size(self.clip)
        if tuple(d.image_size) != self.size:
            raise ValueError(
                f"{cfg.model.arch} is built for {self.size[0]}×{self.size[1]} images but data.image_size is "
                f"{list(d.image_size)}; pretrain at the architecture's own size (data.image_size=[{self.size[0]}, "
                f"{self.size[1]}]) so the weights load anywhere at their native geometry"
            )
        self.clip.to(self.device)
        self.tokenizer = open_clip.get_tokenizer(cfg.model.arch)
        self.transforms = build_transforms(d)
        self.metrics = MetricsLog(run_dir if dist.is_main else None)
        self.trainer = build_trainer(
            cfg, device=self.device, amp_dtype=self.amp_dtype, dist=dist, metrics=self.metrics, progress=progress
        )
        self.global_batch = cfg.run.batch_semantics == "global"

    def evaluate(self) -> dict[str, Any] | None:
        split = self.cfg.pretrain.eval_split
        if not split:
            return None
        self.clip.eval()
        return evaluate_text_retrieval(
            ClipSides(self.clip),
            self.dataset.split(split),
            tokenizer=self.tokenizer,
            transform=self.transforms.test,
            image_size=self.size,
            device=self.device,
            dataset=self.dataset.name,
            split=split,
            batch_size=self.cfg.eval.batch_size,
            num_workers=self.cfg.data.num_workers,
            amp_dtype=self.amp_dtype,
            interpolation=self.transforms.test_interpolation,
        ).summary

    def meta(self, epoch: int) -> dict[str, Any]:
        return {
            "task": STAGE_NAME,
            "arch": self.cfg.model.arch,
            "config": config_to_dict(self.cfg),
            "dataset": {"name": self.dataset.name, "root": self.dataset.root},
            "stage": 0,
            "epoch": epoch,
            "global_step": self.trainer.global_step,
        }

    def train_loader(self) -> DataLoader:
        c, d = self.cfg.pretrain, self.cfg.data
        pairs = self.dataset.split("train")
        cache = None
        if d.cache_images:
            cache = ImageCache(sorted({p.path for p in pairs}), self.size, self.transforms.train_interpolation)
        tokens = self.tokenizer([p.caption for p in pairs])
        data = CaptionPairs(
            pairs,
            tokens,
            self.transforms.train,
            size=self.size,
            cache=cache,
            interpolation=self.transforms.train_interpolation,
        )
        sampler = RandomBatchSampler(
            len(data),
            c.batch_size,
            seed=self.cfg.run.seed,
            rank=self.dist.rank,
            world_size=self.dist.world_size,
            global_batch=self.global_batch,
        )
        workers: dict[str, Any] = (
            {"num_workers": d.num_workers, "prefetch_factor": 4} if d.num_workers > 0 else {"num_workers": 0}
        )
        return DataLoader(
            data,
            batch_sampler=sampler,
            generator=torch.Generator().manual_seed(self.cfg.run.seed),
            pin_memory=self.device.type == "cuda",
            **workers,
        )

    def fit(self, start_epoch: int, resume_from: Any = None) -> None:
        c = self.cfg.pretrain
        task = ContrastiveTask(self.clip, self.dist.rank, self.dist.world_size, self.global_batch)
        optimizer = build_adamw(dict(self.clip.named_parameters()), lr=c.lr, weight_decay=c.weight_decay)
        if resume_from is not None:
            load_optimizer_state(optimizer, resume_from)
            restore_rng(resume_from)
        schedule = cosine_with_warmup(
            c.epochs, warmup_epochs=c.warmup_epochs, warmup_lr=c.warmup_lr, min_lr=c.min_lr, base_lr=c.lr
        )
        plan = StagePlan(STAGE_NAME, c.epochs, schedule, c.grad_clip)
        loader = self.train_loader()
        seed = self.cfg.run.seed

        def batches(epoch: int) -> DataLoader:
            set_loader_epoch(loader, epoch, seed, self.dist.rank)
            return loader

        def save(epoch: int) -> None:
            if self.dist.is_main:
                path = self.run_dir / "checkpoints" / "last.safetensors"
                write_checkpoint(path, self.clip, self.meta(epoch), optimizer=optimizer, with_rng=True)

        self.trainer.fit(task, optimizer, plan, batches, start_epoch=start_epoch, on_epoch_end=save)


def pretrain(cfg: Config, resume: str | None = None, progress: bool = True) -> PretrainResult:
    """Run language-image pretraining as configured (``data`` = a caption dataset, ``pretrain``).

    Args:
        resume: a pretraining run directory (or its checkpoint) to continue exactly where it stopped.
    """
    started = time.perf_counter()
    dist = init_distributed(resolve_device(cfg.run.device, DistInfo()).type)
    try:
        resume_ckpt, run_dir = prepare_run_dir(cfg, dist, resume, STAGE_NAME)
        seed_everything(cfg.run.seed + dist.rank)
        run = PretrainRun(cfg, run_dir, dist, progress)
        result = PretrainResult(run_dir)
        start = 1
        previous: dict[str, Any] = {}
        if resume_ckpt is not None:
            if resume_ckpt.meta.get("arch") != cfg.model.arch:
                raise ValueError(
                    f"{resume_ckpt.path} holds {resume_ckpt.meta.get('arch')} weights, this config builds "
                    f"{cfg.model.arch}"
                )
            load_model_state(run.clip, resume_ckpt)
            run.trainer.global_step = int(resume_ckpt.meta.get("global_step", 0))
            start = int(resume_ckpt.meta["epoch"]) + 1
            eval_file = run_dir / "eval.json"
            if eval_file.is_file():
                previous = json.loads(eval_file.read_text())
            log.info("resuming %s after epoch %d", run_dir, start - 1)
        if dist.is_main:
            result.before = previous.get("before") if resume_ckpt is not None else run.evaluate()
            if result.before is not None:
                atomic_write_text(run_dir / "eval.json", json.dumps({"before": result.before}, indent=2))
                log.info("text-to-image before pretraining:\n%s", format_retrieval({"before": result.before}))
        barrier(dist)
        if start <= cfg.pretrain.epochs:
            run.fit(start, resume_ckpt)
        elif resume_ckpt is not None:
            restore_rng(resume_ckpt)
        result.steps = run.trainer.global_step
        if dist.is_main:
            result.seconds = time.perf_counter() - started
            facts = {
                "dataset": f"{run.dataset.name} ({run.dataset.root})",
                "train pairs": len(run.dataset.split("train")),
                "epochs": cfg.pretrain.epochs,
                "steps": result.steps,
                "batch": cfg.pretrain.batch_size,
                "initialised from": run.load_report.source,
                "precision": cfg.run.precision,
                "device": str(run.device),
            }
            preprocess = {
                "pixel_mean": list(cfg.data.pixel_mean),
                "pixel_std": list(cfg.data.pixel_std),
                "interpolation": cfg.data.test_interpolation,
            }
            result.weights = write_clip_weights(
                run_dir / "clip.safetensors",
                run.clip,
                arch=cfg.model.arch,
                facts=facts,
                preprocess=preprocess,
                fp16=cfg.pretrain.save_fp16,
            )
            # Evaluate the weights as written (fp16-rounded with pretrain.save_fp16), so the figures describe the file.
            written = load_file(str(result.weights))
            run.clip.load_state_dict({k: v.to(run.clip.state_dict()[k].dtype) for k, v in written.items()})
            result.after = run.evaluate()
            payload = {k: v for k, v in (("before", result.before), ("after", result.after)) if v is not None}
            atomic_write_text(run_dir / "eval.json", json.dumps(payload, indent=2))
            if payload:
                log.info("text-to-image:\n%s", format_retrieval(payload))
            run.metrics.close()
            if cfg.run.report:
                result.report = write_pretrain_report(run, result)
        run.metrics.close()
        result.checkpoints = {p.stem: p for p in (run_dir / "checkpoints").glob("*.safetensors")}
        barrier(dist)
        return result
    finally:
        shutdown(dist)


def write_pretrain_report(run: PretrainRun, result: PretrainResult) -> Path | None:
    """``report.html``: the run's facts, text-to-image retrieval before and after, the loss curve.
    A failure is logged, not raised: the weights and eval.json are already written."""
    from svllreid.report.html import Section, write_report
    from svllreid.report.plots import plot_losses, read_metrics

    try:
        cfg = run.cfg
        facts = {
            "dataset": f"{run.dataset.name} ({run.dataset.root}): {len(run.dataset.split('train'))} training pairs",
            "network": f"{cfg.model.arch} at {run.size[0]}×{run.size[1]}, initialised from {run.load_report.source}",
            "training": f"{cfg.pretrain.epochs} epochs, {result.steps} steps of {cfg.pretrain.batch_size} pairs, "
            f"lr {cfg.pretrain.lr:g}, weight decay {cfg.pretrain.weight_decay:g}",
            "device": f"{run.device}, precision {cfg.run.precision}",
            "time": f"{result.seconds:.0f} s",
            "weights": str(result.weights),
        }
        sections = [Section("Run", facts=facts)]
        rows = []
        for name, summary in (("before", result.before), ("after", result.after)):
            if summary is not None:
                rows.append(
                    {
                        "": name,
                        **{k: f"{100 * summary[k]:.2f}" for k in ("R@1", "R@5", "R@10", "mAP", "mINP")},
                        "captions": summary["captions"],
                        "images": summary["images"],
                    }
                )
        if rows:
            split = cfg.pretrain.eval_split
            sections.append(
                Section(
                    "Text-to-image retrieval",
                    text=f"Each {split} caption ranks all {split} images by cosine similarity; a match is an image of "
                    "the caption's identity. In %.",
                    table=rows,
                )
            )
        records = read_metrics(run.run_dir / "metrics.jsonl") if (run.run_dir / "metrics.jsonl").is_file() else []
        if records:
            png = plot_losses(records, run.run_dir / "losses.png")
            sections.append(Section("Training", text="Contrastive loss per logged step.", images=[png]))
        return write_report(run.run_dir / "report.html", f"svllreid pretraining · {run.run_dir.name}", sections)
    except Exception:
        log.exception("could not write the report of %s (weights and eval.json are complete)", run.run_dir)
        return None
