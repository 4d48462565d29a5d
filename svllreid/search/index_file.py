"""The file of a :class:`svllreid.search.GalleryIndex`: one ``.npz`` archive, written atomically, read with
``allow_pickle=False``, its format tag and version checked before the big arrays are read.

Version 2 stores the gallery's paths, and the checkpoint and gallery folder of the metadata, relative to
the index file's folder too, so that an index and its gallery keep working when moved together.

Version 3 (``faiss-ivfpq``, a gallery past RAM) is read in place: its large members (``feats`` float16,
``path_bytes`` and ``path_ends``: the paths as one UTF-8 blob and the end of each, ``ivf_lists``: faiss's
inverted lists) are written in pieces by :class:`~svllreid.search.archive.ArchiveWriter`, aligned, and
come back memory-mapped, never read whole. Indexes of the other backends are still written as version 2.
"""

from __future__ import annotations

import json
import os
import zipfile
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from svllreid.errors import IndexFileError
from svllreid.fileio import atomic_write
from svllreid.search.archive import ArchiveWriter, mapped, member_layout

__all__ = [
    "ARRAY_VERSION",
    "FORMAT",
    "LOCATION_KEYS",
    "MAPPED",
    "VERSION",
    "Pieces",
    "absolute",
    "damaged",
    "json_entry",
    "locate",
    "locate_meta",
    "read_index_file",
    "text_entry",
    "write_index_file",
    "write_mapped_index_file",
]

#: Format tag and the newest version of the index file this svllreid reads; a newer version is refused.
FORMAT = "svllreid-gallery-index"
#: 3: the large members of a faiss-ivfpq index are read in place (see the module docstring).
VERSION = 3
#: The version of files held in memory whole (every backend but faiss-ivfpq). 2: gallery paths are stored
#: relative to the index file's folder (version 1: as given when built).
ARRAY_VERSION = 2
#: The members of a version-3 file that are memory-mapped instead of read.
MAPPED = ("feats", "path_bytes", "path_ends", "ivf_lists")
#: Metadata entries that name files (the network's checkpoint, the gallery folder): stored absolute and
#: relative to the index's folder; loading takes the relative one when it exists (moved together).
LOCATION_KEYS = ("checkpoint", "images")
REBUILD_HINT = "rebuild it with `svllreid index build`"


def write_index_file(
    path: Path,
    *,
    backend: str,
    feats: np.ndarray,
    paths: Sequence[str],
    meta: dict[str, Any],
    params: dict[str, Any],
    faiss_index: np.ndarray | None = None,
) -> None:
    """Write the archive at exactly ``path``, under a temporary name renamed over it (an interrupted
    write leaves any previous file intact)."""
    base = Path(absolute(path)).parent
    meta = _stored_meta(meta, base)
    # Relative to the index's folder, so that index and gallery keep working when moved together.
    stored = [os.path.relpath(absolute(p), base) for p in paths]
    # Any: mypy would check **arrays against np.savez's ``allow_pickle: bool`` keyword too.
    arrays: dict[str, Any] = {
        "format": np.array(FORMAT),
        "version": np.array(ARRAY_VERSION, np.int64),
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


def _stored_meta(meta: dict[str, Any], base: Path) -> dict[str, Any]:
    """``meta`` with its checkpoint and gallery folder absolute, and relative to ``base`` too."""
    meta = dict(meta)
    for key in LOCATION_KEYS:
        if isinstance(meta.get(key), str):
            meta[key] = absolute(meta[key])
            meta[f"{key}_from_index"] = os.path.relpath(meta[key], base)
    return meta


@dataclass(frozen=True)
class Pieces:
    """A member written piece by piece: an array of ``dtype`` and ``shape`` whose C-order bytes are the
    concatenation of ``pieces`` (arrays or bytes)."""

    dtype: np.dtype
    shape: tuple[int, ...]
    pieces: Iterable[np.ndarray | bytes]


def write_mapped_index_file(
    path: Path,
    *,
    backend: str,
    meta: dict[str, Any],
    params: dict[str, Any],
    members: dict[str, np.ndarray | Pieces],
) -> None:
    """Write a version-3 archive at exactly ``path`` (atomically, as :func:`write_index_file`): the
    metadata, then ``members`` in order, each one's data aligned so that it can be mapped in place.

    The gallery paths are among ``members`` (``path_bytes``, ``path_ends``), already relative to
    ``path``'s folder: the caller streams them."""
    small = {
        "format": np.array(FORMAT),
        "version": np.array(VERSION, np.int64),
        "backend": np.array(backend),
        "meta_json": np.array(json.dumps(_stored_meta(meta, Path(absolute(path)).parent))),
        "params_json": np.array(json.dumps(params)),
    }

    def write(tmp: str) -> None:
        with open(tmp, "wb") as handle:
            archive = ArchiveWriter(handle)
            for name, array in small.items():
                archive.add(name, array)
            for name, member in members.items():
                if isinstance(member, Pieces):
                    archive.add_pieces(name, member.dtype, member.shape, member.pieces)
                else:
                    archive.add(name, member)
            archive.close()

    atomic_write(path, write)


def read_index_file(path: Path) -> dict[str, np.ndarray]:
    """The arrays of the archive at ``path``, its format and version checked; those of :data:`MAPPED` in a
    version-3 file as read-only memory maps (:class:`numpy.memmap`: ``.offset`` says where they lie).

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


def locate(paths: Sequence[str], meta: dict[str, Any], base: Path) -> list[str]:
    """Paths of a version-2 file back to absolute ones: the gallery's from the index's folder (returned);
    the checkpoint and gallery folder of ``meta`` from it too where they are there, else where they were."""
    locate_meta(meta, base)
    return [os.path.normpath(base / p) for p in paths]


def locate_meta(meta: dict[str, Any], base: Path) -> None:
    """The checkpoint and gallery folder of ``meta`` (a version-2 or 3 file's) found from the index's folder
    ``base`` where they are there, else where they were (``meta`` is changed)."""
    for key in LOCATION_KEYS:
        relative = meta.pop(f"{key}_from_index", None)
        if isinstance(relative, str):
            moved = os.path.normpath(base / relative)
            if Path(moved).exists() or not Path(str(meta.get(key, ""))).exists():
                meta[key] = moved


def damaged(path: Path) -> Callable[[str], IndexFileError]:
    """The error for a damaged index file at ``path``, given why."""

    def bad(why: str) -> IndexFileError:
        return IndexFileError(f"gallery index {path} is damaged ({why}); {REBUILD_HINT}")

    return bad


REQUIRED = ("format", "version", "backend", "feats", "paths", "meta_json", "params_json")
#: What a version-3 file holds: the paths as a blob, and the faiss index's header and lists apart.
REQUIRED_MAPPED = (
    "format", "version", "backend", "feats", "path_bytes", "path_ends", "meta_json", "params_json",
    "faiss_index", "ivf_sizes", "ivf_lists",
)  # fmt: skip


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
        required = REQUIRED_MAPPED if int(version) >= 3 else REQUIRED
        missing = [name for name in required if name not in archive.files]
        if missing:
            raise IndexFileError(f"gallery index {path} is incomplete (missing {', '.join(missing)}); {REBUILD_HINT}")
        if int(version) >= 3:
            # The large members are mapped, not read: a gallery past RAM stays on disk.
            layout = member_layout(path)
            small = {name: get(name) for name in required if name not in MAPPED}
            return {**small, **{name: mapped(path, layout[name]) for name in MAPPED}}  # type: ignore[dict-item]
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
