"""Uncompressed ``.npz`` archives whose large members are written piece by piece and read back in place.

An ``.npz`` written by :func:`numpy.savez` stores each array as an uncompressed ``.npy`` file inside a zip
archive, so the bytes of an array lie at a fixed offset of the archive's file. :class:`ArchiveWriter` writes
such an archive from pieces (the whole array never has to be in memory) and pads each ``.npy`` header so
that the array's data begins on a 64-byte boundary of the file; :func:`member_layout` finds where each
member's data lies, so that it can be memory-mapped (:func:`mapped`) or read with ``os.pread`` instead of
read whole. The result stays an ordinary ``.npz``: ``numpy.load`` reads it as any other.
"""

from __future__ import annotations

import math
import struct
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np

__all__ = ["ALIGN", "ArchiveWriter", "Member", "mapped", "member_layout"]

#: The data of every member written here begins at a multiple of this many bytes of the file (numpy's
#: own ``.npy`` alignment), so that a mapped array is aligned for its dtype and for SIMD loads.
ALIGN = 64
_LOCAL_HEADER = struct.Struct("<4s22xHH")  # signature, (version .. sizes), name length, extra length
_LOCAL_SIGNATURE = b"PK\x03\x04"


@dataclass(frozen=True)
class Member:
    """Where one ``.npy`` member's array lies in the archive's file."""

    offset: int
    dtype: np.dtype
    shape: tuple[int, ...]

    @property
    def nbytes(self) -> int:
        return math.prod(self.shape) * self.dtype.itemsize


class ArchiveWriter:
    """Write an ``.npz`` archive into an open binary file, one member at a time, each from pieces.

    Members are stored uncompressed (zip64, so any size), each ``.npy`` header padded so that the data
    starts on an :data:`ALIGN`-byte boundary of the file.
    """

    def __init__(self, handle: BinaryIO) -> None:
        self._handle = handle
        self._zip = zipfile.ZipFile(handle, "w", zipfile.ZIP_STORED, allowZip64=True)

    def add(self, name: str, array: np.ndarray) -> None:
        """Add ``array`` (C order) as member ``name``."""
        self.add_pieces(name, array.dtype, array.shape, [array])

    def add_pieces(
        self, name: str, dtype: np.dtype, shape: tuple[int, ...], pieces: Iterable[np.ndarray | bytes]
    ) -> None:
        """Add member ``name``, an array of ``dtype`` and ``shape`` whose C-order bytes are the
        concatenation of ``pieces`` (arrays are taken in C order).

        Raises:
            ValueError: the pieces hold another number of bytes than the shape needs.
        """
        dtype = np.dtype(dtype)
        expected = math.prod(shape) * dtype.itemsize
        written = 0
        # force_zip64: the member's size is not known to zipfile in advance, and may pass 4 GiB.
        with self._zip.open(f"{name}.npy", "w", force_zip64=True) as member:
            member.write(_npy_header(dtype, shape, self._handle.tell()))
            for piece in pieces:
                if isinstance(piece, np.ndarray):  # its bytes in C order, as a flat view where it is contiguous
                    data = np.require(piece, requirements="C").reshape(-1).view(np.uint8).data
                else:
                    data = memoryview(piece).cast("B")
                member.write(data)
                written += data.nbytes
        if written != expected:
            raise ValueError(f"member {name}: {written} bytes written for {dtype} {shape} ({expected} bytes)")

    def close(self) -> None:
        """Write the archive's central directory (the handle stays open)."""
        self._zip.close()


def _npy_header(dtype: np.dtype, shape: tuple[int, ...], start: int) -> bytes:
    """A version-1.0 ``.npy`` header for an array whose member begins at byte ``start`` of the file,
    padded with spaces so that the array's data after it begins on an :data:`ALIGN`-byte boundary."""
    text = repr({"descr": np.lib.format.dtype_to_descr(dtype), "fortran_order": False, "shape": tuple(shape)})
    fixed = 6 + 2 + 2 + len(text) + 1  # magic, version, header length, dictionary, newline
    header = text + " " * ((-(start + fixed)) % ALIGN) + "\n"
    return np.lib.format.magic(1, 0) + struct.pack("<H", len(header)) + header.encode("latin1")


def member_layout(path: Path) -> dict[str, Member]:
    """Each ``.npy`` member of the archive at ``path`` (by name, without ``.npy``) and where its data lies.

    Raises:
        ValueError: a compressed member, or headers that do not add up (a damaged or foreign archive).
        OSError, zipfile.BadZipFile: the file cannot be read as a zip archive.
    """
    layout: dict[str, Member] = {}
    size = path.stat().st_size
    with zipfile.ZipFile(path) as archive, path.open("rb") as handle:
        for info in archive.infolist():
            if not info.filename.endswith(".npy"):
                continue
            if info.compress_type != zipfile.ZIP_STORED:
                raise ValueError(f"member {info.filename} is compressed, so it cannot be read in place")
            handle.seek(info.header_offset)
            signature, name_length, extra_length = _LOCAL_HEADER.unpack(handle.read(_LOCAL_HEADER.size))
            if signature != _LOCAL_SIGNATURE:
                raise ValueError(f"member {info.filename} has no local zip header where the directory says")
            start = info.header_offset + _LOCAL_HEADER.size + name_length + extra_length
            handle.seek(start)
            version = np.lib.format.read_magic(handle)
            read_header = (
                np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
            )
            shape, fortran_order, dtype = read_header(handle)
            if fortran_order or dtype.hasobject:
                raise ValueError(f"member {info.filename} is not a plain C-order array")
            member = Member(handle.tell(), dtype, tuple(int(n) for n in shape))
            if member.offset + member.nbytes != start + info.file_size or start + info.file_size > size:
                raise ValueError(f"member {info.filename}: its array does not fill its {info.file_size} bytes")
            layout[info.filename[: -len(".npy")]] = member
    return layout


def mapped(path: Path, member: Member) -> np.ndarray:
    """``member`` of the archive at ``path`` as a read-only memory map (nothing is read until used)."""
    if member.nbytes == 0:  # mmap cannot map zero bytes
        return np.empty(member.shape, member.dtype)
    return np.memmap(path, dtype=member.dtype, mode="r", offset=member.offset, shape=member.shape)
