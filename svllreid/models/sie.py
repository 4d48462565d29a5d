"""Side information embedding (SIE, from TransReID): a learnable vector per camera and/or view,
added (times a coefficient) to the class token."""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn

__all__ = ["SideInfoEmbedding", "SieMode"]

SieMode = Literal["camera", "view", "camera_view"]


class SideInfoEmbedding(nn.Module):
    """A table of ``width``-d vectors indexed by camera, view, or (camera, view) pair.

    Index of a (camera, view) pair: ``camera * num_views + view``. A sample whose camera or view
    the table needs is unknown (-1) receives no embedding; an id outside the table is an error.
    """

    def __init__(self, mode: SieMode, width: int, *, num_cameras: int = 0, num_views: int = 0, coef: float = 1.0):
        super().__init__()
        need_cam = mode in ("camera", "camera_view")
        need_view = mode in ("view", "camera_view")
        if need_cam and num_cameras < 1:
            raise ValueError(f"SIE mode {mode!r} needs num_cameras >= 1 (the dataset has no camera labels)")
        if need_view and num_views < 1:
            raise ValueError(f"SIE mode {mode!r} needs num_views >= 1 (the dataset has no viewpoint labels)")
        self.mode = mode
        self.num_cameras = num_cameras if need_cam else 0
        self.num_views = num_views if need_view else 0
        self.coef = coef
        size = {"camera": num_cameras, "view": num_views, "camera_view": num_cameras * num_views}[mode]
        self.table = nn.Parameter(torch.empty(size, width))
        nn.init.trunc_normal_(self.table, std=0.02)

    def _check(self, ids: torch.Tensor | None, limit: int, what: str) -> torch.Tensor:
        if ids is None:
            raise ValueError(f"SIE mode {self.mode!r} needs {what} ids; pass them to the image encoder")
        if torch.compiler.is_compiling() or torch.jit.is_tracing():
            # An exported or traced graph takes ids as data: a Python branch on their values would either
            # stop torch.export or be frozen into the trace. Such a graph does not check its ids (one at or
            # above the table size fails in the runtime's gather, others pass): whoever feeds it checks them,
            # as svllreid.inference.onnx_backend does.
            return ids
        if ids.device.type == "cpu":
            bad = (ids < -1) | (ids >= limit)
            if bool(bad.any()):
                raise ValueError(
                    f"{what} id {int(ids[bad][0])} is outside the SIE table (0..{limit - 1}, or -1 for unknown); "
                    f"the model was built for {limit} {what}s"
                )
        else:  # no host sync on accelerators: the check runs on the device
            torch._assert_async(((ids >= -1) & (ids < limit)).all(), f"{what} id outside the SIE table")
        return ids

    def forward(self, camids: torch.Tensor | None = None, viewids: torch.Tensor | None = None) -> torch.Tensor:
        """Return ``[B, width]`` embeddings (times the coefficient); zeros where an id is unknown."""
        if self.mode == "camera":
            index = self._check(camids, self.num_cameras, "camera")
        elif self.mode == "view":
            index = self._check(viewids, self.num_views, "view")
        else:
            cam = self._check(camids, self.num_cameras, "camera")
            view = self._check(viewids, self.num_views, "view")
            index = torch.where((cam < 0) | (view < 0), -1, cam * self.num_views + view)
        known = index >= 0
        vectors = self.table[index.clamp(min=0)]  # [B, width]
        return self.coef * vectors * known.unsqueeze(-1).to(vectors.dtype)
