"""Free-text queries: descriptions of a person encoded by a trained network's own text encoder.

The method ties the image feature f_proj to CLIP's frozen text encoder (the stage-2 image-to-text
loss), so a description tokenized as CLIP tokenizes text (up to 77 positions) and encoded by the
checkpoint's text encoder lands in f_proj's space; :meth:`svllreid.search.GalleryIndex.search_text`
ranks a gallery's f_proj parts against it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from svllreid.inference.text_encoding import ReIDSides, Tokenizer, encode_captions

if TYPE_CHECKING:
    from svllreid.inference.trained import TrainedModel

__all__ = ["DescriptionEncoder", "EncodedDescriptions"]


@dataclass
class EncodedDescriptions:
    """L2-normalised float32 ``[Q, D]`` text features, and the descriptions that were cut to fit."""

    feats: torch.Tensor
    truncated: list[str]


class DescriptionEncoder:
    """A trained network's text side for descriptions: its tokenizer and text encoder, loaded once."""

    def __init__(self, trained: TrainedModel, tokenizer: Tokenizer | None = None):
        trained.require_free_text()
        if tokenizer is None:
            import open_clip

            tokenizer = open_clip.get_tokenizer(trained.spec.arch)
        self.tokenizer = tokenizer
        self.sides = ReIDSides(trained.model)
        self.device = trained.device

    def encode(self, descriptions: Sequence[str]) -> EncodedDescriptions:
        """Features of ``descriptions``; longer ones are cut at the tokenizer's length (reported).

        Raises:
            ValueError: no descriptions, or an empty one.
        """
        texts = [str(d) for d in descriptions]
        if not texts:
            raise ValueError("no description to search for; give one, e.g. --text 'a woman in a red coat'")
        empty = [i for i, text in enumerate(texts) if not text.strip()]
        if empty:
            raise ValueError(f"description {empty[0] + 1} is empty; describe the person in a few words")
        tokens = self.tokenizer(texts)
        # CLIP's tokenizer pads with 0 and, when it cuts a text, ends it with end-of-text at the last place.
        truncated = [text for text, row in zip(texts, tokens, strict=True) if int(row[-1]) != 0]
        feats = encode_captions(self.sides, tokens, self.device)
        return EncodedDescriptions(feats.cpu(), truncated)
