"""Text and image sides of a network in one space, for descriptions and captions.

Two kinds of network have an image side and a text side in one space:

- a CLIP (open_clip) model, pretrained or not: :class:`ClipSides`;
- a trained ReID model: its projected image feature f_proj (no side information) and its text
  encoder applied to the caption's tokens (not to a learned prompt): :class:`ReIDSides`.

Both give L2-normalised features. :func:`load_sides` loads either from a file or a name;
:mod:`svllreid.evaluation.text_eval` ranks captions against images with them, and
:mod:`svllreid.inference.text_query` encodes a user's descriptions.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import torch
import torch.nn.functional as F
from torch import nn

from svllreid.data.loaders import Transform
from svllreid.precision import autocast

if TYPE_CHECKING:
    from svllreid.models.reid_model import ReIDModel

__all__ = ["ClipSides", "LoadedSides", "ReIDSides", "Tokenizer", "encode_captions", "load_sides"]

Tokenizer = Callable[[Sequence[str]], torch.Tensor]


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
class LoadedSides:
    """A network ready for text-to-image evaluation, with the input pipeline it expects."""

    sides: nn.Module
    tokenizer: Tokenizer
    transform: Transform
    image_size: tuple[int, int]
    interpolation: str
    device: torch.device
    description: str


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
    from svllreid.distributed import DistInfo, resolve_device
    from svllreid.inference.checkpoint import META_KEY
    from svllreid.inference.trained import load_trained_model
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
            trained.require_free_text()
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
