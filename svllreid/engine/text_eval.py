"""Text-to-image evaluation of a network on a caption dataset (``svllreid eval-text``).

Two kinds of network have an image side and a text side in one space:

- a CLIP (open_clip) model, pretrained or not: :class:`ClipSides`;
- a trained ReID model: its projected image feature f_proj (no side information) and its text
  encoder applied to the caption's tokens (not to a learned prompt): :class:`ReIDSides`.

Both give L2-normalised features; :func:`svllreid.eval.text_retrieval.text_to_image` ranks them.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from svllreid.data.loaders import Transform
from svllreid.data.types import UNKNOWN, Caption
from svllreid.engine.features import extract_file_features
from svllreid.eval.ranking import RankingResult
from svllreid.eval.text_retrieval import retrieval_summary, text_to_image
from svllreid.precision import autocast

if TYPE_CHECKING:
    from svllreid.models.reid_model import ReIDModel

Tokenizer = Callable[[Sequence[str]], torch.Tensor]


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


class ClipSides(nn.Module):
    """An open_clip CLIP's two encoders, normalised."""

    def __init__(self, clip: nn.Module):
        super().__init__()
        self.clip: Any = clip  # an open_clip CLIP (untyped: its encode methods)

    def encode_image(self, images: torch.Tensor, *_: Any) -> torch.Tensor:
        return self.clip.encode_image(images, normalize=True)

    def encode_tokens(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.clip.encode_text(tokens, normalize=True)


class ReIDSides(nn.Module):
    """A ReID model's f_proj (cameras unknown) and its text encoder on caption tokens, normalised.

    The text encoder runs only up to the longest caption's end-of-text token, which is exact (the
    mask is causal; see :mod:`svllreid.models.text_encoder`).
    """

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = cast("ReIDModel", model)

    def encode_image(self, images: torch.Tensor, *_: Any) -> torch.Tensor:
        unknown = torch.full((images.shape[0],), -1, dtype=torch.long, device=images.device)
        return F.normalize(self.model.image_features(images, unknown, unknown).f_proj, dim=1)

    def encode_tokens(self, tokens: torch.Tensor) -> torch.Tensor:
        text = self.model.text_encoder
        eot = tokens.argmax(dim=1)  # the end-of-text token has the largest id in CLIP's vocabulary
        return F.normalize(text(text.embed_tokens(tokens), eot), dim=1)


@torch.no_grad()
def encode_captions(
    sides: nn.Module,
    tokens: torch.Tensor,
    device: torch.device,
    *,
    batch_size: int = 256,
    amp_dtype: torch.dtype | None = None,
) -> torch.Tensor:
    """float32 ``[N, D]`` text features of ``[N, L]`` token ids, on ``device``."""
    sides.eval()
    chunks = []
    for chunk in tokens.split(batch_size):
        with autocast(device, amp_dtype):
            encode = cast("Callable[[torch.Tensor], torch.Tensor]", sides.encode_tokens)  # ClipSides or ReIDSides
            chunks.append(encode(chunk.to(device)).float())
    return torch.cat(chunks)


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
    """Rank the split's images for each of its captions (see :mod:`svllreid.eval.text_retrieval`).

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


@dataclass
class LoadedSides:
    """A network ready for text-to-image evaluation, with the input pipeline it expects."""

    sides: nn.Module
    tokenizer: Tokenizer
    transform: Transform
    image_size: tuple[int, int]
    interpolation: str
    device: torch.device
    description: str

    def evaluate(
        self,
        captions: Sequence[Caption],
        *,
        dataset: str,
        split: str,
        batch_size: int = 256,
        num_workers: int = 0,
        progress: bool = False,
    ) -> TextRetrieval:
        """:func:`evaluate_text_retrieval` of this network with its own tokenizer and input pipeline."""
        return evaluate_text_retrieval(
            self.sides,
            captions,
            tokenizer=self.tokenizer,
            transform=self.transform,
            image_size=self.image_size,
            device=self.device,
            dataset=dataset,
            split=split,
            batch_size=batch_size,
            num_workers=num_workers,
            interpolation=self.interpolation,
            progress=progress,
        )


def load_sides(
    checkpoint: str | None = None,
    arch: str | None = None,
    pretrained: str | None = None,
    device: str = "auto",
) -> LoadedSides:
    """The network to evaluate: a trained ReID model (``checkpoint``: a checkpoint or run directory),
    a pretraining run (``checkpoint``: its directory, whose ``clip.safetensors`` is used), or a CLIP
    (``arch`` with ``pretrained``: a weights file, an open_clip or svllreid tag, or None for random).

    Raises:
        ValueError: neither or both of ``checkpoint`` and ``arch``.
    """
    import open_clip

    from svllreid.data.transforms import build_test_transform
    from svllreid.engine.checkpoint import META_KEY
    from svllreid.engine.distributed import DistInfo, resolve_device
    from svllreid.engine.inference import load_trained_model
    from svllreid.models.pretrained import build_clip, native_image_size, shipped_weights_path

    if (checkpoint is None) == (arch is None):
        raise ValueError("pass either --checkpoint (a trained run) or --arch [--pretrained WEIGHTS] (a CLIP)")
    if checkpoint is not None:
        folder = Path(checkpoint).expanduser()
        if folder.is_dir() and (folder / "clip.safetensors").is_file():  # a pretraining run
            weights = folder / "clip.safetensors"
            arch, pretrained = read_safetensors_metadata(weights).get("arch"), str(weights)
            if not arch:
                raise ValueError(f"{weights} does not record its architecture; pass --arch and --pretrained instead")
        else:
            header = json.loads(read_safetensors_metadata(folder).get(META_KEY, "{}"))
            if header.get("task") == "pretrain":
                raise ValueError(
                    f"{folder} is a pretraining checkpoint (weights with optimiser state); pass its run directory, "
                    "whose clip.safetensors holds the weights, or --arch ARCH --pretrained clip.safetensors"
                )
            trained = load_trained_model(checkpoint, device)
            return LoadedSides(
                ReIDSides(trained.model),
                open_clip.get_tokenizer(trained.spec.arch),
                trained.transform,
                trained.image_size,
                trained.interpolation,
                trained.device,
                trained.describe(),
            )
    assert arch is not None
    clip, report = build_clip(arch, pretrained)
    target = resolve_device(device, DistInfo())
    clip.to(target).eval()
    size = native_image_size(clip)
    source = shipped_weights_path(arch, pretrained) or Path(pretrained or "")
    saved = read_safetensors_metadata(source).get("preprocess") if pretrained else None
    preprocess = json.loads(saved) if saved else None
    if preprocess is None:  # weights from elsewhere: CLIP's own statistics
        preprocess = {
            "pixel_mean": list(open_clip.OPENAI_DATASET_MEAN),
            "pixel_std": list(open_clip.OPENAI_DATASET_STD),
            "interpolation": "bicubic",
        }
    interpolation = preprocess["interpolation"]
    transform = build_test_transform(list(size), preprocess["pixel_mean"], preprocess["pixel_std"], interpolation)
    description = f"CLIP {arch} ({report.source}) at {size[0]}×{size[1]}"
    return LoadedSides(
        ClipSides(clip), open_clip.get_tokenizer(arch), transform, size, interpolation, target, description
    )


def read_safetensors_metadata(path: Path) -> dict[str, str]:
    """The string metadata of a safetensors file; empty for any other file."""
    from safetensors import safe_open

    if path.suffix != ".safetensors" or not path.is_file():
        return {}
    try:
        with safe_open(str(path), framework="pt") as handle:
            return dict(handle.metadata() or {})
    except Exception:
        return {}
