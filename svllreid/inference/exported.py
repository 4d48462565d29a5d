"""Exported files as ``--model`` takes them: the runtime is chosen by the suffix (``.onnx``: onnxruntime,
``.xml``: OpenVINO), and either gives an :class:`~svllreid.inference.onnx_backend.ExportedModel` with
the same facts, identity checks and calibration."""

from __future__ import annotations

import os
from pathlib import Path

from svllreid.inference.onnx_backend import ExportedModel, is_onnx_file, load_onnx_model
from svllreid.inference.openvino_backend import is_openvino_file, load_openvino_model

__all__ = ["EXPORTED_SUFFIXES", "is_exported_file", "load_exported_model"]

#: Suffixes of the files ``--model`` runs, and the runtime that runs each.
EXPORTED_SUFFIXES = {".onnx": "onnxruntime", ".xml": "openvino"}


def is_exported_file(path: str | os.PathLike[str]) -> bool:
    """Whether a model argument names an exported file (by its suffix) rather than a checkpoint."""
    return Path(path).suffix.lower() in EXPORTED_SUFFIXES


def load_exported_model(path: str | Path, *, device: str = "auto", threads: int | None = None) -> ExportedModel:
    """An ONNX file or OpenVINO IR written by ``svllreid export``, on its CPU runtime.

    Raises:
        MissingExtraError: the runtime is not installed.
        ValueError: another suffix, another device, or not a readable svllreid export.
    """
    if is_openvino_file(path):
        return load_openvino_model(path, device=device, threads=threads)
    if is_onnx_file(path):
        return load_onnx_model(path, device=device, threads=threads)
    raise ValueError(
        f"{path}: --model takes a file of 'svllreid export', named *.onnx (onnxruntime) or *.xml (OpenVINO); a "
        "checkpoint or run directory goes to --checkpoint"
    )
