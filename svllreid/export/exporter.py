"""``svllreid export``: a trained network's test-time image branch as an ONNX or TorchScript file.

The file computes what ``svllreid extract`` computes: ``images [B, 3, H, W]`` float (resized to the
network's input, scaled to [0, 1], minus the mean, over the std: the preprocessing its metadata states)
in, L2-normalised features ``features [B, D]`` out, for any batch size. A network with SIE can take a
second input, ``side_info [B, 2]`` int64 (camera, view; -1 unknown), with ``side_info=True``; otherwise
every camera and view is fixed as unknown, and the metadata says so.

ONNX goes through ``torch.export`` (the exporter BoxMOT and torch recommend) and falls back to the
TorchScript-based exporter where that fails; the metadata names the one used. After writing, the file is
run (onnxruntime, or torch for TorchScript) on a batch of another size than the traced one and compared
with the network: a file that does not reproduce its features is not kept.

``int8_images`` quantises an ONNX file to INT8 for CPUs (:func:`quantize_int8`: onnxruntime's static
quantisation, calibrated on the user's images), checked against the fp32 network by a cosine tolerance.

A checkpoint calibrated by ``svllreid calibrate`` (its sidecar, :func:`svllreid.inference.calibration.sidecar_path`)
passes its same-identity threshold on: ONNX ``metadata_props`` ``svllreid.calibration`` (the calibration's
JSON) and ``svllreid.max_cosine_distance`` (``1 - threshold``, a tracker's gate), TorchScript's extra file
``calibration.json``. An uncalibrated checkpoint's file records no threshold.
"""

from __future__ import annotations

import copy
import io
import json
import logging
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from svllreid.errors import ExportError, MissingExtraError
from svllreid.fileio import atomic_write, check_writable
from svllreid.inference.calibration import Calibration, sidecar_calibration
from svllreid.inference.image_branch import ImageBranch, quiet_tracing
from svllreid.inference.onnx_backend import (
    CALIBRATION_KEY,
    DISTANCE_KEY,
    FORMAT,
    METADATA_KEY,
    ONNX_EXTRA,
    cpu_session,
    parse_export_facts,
)
from svllreid.inference.trained import TrainedModel
from svllreid.version import __version__

__all__ = [
    "FORMATS",
    "INT8_MIN_COSINE",
    "INT8_MIN_IMAGES",
    "SUFFIXES",
    "TOLERANCE",
    "TORCHSCRIPT_CALIBRATION",
    "VERSION",
    "ExportReport",
    "calibration_props",
    "check_export_options",
    "check_suffix",
    "checkpoint_calibration",
    "distance_threshold",
    "export_facts",
    "export_image_branch",
    "export_module_onnx",
    "read_export_facts",
]

log = logging.getLogger(__name__)

FORMATS = ("onnx", "torchscript")
VERSION = 1
#: Largest difference from the (fp32) network's L2-normalised features that a written file may show. A
#: feature of ViT-B/16 has 1,280 elements of about 0.03: an fp16 file that is wrong cannot stay within 5e-3.
TOLERANCE = {"fp32": 1e-4, "fp16": 5e-3}
#: INT8 ONNX: the fewest images to calibrate its activation ranges on, and the lowest cosine similarity
#: between one image's INT8 features and the fp32 network's that a written file may show.
INT8_MIN_IMAGES = 16
INT8_MIN_COSINE = 0.98
#: Images per batch when calibrating or checking an INT8 file.
INT8_BATCH = 16
#: TorchScript extra file of a calibrated export: the calibration's JSON (ONNX: ``CALIBRATION_KEY``).
TORCHSCRIPT_CALIBRATION = "calibration.json"


@dataclass(kw_only=True)
class ExportReport:
    """What :func:`export_image_branch` wrote and measured."""

    path: Path
    format: str
    exporter: str
    inputs: list[str]
    feature_dim: int
    max_abs_diff: float
    checked_with: str
    seconds: float
    facts: dict[str, Any]
    #: The same-identity threshold the file carries (None: the checkpoint is uncalibrated).
    calibration: Calibration | None = None
    #: An INT8 file: how it was quantised and how close it stays to the fp32 network (None: not INT8).
    int8: dict[str, Any] | None = None


def checkpoint_calibration(trained: TrainedModel) -> Calibration | None:
    """The calibration beside the checkpoint ``trained`` was loaded from (``NAME.calibration.json``),
    checked against its weights and against the exports' features (no flipped images added); None: the
    checkpoint is uncalibrated.

    Raises:
        CalibrationError: a damaged sidecar, one chosen on other weights than ``trained``'s, or on
            features with their flipped images' added.
    """
    return sidecar_calibration(trained.checkpoint.path, trained.weights_digest(), str(trained.checkpoint.path))


def distance_threshold(calibration: Calibration) -> float:
    """A tracker's cosine-distance gate for a similarity threshold: ``1 - threshold`` (same identity when
    the distance is at most this)."""
    return 1.0 - calibration.threshold


def calibration_props(calibration: Calibration | None) -> dict[str, str]:
    """The ONNX ``metadata_props`` that carry a calibration (none for an uncalibrated model)."""
    if calibration is None:
        return {}
    return {CALIBRATION_KEY: calibration.to_json(), DISTANCE_KEY: repr(distance_threshold(calibration))}


def export_facts(trained: TrainedModel, *, side_info: bool, precision: str, exporter: str) -> dict[str, Any]:
    """The JSON stored in an exported file: how to feed it, what it returns, and which network it is."""
    height, width = trained.image_size
    sie = trained.spec.sie
    return {
        "format": FORMAT,
        "version": VERSION,
        "svllreid": __version__,
        "exporter": exporter,
        "precision": precision,
        "inputs": {
            "images": f"[B, 3, {height}, {width}] {'float16' if precision == 'fp16' else 'float32'}, RGB",
            **({"side_info": "[B, 2] int64: camera id, view id (-1 unknown)"} if side_info else {}),
        },
        "side_info": (
            "input side_info" if side_info else ("fixed as unknown (-1)" if sie else "none (the network has no SIE)")
        ),
        "output": "features [B, D] float, L2-normalised (f12 and f_proj before the BNNecks); cosine = dot product",
        "preprocessing": {
            "image_size": [height, width],
            "interpolation": trained.interpolation,
            "resize": f"{trained.interpolation}, antialiased (PIL), to exactly H x W",
            "scale": "pixel / 255",
            "mean": list(trained.config.data.pixel_mean),
            "std": list(trained.config.data.pixel_std),
            "formula": "(pixel / 255 - mean) / std, per channel; normalise once, here",
        },
        "identity": trained.identity(),
        # The last text_dim columns of the output are f_proj, comparable with the checkpoint's text features.
        "text_dim": trained.text_dim,
    }


def _examples(
    trained: TrainedModel, size: tuple[int, int], batch: int, dtype: torch.dtype, side_info: bool, seed: int
) -> tuple[torch.Tensor, ...]:
    generator = torch.Generator().manual_seed(seed)
    images = torch.randn(batch, 3, *size, generator=generator).to(dtype)
    if not side_info:
        return (images,)
    spec = trained.spec
    cameras = torch.randint(-1, max(spec.num_cameras, 1), (batch,), generator=generator)
    views = torch.randint(-1, max(spec.num_views, 1), (batch,), generator=generator)
    return images, torch.stack([cameras, views], dim=1)


def _onnx_model(module: torch.nn.Module, example: tuple[torch.Tensor, ...], opset: int | None) -> tuple[Any, str]:
    """The ONNX model proto of ``module`` with a dynamic batch, and the exporter that made it."""
    names = ["images", "side_info"][: len(example)]
    try:
        batch = torch.export.Dim("batch", min=1)
        with quiet_tracing():
            program = torch.onnx.export(
                module,
                example,
                dynamo=True,
                input_names=names,
                output_names=["features"],
                dynamic_shapes=tuple({0: batch} for _ in example),
                opset_version=opset,
                verbose=False,
            )
        if program is None:
            raise RuntimeError("torch.onnx.export returned no program")
        return program.model_proto, "torch.export"
    except Exception as err:  # any failure of the new exporter: try the older one
        log.info("torch.export-based ONNX export failed (%s); using the TorchScript-based exporter", err)
    axes = {name: {0: "batch"} for name in [*names, "features"]}
    with quiet_tracing(), tempfile.TemporaryDirectory() as folder:
        file = Path(folder) / "model.onnx"
        torch.onnx.export(
            module,
            example,
            str(file),
            dynamo=False,
            input_names=names,
            output_names=["features"],
            dynamic_axes=axes,
            opset_version=opset or 17,
        )
        data = file.read_bytes()
    import onnx

    return onnx.load_from_string(data), "torchscript-based ONNX exporter"


def _run_onnx(data: bytes, inputs: tuple[torch.Tensor, ...]) -> np.ndarray:
    session = cpu_session(data, float16=inputs[0].dtype == torch.float16)
    feed = {arg.name: tensor.numpy() for arg, tensor in zip(session.get_inputs(), inputs, strict=True)}
    return np.asarray(session.run(None, feed)[0])


def check_export_options(fmt: str, *, opset: int | None = None) -> None:
    """The checks of :func:`export_image_branch` that need no network, for a command to make before it
    loads one.

    Raises:
        ValueError: an unknown format, or ``opset`` for TorchScript.
        MissingExtraError: ONNX without onnx / onnxscript / onnxruntime installed.
    """
    if fmt not in FORMATS:
        raise ValueError(f"unknown export format {fmt!r}; choose one of {', '.join(FORMATS)}")
    if opset is not None and fmt != "onnx":
        raise ValueError("--opset applies to ONNX exports only")
    if fmt == "onnx":
        try:
            import onnx  # noqa: F401 (the exporters need it)
            import onnxruntime  # noqa: F401 (the written file is checked with it)
            import onnxscript  # noqa: F401
        except ImportError as err:
            raise MissingExtraError(f"ONNX export needs onnx, onnxscript and onnxruntime: {ONNX_EXTRA}") from err


def export_image_branch(
    trained: TrainedModel,
    out: str | Path,
    *,
    fmt: str,
    fp16: bool = False,
    opset: int | None = None,
    side_info: bool = False,
    int8_images: list[str] | None = None,
) -> ExportReport:
    """Write ``trained``'s test-time image branch to ``out`` as ``fmt`` ("onnx" or "torchscript").

    Args:
        fp16: export in half precision (for GPUs; the check then allows :data:`TOLERANCE` ["fp16"]).
        int8_images: quantise the ONNX file to INT8 (:func:`quantize_int8`), its activation ranges
            calibrated on these image files (at least :data:`INT8_MIN_IMAGES`).
        opset: ONNX opset (default: the exporter's).
        side_info: add the ``side_info`` input (networks with SIE only).

    The checkpoint's calibration, if it has one, goes into the file (see the module docstring).

    Raises:
        ValueError: an unknown format, ``side_info`` for a network without SIE, or ``opset`` for TorchScript.
        MissingExtraError: ONNX without onnx / onnxscript / onnxruntime installed.
        ExportError: the written file does not give the network's features.
        CalibrationError: the checkpoint's calibration sidecar is damaged or was chosen on other weights.
    """
    check_export_options(fmt, opset=opset)
    if side_info and not trained.spec.sie:
        raise ValueError("side_info: this network has no SIE, so cameras and views change nothing; export without it")
    if int8_images is not None:
        check_int8_options(fmt, fp16=fp16, images=int8_images)
    module = ImageBranch(trained.model, side_info=side_info).eval().cpu()
    return _write(trained, module, out, fmt=fmt, fp16=fp16, opset=opset, side_info=side_info, int8_images=int8_images)


def export_module_onnx(
    trained: TrainedModel,
    module: torch.nn.Module,
    out: str | Path,
    *,
    input_size: tuple[int, int],
    facts: Mapping[str, Any],
) -> ExportReport:
    """Export a module around ``trained``'s image branch (such as BoxMOT's input adapter) to ONNX: one
    ``images`` input of ``input_size``, checked as :func:`export_image_branch` checks its files. ``facts``
    replace entries of the metadata (:func:`export_facts`): the inputs and preprocessing the module expects.
    The checkpoint's calibration goes into the file as :func:`export_image_branch` puts it there; the
    module must then give the network's own features.

    Raises:
        CalibrationError: the checkpoint's calibration sidecar is damaged or was chosen on other weights.
    """
    check_export_options("onnx")
    return _write(trained, module, out, fmt="onnx", input_size=input_size, facts=facts)


def _write(
    trained: TrainedModel,
    module: torch.nn.Module,
    out: str | Path,
    *,
    fmt: str,
    fp16: bool = False,
    opset: int | None = None,
    side_info: bool = False,
    input_size: tuple[int, int] | None = None,
    facts: Mapping[str, Any] | None = None,
    int8_images: list[str] | None = None,
) -> ExportReport:
    out = check_writable(out)
    check_suffix(out, fmt)
    calibration = checkpoint_calibration(trained)  # a sidecar of other weights fails before the export
    start = time.perf_counter()
    precision = "fp16" if fp16 else "fp32"
    dtype = torch.float16 if fp16 else torch.float32
    size = input_size or trained.image_size
    check = _examples(trained, size, 3, torch.float32, side_info, seed=1)  # another batch than the traced one
    with torch.no_grad():
        expected = module(*check).float().numpy()  # the fp32 network, whatever the file's precision
    if fp16:
        module = copy.deepcopy(module).half()
        check = tuple(t.half() if t.is_floating_point() else t for t in check)
    example = _examples(trained, size, 2, dtype, side_info, seed=0)

    def facts_of(exporter: str) -> dict[str, Any]:
        return {**export_facts(trained, side_info=side_info, precision=precision, exporter=exporter), **(facts or {})}

    if fmt == "onnx":
        proto, exporter = _onnx_model(module, example, opset)
        written = facts_of(exporter)
        import onnx

        props = {entry.key: entry.value for entry in proto.metadata_props}
        props |= {METADATA_KEY: json.dumps(written), **calibration_props(calibration)}
        onnx.helper.set_model_props(proto, props)
        data = proto.SerializeToString()
        got, checked_with = _run_onnx(data, check), "onnxruntime (CPU)"
    else:
        exporter = "torch.jit.trace"
        written = facts_of(exporter)
        with quiet_tracing(), torch.no_grad():
            script = torch.jit.trace(module, example, check_trace=False)
            buffer = io.BytesIO()
            extra = {f"{METADATA_KEY}.json": json.dumps(written)}
            if calibration is not None:
                extra[TORCHSCRIPT_CALIBRATION] = calibration.to_json()
            torch.jit.save(script, buffer, _extra_files=extra)
            data = buffer.getvalue()
            got, checked_with = script(*check).float().numpy(), "torch (the traced module)"
    gap = float(np.abs(got.astype(np.float32) - expected).max())
    if not gap <= TOLERANCE[precision]:
        raise ExportError(
            f"the exported {fmt} file gives features that differ from the network's by {gap:.3g} (allowed "
            f"{TOLERANCE[precision]:g}); nothing was written to {out}. Try the other format or fp32"
        )
    int8 = None
    if int8_images is not None:  # the fp32 graph is right: quantise it, and check the INT8 file in turn
        data, int8 = quantize_int8(trained, module, data, int8_images, side_info=side_info)
        written = {**written, "precision": "int8", "int8": int8}
        proto = onnx.load_from_string(data)
        props = {entry.key: entry.value for entry in proto.metadata_props}
        props |= {METADATA_KEY: json.dumps(written), **calibration_props(calibration)}
        onnx.helper.set_model_props(proto, props)
        data = proto.SerializeToString()
        checked_with = f"onnxruntime (CPU), the INT8 file on {int8['images']} calibration images"
        gap = int8["max_abs_diff"]
    atomic_write(out, lambda tmp: Path(tmp).write_bytes(data))
    inputs = ["images", "side_info"][: len(example)]
    return ExportReport(
        path=out,
        format=fmt,
        exporter=exporter,
        inputs=inputs,
        feature_dim=int(expected.shape[1]),
        max_abs_diff=gap,
        checked_with=checked_with,
        seconds=time.perf_counter() - start,
        facts=written,
        calibration=calibration,
        int8=int8,
    )


def check_int8_options(fmt: str, *, fp16: bool, images: list[str]) -> None:
    """The checks of an INT8 export that need no network (a command makes them before it loads one).

    Raises:
        ValueError: INT8 asked of TorchScript or together with fp16, or fewer than :data:`INT8_MIN_IMAGES`
            calibration images.
        MissingExtraError: onnxruntime's quantisation tools missing.
    """
    if fmt != "onnx":
        raise ValueError("--int8 quantises ONNX files (onnxruntime's static quantisation); use --format onnx")
    if fp16:
        raise ValueError("--int8 and --fp16 are two precisions; choose one")
    if len(images) < INT8_MIN_IMAGES:
        raise ValueError(
            f"INT8 calibration needs at least {INT8_MIN_IMAGES} images of the kind the model will see (crops of "
            f"people or vehicles); got {len(images)}. Pass a folder of them with --calibration-images"
        )
    try:
        from onnxruntime.quantization import quantize_static  # noqa: F401
    except ImportError as err:
        raise MissingExtraError(f"INT8 export needs onnxruntime's quantisation tools: {ONNX_EXTRA}") from err


def _int8_batches(trained: TrainedModel, images: list[str], side_info: bool) -> list[dict[str, np.ndarray]]:
    """The images as the network's own preprocessing makes them (resize, scale, normalise), in batches
    of the ONNX inputs; cameras and views unknown.

    Raises:
        ImageReadError: a file that is not a readable image.
    """
    from svllreid.data.loaders import read_resized

    transform = trained.transform
    pixels = [transform(read_resized(path, trained.image_size, trained.interpolation)) for path in images]
    batches = []
    for lo in range(0, len(pixels), INT8_BATCH):
        batch = torch.stack(pixels[lo : lo + INT8_BATCH]).numpy().astype(np.float32)
        feed = {"images": batch}
        if side_info:
            feed["side_info"] = np.full((len(batch), 2), -1, np.int64)
        batches.append(feed)
    return batches


def quantize_int8(
    trained: TrainedModel, module: torch.nn.Module, data: bytes, images: list[str], *, side_info: bool
) -> tuple[bytes, dict[str, Any]]:
    """An fp32 ONNX file quantised to INT8 by onnxruntime's static post-training quantisation (QDQ
    format, per-channel INT8 weights, UINT8 activations), its activation ranges calibrated on ``images``
    through the network's own preprocessing; and what it measured.

    The INT8 file is then run on the same images and compared with the fp32 network (``module``): every
    image's features must keep a cosine similarity of at least :data:`INT8_MIN_COSINE` with the network's,
    or nothing is written. The agreement of a small search (each image ranking the others) is measured
    and reported, not required.

    Raises:
        ImageReadError: a calibration file that is not an image. ExportError: the INT8 file strays from
            the network beyond the tolerance.
    """
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    batches = _int8_batches(trained, images, side_info)

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
    with torch.no_grad():
        expected = np.concatenate(
            [module(*(torch.from_numpy(v) for v in feed.values())).float().numpy() for feed in batches]
        )
    got = got / np.maximum(np.linalg.norm(got, axis=1, keepdims=True), 1e-12)
    expected = expected / np.maximum(np.linalg.norm(expected, axis=1, keepdims=True), 1e-12)
    cosine = (got * expected).sum(1)
    k = min(10, len(images) - 1)
    ranked_fp32 = np.argsort(-(expected @ expected.T), axis=1, kind="stable")[:, 1 : k + 1]
    ranked_int8 = np.argsort(-(got @ got.T), axis=1, kind="stable")[:, 1 : k + 1]
    overlap = [len(set(a) & set(b)) / k for a, b in zip(ranked_fp32, ranked_int8, strict=True)]
    lowest = float(cosine.min())
    report = {
        "method": "onnxruntime static quantisation: QDQ, per-channel INT8 weights, UINT8 activations",
        "images": len(images),
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
    return quantized, report


#: File suffixes by format: ONNX files end in .onnx (the backends and FeatureExtractor tell them by it).
SUFFIXES = {"onnx": (".onnx",), "torchscript": (".pt", ".pth", ".ts")}


def check_suffix(path: str | Path, fmt: str) -> None:
    """Refuse a file name whose suffix says another format (``--model`` and :class:`FeatureExtractor`
    choose the runtime by it)."""
    suffix = Path(path).suffix.lower()
    if suffix not in SUFFIXES[fmt]:
        raise ValueError(
            f"{Path(path).name}: {'an ONNX' if fmt == 'onnx' else 'a TorchScript'} export is named "
            f"*{' or *'.join(SUFFIXES[fmt])}; the runtime is chosen "
            f"by the suffix, so name it e.g. {Path(path).with_suffix(SUFFIXES[fmt][0]).name}"
        )


def read_export_facts(path: str | Path) -> dict[str, Any]:
    """The facts :func:`export_image_branch` stored in an ONNX or TorchScript file.

    Raises:
        ValueError: not a readable export of svllreid.
        MissingExtraError: an ONNX file without onnx installed.
    """
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{path} does not exist; write it with 'svllreid export'")
    if path.suffix == ".onnx":
        try:
            import onnx
        except ImportError as err:
            raise MissingExtraError(f"reading ONNX files needs onnx: {ONNX_EXTRA}") from err
        try:
            proto = onnx.load(str(path), load_external_data=False)
        except Exception as err:
            raise ValueError(f"{path} is not a readable ONNX file ({type(err).__name__}: {err})") from err
        props = {p.key: p.value for p in proto.metadata_props}
        text = props.get(METADATA_KEY)
    else:
        extra = {f"{METADATA_KEY}.json": ""}
        try:
            with quiet_tracing():
                torch.jit.load(str(path), map_location="cpu", _extra_files=extra)
        except Exception as err:
            raise ValueError(f"{path} is not a readable TorchScript file ({type(err).__name__}: {err})") from err
        text = extra[f"{METADATA_KEY}.json"] or None
    return parse_export_facts(text, path)
