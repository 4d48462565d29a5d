"""Numerical precision: the run's autocast, and the fp32 regions inside it.

A leaf module (torch only): the training loop, the losses and feature extraction all take their
precision from here.

The encoders run in the run's precision (bf16 autocast by default on CUDA; fp16 with a GradScaler,
the reference's choice, on request). The metric losses do not: their distance and similarity
matmuls decide which pair is hardest and by how much, and bf16 keeps only 8 bits of mantissa. At
feature norm 20 a bf16 distance errs by 0.03 to 0.46 (the closer the pair, the larger), against a
triplet margin of 0.3 (``benchmarks/loss_precision.py``). So each loss computes inside
:func:`without_autocast`, on inputs raised to at least fp32.
"""

from __future__ import annotations

import contextlib
from typing import Literal

import torch

__all__ = ["PRECISIONS", "Precision", "at_least_fp32", "autocast", "resolve_precision", "without_autocast"]

PRECISIONS = ("auto", "fp32", "bf16", "fp16")
Precision = Literal["auto", "fp32", "bf16", "fp16"]


def resolve_precision(name: Precision, device: torch.device) -> torch.dtype | None:
    """The autocast dtype of ``run.precision=name`` on ``device``; None means plain fp32.

    ``auto`` is fp32 on the CPU, and on CUDA bf16 where the device supports it, else fp16.

    Raises:
        ValueError: an unknown name, or bf16/fp16 asked for off CUDA.
    """
    if name not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}; got {name!r}")
    if name == "fp32" or (name == "auto" and device.type != "cuda"):
        return None
    if name in ("bf16", "fp16") and device.type != "cuda":
        raise ValueError(f"run.precision={name} needs a CUDA device; this run is on {device}. Use fp32 or auto")
    if name == "auto":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.bfloat16 if name == "bf16" else torch.float16


def autocast(device: torch.device, dtype: torch.dtype | None) -> contextlib.AbstractContextManager:
    """Mixed precision on ``device`` in ``dtype``; nothing (fp32) when ``dtype`` is None."""
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def without_autocast(tensor: torch.Tensor) -> contextlib.AbstractContextManager:
    """A region where autocast is off on ``tensor``'s device, so that matmuls run in their inputs'
    dtype. Devices without autocast (``meta``) need no region."""
    kind = tensor.device.type
    if not torch.amp.is_autocast_available(kind):
        return contextlib.nullcontext()
    return torch.autocast(device_type=kind, enabled=False)


def at_least_fp32(tensor: torch.Tensor) -> torch.Tensor:
    """``tensor`` in fp32, or as it is when it is already fp32 or fp64."""
    return tensor.to(torch.promote_types(tensor.dtype, torch.float32))
