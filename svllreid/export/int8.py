"""INT8 exports for CPUs: static post-training quantisation calibrated on the user's images, and the
check every INT8 file passes before it is kept.

Two quantisers, one per runtime, both calibrated on images prepared by the network's own preprocessing
(resize, scale, normalise):
- ONNX (:func:`quantize_onnx_int8`): onnxruntime's ``quantize_static``, QDQ format, per-channel INT8
  weights, UINT8 activations;
- OpenVINO (:func:`svllreid.export.openvino.quantize_openvino_int8`): NNCF's post-training quantisation.

Whichever made it, an INT8 file is run on the calibration images and compared with the fp32 network
(:func:`int8_agreement`): every image's features must keep a cosine similarity of at least
:data:`INT8_MIN_COSINE` with the network's, or nothing is written. How well a small search agrees (each
image ranking the others) is measured and reported, not required: with a few dozen images it says more
about the images than about the file.
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from svllreid.errors import ExportError, MissingExtraError
from svllreid.inference.onnx_backend import ONNX_EXTRA, cpu_session
from svllreid.inference.openvino_backend import OPENVINO_EXTRA
from svllreid.inference.trained import TrainedModel

__all__ = [
    "INT8_BATCH",
    "INT8_FORMATS",
    "INT8_MIN_COSINE",
    "INT8_MIN_IMAGES",
    "calibration_batches",
    "check_int8_options",
    "int8_agreement",
    "quantize_onnx_int8",
]

#: The fewest images to calibrate activation ranges on, and the lowest cosine similarity between one
#: image's INT8 features and the fp32 network's that a written file may show.
INT8_MIN_IMAGES = 16
INT8_MIN_COSINE = 0.98
#: Images per batch when calibrating or checking an INT8 file.
INT8_BATCH = 16
#: The export formats that have an INT8 quantiser.
INT8_FORMATS = ("onnx", "openvino")


def check_int8_options(fmt: str, *, fp16: bool, images: list[str]) -> None:
    """The checks of an INT8 export that need no network (a command makes them before it loads one).

    Raises:
        ValueError: INT8 asked of TorchScript or together with fp16, or fewer than :data:`INT8_MIN_IMAGES`
            calibration images.
        MissingExtraError: the format's quantiser is not installed.
    """
    if fmt not in INT8_FORMATS:
        raise ValueError(
            "--int8 quantises ONNX files (onnxruntime) and OpenVINO files (NNCF); use --format onnx or openvino"
        )
    if fp16:
        raise ValueError("--int8 and --fp16 are two precisions; choose one")
    if len(images) < INT8_MIN_IMAGES:
        raise ValueError(
            f"INT8 calibration needs at least {INT8_MIN_IMAGES} images of the kind the model will see (crops of "
            f"people or vehicles); got {len(images)}. Pass a folder of them with --calibration-images"
        )
    if fmt == "onnx":
        try:
            from onnxruntime.quantization import quantize_static  # noqa: F401
        except ImportError as err:
            raise MissingExtraError(f"INT8 ONNX export needs onnxruntime's quantisation tools: {ONNX_EXTRA}") from err
    else:
        try:
            import nncf  # noqa: F401
        except ImportError as err:
            raise MissingExtraError(f"INT8 OpenVINO export needs NNCF: {OPENVINO_EXTRA}") from err


def calibration_batches(trained: TrainedModel, images: list[str], side_info: bool) -> list[dict[str, np.ndarray]]:
    """The images as the network's own preprocessing makes them (resize, scale, normalise), in batches
    of the exported inputs: ``images``, and ``side_info`` with the camera and view ids taking turns over
    unknown (-1) and each of the network's ids, so that the ranges are calibrated, and the INT8 file
    checked, on every SIE entry the file will be fed.

    Raises:
        ImageReadError: a file that is not a readable image.
    """
    from svllreid.data.loaders import read_resized

    transform = trained.transform
    pixels = [transform(read_resized(path, trained.image_size, trained.interpolation)) for path in images]
    spec = trained.spec
    rows = np.arange(len(pixels))
    cameras = rows % (spec.num_cameras + 1) - 1 if spec.num_cameras else np.full(len(pixels), -1)
    views = rows % (spec.num_views + 1) - 1 if spec.num_views else np.full(len(pixels), -1)
    batches = []
    for lo in range(0, len(pixels), INT8_BATCH):
        batch = torch.stack(pixels[lo : lo + INT8_BATCH]).numpy().astype(np.float32)
        feed = {"images": batch}
        if side_info:
            hi = lo + len(batch)
            feed["side_info"] = np.stack([cameras[lo:hi], views[lo:hi]], axis=1).astype(np.int64)
        batches.append(feed)
    return batches


def int8_agreement(
    got: np.ndarray, module: torch.nn.Module, batches: list[dict[str, np.ndarray]], *, method: str
) -> dict[str, Any]:
    """How close an INT8 file's features of the calibration images (``got``, in the order of ``batches``)
    stay to the fp32 network's (``module``), as the report stored with the file.

    Raises:
        ExportError: one image's cosine similarity below :data:`INT8_MIN_COSINE`.
    """
    with torch.no_grad():
        expected = np.concatenate(
            [module(*(torch.from_numpy(v) for v in feed.values())).float().numpy() for feed in batches]
        )
    got = got / np.maximum(np.linalg.norm(got, axis=1, keepdims=True), 1e-12)
    expected = expected / np.maximum(np.linalg.norm(expected, axis=1, keepdims=True), 1e-12)
    cosine = (got * expected).sum(1)
    count = len(got)
    k = min(10, count - 1)
    ranked_fp32 = np.argsort(-(expected @ expected.T), axis=1, kind="stable")[:, 1 : k + 1]
    ranked_int8 = np.argsort(-(got @ got.T), axis=1, kind="stable")[:, 1 : k + 1]
    overlap = [len(set(a) & set(b)) / k for a, b in zip(ranked_fp32, ranked_int8, strict=True)]
    lowest = float(cosine.min())
    report = {
        "method": method,
        "images": count,
        "max_abs_diff": float(np.abs(got - expected).max()),
        "min_cosine": lowest,
        "mean_cosine": float(cosine.mean()),
        "tolerance": INT8_MIN_COSINE,
        # Each calibration image ranks the others: how often the INT8 file's first hit and top k agree.
        "top1_agreement": float((ranked_fp32[:, 0] == ranked_int8[:, 0]).mean()),
        "topk": k,
        "topk_overlap": float(np.mean(overlap)),
    }
    if not lowest >= INT8_MIN_COSINE:
        raise ExportError(
            f"the INT8 file's features of one calibration image keep a cosine similarity of only "
            f"{lowest:.4f} with the network's (allowed down to {INT8_MIN_COSINE}); nothing was written. "
            "Calibrate on more images like those the model will see, or export fp32"
        )
    return report


def quantize_onnx_int8(
    module: torch.nn.Module, data: bytes, batches: list[dict[str, np.ndarray]]
) -> tuple[bytes, dict[str, Any]]:
    """An fp32 ONNX file (``data``) quantised to INT8 by onnxruntime's static post-training quantisation
    (QDQ format, per-channel INT8 weights, UINT8 activations), its activation ranges calibrated on
    ``batches`` (:func:`calibration_batches`); and :func:`int8_agreement`'s report.

    Raises:
        ExportError: the INT8 file strays from the network beyond the tolerance.
    """
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.left = iter(batches)

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self.left, None)

    with tempfile.TemporaryDirectory() as folder:
        fp32, prepared, int8_file = (Path(folder) / name for name in ("fp32.onnx", "pre.onnx", "int8.onnx"))
        fp32.write_bytes(data)
        # ONNX's own shape inference and graph clean-up (onnxruntime's symbolic one fails on torch.export graphs).
        quant_pre_process(str(fp32), str(prepared), skip_symbolic_shape=True)
        root = logging.getLogger()
        level = root.level
        root.setLevel(logging.ERROR)  # the tool warns on the root logger about every 1-D weight it skips
        try:
            quantize_static(
                str(prepared),
                str(int8_file),
                Reader(),
                quant_format=QuantFormat.QDQ,
                per_channel=True,
                activation_type=QuantType.QUInt8,
                weight_type=QuantType.QInt8,
            )
        finally:
            root.setLevel(level)
        quantized = int8_file.read_bytes()
    session = cpu_session(quantized, float16=False)
    got = np.concatenate([np.asarray(session.run(None, feed)[0]) for feed in batches])
    method = "onnxruntime static quantisation: QDQ, per-channel INT8 weights, UINT8 activations"
    return quantized, int8_agreement(got, module, batches, method=method)
