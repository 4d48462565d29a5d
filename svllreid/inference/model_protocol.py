"""The interface every runtime of a trained network offers: images in, features out, with a known
preprocessing and a known network identity.

Three classes implement it: :class:`~svllreid.inference.trained.TrainedModel` (the network rebuilt in
torch from its checkpoint), :class:`~svllreid.inference.query_encoder.QueryEncoder` (its image branch
compiled to TorchScript, for searches that start fast) and
:class:`~svllreid.inference.onnx_backend.ExportedModel` (an exported ONNX file on onnxruntime, or an
OpenVINO IR on OpenVINO). Whatever extracts, indexes or searches takes a :class:`FeatureModel` and
never asks which one it has.
mypy checks that all three do (the assignment at the end of this module).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import torch
from torch import nn

from svllreid.data.loaders import Transform

__all__ = ["FeatureModel", "IndexingModel"]


@runtime_checkable
class FeatureModel(Protocol):
    """Something that turns images into L2-normalised features.

    Images are read and resized to :attr:`image_size` with :attr:`interpolation`, then normalised by
    :attr:`transform`, then encoded by ``model.encode_image(images, camids, viewids)`` on :attr:`device`
    (cameras and views -1: unknown). :meth:`identity` says which network makes the features, so that
    features of two runtimes are only ever compared when they come from the same network and weights.
    """

    @property
    def model(self) -> nn.Module:
        """Has ``encode_image(images [B, 3, H, W], camids [B], viewids [B]) -> [B, D]``."""
        ...

    @property
    def device(self) -> torch.device: ...

    @property
    def image_size(self) -> tuple[int, int]:
        """(height, width) of the network's input."""
        ...

    @property
    def interpolation(self) -> str:
        """The resize filter of the test pipeline (``bilinear``, ``bicubic``, ...)."""
        ...

    @property
    def transform(self) -> Transform:
        """Pixels (resized, ``[3, H, W]`` in [0, 1]) to the network's input: the normalisation."""
        ...

    def identity(self) -> dict[str, Any]:
        """What identifies the network (stored with feature files and indexes)."""
        ...


@runtime_checkable
class IndexingModel(FeatureModel, Protocol):
    """A :class:`FeatureModel` that also describes itself to indexes and feature files and checks that it
    makes an index's features: what ``extract``, ``index build`` and ``search --model`` need."""

    @property
    def feature_dim(self) -> int:
        """The width of the features it gives."""
        ...

    def describe(self) -> str:
        """One line for the user: the architecture, input size, training set and file."""
        ...

    def index_meta(self, *, flip: bool, images: str | Path) -> dict[str, Any]:
        """What an index of this model's features of the folder ``images`` stores about how they were made."""
        ...

    def check_same_features(self, identity: Mapping[str, Any], index: str, *, checkpoint: str | None = None) -> None:
        """Raise :class:`~svllreid.errors.CheckpointError` unless this model makes the features of the
        index whose stored ``identity`` is given (the same network and the same weights)."""
        ...


if TYPE_CHECKING:  # the three runtimes implement the interfaces (checked by mypy, not at run time)
    from svllreid.inference.onnx_backend import ExportedModel
    from svllreid.inference.query_encoder import QueryEncoder
    from svllreid.inference.trained import TrainedModel

    _feature_models: tuple[type[FeatureModel], ...] = (TrainedModel, QueryEncoder, ExportedModel)
    _indexing_models: tuple[type[IndexingModel], ...] = (TrainedModel, ExportedModel)
