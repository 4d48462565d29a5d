"""Helpers for model tests: tiny models and OpenAI-format archives."""

from __future__ import annotations

import warnings
from pathlib import Path

import torch
from torch import nn

import svllreid.models  # noqa: F401  (registers the tiny open_clip configs)


class _Tree(nn.Module):
    """A module that only holds tensors under dotted names (to script into an archive)."""


def save_openai_archive(state: dict[str, torch.Tensor], path: Path, resolution: int = 224) -> Path:
    """Write ``state`` as a TorchScript archive laid out like OpenAI's CLIP releases: the CLIP
    parameter names plus the integer buffers input_resolution, context_length and vocab_size."""
    state = dict(state)
    state["input_resolution"] = torch.tensor(resolution)
    state["context_length"] = torch.tensor(state["positional_embedding"].shape[0])
    state["vocab_size"] = torch.tensor(state["token_embedding.weight"].shape[0])
    root = _Tree()
    for key, value in state.items():
        *parents, leaf = key.split(".")
        node = root
        for part in parents:
            if part not in node._modules:
                node.add_module(part, _Tree())
            node = node._modules[part]
        if value.is_floating_point():
            node.register_parameter(leaf, nn.Parameter(value.clone(), requires_grad=False))
        else:
            node.register_buffer(leaf, value.clone())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        torch.jit.script(root).save(str(path))
    return path
