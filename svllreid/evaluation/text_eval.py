"""Text-to-image evaluation of a network on a caption dataset (``svllreid eval-text``).

The network's two sides come from :mod:`svllreid.inference.text_encoding`;
:func:`svllreid.metrics.text_retrieval.text_to_image` ranks captions against images with them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from svllreid.data.loaders import Transform
from svllreid.data.types import UNKNOWN, Caption
from svllreid.inference.features import extract_file_features
from svllreid.inference.text_encoding import LoadedSides, Tokenizer, encode_captions
from svllreid.metrics.ranking import RankingResult
from svllreid.metrics.text_retrieval import retrieval_summary, text_to_image

__all__ = ["RetrievalTargets", "TextRetrieval", "evaluate_loaded_sides", "evaluate_text_retrieval", "retrieval_targets"]


@dataclass(frozen=True)
class RetrievalTargets:
    """The images of an evaluation split (each once) and who the captions and images show.

    ``image_ids`` / ``caption_ids`` are identities, or for pairs without one a negative number unique
    to the image (so that only the caption's own image matches).
    """

    image_paths: list[str]
    image_ids: np.ndarray
    caption_ids: np.ndarray
    captions: list[str]


def retrieval_targets(captions: Sequence[Caption]) -> RetrievalTargets:
    """Unique images (in first-seen order) and the identities to match for ``captions``."""
    index: dict[str, int] = {}
    image_ids: list[int] = []
    for c in captions:
        if c.path not in index:
            index[c.path] = len(index)
            # An unknown identity makes the image its own identity: -2, -3, ... never clash with real ids.
            image_ids.append(c.pid if c.pid != UNKNOWN else -2 - index[c.path])
    caption_ids = [image_ids[index[c.path]] for c in captions]
    return RetrievalTargets(
        list(index),
        np.asarray(image_ids, dtype=np.int64),
        np.asarray(caption_ids, dtype=np.int64),
        [c.caption for c in captions],
    )


@dataclass
class TextRetrieval:
    """One text-to-image evaluation: its summary (fractions) and the full ranking result."""

    summary: dict[str, Any]
    result: RankingResult


def evaluate_text_retrieval(
    sides: nn.Module,
    captions: Sequence[Caption],
    *,
    tokenizer: Tokenizer,
    transform: Transform,
    image_size: Sequence[int],
    device: torch.device,
    dataset: str,
    split: str,
    batch_size: int = 256,
    num_workers: int = 0,
    amp_dtype: torch.dtype | None = None,
    interpolation: str = "bilinear",
    progress: bool = False,
) -> TextRetrieval:
    """Rank the split's images for each of its captions (see :mod:`svllreid.metrics.text_retrieval`).

    Raises:
        ValueError: no captions, or images that cannot be read (all named).
    """
    if not captions:
        raise ValueError(f"{dataset} has no {split} captions to evaluate; choose another split (--split)")
    targets = retrieval_targets(captions)
    files = extract_file_features(
        sides,
        targets.image_paths,
        transform=transform,
        image_size=image_size,
        device=device,
        batch_size=batch_size,
        num_workers=num_workers,
        amp_dtype=amp_dtype,
        progress=progress,
        interpolation=interpolation,
    )
    if files.unreadable:
        shown = "\n  ".join(files.unreadable[:10])
        raise ValueError(
            f"{len(files.unreadable)} images of {dataset} ({split}) cannot be read; run 'svllreid data check' "
            f"on it:\n  {shown}"
        )
    text = encode_captions(sides, tokenizer(targets.captions), device, batch_size=batch_size, amp_dtype=amp_dtype)
    result = text_to_image(text, files.feats.to(device), targets.caption_ids, targets.image_ids)
    return TextRetrieval(retrieval_summary(result, dataset, split, len(targets.image_paths)), result)


def evaluate_loaded_sides(
    loaded: LoadedSides,
    captions: Sequence[Caption],
    *,
    dataset: str,
    split: str,
    batch_size: int = 256,
    num_workers: int = 0,
    progress: bool = False,
) -> TextRetrieval:
    """:func:`evaluate_text_retrieval` of a loaded network with its own tokenizer and input pipeline."""
    return evaluate_text_retrieval(
        loaded.sides,
        captions,
        tokenizer=loaded.tokenizer,
        transform=loaded.transform,
        image_size=loaded.image_size,
        device=loaded.device,
        dataset=dataset,
        split=split,
        batch_size=batch_size,
        num_workers=num_workers,
        interpolation=loaded.interpolation,
        progress=progress,
    )
