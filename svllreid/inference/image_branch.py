"""The test-time image branch of a ReID network as a module of its own: what ``extract`` computes, made
to be traced and exported (TorchScript for fast searches, ONNX and TorchScript files for deployment).

``images [B, 3, H, W]`` (normalised as the test pipeline does) in, L2-normalised features ``[B, D]``
(f12 and f_proj before the BNNecks) out. It holds the image encoder only; the text encoder, prompts and
heads take no part. Cameras and views are unknown (-1) unless ``side_info`` asks for a second input,
``side_info [B, 2]`` int64 (camera, view; -1 unknown), for networks with SIE.
"""

from __future__ import annotations

import io
import logging
import warnings
from collections.abc import Iterator
from contextlib import contextmanager, redirect_stdout
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from svllreid.data.loaders import Transform
from svllreid.data.pixels import NormalizePixels

__all__ = ["IMAGE_ENCODER", "CompiledImageBranch", "ImageBranch", "quiet_tracing"]

#: The sub-network that makes the test feature (its tensors keep their names in a traced module).
IMAGE_ENCODER = "image_encoder"


class ImageBranch(nn.Module):
    """See the module docstring; ``model`` is a :class:`svllreid.models.reid_model.ReIDModel`."""

    def __init__(self, model: nn.Module, *, side_info: bool = False):
        super().__init__()
        from svllreid.models.reid_model import retrieval_feature  # loaded already where a network exists

        self.image_encoder = getattr(model, IMAGE_ENCODER)
        self.feature = retrieval_feature
        self.side_info = side_info

    def forward(self, images: torch.Tensor, side_info: torch.Tensor | None = None) -> torch.Tensor:
        if side_info is None:
            unknown = torch.full((images.shape[0],), -1, dtype=torch.long, device=images.device)
            camids, viewids = unknown, unknown
        else:
            camids, viewids = side_info[:, 0], side_info[:, 1]
        return self.feature(self.image_encoder(images, camids, viewids))


@contextmanager
def quiet_tracing() -> Iterator[None]:
    """Tracing, exporting and loading TorchScript or ONNX print deprecation notices, progress lines and
    optimiser notes that are not the user's concern (each written file is checked against the network
    instead): silence them."""
    optimiser = logging.getLogger("onnxscript")
    level = optimiser.level
    optimiser.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        optimiser.setLevel(level)


@dataclass(kw_only=True)
class CompiledImageBranch:
    """An image branch loaded without its network's code (a cached TorchScript module, an ONNX file) and
    how images reach it: what ``extract`` and ``search`` read of a model.

    Attributes:
        model: has ``encode_image(images, camids, viewids)``.
        network: the network's identity (:meth:`svllreid.inference.trained.TrainedModel.identity`).
    """

    model: nn.Module
    image_size: tuple[int, int]
    interpolation: str
    mean: tuple[float, ...]
    std: tuple[float, ...]
    network: dict[str, Any]
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    @property
    def transform(self) -> Transform:
        """The test pipeline's normalisation (images arrive resized by :attr:`interpolation`)."""
        return NormalizePixels(self.mean, self.std)

    @property
    def spec(self) -> dict[str, Any]:
        return dict(self.network.get("spec", {}))

    def identity(self) -> dict[str, Any]:
        """What identifies the network: the identity it was compiled or exported with."""
        return dict(self.network)
