"""The evaluation of a network on a parsed dataset: each test image's features once, then every
evaluation split ranked by :mod:`svllreid.metrics` (which only ever sees feature tensors and labels)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from svllreid.data.loaders import ReIDImageDataset, build_test_loader
from svllreid.data.types import EvalSplit, ReIDDataset, Sample
from svllreid.distributed import DistInfo, gather_rows, run_everywhere, share
from svllreid.inference.features import TestImages, extract_features, image_encoder
from svllreid.metrics.ranking import RankingResult, evaluate
from svllreid.metrics.rerank import KReciprocal
from svllreid.metrics.spread import feature_spread
from svllreid.metrics.summary import summarize
from svllreid.metrics.verification import PairScores, VerificationResult, pair_scores

__all__ = [
    "RANKED_LIST_LENGTH",
    "EvalOptions",
    "ModelEvaluation",
    "evaluate_features",
    "evaluate_model",
    "sample_features",
    "split_pair_scores",
    "unique_test_samples",
]


#: Ranked gallery items kept per query for the report's pictures.
RANKED_LIST_LENGTH = 10


@dataclass(frozen=True)
class EvalOptions:
    """How :func:`evaluate_model` evaluates; :func:`eval_options` builds it from an ``eval`` config.

    Attributes:
        batch_size, num_workers: of the feature loader.
        amp_dtype: autocast dtype of feature extraction (None: full precision).
        flip: add the features of the horizontally flipped images.
        max_rank: length of the CMC.
        rerank: a re-ranker (:class:`svllreid.metrics.rerank.KReciprocal`) or None.
        topk: keep each query's first ``topk`` ranked gallery items (for pictures of ranked lists).
        side_info: feed cameras and views to an SIE model (False: as unknown, see :func:`image_encoder`).
        verification: also the verification metrics of the splits' pairs (ROC AUC, EER, TPR at FPR;
            :mod:`svllreid.metrics.verification`).
    """

    batch_size: int = 256
    num_workers: int = 0
    amp_dtype: torch.dtype | None = None
    flip: bool = False
    max_rank: int = 50
    rerank: KReciprocal | None = None
    topk: int = 0
    side_info: bool = True
    verification: bool = True


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


@dataclass
class ModelEvaluation:
    """Results of :func:`evaluate_model`: the JSON summary, each split's full result, and the features.

    Attributes:
        summary: JSON-friendly: per-split metrics and their mean (± std over several splits).
        splits: each evaluation split with its :class:`RankingResult` (ranked lists when asked).
        samples: every test image once; ``feats`` rows follow it.
        feats: float32 ``[N, D]`` test features on the evaluation device.
        identity_names: the dataset's own names of test pids where they differ from the numbers
            (:attr:`svllreid.data.types.ReIDDataset.test_names`), for the pictures.
        verification: each split's verification metrics, in the order of ``splits`` (None where they
            were not asked for, or a split lacks same- or different-identity pairs).
    """

    summary: dict[str, Any]
    splits: list[tuple[EvalSplit, RankingResult]]
    samples: list[Sample]
    feats: torch.Tensor = field(repr=False)
    identity_names: dict[int, str] = field(default_factory=dict)
    verification: list[VerificationResult | None] = field(default_factory=list)

    def identity_name(self, pid: int) -> str:
        return self.identity_names.get(pid, str(pid))


def evaluate_model(
    model: torch.nn.Module,
    dataset: ReIDDataset,
    *,
    images: TestImages,
    device: torch.device,
    options: EvalOptions,
    progress: bool = False,
) -> ModelEvaluation:
    """Extract features of every test image once and evaluate every split of ``dataset``."""
    samples, _ = unique_test_samples(dataset)
    feats = sample_features(model, samples, images=images, device=device, options=options, progress=progress)
    return evaluate_features(feats, dataset, options=options)


def sample_features(
    model: torch.nn.Module,
    samples: list[Sample],
    *,
    images: TestImages,
    device: torch.device,
    options: EvalOptions,
    progress: bool = False,
    dist: DistInfo | None = None,
) -> torch.Tensor:
    """float32 ``[N, D]`` features of ``samples`` on ``device``, in their order.

    Args:
        dist: the processes of a torchrun launch, every one calling this: each extracts a contiguous share
            of ``samples`` and every one receives all the rows (an all-gather). None: this process alone.
    """
    info = dist or DistInfo()
    files = ReIDImageDataset(
        samples[share(len(samples), info)],
        images.transform,
        images.image_size,
        cache=images.cache,
        interpolation=images.interpolation,
    )
    loader = build_test_loader(files, options.batch_size, options.num_workers)
    was_training = model.training
    model.eval()
    encode = image_encoder(model, options.side_info)
    feats = run_everywhere(
        lambda: extract_features(
            encode, loader, device, amp_dtype=options.amp_dtype, flip=options.flip, progress=progress and info.is_main
        ),
        info,
    )
    model.train(was_training)
    return gather_rows(feats, info)


def evaluate_features(feats: torch.Tensor, dataset: ReIDDataset, *, options: EvalOptions) -> ModelEvaluation:
    """Evaluate every split of ``dataset`` on ``feats``, the features of :func:`unique_test_samples`' images
    in its order (:func:`sample_features`)."""
    samples, row = unique_test_samples(dataset)
    cameras = dataset.has_cameras
    splits = []
    verification: list[VerificationResult | None] = []
    for split in dataset.splits:
        arrays, keys = _split_arrays(feats, split, row, cameras)  # ranked and verified alike
        result = evaluate(
            *arrays,
            **keys,
            max_rank=options.max_rank,
            rerank=options.rerank,
            topk=options.topk,
        )
        splits.append((split, result))
        verification.append(_verification(pair_scores(*arrays, **keys)) if options.verification else None)
    summary = summarize(dataset.name, [(split.name, result) for split, result in splits], verification)
    gallery_rows = sorted({row[s.path] for split in dataset.splits for s in split.gallery})
    if len(gallery_rows) >= 2:  # how spread out the gallery's features are (collapse shows here)
        summary["spread"] = feature_spread(feats[torch.tensor(gallery_rows, device=feats.device)])
    return ModelEvaluation(
        summary, splits, samples, feats, identity_names=dict(dataset.test_names), verification=verification
    )


def split_pair_scores(evaluation: ModelEvaluation, split: EvalSplit, cameras: bool) -> PairScores:
    """The verification pairs of one of ``evaluation``'s splits, scored by its features."""
    row = {s.path: i for i, s in enumerate(evaluation.samples)}
    arrays, keys = _split_arrays(evaluation.feats, split, row, cameras)
    return pair_scores(*arrays, **keys)


def _split_arrays(
    feats: torch.Tensor, split: EvalSplit, row: dict[str, int], cameras: bool
) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """A split's query and gallery features, pids and cameras (None without cameras), in the order
    :func:`svllreid.metrics.ranking.evaluate` takes them, and its image keys (rows of ``feats``)."""
    q_rows = np.array([row[s.path] for s in split.query], dtype=np.int64)
    g_rows = np.array([row[s.path] for s in split.gallery], dtype=np.int64)
    arrays = (
        feats[torch.from_numpy(q_rows).to(feats.device)],
        feats[torch.from_numpy(g_rows).to(feats.device)],
        np.array([s.pid for s in split.query]),
        np.array([s.pid for s in split.gallery]),
        np.array([s.camid for s in split.query]) if cameras else None,
        np.array([s.camid for s in split.gallery]) if cameras else None,
    )
    return arrays, {"query_keys": q_rows, "gallery_keys": g_rows}


def _verification(scores: PairScores) -> VerificationResult | None:
    """A split's verification metrics over the pairs its ranking keeps (None without pairs of both kinds)."""
    if not scores.num_positive or not scores.num_negative:
        return None
    return scores.result()
