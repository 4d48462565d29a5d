"""Resizing pretrained positional embeddings to a ReID token grid."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

__all__ = ["resize_grid_embedding"]


def resize_grid_embedding(embedding: torch.Tensor, new_grid: tuple[int, int], old_grid: tuple[int, int] | None = None):
    """Resize a ``[1 + h*w, D]`` positional embedding to ``[1 + H*W, D]``.

    The first (class / mean-token) position is kept as it is; the grid part is resized with
    bilinear interpolation (``align_corners=False``), as CLIP-ReID does for ViT and RN50.

    Args:
        embedding: ``[1 + h*w, D]``.
        new_grid: target ``(H, W)``.
        old_grid: source ``(h, w)``; default: the square grid the length implies.
    """
    first, grid = embedding[:1], embedding[1:]
    if old_grid is None:
        side = math.isqrt(grid.shape[0])
        if side * side != grid.shape[0]:
            raise ValueError(f"cannot infer a square grid from {grid.shape[0]} positions; pass old_grid")
        old_grid = (side, side)
    if tuple(old_grid) == tuple(new_grid):
        return embedding.clone()
    dim = grid.shape[-1]
    grid = grid.reshape(1, old_grid[0], old_grid[1], dim).permute(0, 3, 1, 2)  # [1, D, h, w]
    grid = F.interpolate(grid.float(), size=tuple(new_grid), mode="bilinear", align_corners=False)
    grid = grid.permute(0, 2, 3, 1).reshape(new_grid[0] * new_grid[1], dim).to(embedding.dtype)  # [H*W, D]
    return torch.cat([first, grid], dim=0)
