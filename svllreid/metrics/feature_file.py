"""Feature files: the ``.npz`` that ``svllreid extract`` writes and ``svllreid eval-features`` reads.

Arrays: ``feats`` float32 ``[N, D]``; ``pids`` int64 ``[N]`` and ``camids`` int64 ``[N]`` when known;
``paths`` ``[N]`` (strings) and ``model`` (a JSON string describing the network) when written by
svllreid; ``label_names`` (JSON: ``{"pid"|"camera": {id: name}}``) where labels were read from names.
No pickled objects: the file loads with ``allow_pickle=False``.
"""

from __future__ import annotations

import io
import json
import zipfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from svllreid.fileio import atomic_write_bytes

__all__ = ["REQUIRED_ARRAYS", "read_feature_file", "read_feature_pair", "write_feature_file"]

#: Arrays every feature file for evaluation must hold.
REQUIRED_ARRAYS = ("feats", "pids")


def read_feature_file(path: str | Path, side: str) -> dict[str, np.ndarray]:
    """The arrays of a feature file (``side``: "query" or "gallery", for the messages).

    Raises:
        ValueError: the file cannot be read as an .npz, or lacks ``feats`` / ``pids``.
    """
    try:
        data = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as err:
        # Not numpy's words for an unknown file: they suggest allow_pickle, which is never the fix here.
        reason = "not an .npz archive, or a damaged one" if "pickle" in str(err) else str(err)
        raise ValueError(
            f"cannot read {side} features from {path} ({reason}); a feature file is what 'svllreid extract' "
            "writes, or numpy.savez with 'feats' [N, D], 'pids' [N] and optionally 'camids' [N]"
        ) from err
    if not isinstance(data, np.lib.npyio.NpzFile):
        raise ValueError(f"{path} is a single .npy array, not a feature file (an .npz with 'feats', 'pids')")
    try:
        with data:
            arrays = {key: data[key] for key in data.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as err:
        raise ValueError(f"cannot read {side} features from {path} (a damaged .npz archive: {err})") from err
    missing = [key for key in REQUIRED_ARRAYS if key not in arrays]
    if missing:
        raise ValueError(
            f"{path} lacks the array(s) {', '.join(missing)}; a feature file is an .npz with 'feats' [N, D], "
            f"'pids' [N] and optionally 'camids' [N] (found: {', '.join(arrays) or 'nothing'})"
        )
    return arrays


def _label_names(arrays: dict[str, np.ndarray]) -> dict[str, dict[int, str]]:
    if "label_names" not in arrays:
        return {}
    try:
        names = json.loads(str(arrays["label_names"]))
        return {what: {int(k): str(v) for k, v in table.items()} for what, table in names.items()}
    except (ValueError, TypeError, AttributeError) as err:
        raise ValueError(f"the feature file's label_names entry is not a valid JSON mapping: {err}") from err


def _align(
    files: tuple[dict[str, np.ndarray], dict[str, np.ndarray]],
    names: tuple[dict[str, dict[int, str]], dict[str, dict[int, str]]],
    key: str,
    what: str,
) -> None:
    """Labels read from names are numbered per file; give both files one numbering by name."""
    q, g = files
    q_names, g_names = names[0].get(what), names[1].get(what)
    if q_names is None and g_names is None:
        return
    if q_names is None or g_names is None:
        raise ValueError(
            f"one feature file has {what} names and the other integer {what}s; extract both with the same label options"
        )
    joint = {name: i for i, name in enumerate(sorted(set(q_names.values()) | set(g_names.values())))}
    for arrays, own in ((q, q_names), (g, g_names)):
        arrays[key] = np.array([joint[own[int(i)]] for i in arrays[key]], dtype=np.int64)


def read_feature_pair(query: str | Path, gallery: str | Path) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Query and gallery feature files, which must agree on having camera ids. Labels read from names
    (``label_names``) are renumbered by name across the two files, as they were numbered per file."""
    q, g = read_feature_file(query, "query"), read_feature_file(gallery, "gallery")
    if ("camids" in q) != ("camids" in g):
        raise ValueError("'camids' must be in both feature files or in neither")
    names = _label_names(q), _label_names(g)
    _align((q, g), names, "pids", "pid")
    if "camids" in q:
        _align((q, g), names, "camids", "camera")
    return q, g


def write_feature_file(
    path: str | Path,
    *,
    feats: np.ndarray,
    paths: Sequence[str],
    model: Mapping[str, Any],
    pids: np.ndarray | None = None,
    camids: np.ndarray | None = None,
    label_names: Mapping[str, Mapping[int, str]] | None = None,
) -> dict[str, tuple[int, ...]]:
    """Write a feature file atomically; returns each array's shape (``model`` and ``label_names`` left out).

    Args:
        label_names: for labels read from names (``"pid"``, ``"camera"``), each id's name; stored as the
            JSON entry ``label_names``.
    """
    arrays: dict[str, Any] = {
        "feats": np.asarray(feats, dtype=np.float32),
        "paths": np.array(list(paths), dtype=str),
        "model": np.array(json.dumps(dict(model))),
    }
    if pids is not None:
        arrays["pids"] = np.asarray(pids, dtype=np.int64)
    if camids is not None:
        arrays["camids"] = np.asarray(camids, dtype=np.int64)
    if label_names:
        arrays["label_names"] = np.array(
            json.dumps({what: {str(k): v for k, v in names.items()} for what, names in label_names.items()})
        )
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    atomic_write_bytes(Path(path), buffer.getvalue())
    return {k: tuple(v.shape) for k, v in arrays.items() if k not in ("model", "label_names")}
