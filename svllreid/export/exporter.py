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

OpenVINO IRs go through ONNX and OpenVINO's converter (:mod:`svllreid.export.openvino`) and are checked
with OpenVINO's CPU plugin in fp32.

``int8_images`` quantises an ONNX file or OpenVINO IR to INT8 for CPUs (:mod:`svllreid.export.int8`:
onnxruntime's static quantisation or NNCF, calibrated on the user's images), checked against the fp32
network by a cosine tolerance.

A checkpoint calibrated by ``svllreid calibrate`` (its sidecar, :func:`svllreid.inference.calibration.sidecar_path`)
passes its same-identity threshold on: ONNX ``metadata_props`` ``svllreid.calibration`` (the calibration's
JSON) and ``svllreid.max_cosine_distance`` (``1 - threshold``, a tracker's gate), TorchScript's extra file
``calibration.json``. An uncalibrated checkpoint's file records no threshold.
"""

from __future__ import annotations

import copy
import importlib
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
from svllreid.export import int8 as int8_tools
from svllreid.export.int8 import INT8_MIN_COSINE, INT8_MIN_IMAGES, calibration_batches, check_int8_options
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
from svllreid.inference.openvino_backend import OPENVINO_EXTRA, import_openvino, read_rt_info
from svllreid.inference.trained import TrainedModel
from svllreid.models.image_encoders import ViTImageEncoder
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
    "export_module",
    "read_export_facts",
]

log = logging.getLogger(__name__)

FORMATS = ("onnx", "openvino", "torchscript")
VERSION = 1
#: Largest difference from the (fp32) network's L2-normalised features that a written file may show. A
#: feature of ViT-B/16 has 1,280 elements of about 0.03: an fp16 file that is wrong cannot stay within 5e-3.
TOLERANCE = {"fp32": 1e-5, "fp16": 5e-3}
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


def _importable(name: str) -> bool:
    try:
        importlib.import_module(name)
    except ImportError:
        return False
    return True


def check_export_options(fmt: str, *, opset: int | None = None, fp16: bool = False) -> None:
    """The checks of :func:`export_image_branch` that need no network, for a command to make before it
    loads one.

    Raises:
        ValueError: an unknown format, ``opset`` for TorchScript, or fp16 for OpenVINO.
        MissingExtraError: ONNX without onnx / onnxscript / onnxruntime installed, OpenVINO without
            onnx / onnxscript / openvino.
    """
    if fmt not in FORMATS:
        raise ValueError(f"unknown export format {fmt!r}; choose one of {', '.join(FORMATS)}")
    if opset is not None and fmt == "torchscript":
        raise ValueError("--opset applies to ONNX and OpenVINO exports only")
    if fp16 and fmt == "openvino":
        raise ValueError(
            "--fp16 is for GPUs, and OpenVINO's CPU plugin computes fp32 (or INT8): export OpenVINO in fp32, "
            "or with --int8 for speed; --format onnx --fp16 writes a half-precision file"
        )
    # The network goes through ONNX for both formats; onnxruntime checks ONNX files, OpenVINO its own.
    needed = {"onnx": ("onnx", "onnxscript", "onnxruntime"), "openvino": ("onnx", "onnxscript", "openvino")}
    missing = [name for name in needed.get(fmt, ()) if not _importable(name)]
    if missing:
        extra = OPENVINO_EXTRA if fmt == "openvino" else ONNX_EXTRA
        raise MissingExtraError(f"{fmt} export needs {', '.join(needed[fmt])} ({', '.join(missing)} missing): {extra}")


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
        fmt: "onnx" (``.onnx``), "openvino" (``.xml`` and its ``.bin``) or "torchscript".
        fp16: export in half precision (for GPUs; the check then allows :data:`TOLERANCE` ["fp16"]).
        int8_images: quantise the ONNX file or OpenVINO IR to INT8 (:mod:`svllreid.export.int8`), its
            activation ranges calibrated on these image files (at least :data:`INT8_MIN_IMAGES`).
        opset: ONNX opset (default: the exporter's).
        side_info: add the ``side_info`` input (networks with SIE only).

    The checkpoint's calibration, if it has one, goes into the file (see the module docstring).

    Raises:
        ValueError: an unknown format, ``side_info`` for a network without SIE, ``opset`` for TorchScript,
            or fp16 for OpenVINO.
        MissingExtraError: the format's tools are not installed.
        ExportError: the written file does not give the network's features.
        CalibrationError: the checkpoint's calibration sidecar is damaged or was chosen on other weights.
    """
    check_export_options(fmt, opset=opset, fp16=fp16)
    if side_info and not trained.spec.sie:
        raise ValueError("side_info: this network has no SIE, so cameras and views change nothing; export without it")
    if int8_images is not None:
        check_int8_options(fmt, fp16=fp16, images=int8_images)
    module = ImageBranch(trained.model, side_info=side_info).eval().cpu()
    return _write(trained, module, out, fmt=fmt, fp16=fp16, opset=opset, side_info=side_info, int8_images=int8_images)


def export_module(
    trained: TrainedModel,
    module: torch.nn.Module,
    out: str | Path,
    *,
    input_size: tuple[int, int],
    facts: Mapping[str, Any],
    fmt: str = "onnx",
) -> ExportReport:
    """Export a module around ``trained``'s image branch (such as BoxMOT's input adapter) to ONNX or an
    OpenVINO IR (``fmt``): one ``images`` input of ``input_size``, checked as :func:`export_image_branch`
    checks its files. ``facts`` replace entries of the metadata (:func:`export_facts`): the inputs and
    preprocessing the module expects. The checkpoint's calibration goes into the file as
    :func:`export_image_branch` puts it there; the module must then give the network's own features.

    Raises:
        CalibrationError: the checkpoint's calibration sidecar is damaged or was chosen on other weights.
    """
    if fmt not in ("onnx", "openvino"):
        raise ValueError(f"a module is exported to onnx or openvino, not {fmt!r}")
    check_export_options(fmt)
    return _write(trained, module, out, fmt=fmt, input_size=input_size, facts=facts)


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
    # The INT8 calibration images, read before the export too: one that is no image fails in milliseconds,
    # not after seconds of exporting and checking the fp32 graph.
    batches = calibration_batches(trained, int8_images, side_info) if int8_images is not None else []
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

    if fmt in ("onnx", "openvino"):
        proto, exporter = _onnx_model(module, example, opset)
        exporter = exporter if fmt == "onnx" else f"{exporter}, then openvino.convert_model"
        written = facts_of(exporter)
        import onnx

        if fmt == "onnx":
            data = _with_metadata(proto, written, calibration)
            got, checked_with = _run_onnx(data, check), "onnxruntime (CPU)"
        else:
            from svllreid.export.openvino import onnx_to_openvino, run_openvino

            ov_model = onnx_to_openvino(proto.SerializeToString())
            got, checked_with = run_openvino(ov_model, check), "OpenVINO (CPU plugin, fp32)"
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
        written = {**written, "precision": "int8"}
        if fmt == "onnx":
            data, int8 = int8_tools.quantize_onnx_int8(module, data, batches)
            data = _with_metadata(onnx.load_from_string(data), {**written, "int8": int8}, calibration)
            checked_with = f"onnxruntime (CPU), the INT8 file on {int8['images']} calibration images"
        else:
            from svllreid.export.openvino import quantize_openvino_int8

            ov_model, int8 = quantize_openvino_int8(
                ov_model, module, batches, transformer=isinstance(trained.model.image_encoder, ViTImageEncoder)
            )
            checked_with = f"OpenVINO (CPU plugin), the INT8 model on {int8['images']} calibration images"
        written = {**written, "int8": int8}
        gap = int8["max_abs_diff"]
    if fmt == "openvino":
        from svllreid.export.openvino import save_openvino

        save_openvino(ov_model, out, {METADATA_KEY: json.dumps(written), **calibration_props(calibration)})
    else:
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


def _with_metadata(proto: Any, facts: Mapping[str, Any], calibration: Calibration | None) -> bytes:
    """``proto`` (an ONNX model) serialised with the export's ``facts`` and ``calibration`` added to its
    ``metadata_props``."""
    import onnx

    props = {entry.key: entry.value for entry in proto.metadata_props}
    props |= {METADATA_KEY: json.dumps(facts), **calibration_props(calibration)}
    onnx.helper.set_model_props(proto, props)
    return bytes(proto.SerializeToString())


#: File suffixes by format: ONNX files end in .onnx (the backends and FeatureExtractor tell them by it).
SUFFIXES = {"onnx": (".onnx",), "openvino": (".xml",), "torchscript": (".pt", ".pth", ".ts")}
#: How the formats are named in messages.
_FORMAT_NAMES = {"onnx": "an ONNX", "openvino": "an OpenVINO", "torchscript": "a TorchScript"}


def check_suffix(path: str | Path, fmt: str) -> None:
    """Refuse a file name whose suffix says another format (``--model`` and :class:`FeatureExtractor`
    choose the runtime by it)."""
    suffix = Path(path).suffix.lower()
    if suffix not in SUFFIXES[fmt]:
        raise ValueError(
            f"{Path(path).name}: {_FORMAT_NAMES[fmt]} export is named "
            f"*{' or *'.join(SUFFIXES[fmt])}; the runtime is chosen "
            f"by the suffix, so name it e.g. {Path(path).with_suffix(SUFFIXES[fmt][0]).name}"
        )


def read_export_facts(path: str | Path) -> dict[str, Any]:
    """The facts :func:`export_image_branch` stored in an ONNX, OpenVINO or TorchScript file.

    Raises:
        ValueError: not a readable export of svllreid.
        MissingExtraError: an ONNX file without onnx installed.
    """
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{path} does not exist; write it with 'svllreid export'")
    if path.suffix.lower() == ".onnx":
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
    elif path.suffix.lower() == ".xml":
        ov = import_openvino()
        try:
            text = read_rt_info(ov.Core().read_model(str(path), str(path.with_suffix(".bin"))), METADATA_KEY)
        except Exception as err:
            raise ValueError(f"{path} is not a readable OpenVINO IR ({type(err).__name__}: {err})") from err
    else:
        extra = {f"{METADATA_KEY}.json": ""}
        try:
            with quiet_tracing():
                torch.jit.load(str(path), map_location="cpu", _extra_files=extra)
        except Exception as err:
            raise ValueError(f"{path} is not a readable TorchScript file ({type(err).__name__}: {err})") from err
        text = extra[f"{METADATA_KEY}.json"] or None
    return parse_export_facts(text, path)
