"""``svllreid.FeatureExtractor``: features of images in memory or on disk, for trackers and scripts.

    extractor = FeatureExtractor("runs/market-svll")            # a checkpoint (torch) ...
    extractor = FeatureExtractor("market-svll.onnx")            # ... or an exported file (onnxruntime; .xml: OpenVINO)
    feats = extractor(["a.jpg", "b.jpg"])                        # paths
    feats = extractor([Image.open("a.jpg")])                     # PIL images
    feats = extractor(crops, bgr=True)                           # HWC uint8 arrays from OpenCV
    feats = extractor(torch.stack(batch))                        # a uint8 [N, 3, H, W] RGB tensor
    extractor.same_identity(track_crops, gallery_feats)          # [N, M] bools, by the calibrated threshold

Every kind becomes what ``svllreid extract`` makes of a file (RGB, resized to the network's input by its
test filter, normalised as it was trained), so the features equal extract's: ``[N, D]`` float32 numpy,
L2-normalised, in batches of ``batch_size``. Cameras are unknown, as in extract. One exception: a JPEG
file of at least four times the input size is decoded by extract (and here, given as a path) at a
reduced scale (``svllreid.data.loaders.REDUCED_DECODING``), which an image already in memory cannot be,
so such a photo given decoded differs slightly.

"Same person?" decisions follow the model's calibrated threshold (``svllreid calibrate``; the sidecar
beside a checkpoint, or the metadata of an ONNX export): :meth:`FeatureExtractor.same_identity` and
:meth:`FeatureExtractor.verify`. An uncalibrated model raises instead of guessing, unless a threshold
is given.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from svllreid.data.loaders import read_resized, resized_pixels
from svllreid.errors import CalibrationError
from svllreid.inference.calibration import UNCALIBRATED, Calibration, sidecar_calibration
from svllreid.inference.exported import is_exported_file, load_exported_model
from svllreid.inference.features import Encoder, encode_batch
from svllreid.inference.onnx_backend import ExportedModel
from svllreid.precision import resolve_precision

__all__ = ["FeatureExtractor", "ImageInput"]

ImageInput = str | Path | Image.Image | np.ndarray


class FeatureExtractor:
    """See the module docstring.

    Example:
        ``checkpoint`` is a trained model (a run's ``checkpoints/model.safetensors``); images are RGB
        arrays, PIL images or files, of any size:

        >>> import numpy as np
        >>> from svllreid.inference.extractor import FeatureExtractor
        >>> extractor = FeatureExtractor(checkpoint, device="cpu")
        >>> feats = extractor([np.zeros((128, 64, 3), dtype=np.uint8), np.ones((90, 40, 3), dtype=np.uint8)])
        >>> feats.shape, feats.dtype.name
        ((2, 192), 'float32')

    Args:
        model: a checkpoint file or run directory (the torch network), or a file from ``svllreid export``
            run on the CPU: ``.onnx`` (onnxruntime) or ``.xml`` (an OpenVINO IR, its ``.bin`` beside it).
        device: for a checkpoint: ``auto`` (CUDA when available), ``cpu`` or ``cuda``.
        batch_size: images per forward pass.
        flip: add the features of the horizontally flipped images (as ``extract --flip``).
        threshold: the same-identity threshold on cosine similarity for :meth:`same_identity`; None: the
            model's calibrated one (:attr:`calibration`).
    """

    def __init__(
        self,
        model: str | Path,
        *,
        device: str = "auto",
        batch_size: int = 64,
        flip: bool = False,
        threshold: float | None = None,
    ):
        if threshold is not None and not -1.0 <= threshold <= 1.0:
            raise ValueError(f"threshold is a cosine similarity, in [-1, 1]; got {threshold}")
        self.threshold_given = threshold
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1; got {batch_size}")
        self.encoder: Any
        if is_exported_file(model):
            self.encoder = load_exported_model(model, device=device)
            self.amp_dtype = None
        else:
            from svllreid.inference.trained import load_trained_model  # open_clip: only for checkpoints

            self.encoder = load_trained_model(model, device)
            self.amp_dtype = resolve_precision("auto", self.encoder.device)
        self.batch_size, self.flip = batch_size, flip
        self.transform = self.encoder.transform

    @property
    def runtime(self) -> str:
        return self.encoder.runtime if isinstance(self.encoder, ExportedModel) else "torch"

    @property
    def feature_dim(self) -> int:
        return int(self.encoder.feature_dim)

    @property
    def image_size(self) -> tuple[int, int]:
        return self.encoder.image_size

    def describe(self) -> str:
        return str(self.encoder.describe())

    @property
    def calibration(self) -> Calibration | None:
        """The model's calibrated threshold: the sidecar beside a checkpoint, or what an exported file
        carries; None when uncalibrated.

        Raises:
            CalibrationError: a sidecar chosen on other weights than the checkpoint's or with another
                ``flip`` than this extractor's, or a damaged one.
        """
        if not hasattr(self, "_calibration"):
            found: Calibration | None
            if isinstance(self.encoder, ExportedModel):
                found = self.encoder.calibration
                if found is not None:
                    found.check_flip(self.flip, self.describe())
            else:
                checkpoint = self.encoder.checkpoint
                found = sidecar_calibration(
                    checkpoint.path, self.encoder.weights_digest(), str(checkpoint.name), flip=self.flip
                )
            self._calibration = found
        return self._calibration

    @property
    def threshold(self) -> float:
        """The same-identity threshold: the one given, else the calibrated one.

        Raises:
            CalibrationError: neither (the model is uncalibrated).
        """
        if self.threshold_given is not None:
            return self.threshold_given
        if self.calibration is None:
            raise CalibrationError(f"{self.describe()} is {UNCALIBRATED}; or pass threshold= to FeatureExtractor")
        return self.calibration.threshold

    def _features(self, images: Sequence[ImageInput] | torch.Tensor | np.ndarray, bgr: bool) -> np.ndarray:
        """Features of images, or 2-D float features given as they are (L2-normalised here)."""
        if isinstance(images, np.ndarray) and images.ndim == 2 and np.issubdtype(images.dtype, np.floating):
            if images.shape[1] != self.feature_dim:
                raise ValueError(f"features must be [N, {self.feature_dim}] for this model; got {images.shape}")
            norms = np.linalg.norm(images, axis=1, keepdims=True)
            return (images / np.maximum(norms, np.finfo(np.float32).tiny)).astype(np.float32)
        return self(images, bgr=bgr)

    def similarity(
        self, a: Sequence[ImageInput] | np.ndarray, b: Sequence[ImageInput] | np.ndarray, *, bgr: bool = False
    ) -> np.ndarray:
        """``[len(a), len(b)]`` cosine similarities of two sets of images (or of features [N, D] this
        extractor made)."""
        return self._features(a, bgr) @ self._features(b, bgr).T

    def same_identity(
        self, a: Sequence[ImageInput] | np.ndarray, b: Sequence[ImageInput] | np.ndarray, *, bgr: bool = False
    ) -> np.ndarray:
        """``[len(a), len(b)]`` booleans: whether each pair shows the same identity, by :attr:`threshold`.

        Raises:
            CalibrationError: an uncalibrated model and no ``threshold`` given.
        """
        threshold = self.threshold  # an uncalibrated model fails before any image is encoded
        return self.similarity(a, b, bgr=bgr) >= threshold

    def verify(self, a: ImageInput | np.ndarray, b: ImageInput | np.ndarray, *, bgr: bool = False) -> dict[str, Any]:
        """Whether two images (or two feature vectors) show the same identity: ``same_identity``, the
        ``score`` (cosine similarity), the ``threshold`` and the ``operating_point`` it stands for.

        Raises:
            CalibrationError: an uncalibrated model and no ``threshold`` given.
        """
        threshold = self.threshold

        def one(x: ImageInput | np.ndarray) -> Any:
            return x[None] if isinstance(x, np.ndarray) and x.ndim == 1 else [x]

        score = float(self.similarity(one(a), one(b), bgr=bgr)[0, 0])
        point = (
            "given threshold"
            if self.threshold_given is not None or self.calibration is None
            else self.calibration.operating_point
        )
        return {"same_identity": score >= threshold, "score": score, "threshold": threshold, "operating_point": point}

    def _pixels(self, image: ImageInput, bgr: bool) -> torch.Tensor:
        size, interpolation = self.encoder.image_size, self.encoder.interpolation
        if isinstance(image, str | Path):
            return read_resized(str(image), size, interpolation)
        if isinstance(image, np.ndarray):
            if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
                raise ValueError(
                    f"an array image must be HWC uint8 with 3 channels; got {image.dtype} {tuple(image.shape)}"
                )
            image = Image.fromarray(np.ascontiguousarray(image[:, :, ::-1] if bgr else image))
        elif not isinstance(image, Image.Image):
            raise TypeError(
                f"cannot take a {type(image).__name__} as an image: pass paths, PIL images, HWC uint8 arrays or "
                "a uint8 [N, 3, H, W] tensor"
            )
        return torch.from_numpy(resized_pixels(image, size, interpolation)).permute(2, 0, 1)

    def _inputs(self, images: Sequence[ImageInput] | torch.Tensor | np.ndarray, bgr: bool) -> Iterable[torch.Tensor]:
        if isinstance(images, torch.Tensor):
            if images.ndim != 4 or images.shape[1] != 3 or images.dtype != torch.uint8:
                raise ValueError(
                    f"a tensor batch must be uint8 [N, 3, H, W] RGB; got {images.dtype} {tuple(images.shape)}"
                )
            order = [2, 1, 0] if bgr else [0, 1, 2]
            return (self._pixels(Image.fromarray(img[order].permute(1, 2, 0).numpy()), False) for img in images)
        if isinstance(images, np.ndarray) and images.ndim == 4:  # a batch of HWC arrays
            return (self._pixels(img, bgr) for img in images)
        if isinstance(images, np.ndarray | Image.Image | str | Path):
            raise TypeError(f"pass a list of images (or a batch), not one {type(images).__name__}: extractor([image])")
        return (self._pixels(img, bgr) for img in images)

    @torch.no_grad()
    def __call__(self, images: Sequence[ImageInput] | torch.Tensor | np.ndarray, *, bgr: bool = False) -> np.ndarray:
        """``[N, D]`` float32 L2-normalised features of ``images`` (see the module docstring);
        ``bgr``: arrays (or a tensor) hold BGR channels, as OpenCV gives them."""
        device = self.encoder.device
        encode: Encoder = self.encoder.model.encode_image
        chunks: list[torch.Tensor] = []
        batch: list[torch.Tensor] = []

        def flush() -> None:
            pixels = torch.stack([self.transform(p) for p in batch]).to(device)
            unknown = torch.full((len(batch),), -1, dtype=torch.long, device=device)
            feats = encode_batch(encode, pixels, unknown, unknown, amp_dtype=self.amp_dtype, flip=self.flip)
            chunks.append(feats.cpu())
            batch.clear()

        for pixels in self._inputs(images, bgr):
            batch.append(pixels)
            if len(batch) == self.batch_size:
                flush()
        if batch:
            flush()
        if not chunks:
            return np.zeros((0, self.feature_dim), dtype=np.float32)
        return torch.cat(chunks).numpy().astype(np.float32, copy=False)
