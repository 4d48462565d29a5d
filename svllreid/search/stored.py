"""Gallery paths and features that stay in the index file and are read a few at a time.

A gallery past RAM (the ``faiss-ivfpq`` backend) keeps its features (float16) and its paths (UTF-8, one
blob with the end of each path) in the index file. :class:`StoredPaths` reads a path when it is asked for;
:class:`FeatureRows` reads rows with ``os.pread``: the pages it reads go to the page cache, shared and
reclaimable, not into the process's resident memory as touched pages of a memory map would.
:class:`PathSpool` writes paths to a temporary file while a gallery streams in.
"""

from __future__ import annotations

import os
import weakref
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import overload

import numpy as np

from svllreid.errors import IndexFileError

__all__ = ["FeatureRows", "PathSpool", "StoredPaths", "encode_paths", "file_pieces"]

#: How paths become bytes and back: surrogateescape keeps file names that are not valid UTF-8 (as
#: os.fsencode does), so every path Python can name survives the round trip.
_ENCODING, _ERRORS = "utf-8", "surrogateescape"
#: posix_fadvise's "will need" advice where the system has it (not on macOS or Windows).
_WILLNEED: int | None = getattr(os, "POSIX_FADV_WILLNEED", None) if hasattr(os, "posix_fadvise") else None


def encode_paths(paths: Iterable[str], base: str) -> tuple[bytes, np.ndarray]:
    """``paths`` relative to the folder ``base`` (absolute) as one UTF-8 blob, and each one's length."""
    # relpath makes each path absolute (from the working folder) before relating it: as the version-2 writer.
    encoded = [os.path.relpath(p, base).encode(_ENCODING, _ERRORS) for p in paths]
    return b"".join(encoded), np.fromiter(map(len, encoded), np.int64, len(encoded))


class StoredPaths(Sequence[str]):
    """The gallery's paths, read from the index file one at a time: path ``i`` is
    ``blob[ends[i - 1]:ends[i]]``, relative to the index file's folder ``base``, returned absolute.

    Compares equal to any sequence of the same paths (a list, say).
    """

    def __init__(self, blob: np.ndarray, ends: np.ndarray, base: str) -> None:
        self.blob, self.ends, self.base = blob, ends, base

    def __len__(self) -> int:
        return len(self.ends)

    @overload
    def __getitem__(self, i: int) -> str: ...

    @overload
    def __getitem__(self, i: slice) -> list[str]: ...

    def __getitem__(self, i: int | slice) -> str | list[str]:
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        n = len(self)
        if not -n <= i < n:
            raise IndexError(f"path {i} of {n}")
        i %= n
        start = int(self.ends[i - 1]) if i else 0
        relative = bytes(self.blob[start : int(self.ends[i])]).decode(_ENCODING, _ERRORS)
        return os.path.normpath(Path(self.base) / relative)

    def __iter__(self) -> Iterator[str]:
        return (self[i] for i in range(len(self)))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Sequence) or isinstance(other, str | bytes):
            return NotImplemented
        return len(other) == len(self) and all(a == b for a, b in zip(self, other, strict=True))

    __hash__ = None  # type: ignore[assignment]  # equal to lists, which are unhashable

    def __repr__(self) -> str:
        return f"StoredPaths({len(self)} paths under {self.base})"


class PathSpool:
    """Paths written to a file as they arrive, relative to ``base``, with the end offset of each."""

    def __init__(self, file: Path, base: str) -> None:
        self.file, self.base = file, base
        self._handle = file.open("wb")
        self._ends: list[np.ndarray] = []
        self.nbytes = 0

    def add(self, paths: Iterable[str]) -> None:
        blob, lengths = encode_paths(paths, self.base)
        self._handle.write(blob)
        self._ends.append(self.nbytes + np.cumsum(lengths))
        self.nbytes += len(blob)

    def close(self) -> np.ndarray:
        """Finish writing; the end offset of each path (int64)."""
        self._handle.close()
        return np.concatenate(self._ends) if self._ends else np.empty(0, np.int64)


class FeatureRows:
    """The rows of a float16 ``[N, D]`` feature matrix, held in memory or read from a file with ``os.pread``
    (the index file, at ``offset``), returned as float32.

    Args:
        feats: the matrix in memory (kept as :attr:`array`); else ``path``, ``offset`` and ``shape`` say
            where it lies (:attr:`array` is None).
    """

    def __init__(
        self,
        feats: np.ndarray | None = None,
        *,
        path: Path | None = None,
        offset: int = 0,
        shape: tuple[int, int] = (0, 0),
    ) -> None:
        self.array = feats
        self.shape: tuple[int, int] = feats.shape if feats is not None else shape
        self._row_bytes = self.shape[1] * 2
        self._offset = offset
        self._path = path
        self._fd: int | None = None
        if feats is None:
            assert path is not None
            self._fd = os.open(path, os.O_RDONLY)
            weakref.finalize(self, os.close, self._fd)

    def __len__(self) -> int:
        return self.shape[0]

    def read(self, lo: int, hi: int) -> np.ndarray:
        """Rows ``lo:hi`` as float32."""
        if self.array is not None:
            return self.array[lo:hi].astype(np.float32)
        return self._decode(self._pread(self._row_bytes * (hi - lo), self._offset + self._row_bytes * lo), hi - lo)

    def take(self, rows: np.ndarray) -> np.ndarray:
        """Rows ``rows`` (valid row numbers) as float32, in that order."""
        if self.array is not None:
            return self.array[rows].astype(np.float32)
        size, base = self._row_bytes, self._offset
        if _WILLNEED is not None and len(rows) > 1:
            # Ask for every row first: the kernel reads the ones not in the page cache all at once, instead of
            # one pread after another (measured at 1 M: cold single searches 7.2 -> 2.8 ms at the median).
            for r in rows:
                os.posix_fadvise(self._fd, base + size * int(r), size, _WILLNEED)  # type: ignore[arg-type]
        return self._decode(b"".join(self._pread(size, base + size * int(r)) for r in rows), len(rows))

    def raw_pieces(self) -> Iterator[np.ndarray | bytes]:
        """The float16 matrix's bytes, in order, in pieces of at most 64 MiB."""
        if self.array is None:
            assert self._path is not None
            yield from file_pieces(self._path, self._offset, self._row_bytes * len(self))
            return
        step = max(1, 2**26 // self._row_bytes)
        for lo in range(0, len(self), step):
            yield self.array[lo : lo + step]

    def chunks(self, rows_per_chunk: int) -> Iterator[tuple[int, np.ndarray]]:
        """``(first row, float32 rows)`` of consecutive chunks covering the matrix."""
        for lo in range(0, len(self), rows_per_chunk):
            yield lo, self.read(lo, min(len(self), lo + rows_per_chunk))

    def _pread(self, size: int, offset: int) -> bytes:
        assert self._fd is not None
        data = os.pread(self._fd, size, offset)
        if len(data) != size:  # os.pread returns less only at the end of the file
            raise IndexFileError(
                f"gallery index {self._path} is damaged (its features end early); rebuild it with "
                "`svllreid index build`"
            )
        return data

    def _decode(self, data: bytes, n: int) -> np.ndarray:
        return np.frombuffer(data, np.float16).reshape(n, self.shape[1]).astype(np.float32)


def file_pieces(path: Path, offset: int, nbytes: int, piece: int = 2**26) -> Iterator[bytes]:
    """The ``nbytes`` at ``offset`` of the file ``path``, in pieces of at most ``piece`` bytes (read with
    ``os.pread``: copied through the page cache, never mapped into this process).

    Raises:
        IndexFileError: the file ends before them.
    """
    with path.open("rb", buffering=0) as handle:
        for lo in range(0, nbytes, piece):
            size = min(piece, nbytes - lo)
            data = os.pread(handle.fileno(), size, offset + lo)
            if len(data) != size:
                raise IndexFileError(f"{path} ends {nbytes - lo - len(data)} bytes early; rebuild it")
            yield data
