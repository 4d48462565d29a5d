"""Feature extraction with a model, and evaluation of a model on a parsed dataset."""

from __future__ import annotations

import contextlib
import statistics
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader

from svllreid.data.loaders import ImageCache, ReIDImageDataset, Transform, build_test_loader
from svllreid.data.types import ReIDDataset, Sample

Encoder = Callable[[torch.Tensor, torch.Tensor | None, torch.Tensor | None], torch.Tensor]


def autocast(device: torch.device, dtype: torch.dtype | None) -> contextlib.AbstractContextManager:
    """Mixed precision on accelerators; nothing (fp32) when ``dtype`` is None."""
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


@torch.no_grad()
def extract_features(
    encode: Encoder,
    loader: DataLoader,
    device: torch.device,
    amp_dtype: torch.dtype | None = None,
    flip: bool = False,
) -> torch.Tensor:
    """Run ``encode(images, camids, viewids)`` over a loader; returns float32 ``[N, D]`` on ``device``.

    Args:
        flip: add the features of the horizontally flipped images, then L2-normalise the sum.
    """
    chunks = []
    for batch in loader:
        images = batch["image"].to(device, non_blocking=True)
        camids, viewids = batch["camid"].to(device), batch["viewid"].to(device)
        with autocast(device, amp_dtype):
            feats = encode(images, camids, viewids).float()
            if flip:
                feats = feats + encode(images.flip(-1), camids, viewids).float()
                feats = torch.nn.functional.normalize(feats, dim=1)
        chunks.append(feats)
    return torch.cat(chunks) if chunks else torch.empty(0, device=device)


def unique_test_samples(dataset: ReIDDataset) -> tuple[list[Sample], dict[str, int]]:
    """Every image of every evaluation split once, and each path's row."""
    row: dict[str, int] = {}
    samples: list[Sample] = []
    for split in dataset.splits:
        for sample in split.query + split.gallery:
            if sample.path not in row:
                row[sample.path] = len(samples)
                samples.append(sample)
    return samples, row


def evaluate_model(
    model: torch.nn.Module,
    dataset: ReIDDataset,
    transform: Transform,
    image_size: tuple[int, int],
    device: torch.device,
    batch_size: int = 256,
    num_workers: int = 4,
    amp_dtype: torch.dtype | None = None,
    flip: bool = False,
    max_rank: int = 50,
    cache: ImageCache | None = None,
) -> dict[str, Any]:
    """Extract features of every test image once and evaluate every split of ``dataset``.

    Returns a JSON-friendly dict: per-split results and, over splits, the mean (and standard
    deviation where there are several: PKU's two directions, VehicleID's trials).
    """
    from svllreid.eval import evaluate

    samples, row = unique_test_samples(dataset)
    loader = build_test_loader(ReIDImageDataset(samples, transform, image_size, cache=cache), batch_size, num_workers)
    was_training = model.training
    model.eval()
    feats = extract_features(model.encode_image, loader, device, amp_dtype, flip)
    model.train(was_training)
    cameras = dataset.has_cameras
    results = []
    for split in dataset.splits:
        q_rows = np.array([row[s.path] for s in split.query], dtype=np.int64)
        g_rows = np.array([row[s.path] for s in split.gallery], dtype=np.int64)
        q_rows_t = torch.from_numpy(q_rows).to(device)
        g_rows_t = torch.from_numpy(g_rows).to(device)
        result = evaluate(
            feats[q_rows_t],
            feats[g_rows_t],
            np.array([s.pid for s in split.query]),
            np.array([s.pid for s in split.gallery]),
            np.array([s.camid for s in split.query]) if cameras else None,
            np.array([s.camid for s in split.gallery]) if cameras else None,
            query_keys=q_rows,
            gallery_keys=g_rows,
            max_rank=max_rank,
        )
        results.append({"split": split.name, **result.to_dict()})
    summary: dict[str, Any] = {"dataset": dataset.name, "protocol": results[0]["protocol"], "splits": results}
    for key in ("mAP", "mINP", "rank1", "rank5", "rank10"):
        values = [r[key] for r in results]
        summary[key] = statistics.fmean(values)
        if len(values) > 1:
            summary[f"{key}_std"] = statistics.stdev(values)
    return summary


def format_summary(summary: dict[str, Any]) -> str:
    """One line per metric: mean (± std over splits)."""
    parts = []
    labels = {"mAP": "mAP", "rank1": "Rank-1", "rank5": "Rank-5", "rank10": "Rank-10", "mINP": "mINP"}
    for key, label in labels.items():
        text = f"{label} {100 * summary[key]:.2f}"
        if f"{key}_std" in summary:
            text += f" ± {100 * summary[f'{key}_std']:.2f}"
        parts.append(text)
    splits = len(summary["splits"])
    where = f" (mean of {splits} splits)" if splits > 1 else ""
    return f"{summary['dataset']} [{summary['protocol']} protocol]{where}: " + ", ".join(parts)
