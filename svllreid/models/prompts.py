"""Per-identity prompts (CLIP-ReID) and SVLL's prompt augmentations.

Template "A photo of a X X X X person." ("vehicle." for vehicles): each training identity owns
the four word vectors that replace the X embeddings; there is no shared context. The template
tokenises to 12 positions (start ... end), so only those are built: the text encoder's causal
mask makes the padding positions irrelevant (METHOD.md 3.1).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import torch
from torch import nn

from svllreid.models.text_encoder import TextEncoder

__all__ = [
    "FULL_LENGTH_AUGMENTS",
    "NUM_IDENTITY_WORDS",
    "PROMPT_TEMPLATES",
    "PromptAugment",
    "PromptLearner",
    "Tokenizer",
    "augment_prompts",
]

PROMPT_TEMPLATES = {"person": "A photo of a X X X X person.", "vehicle": "A photo of a X X X X vehicle."}
NUM_IDENTITY_WORDS = 4
PromptAugment = Literal["element", "token", "swap", "swap_reference", "mix"]
#: Augmentations that work on the whole 77-position prompt, padding included (the reference's layout).
FULL_LENGTH_AUGMENTS = frozenset({"swap_reference"})
Tokenizer = Callable[[list[str]], torch.Tensor]


class PromptLearner(nn.Module):
    """Learnable identity words and the frozen template around them.

    Args:
        num_classes: training identities.
        text_encoder: gives the token embedding table and width.
        tokenizer: open_clip tokenizer (text list -> ``[N, context_length]`` ids).
        kind: ``"person"`` or ``"vehicle"`` (the template's last word).
    """

    # buffers (registered in __init__)
    template_tokens: torch.Tensor
    token_prefix: torch.Tensor
    token_suffix: torch.Tensor
    token_padding: torch.Tensor

    def __init__(self, num_classes: int, text_encoder: TextEncoder, tokenizer: Tokenizer, kind: str = "person"):
        super().__init__()
        if kind not in PROMPT_TEMPLATES:
            raise ValueError(f"kind must be one of {sorted(PROMPT_TEMPLATES)}; got {kind!r}")
        if num_classes < 1:
            raise ValueError(f"num_classes must be positive; got {num_classes}")
        tokens = tokenizer([PROMPT_TEMPLATES[kind]])  # [1, 77]
        x_id = int(tokenizer(["X"])[0, 1])
        slots = (tokens[0] == x_id).nonzero().flatten().tolist()
        if len(slots) != NUM_IDENTITY_WORDS or slots != list(range(slots[0], slots[0] + NUM_IDENTITY_WORDS)):
            raise ValueError(f"the tokenizer splits the prompt template unexpectedly: {tokens[0, :16].tolist()}")
        self.kind = kind
        self.template = PROMPT_TEMPLATES[kind]
        self.start = slots[0]
        self.eot_position = int(tokens[0].argmax())  # CLIP's end-of-text id is the largest id
        self.length = self.eot_position + 1
        end = self.start + NUM_IDENTITY_WORDS
        # The template's embeddings around the identity words. They derive from the text encoder's token
        # embedding, so they are not saved: :meth:`refresh_template` recomputes them whenever that table
        # changes (ReIDModel calls it after every load_state_dict), else a network built with random
        # weights and then loaded would keep random templates.
        self.register_buffer("template_tokens", tokens.clone(), persistent=False)
        dtype, width = text_encoder.token_embedding.weight.dtype, text_encoder.width
        self.register_buffer("token_prefix", torch.zeros(1, self.start, width, dtype=dtype), persistent=False)
        self.register_buffer("token_suffix", torch.zeros(1, self.length - end, width, dtype=dtype), persistent=False)
        padding = torch.zeros(1, int(tokens.shape[1]) - self.length, width, dtype=dtype)
        self.register_buffer("token_padding", padding, persistent=False)
        self.refresh_template(text_encoder)
        self.cls_ctx = nn.Parameter(torch.empty(num_classes, NUM_IDENTITY_WORDS, text_encoder.width))
        nn.init.normal_(self.cls_ctx, std=0.02)

    @torch.no_grad()
    def refresh_template(self, text_encoder: TextEncoder) -> None:
        """Recompute the template's token embeddings from ``text_encoder``'s token embedding table (in
        place: the buffers keep their device and dtype)."""
        embedded = text_encoder.embed_tokens(self.template_tokens.to(text_encoder.positional_embedding.device))
        end = self.start + NUM_IDENTITY_WORDS
        for buffer, part in (
            (self.token_prefix, embedded[:, : self.start]),
            (self.token_suffix, embedded[:, end : self.length]),
            (self.token_padding, embedded[:, self.length :]),
        ):
            buffer.copy_(part.to(buffer.device, buffer.dtype))

    @property
    def num_classes(self) -> int:
        return self.cls_ctx.shape[0]

    def forward(self, pids: torch.Tensor, full: bool = False) -> torch.Tensor:
        """Prompt token embeddings of identities ``pids``: ``[B, 12, D]`` (``[B, 77, D]`` if ``full``)."""
        batch = pids.shape[0]
        parts = [self.token_prefix.expand(batch, -1, -1), self.cls_ctx[pids], self.token_suffix.expand(batch, -1, -1)]
        if full:
            parts.append(self.token_padding.expand(batch, -1, -1))
        return torch.cat(parts, dim=1)

    def eot_index(self, batch: int, device: torch.device) -> torch.Tensor:
        return torch.full((batch,), self.eot_position, dtype=torch.long, device=device)


def augment_prompts(
    prompts: torch.Tensor, kind: PromptAugment, prob: float, generator: torch.Generator | None = None
) -> torch.Tensor:
    """One random view of prompt embeddings ``[U, L, D]`` for language self-supervision.

    - ``element``: every element is zeroed independently with probability ``prob`` (the
      reference; no rescaling). Drawing the mask for the 12 used positions only is identical in
      distribution to drawing it for all 77, because the others never reach the end token.
    - ``token``: whole positions are zeroed with probability ``prob``.
    - ``swap``: ``round(prob * L)`` (at least 2) random positions of each prompt are permuted
      among themselves: on the 12 used positions, a reordering of the prompt's own words.
    - ``swap_reference``: the reference's swap, for prompts of all 77 positions (``full=True``):
      ``int(prob * 77)`` positions drawn among all of them are permuted. Most land in the padding, so
      in effect it writes padding embeddings into about ``prob * 12 * (1 - 12/77)`` of the 12 used
      positions (4.9 at 0.5) and moves the end-of-text slot with probability ``prob``.
    - ``mix``: each prompt is interpolated towards another identity's prompt of the batch with a
      weight drawn uniformly from ``[0, prob]``.
    """
    count, length, _ = prompts.shape
    device = prompts.device

    def rand(*shape: int) -> torch.Tensor:
        return torch.rand(shape, device=device, generator=generator)

    if kind == "element":
        return prompts * (rand(*prompts.shape) >= prob).to(prompts.dtype)
    if kind == "token":
        return prompts * (rand(count, length, 1) >= prob).to(prompts.dtype)
    if kind in ("swap", "swap_reference"):
        k = min(length, max(2, round(prob * length))) if kind == "swap" else int(prob * length)
        positions = rand(count, length).argsort(dim=1)[:, :k]  # [U, k] distinct positions per prompt
        shuffled = positions.gather(1, rand(count, k).argsort(dim=1))  # a permutation of them
        out = prompts.clone()
        rows = torch.arange(count, device=device).unsqueeze(1)
        out[rows, positions] = prompts[rows, shuffled]
        return out
    if kind == "mix":
        partner = rand(count).argsort()
        weight = (rand(count, 1, 1) * prob).to(prompts.dtype)
        return (1 - weight) * prompts + weight * prompts[partner]
    raise ValueError(f"unknown prompt augmentation {kind!r}; choose element, token, swap, swap_reference or mix")
