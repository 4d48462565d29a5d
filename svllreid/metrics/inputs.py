"""Validation of the inputs shared by ranking and re-ranking: feature matrices and id arrays."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

__all__ = ["Array", "ArrayLike", "PairLabels", "as_feature_pair", "as_features", "check_pair", "labels", "pair_labels"]

ArrayLike = Any  # numpy array, torch tensor, or anything np.asarray accepts
Array = Any  # numpy array or torch tensor


def as_features(x: ArrayLike, name: str) -> torch.Tensor:
    """Validate a ``[N, D]`` real feature matrix (numpy or torch) as a float32/float64 tensor."""
    t = x.detach() if isinstance(x, torch.Tensor) else torch.as_tensor(np.asarray(x))
    if t.ndim != 2:
        raise ValueError(f"{name} must be 2-D [N, D], got shape {tuple(t.shape)}")
    if t.shape[0] == 0:
        raise ValueError(f"{name} is empty (no images)")
    if t.shape[1] == 0:
        raise ValueError(f"{name} has zero-width features")
    if t.is_complex() or t.dtype == torch.bool:
        raise ValueError(f"{name} must be real-valued, got {t.dtype}")
    t = t.to(torch.float64 if t.dtype == torch.float64 else torch.float32).contiguous()
    finite = np.isfinite(t.numpy()).all() if t.device.type == "cpu" else torch.isfinite(t).all()
    if not bool(finite):
        raise ValueError(f"{name} contains NaN or infinite values")
    return t


def as_feature_pair(query_feats: ArrayLike, gallery_feats: ArrayLike) -> tuple[torch.Tensor, torch.Tensor]:
    """Validate query and gallery features together: same width, same device, one dtype
    (float64 for both if either is float64)."""
    qf, gf = as_features(query_feats, "query_feats"), as_features(gallery_feats, "gallery_feats")
    if qf.shape[1] != gf.shape[1]:
        raise ValueError(f"feature widths differ: query {qf.shape[1]}, gallery {gf.shape[1]}")
    if qf.device != gf.device:
        raise ValueError(f"query_feats is on {qf.device} but gallery_feats on {gf.device}")
    if qf.dtype != gf.dtype:
        qf, gf = qf.double(), gf.double()
    return qf, gf


def labels(x: ArrayLike | None, name: str, n: int) -> np.ndarray | None:
    """A 1-D int64 numpy copy of ids given as numpy, torch (any device) or a sequence; checks the length."""
    if x is None:
        return None
    a = np.asarray(x.detach().cpu() if isinstance(x, torch.Tensor) else x)
    if a.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {a.shape}")
    if len(a) != n:
        raise ValueError(f"{name} has {len(a)} entries but the features have {n} rows")
    if len(a) and not (np.issubdtype(a.dtype, np.integer) or np.issubdtype(a.dtype, np.bool_)):
        raise ValueError(f"{name} must hold integers, got dtype {a.dtype}")
    return a.astype(np.int64)


def check_pair(q: object, g: object, name: str) -> None:
    """Camera ids and keys are needed for both sides or neither."""
    if (q is None) != (g is None):
        raise ValueError(f"query_{name} and gallery_{name} must be given together (got only one)")


#: ``(qp, gp, qc, gc, qk, gk)``: query and gallery pids, cameras and image keys (those two None where not given).
PairLabels = tuple[np.ndarray, np.ndarray, np.ndarray | None, np.ndarray | None, np.ndarray | None, np.ndarray | None]


def pair_labels(
    *,
    query_pids: ArrayLike,
    gallery_pids: ArrayLike,
    query_camids: ArrayLike | None,
    gallery_camids: ArrayLike | None,
    query_keys: ArrayLike | None,
    gallery_keys: ArrayLike | None,
    num_query: int,
    num_gallery: int,
) -> PairLabels:
    """The labels the ranking and verification protocols take, checked: pids of both sides, and cameras
    and keys given for both sides or neither, each as long as its side's features."""
    check_pair(query_camids, gallery_camids, "camids")
    check_pair(query_keys, gallery_keys, "keys")
    qp, gp = labels(query_pids, "query_pids", num_query), labels(gallery_pids, "gallery_pids", num_gallery)
    assert qp is not None and gp is not None
    return (
        qp,
        gp,
        labels(query_camids, "query_camids", num_query),
        labels(gallery_camids, "gallery_camids", num_gallery),
        labels(query_keys, "query_keys", num_query),
        labels(gallery_keys, "gallery_keys", num_gallery),
    )
