"""An exported OpenVINO IR (``svllreid export --format openvino``: ``NAME.xml`` and ``NAME.bin``) run by
OpenVINO's CPU plugin, read as :mod:`svllreid.inference.onnx_backend` reads an ONNX file: the same facts
(input size, resize filter, pixel statistics, the network's identity) and the same calibration, stored in
the IR's ``rt_info`` under the keys ONNX files use in their metadata. Importing this module imports
neither open_clip nor OpenVINO; OpenVINO is imported when a file is loaded
(``pip install 'svllreid[openvino]'``).

OpenVINO's CPU plugin computes in bfloat16 by default on processors that support it, which moves
features by about 1e-3; fp32 files are compiled with ``INFERENCE_PRECISION_HINT`` f32, so that they give
the network's features as the export checked them.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

import numpy as np
import torch

from svllreid.errors import MissingExtraError
from svllreid.inference.onnx_backend import (
    CALIBRATION_KEY,
    METADATA_KEY,
    ExportedModel,
    parse_export_facts,
)

__all__ = [
    "OPENVINO_EXTRA",
    "WEIGHTS_KEY",
    "CompiledSession",
    "compile_cpu",
    "import_openvino",
    "is_openvino_file",
    "load_openvino_model",
    "read_rt_info",
    "weights_fingerprint",
]

OPENVINO_EXTRA = "pip install 'svllreid[openvino]' (openvino and nncf)"
#: ``rt_info`` key: the fingerprint of the ``.bin`` written with the ``.xml`` (:func:`weights_fingerprint`),
#: so that an ``.xml`` beside another export's ``.bin`` (an interrupted copy, a later export of one of the
#: two) is refused with a message instead of failing inside OpenVINO or giving other weights' features.
WEIGHTS_KEY = "svllreid.weights_file"
#: Bytes hashed at each end of a ``.bin`` for its fingerprint: two exports' weights differ throughout,
#: and hashing a ViT-B/16's 350 MB whole would add a second to every start.
FINGERPRINT_SPAN = 2**20


def import_openvino() -> Any:
    """The ``openvino`` module.

    Raises:
        MissingExtraError: OpenVINO is not installed.
    """
    try:
        import openvino
    except ImportError as err:
        raise MissingExtraError(f"OpenVINO files need OpenVINO: {OPENVINO_EXTRA}") from err
    return openvino


def compile_cpu(model: Any, *, threads: int | None = None) -> Any:
    """``model`` (an ``openvino.Model``) compiled for the CPU plugin in fp32 arithmetic (INT8 layers stay
    INT8), with ``threads`` inference threads (default: torch's, so that one setting governs both)."""
    ov = import_openvino()
    config = {"INFERENCE_PRECISION_HINT": "f32", "INFERENCE_NUM_THREADS": int(threads or torch.get_num_threads())}
    return ov.Core().compile_model(model, "CPU", config)


class CompiledSession:
    """A compiled OpenVINO model with onnxruntime's ``run(None, feed)``: one infer request per call, so
    that threads (the server's) may call it at once."""

    def __init__(self, compiled: Any):
        self.compiled = compiled

    def run(self, _outputs: None, feed: dict[str, np.ndarray]) -> list[np.ndarray]:
        result = self.compiled.create_infer_request().infer(feed)
        return [np.array(result[0])]  # a copy: the request's buffers go with it


def read_rt_info(model: Any, key: str) -> str | None:
    """The string stored under ``key`` in an ``openvino.Model``'s ``rt_info``; None when absent."""
    if not model.has_rt_info([key]):
        return None
    return str(model.get_rt_info([key]).astype(str))


def weights_fingerprint(weights: Path) -> str:
    """``SIZE:SHA256`` of a ``.bin``: its size, and the SHA-256 of its first and last
    :data:`FINGERPRINT_SPAN` bytes."""
    size = weights.stat().st_size
    digest = hashlib.sha256()
    with open(weights, "rb") as handle:
        digest.update(handle.read(FINGERPRINT_SPAN))
        handle.seek(max(0, size - FINGERPRINT_SPAN))
        digest.update(handle.read(FINGERPRINT_SPAN))
    return f"{size}:{digest.hexdigest()}"


def _recorded_fingerprint(path: Path) -> str | None:
    """The ``.bin`` fingerprint an IR's ``.xml`` records (:data:`WEIGHTS_KEY`), read from the XML itself
    (before OpenVINO reads the pair); None for an IR that records none or an ``.xml`` that is not XML
    (OpenVINO then says what is wrong)."""
    try:
        root = ElementTree.parse(path).getroot()
    except ElementTree.ParseError:
        return None
    entry = root.find(f"rt_info/{WEIGHTS_KEY}")
    return entry.get("value") if entry is not None else None


def is_openvino_file(path: str | os.PathLike[str]) -> bool:
    """Whether a model argument names an OpenVINO IR (by its ``.xml`` suffix)."""
    return Path(path).suffix.lower() == ".xml"


def load_openvino_model(path: str | Path, *, device: str = "auto", threads: int | None = None) -> ExportedModel:
    """An OpenVINO IR written by ``svllreid export --format openvino``, ready to encode images on the CPU.

    Args:
        device: ``auto`` or ``cpu`` (OpenVINO's CPU plugin runs the file; anything else is refused).
        threads: OpenVINO's inference threads (default: torch's).

    Raises:
        MissingExtraError: OpenVINO is not installed.
        ValueError: another device; the ``.xml`` or its ``.bin`` missing, torn apart or unreadable; or
            not an svllreid export.
    """
    if device not in ("auto", "cpu"):
        raise ValueError(f"an OpenVINO file runs on OpenVINO's CPU plugin here; device {device!r} is not used")
    path = Path(path).expanduser()
    if not is_openvino_file(path):
        raise ValueError(f"{path} is not an OpenVINO .xml file (its weights are the .bin beside it)")
    weights = path.with_suffix(".bin")
    for needed in (path, weights):
        if not needed.is_file():
            raise ValueError(
                f"{needed} does not exist: an OpenVINO export is two files, {path.name} and {weights.name}, side "
                "by side; copy both, or write them again with 'svllreid export --format openvino'"
            )
    ov = import_openvino()
    # Checked before OpenVINO reads the pair: with another export's .bin it fails with a message about
    # weight offsets, or reads the wrong numbers.
    expected = _recorded_fingerprint(path)
    if expected is not None and expected != weights_fingerprint(weights):
        raise ValueError(
            f"{weights.name} is not the weights file {path.name} was written with (their sizes or contents "
            "differ): the two files come from different exports, or a copy was interrupted; copy the pair "
            "again, or export again"
        )
    try:
        model = ov.Core().read_model(str(path), str(weights))
    except Exception as err:  # OpenVINO's own errors for files it cannot read
        raise ValueError(f"{path} is not a readable OpenVINO IR ({type(err).__name__}: {err})") from err
    facts = parse_export_facts(read_rt_info(model, METADATA_KEY), path)
    try:
        compiled = compile_cpu(model, threads=threads)
    except Exception as err:
        raise ValueError(f"OpenVINO could not compile {path} ({type(err).__name__}: {err})") from err
    return ExportedModel.from_facts(
        path,
        CompiledSession(compiled),
        facts,
        inputs=[arg.get_any_name() for arg in model.inputs],
        feature_dim=int(model.outputs[0].get_partial_shape()[1].get_length()),
        calibration_json=read_rt_info(model, CALIBRATION_KEY),
        runtime="openvino",
    )
