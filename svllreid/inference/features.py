"""Features of a model's images, and the evaluation of a model on a parsed dataset.

This is where networks meet :mod:`svllreid.metrics`, which only ever sees feature tensors and labels.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence, Sized
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from svllreid.data.loaders import (
    ImageCache,
    Transform,
    read_resized,
)
from svllreid.errors import ImageReadError
from svllreid.precision import autocast, resolve_precision

if TYPE_CHECKING:
    from svllreid.inference.model_protocol import FeatureModel
    from svllreid.models.image_encoders import ImageFeatures

__all__ = [
    "Encoder",
    "FileFeatures",
    "TestImages",
    "encode_batch",
    "extract_features",
    "extract_file_features",
    "f12_encoder",
    "image_encoder",
    "projection_encoder",
]


Encoder = Callable[[torch.Tensor, torch.Tensor | None, torch.Tensor | None], torch.Tensor]


def encode_batch(
    encode: Encoder,
    images: torch.Tensor,
    camids: torch.Tensor | None,
    viewids: torch.Tensor | None,
    *,
    amp_dtype: torch.dtype | None,
    flip: bool,
) -> torch.Tensor:
    """float32 features of one batch; with ``flip``, the sum with the flipped images' features, L2-normalised."""
    with autocast(images.device, amp_dtype):
        feats = encode(images, camids, viewids).float()
        if flip:
            feats = torch.nn.functional.normalize(feats + encode(images.flip(-1), camids, viewids).float(), dim=1)
    return feats


def f12_encoder(model: torch.nn.Module) -> Encoder:
    """f12 (the image encoder's final class token, before the BNNeck), with the images' side information."""

    def encode(images: torch.Tensor, camids: torch.Tensor | None, viewids: torch.Tensor | None) -> torch.Tensor:
        return cast("Callable[..., ImageFeatures]", model.image_features)(images, camids, viewids).f12

    return encode


@torch.no_grad()
def extract_features(
    encode: Encoder,
    loader: DataLoader,
    device: torch.device,
    *,
    amp_dtype: torch.dtype | None = None,
    flip: bool = False,
    progress: bool = False,
) -> torch.Tensor:
    """Run ``encode(images, camids, viewids)`` over a loader; returns float32 ``[N, D]`` on ``device``.

    Args:
        flip: add the features of the horizontally flipped images, then L2-normalise the sum.
        progress: show a progress bar (images).
    """
    chunks = []
    with tqdm(
        total=len(cast(Sized, loader.dataset)), desc="features", unit="img", disable=not progress, leave=False
    ) as bar:
        for batch in loader:
            images = batch["image"].to(device, non_blocking=True)
            camids, viewids = batch["camid"].to(device), batch["viewid"].to(device)
            chunks.append(encode_batch(encode, images, camids, viewids, amp_dtype=amp_dtype, flip=flip))
            bar.update(len(images))
    return torch.cat(chunks) if chunks else torch.empty(0, device=device)


@dataclass(frozen=True)
class TestImages:
    """How test images become network inputs: the test transform, the input size, and the filter the
    loaders resize with (a ``cache`` must hold images resized so)."""

    transform: Transform
    image_size: tuple[int, int]
    interpolation: str = "bilinear"
    cache: ImageCache | None = None


def image_encoder(model: torch.nn.Module, side_info: bool = True) -> Encoder:
    """``model.encode_image``; without ``side_info`` every camera and view is passed as unknown (-1),
    so an SIE model adds no embedding (images of cameras it never saw, e.g. another dataset)."""
    # torch types a module's attributes as ``Tensor | Module``: the casts say these are its methods.
    if side_info:
        return cast(Encoder, model.encode_image)

    def encode(images: torch.Tensor, camids: torch.Tensor | None, viewids: torch.Tensor | None) -> torch.Tensor:
        unknown = [None if ids is None else torch.full_like(ids, -1) for ids in (camids, viewids)]
        return cast(Encoder, model.encode_image)(images, *unknown)

    return encode


def projection_encoder(model: torch.nn.Module) -> Encoder:
    """f_proj (CLIP's projected image space, where the text features live) without side information."""

    def encode(images: torch.Tensor, camids: torch.Tensor | None, viewids: torch.Tensor | None) -> torch.Tensor:
        unknown = torch.full((images.shape[0],), -1, dtype=torch.long, device=images.device)
        return cast("Callable[..., ImageFeatures]", model.image_features)(images, unknown, unknown).f_proj

    return encode


class _ImageFiles(Dataset):
    """Image files as ``{"image", "ok", "camid", "viewid"}``; an unreadable file gives ``ok=False``
    and a blank image, so that one bad file does not stop the others."""

    def __init__(self, paths: Sequence[str], transform: Transform, size: Sequence[int], interpolation: str):
        self.paths, self.transform, self.size = list(paths), transform, (int(size[0]), int(size[1]))
        self.interpolation = interpolation

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> dict[str, Any]:
        try:
            image, ok = self.transform(read_resized(self.paths[index], self.size, self.interpolation)), True
        except ImageReadError:
            image, ok = torch.zeros(3, *self.size), False
        return {"image": image, "ok": ok, "camid": -1, "viewid": -1}


@dataclass
class FileFeatures:
    """Features of image files: ``feats`` float32 ``[N, D]`` (CPU) of the readable ``paths``; the
    files that could not be read in ``unreadable``; throughput in ``images_per_s``."""

    feats: torch.Tensor
    paths: list[str]
    unreadable: list[str]
    seconds: float

    @property
    def images_per_s(self) -> float:
        return (len(self.paths) + len(self.unreadable)) / max(self.seconds, 1e-9)

    def readable_labels(self, paths: Sequence[str], labels: np.ndarray | None) -> np.ndarray | None:
        """The entries of ``labels`` (one per path of ``paths``, the files asked for) of the files that
        were read, in the order of :attr:`paths`."""
        if labels is None:
            return None
        row = {path: i for i, path in enumerate(paths)}
        return labels[[row[path] for path in self.paths]]

    def check_readable(self, *, skip_unreadable: bool) -> str | None:
        """Unreadable files stop the work unless ``skip_unreadable`` (and some file was readable); then
        the message that lists the skipped files is returned, for a warning. None when all were read.

        Raises:
            ValueError: unreadable files without ``skip_unreadable``, or no readable file at all.
        """
        if not self.unreadable:
            return None
        total = len(self.paths) + len(self.unreadable)
        listed = "\n  ".join(self.unreadable[:10]) + (
            f"\n  ... and {len(self.unreadable) - 10} more" if len(self.unreadable) > 10 else ""
        )
        if not skip_unreadable or not self.paths:
            raise ValueError(
                f"{len(self.unreadable)} of {total} image(s) could not be read:\n  {listed}\n"
                + ("remove or fix them, or pass --skip-unreadable" if self.paths else "no image could be read")
            )
        return f"skipped {len(self.unreadable)} unreadable image(s):\n  {listed}"


@torch.no_grad()
def extract_file_features(
    model: torch.nn.Module,
    paths: Sequence[str],
    *,
    transform: Transform,
    image_size: Sequence[int],
    device: torch.device,
    batch_size: int = 64,
    num_workers: int = 0,
    amp_dtype: torch.dtype | None = None,
    flip: bool = False,
    progress: bool = True,
    interpolation: str = "bilinear",
) -> FileFeatures:
    """Features of a user's image files (cameras unknown: no side information), with a progress bar
    showing images/s. Unreadable files are collected, not raised: the caller decides.
    ``transform`` and ``interpolation`` are the test pipeline's."""
    files = _ImageFiles(paths, transform, image_size, interpolation)
    loader = DataLoader(files, batch_size=batch_size, shuffle=False, num_workers=num_workers)
    model.eval()
    chunks: list[torch.Tensor] = []
    ok_flags: list[bool] = []
    start = time.perf_counter()
    with tqdm(total=len(paths), desc="features", unit="img", disable=not progress, leave=False) as bar:
        for batch in loader:
            ok = batch["ok"]
            if bool(ok.any()):
                images = batch["image"][ok].to(device)
                unknown = batch["camid"][ok].to(device)  # -1: no side information
                encode = cast(Encoder, model.encode_image)
                chunks.append(encode_batch(encode, images, unknown, unknown, amp_dtype=amp_dtype, flip=flip).cpu())
            ok_flags.extend(bool(v) for v in ok)
            bar.update(len(ok))
            bar.set_postfix(img_s=f"{bar.n / max(time.perf_counter() - start, 1e-9):.1f}")
    seconds = time.perf_counter() - start
    readable = [p for p, good in zip(paths, ok_flags, strict=True) if good]
    unreadable = [p for p, good in zip(paths, ok_flags, strict=True) if not good]
    dim = chunks[0].shape[1] if chunks else 0
    feats = torch.cat(chunks) if chunks else torch.empty(0, dim)
    return FileFeatures(feats, readable, unreadable, seconds)


def extract_model_features(
    model: FeatureModel,
    paths: Sequence[str],
    *,
    batch_size: int = 64,
    num_workers: int = 0,
    flip: bool = False,
    progress: bool = True,
) -> FileFeatures:
    """:func:`extract_file_features` with ``model``'s own preprocessing, on its device, in the precision
    that is automatic there: what ``extract``, ``index build`` and ``search`` compute of image files."""
    return extract_file_features(
        model.model,
        paths,
        transform=model.transform,
        image_size=model.image_size,
        device=model.device,
        batch_size=batch_size,
        num_workers=num_workers,
        amp_dtype=resolve_precision("auto", model.device),
        flip=flip,
        progress=progress,
        interpolation=model.interpolation,
    )
