"""Feature extraction with a model, and evaluation of a model on a parsed dataset."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from svllreid.data.loaders import (
    ImageCache,
    ImageReadError,
    ReIDImageDataset,
    Transform,
    build_test_loader,
    read_resized,
)
from svllreid.data.types import EvalSplit, ReIDDataset, Sample
from svllreid.eval.ranking import RankingResult, evaluate
from svllreid.precision import autocast

#: The summary metrics of an evaluation and their display names.
METRICS = {"mAP": "mAP", "mINP": "mINP", "rank1": "Rank-1", "rank5": "Rank-5", "rank10": "Rank-10"}

Encoder = Callable[[torch.Tensor, torch.Tensor | None, torch.Tensor | None], torch.Tensor]


def _encode(
    encode: Encoder,
    images: torch.Tensor,
    camids: torch.Tensor | None,
    viewids: torch.Tensor | None,
    amp_dtype: torch.dtype | None,
    flip: bool,
) -> torch.Tensor:
    """float32 features of one batch; with ``flip``, the sum with the flipped images' features, L2-normalised."""
    with autocast(images.device, amp_dtype):
        feats = encode(images, camids, viewids).float()
        if flip:
            feats = torch.nn.functional.normalize(feats + encode(images.flip(-1), camids, viewids).float(), dim=1)
    return feats


@torch.no_grad()
def extract_features(
    encode: Encoder,
    loader: DataLoader,
    device: torch.device,
    amp_dtype: torch.dtype | None = None,
    flip: bool = False,
    progress: bool = False,
) -> torch.Tensor:
    """Run ``encode(images, camids, viewids)`` over a loader; returns float32 ``[N, D]`` on ``device``.

    Args:
        flip: add the features of the horizontally flipped images, then L2-normalise the sum.
        progress: show a progress bar (images).
    """
    chunks = []
    with tqdm(total=len(loader.dataset), desc="features", unit="img", disable=not progress, leave=False) as bar:
        for batch in loader:
            images = batch["image"].to(device, non_blocking=True)
            camids, viewids = batch["camid"].to(device), batch["viewid"].to(device)
            chunks.append(_encode(encode, images, camids, viewids, amp_dtype, flip))
            bar.update(len(images))
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


def image_encoder(model: torch.nn.Module, side_info: bool = True) -> Encoder:
    """``model.encode_image``; without ``side_info`` every camera and view is passed as unknown (-1),
    so an SIE model adds no embedding (images of cameras it never saw, e.g. another dataset)."""
    if side_info:
        return model.encode_image

    def encode(images: torch.Tensor, camids: torch.Tensor | None, viewids: torch.Tensor | None) -> torch.Tensor:
        unknown = [None if ids is None else torch.full_like(ids, -1) for ids in (camids, viewids)]
        return model.encode_image(images, *unknown)

    return encode


def projection_encoder(model: torch.nn.Module) -> Encoder:
    """f_proj (CLIP's projected image space, where the text features live) without side information."""

    def encode(images: torch.Tensor, camids: torch.Tensor | None, viewids: torch.Tensor | None) -> torch.Tensor:
        unknown = torch.full((images.shape[0],), -1, dtype=torch.long, device=images.device)
        return model.image_features(images, unknown, unknown).f_proj

    return encode


@dataclass
class ModelEvaluation:
    """Results of :func:`evaluate_model`: the JSON summary, each split's full result, and the features.

    Attributes:
        summary: JSON-friendly: per-split metrics and their mean (± std over several splits).
        splits: each evaluation split with its :class:`RankingResult` (ranked lists when asked).
        samples: every test image once; ``feats`` rows follow it.
        feats: float32 ``[N, D]`` test features on the evaluation device.
    """

    summary: dict[str, Any]
    splits: list[tuple[EvalSplit, RankingResult]]
    samples: list[Sample]
    feats: torch.Tensor = field(repr=False)


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
    rerank: bool = False,
    rerank_k1: int = 20,
    rerank_k2: int = 6,
    rerank_lambda: float = 0.3,
    topk: int = 0,
    side_info: bool = True,
    progress: bool = False,
    interpolation: str = "bilinear",
) -> ModelEvaluation:
    """Extract features of every test image once and evaluate every split of ``dataset``.

    Args:
        rerank, rerank_k1, rerank_k2, rerank_lambda: k-reciprocal re-ranking and its parameters.
        topk: keep each query's first ``topk`` ranked gallery items (for pictures of ranked lists).
        side_info: feed cameras and views to an SIE model (False: as unknown, see :func:`image_encoder`).
        interpolation: the test pipeline's resize filter (a ``cache`` must hold images resized so).
    """
    samples, row = unique_test_samples(dataset)
    images = ReIDImageDataset(samples, transform, image_size, cache=cache, interpolation=interpolation)
    loader = build_test_loader(images, batch_size, num_workers)
    was_training = model.training
    model.eval()
    feats = extract_features(image_encoder(model, side_info), loader, device, amp_dtype, flip, progress)
    model.train(was_training)
    cameras = dataset.has_cameras
    splits = []
    for split in dataset.splits:
        q_rows = np.array([row[s.path] for s in split.query], dtype=np.int64)
        g_rows = np.array([row[s.path] for s in split.gallery], dtype=np.int64)
        result = evaluate(
            feats[torch.from_numpy(q_rows).to(device)],
            feats[torch.from_numpy(g_rows).to(device)],
            np.array([s.pid for s in split.query]),
            np.array([s.pid for s in split.gallery]),
            np.array([s.camid for s in split.query]) if cameras else None,
            np.array([s.camid for s in split.gallery]) if cameras else None,
            query_keys=q_rows,
            gallery_keys=g_rows,
            max_rank=max_rank,
            rerank=rerank,
            k1=rerank_k1,
            k2=rerank_k2,
            lambda_value=rerank_lambda,
            topk=topk,
        )
        splits.append((split, result))
    return ModelEvaluation(summarize(dataset.name, splits), splits, samples, feats)


def summarize(dataset_name: str, splits: list[tuple[EvalSplit, RankingResult]]) -> dict[str, Any]:
    """Per-split metrics and, over splits, the mean (and the standard deviation where there are several:
    PKU's two directions, VehicleID's trials)."""
    results = [{"split": split.name, **result.to_dict()} for split, result in splits]
    summary: dict[str, Any] = {
        "dataset": dataset_name,
        "protocol": results[0]["protocol"],
        "reranked": results[0]["reranked"],
        "splits": results,
    }
    for key in METRICS:
        values = [r[key] for r in results]
        if any(v is None for v in values):  # rank-k beyond max_rank
            summary[key] = None
            continue
        summary[key] = statistics.fmean(values)
        if len(values) > 1:
            summary[f"{key}_std"] = statistics.stdev(values)
    return summary


def format_summary(summary: dict[str, Any]) -> str:
    """One line per metric: mean (± std over splits)."""
    parts = []
    for key in ("mAP", "rank1", "rank5", "rank10", "mINP"):
        if summary.get(key) is None:
            continue
        text = f"{METRICS[key]} {100 * summary[key]:.2f}"
        if f"{key}_std" in summary:
            text += f" ± {100 * summary[f'{key}_std']:.2f}"
        parts.append(text)
    splits = len(summary["splits"])
    where = f" (mean of {splits} splits)" if splits > 1 else ""
    rerank = ", re-ranked" if summary.get("reranked") else ""
    return f"{summary['dataset']} [{summary['protocol']} protocol{rerank}]{where}: " + ", ".join(parts)


class _ImageFiles(Dataset):
    """Image files as ``{"image", "ok", "camid", "viewid"}``; an unreadable file gives ``ok=False``
    and a blank image, so that one bad file does not stop the others."""

    def __init__(self, paths: Sequence[str], transform: Transform, size: Sequence[int], interpolation: str):
        self.paths, self.transform, self.size = list(paths), transform, (int(size[0]), int(size[1]))
        self.interpolation = interpolation

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> dict[str, Any]:
        try:
            image, ok = self.transform(read_resized(self.paths[index], self.size, self.interpolation)), True
        except ImageReadError:
            image, ok = torch.zeros(3, *self.size), False
        return {"image": image, "ok": ok, "camid": -1, "viewid": -1}


@dataclass
class FileFeatures:
    """Features of image files: ``feats`` float32 ``[N, D]`` (CPU) of the readable ``paths``; the
    files that could not be read in ``unreadable``; throughput in ``images_per_s``."""

    feats: torch.Tensor
    paths: list[str]
    unreadable: list[str]
    seconds: float

    @property
    def images_per_s(self) -> float:
        return (len(self.paths) + len(self.unreadable)) / max(self.seconds, 1e-9)


@torch.no_grad()
def extract_file_features(
    model: torch.nn.Module,
    paths: Sequence[str],
    transform: Transform,
    image_size: Sequence[int],
    device: torch.device,
    batch_size: int = 64,
    num_workers: int = 0,
    amp_dtype: torch.dtype | None = None,
    flip: bool = False,
    progress: bool = True,
    interpolation: str = "bilinear",
) -> FileFeatures:
    """Features of a user's image files (cameras unknown: no side information), with a progress bar
    showing images/s. Unreadable files are collected, not raised: the caller decides.
    ``transform`` and ``interpolation`` are the test pipeline's."""
    files = _ImageFiles(paths, transform, image_size, interpolation)
    loader = DataLoader(files, batch_size=batch_size, shuffle=False, num_workers=num_workers)
    model.eval()
    chunks, ok_flags = [], []
    start = time.perf_counter()
    with tqdm(total=len(paths), desc="features", unit="img", disable=not progress, leave=False) as bar:
        for batch in loader:
            ok = batch["ok"]
            if bool(ok.any()):
                images = batch["image"][ok].to(device)
                unknown = batch["camid"][ok].to(device)  # -1: no side information
                chunks.append(_encode(model.encode_image, images, unknown, unknown, amp_dtype, flip).cpu())
            ok_flags.extend(bool(v) for v in ok)
            bar.update(len(ok))
            bar.set_postfix(img_s=f"{bar.n / max(time.perf_counter() - start, 1e-9):.1f}")
    seconds = time.perf_counter() - start
    readable = [p for p, good in zip(paths, ok_flags, strict=True) if good]
    unreadable = [p for p, good in zip(paths, ok_flags, strict=True) if not good]
    dim = chunks[0].shape[1] if chunks else 0
    feats = torch.cat(chunks) if chunks else torch.empty(0, dim)
    return FileFeatures(feats, readable, unreadable, seconds)
