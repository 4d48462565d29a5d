"""The file of a :class:`svllreid.search.GalleryIndex`: one ``.npz`` archive, written atomically, read with
``allow_pickle=False``, its format tag and version checked before the big arrays are read.

Version 2 stores the gallery's paths, and the checkpoint and gallery folder of the metadata, relative to
the index file's folder too, so that an index and its gallery keep working when moved together.
"""

from __future__ import annotations

import json
import os
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from svllreid.errors import IndexFileError
from svllreid.fileio import atomic_write

__all__ = [
    "FORMAT",
    "LOCATION_KEYS",
    "VERSION",
    "absolute",
    "damaged",
    "json_entry",
    "locate",
    "read_index_file",
    "text_entry",
    "write_index_file",
]

#: Format tag and version of the index file; a file of a newer version is refused.
FORMAT = "svllreid-gallery-index"
#: 2: gallery paths are stored relative to the index file's folder (version 1: as given when built).
VERSION = 2
#: Metadata entries that name files (the network's checkpoint, the gallery folder): stored absolute and
#: relative to the index's folder; loading takes the relative one when it exists (moved together).
LOCATION_KEYS = ("checkpoint", "images")
REBUILD_HINT = "rebuild it with `svllreid index build`"


def write_index_file(
    path: Path,
    *,
    backend: str,
    feats: np.ndarray,
    paths: list[str],
    meta: dict[str, Any],
    params: dict[str, Any],
    faiss_index: np.ndarray | None = None,
) -> None:
    """Write the archive at exactly ``path``, under a temporary name renamed over it (an interrupted
    write leaves any previous file intact)."""
    base = Path(absolute(path)).parent
    meta = dict(meta)
    for key in LOCATION_KEYS:
        if isinstance(meta.get(key), str):
            meta[key] = absolute(meta[key])
            meta[f"{key}_from_index"] = os.path.relpath(meta[key], base)
    # Relative to the index's folder, so that index and gallery keep working when moved together.
    stored = [os.path.relpath(absolute(p), base) for p in paths]
    # Any: mypy would check **arrays against np.savez's ``allow_pickle: bool`` keyword too.
    arrays: dict[str, Any] = {
        "format": np.array(FORMAT),
        "version": np.array(VERSION, np.int64),
        "backend": np.array(backend),
        "feats": feats,
        "paths": np.array(stored, dtype=str).reshape(len(stored)),
        "meta_json": np.array(json.dumps(meta)),
        "params_json": np.array(json.dumps(params)),
    }
    if faiss_index is not None:
        arrays["faiss_index"] = faiss_index

    def write(tmp: str) -> None:
        with open(tmp, "wb") as handle:  # a file handle: np.savez would append ".npz" to a name without it
            np.savez(handle, **arrays)

    atomic_write(path, write)


def read_index_file(path: Path) -> dict[str, np.ndarray]:
    """The arrays of the archive at ``path``, its format and version checked.

    Raises:
        IndexFileError: missing file, not an index, damaged, or written by a newer svllreid.
    """
    if not path.is_file():
        what = "is a directory, not an index file" if path.is_dir() else "does not exist"
        raise IndexFileError(f"gallery index {path} {what}; build one with `svllreid index build`")
    try:
        archive = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as err:
        # Not numpy's message: it suggests allow_pickle=True for any unknown file.
        raise IndexFileError(
            f"{path} is not a svllreid gallery index (not an .npz archive, or a damaged one); {REBUILD_HINT}"
        ) from err
    if not isinstance(archive, np.lib.npyio.NpzFile):
        raise IndexFileError(f"{path} is a single .npy array, not a svllreid gallery index (.npz)")
    with archive:
        return read_arrays(archive, path)


def locate(paths: list[str], meta: dict[str, Any], base: Path) -> list[str]:
    """Paths of a version-2 file back to absolute ones: the gallery's from the index's folder (returned);
    the checkpoint and gallery folder of ``meta`` from it too where they are there, else where they were."""
    for key in LOCATION_KEYS:
        relative = meta.pop(f"{key}_from_index", None)
        if isinstance(relative, str):
            moved = os.path.normpath(base / relative)
            if Path(moved).exists() or not Path(str(meta.get(key, ""))).exists():
                meta[key] = moved
    return [os.path.normpath(base / p) for p in paths]


def damaged(path: Path) -> Callable[[str], IndexFileError]:
    """The error for a damaged index file at ``path``, given why."""

    def bad(why: str) -> IndexFileError:
        return IndexFileError(f"gallery index {path} is damaged ({why}); {REBUILD_HINT}")

    return bad


REQUIRED = ("format", "version", "backend", "feats", "paths", "meta_json", "params_json")


def read_arrays(archive: np.lib.npyio.NpzFile, path: Path) -> dict[str, np.ndarray]:
    """The index's arrays, after checking the format tag and version (before reading the big ones)."""

    def get(name: str) -> np.ndarray | None:
        if name not in archive.files:
            return None
        value = archive[name]  # bytes for a member that is not an .npy array
        if not isinstance(value, np.ndarray):
            raise IndexFileError(f"gallery index {path} is damaged ({name} is not an array); {REBUILD_HINT}")
        return value

    try:
        tag = get("format")
        if tag is None:
            raise IndexFileError(
                f"{path} is not a svllreid gallery index (a zip archive without a 'format' entry); "
                "build one with `svllreid index build`"
            )
        if tag.dtype.kind != "U" or tag.shape != () or str(tag) != FORMAT:
            raise IndexFileError(f"{path} is not a svllreid gallery index (format {tag!s:.60}, not {FORMAT!r})")
        version = get("version")
        if version is None or version.dtype.kind not in "iu" or version.shape != ():
            raise IndexFileError(f"gallery index {path} has no valid format version; {REBUILD_HINT}")
        if int(version) > VERSION:
            raise IndexFileError(
                f"gallery index {path} has format version {int(version)}, newer than this svllreid reads "
                f"({VERSION}); upgrade svllreid or {REBUILD_HINT}"
            )
        if int(version) < 1:
            raise IndexFileError(f"gallery index {path} has an invalid format version {int(version)}; {REBUILD_HINT}")
        missing = [name for name in REQUIRED if name not in archive.files]
        if missing:
            raise IndexFileError(f"gallery index {path} is incomplete (missing {', '.join(missing)}); {REBUILD_HINT}")
        arrays = {name: get(name) for name in (*REQUIRED, "faiss_index")}
        return {name: value for name, value in arrays.items() if value is not None}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as err:
        if isinstance(err, IndexFileError):
            raise
        raise IndexFileError(f"gallery index {path} is damaged ({err}); {REBUILD_HINT}") from err


def text_entry(a: np.ndarray, name: str, bad: Callable[[str], IndexFileError]) -> str:
    if a.dtype.kind != "U" or a.shape != ():
        raise bad(f"{name} is not a text entry")
    return str(a)


def json_entry(a: np.ndarray, name: str, bad: Callable[[str], IndexFileError]) -> dict[str, Any]:
    try:
        value = json.loads(text_entry(a, name, bad))
    except json.JSONDecodeError as err:
        raise bad(f"{name} is not valid JSON: {err}") from err
    if not isinstance(value, dict):
        raise bad(f"{name} is not a JSON object")
    return value


def absolute(path: str | os.PathLike[str]) -> str:
    """``path`` made absolute and normalised, symbolic links kept (the user's own spelling of the place)."""
    return os.path.normpath(Path(path).absolute())
