"""CLIP's text transformer applied to token embeddings (prompts), computing only what it needs.

The mask is causal, so the feature at the end-of-text token (index ``e``) depends on positions
``0..e`` only. Running the transformer on the first ``max(e) + 1`` positions gives exactly the
feature of the full 77-position computation (METHOD.md 3.1), several times cheaper.
"""

from __future__ import annotations

from typing import cast

import torch
from torch import nn

__all__ = ["TextEncoder"]


class TextEncoder(nn.Module):
    """Frozen-by-design text tower: token embeddings -> projected end-of-text features.

    Args:
        clip: an open_clip ``CLIP`` (text attributes on the model) or a model with a ``text``
            ``TextTransformer`` tower.
    """

    attn_mask: torch.Tensor  # a buffer (registered in __init__)

    def __init__(self, clip: nn.Module):
        super().__init__()
        tower = cast(nn.Module, clip.text) if hasattr(clip, "text") else clip
        pool = getattr(tower, "pool_type", None) or getattr(clip, "text_pool_type", "argmax")
        if pool != "argmax" or getattr(tower, "cls_emb", None) is not None:
            raise ValueError("only CLIP-style text towers (causal, pooled at the end-of-text token) are supported")
        if getattr(tower, "attn_mask", None) is None:
            raise ValueError("the text tower has no causal mask")
        # torch types submodule and parameter attributes as ``Tensor | Module``; these are open_clip's.
        self.token_embedding = cast(nn.Embedding, tower.token_embedding)
        self.positional_embedding = cast(torch.Tensor, tower.positional_embedding)
        self.transformer = cast(nn.Module, tower.transformer)
        self.ln_final = cast(nn.Module, tower.ln_final)
        self.text_projection = cast(nn.Linear | torch.Tensor, tower.text_projection)
        self.register_buffer("attn_mask", cast(torch.Tensor, tower.attn_mask).clone(), persistent=False)
        self.width = self.positional_embedding.shape[1]
        self.context_length = self.positional_embedding.shape[0]
        proj = self.text_projection
        self.output_dim = proj.out_features if isinstance(proj, nn.Linear) else proj.shape[1]

    def embed_tokens(self, tokens: torch.Tensor) -> torch.Tensor:
        """Token ids ``[B, L]`` -> token embeddings ``[B, L, width]``."""
        return self.token_embedding(tokens)

    def forward(self, embeddings: torch.Tensor, eot_index: torch.Tensor, length: int | None = None) -> torch.Tensor:
        """Project the end-of-text features of prompts given as token embeddings.

        Args:
            embeddings: ``[B, L, width]`` token embeddings (L <= the context length).
            eot_index: ``[B]`` position of each prompt's end-of-text token.
            length: how many leading positions to run. Default ``max(eot_index) + 1``, which is
                exact (see the module doc); callers that know it (prompts) pass it to avoid a
                device sync; ``embeddings.shape[1]`` runs the full computation.

        Returns:
            ``[B, output_dim]`` text features, not normalised.
        """
        if length is None:
            length = int(eot_index.max()) + 1
        x = embeddings[:, :length] + self.positional_embedding[:length].to(embeddings.dtype)  # [B, L', width]
        mask = self.attn_mask[:length, :length]
        if self.transformer.batch_first:
            x = self.transformer(x, attn_mask=mask)
        else:  # pragma: no cover (open_clip towers are batch-first)
            x = self.transformer(x.transpose(0, 1), attn_mask=mask).transpose(0, 1)
        x = x[torch.arange(x.shape[0], device=x.device), eot_index]  # [B, width]
        x = self.ln_final(x)
        proj = self.text_projection
        return proj(x) if isinstance(proj, nn.Linear) else x @ proj
