"""``svllreid export --format openvino``: the image branch as an OpenVINO IR (``NAME.xml`` + ``NAME.bin``).

The network goes to ONNX first (the exporter of :mod:`svllreid.export.exporter`), then through
OpenVINO's converter (``openvino.convert_model``) with the weights kept in fp32 (``save_model``'s default
compresses them to fp16). ``--int8`` quantises the converted model with NNCF's post-training
quantisation, calibrated on the user's images (:func:`quantize_openvino_int8`). The facts and the
calibration an ONNX file keeps in its metadata go into the IR's ``rt_info`` under the same keys, with the
``.bin``'s fingerprint (:data:`~svllreid.inference.openvino_backend.WEIGHTS_KEY`).

The two files are written into a temporary folder beside the output and renamed into place, the ``.bin``
first: a crash leaves the earlier pair whole, or a new ``.bin`` beside an old ``.xml``, which the loader
refuses by its fingerprint instead of running it.
"""

from __future__ import annotations

import contextlib
import io
import logging
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from svllreid.export.int8 import int8_agreement
from svllreid.fileio import publish
from svllreid.inference.openvino_backend import (
    WEIGHTS_KEY,
    CompiledSession,
    compile_cpu,
    import_openvino,
    weights_fingerprint,
)

__all__ = ["NNCF_METHOD", "onnx_to_openvino", "quantize_openvino_int8", "run_openvino", "save_openvino"]

NNCF_METHOD = "NNCF post-training quantisation (OpenVINO): INT8 weights and activations"


def onnx_to_openvino(onnx_bytes: bytes) -> Any:
    """An ``openvino.Model`` converted from a serialised ONNX model."""
    ov = import_openvino()
    with tempfile.TemporaryDirectory() as folder:
        source = Path(folder) / "model.onnx"
        source.write_bytes(onnx_bytes)
        return ov.convert_model(str(source))


def run_openvino(model: Any, inputs: tuple[torch.Tensor, ...]) -> np.ndarray:
    """``model``'s first output for ``inputs`` (fed in the order of its inputs), compiled in fp32."""
    feed = {port.get_any_name(): tensor.numpy() for port, tensor in zip(model.inputs, inputs, strict=True)}
    return CompiledSession(compile_cpu(model)).run(None, feed)[0]


def quantize_openvino_int8(
    model: Any, module: torch.nn.Module, batches: list[dict[str, np.ndarray]], *, transformer: bool
) -> tuple[Any, dict[str, Any]]:
    """``model`` quantised to INT8 by NNCF, its ranges calibrated on ``batches``
    (:func:`svllreid.export.int8.calibration_batches`); and :func:`~svllreid.export.int8.int8_agreement`'s
    report against the fp32 network ``module``.

    Args:
        transformer: a ViT: NNCF's transformer scheme (it leaves the precision-sensitive softmax and
            layer-norm inputs in floating point).

    Raises:
        ExportError: the INT8 model strays from the network beyond the tolerance.
    """
    import nncf

    nncf.set_log_level(logging.ERROR)
    images = sum(len(feed["images"]) for feed in batches)
    # NNCF draws progress bars on the console whatever its log level: they would bury the command's report.
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        quantized = nncf.quantize(
            model,
            nncf.Dataset(batches),
            subset_size=images,
            model_type=nncf.ModelType.TRANSFORMER if transformer else None,
        )
    session = CompiledSession(compile_cpu(quantized))
    got = np.concatenate([session.run(None, feed)[0] for feed in batches])
    method = NNCF_METHOD + (" (transformer scheme)" if transformer else "")
    return quantized, int8_agreement(got, module, batches, method=method)


def save_openvino(model: Any, out: Path, props: dict[str, str]) -> None:
    """Write ``model`` to ``out`` (``.xml``) and its ``.bin``, with ``props`` in its ``rt_info`` and the
    ``.bin``'s size, atomically as the module docstring says."""
    ov = import_openvino()
    out.parent.mkdir(parents=True, exist_ok=True)
    folder = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.", suffix=".tmp"))
    try:
        xml = folder / out.name
        for key, value in props.items():
            model.set_rt_info(value, [key])
        ov.save_model(model, str(xml), compress_to_fp16=False)
        # Saved again with the .bin's fingerprint in the .xml: rt_info lives in the .xml, the .bin is unchanged.
        model.set_rt_info(weights_fingerprint(xml.with_suffix(".bin")), [WEIGHTS_KEY])
        ov.save_model(model, str(xml), compress_to_fp16=False)
        publish(xml.with_suffix(".bin"), out.with_suffix(".bin"))
        publish(xml, out)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
