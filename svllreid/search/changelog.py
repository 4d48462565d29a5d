"""The change log of a live gallery: images added to and removed from an index file after it was built,
appended to ``INDEX.log`` beside it, so that the index itself is never rewritten for a change.

File
    A header (``HEADER`` then one JSON line: the log's ``id``, the ``base`` it applies to, a fingerprint of
    the index file's gallery, see :func:`base_fingerprint`), then records. A record is ``RECORD``, the
    payload's length (8 bytes, little-endian), the payload's SHA-256 and the payload: a JSON line (the
    change) followed, for an addition, by its float32 features. A record whose bytes are not all there, or
    do not match their digest, is where the log ends: a writer killed in the middle of one leaves the log as
    it was before (the next writer cuts the torn bytes off before it appends).

Changes
    ``add`` appends rows to the gallery: the next row numbers, in the order of the log, so that every
    process that replays the log numbers them alike. ``remove`` names rows; removing a row already removed
    changes nothing. :meth:`ChangeLog.append` holds an exclusive lock on ``INDEX.lock`` (POSIX ``flock``)
    while it reads the log's end and writes, so that writers in several processes take turns, and each
    record is flushed to disk before the call returns. Readers take no lock: they read complete records only.

A crash at any point leaves the old gallery or the new one: a record is either whole (applied) or not
(ignored), and a new log (after :meth:`ChangeLog.reset`) replaces the old one by a rename.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import struct
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from svllreid.errors import IndexFileError
from svllreid.fileio import atomic_write

__all__ = [
    "FAILPOINT_ENV",
    "HEADER",
    "Change",
    "ChangeLog",
    "LogState",
    "base_fingerprint",
    "failpoint",
]

HEADER = b"SVLLREID-GALLERY-LOG 1\n"
RECORD = b"SVLR"
_RECORD_HEAD = struct.Struct("<4sQ32s")
#: Longest header line read (the header is a few hundred bytes).
_MAX_HEADER = 64 * 1024
#: The environment variable that names a point where the process kills itself (crash tests only).
FAILPOINT_ENV = "SVLLREID_FAILPOINT"


def failpoint(name: str) -> None:
    """Die at once (SIGKILL, no clean-up) if ``SVLLREID_FAILPOINT`` names this point: how the tests kill a
    writer exactly between two steps of a change. Does nothing otherwise."""
    if os.environ.get(FAILPOINT_ENV) == name:
        import signal

        os.kill(os.getpid(), signal.SIGKILL)


@dataclass(frozen=True)
class Change:
    """One change: ``add`` (``paths`` with their ``feats`` and optional ``labels``: kind -> one name or None
    per image) or ``remove`` (``rows``); ``time`` (seconds since the epoch) is when it was made."""

    op: Literal["add", "remove"]
    time: float
    paths: tuple[str, ...] = ()
    feats: np.ndarray | None = None
    labels: dict[str, list[str | None]] = field(default_factory=dict)
    rows: tuple[int, ...] = ()

    def encode(self) -> bytes:
        """The record of this change (header, digest and payload)."""
        facts: dict[str, Any] = {"op": self.op, "time": self.time}
        body = b""
        if self.op == "add":
            assert self.feats is not None and self.feats.dtype == np.float32 and self.feats.ndim == 2
            facts.update(paths=list(self.paths), labels=self.labels, shape=list(self.feats.shape))
            body = np.ascontiguousarray(self.feats).astype("<f4", copy=False).tobytes()
        else:
            facts["rows"] = [int(r) for r in self.rows]
        payload = json.dumps(facts, separators=(",", ":")).encode("utf-8") + b"\n" + body
        return _RECORD_HEAD.pack(RECORD, len(payload), hashlib.sha256(payload).digest()) + payload

    @classmethod
    def decode(cls, payload: bytes) -> Change:
        """The change of a record's payload (its digest already checked).

        Raises:
            ValueError: a payload that does not describe a change.
        """
        line, _, body = payload.partition(b"\n")
        facts = json.loads(line)
        if facts.get("op") == "remove":
            return cls("remove", float(facts["time"]), rows=tuple(int(r) for r in facts["rows"]))
        if facts.get("op") != "add":
            raise ValueError(f"unknown change {facts.get('op')!r}")
        n, d = (int(v) for v in facts["shape"])
        if len(body) != 4 * n * d or len(facts["paths"]) != n:
            raise ValueError(f"{len(facts['paths'])} paths and {len(body)} bytes of features for {n} x {d}")
        feats = np.frombuffer(body, dtype="<f4").reshape(n, d).astype(np.float32)
        labels = {str(k): list(v) for k, v in (facts.get("labels") or {}).items()}
        return cls("add", float(facts["time"]), paths=tuple(facts["paths"]), feats=feats, labels=labels)


@dataclass(frozen=True)
class LogState:
    """How far a reader has read a log: its ``id`` and the byte ``offset`` after the last whole record."""

    id: str
    offset: int


class ChangeLog:
    """The change log ``INDEX.log`` of the index file ``INDEX`` (and its lock file ``INDEX.lock``)."""

    def __init__(self, index_path: str | os.PathLike[str]):
        index_path = Path(index_path)
        self.path = index_path.with_name(index_path.name + ".log")
        self.lock_path = index_path.with_name(index_path.name + ".lock")

    def header(self) -> dict[str, Any] | None:
        """The log's header (``id``, ``base``), or None when there is no log.

        Raises:
            IndexFileError: a file that is not a change log.
        """
        try:
            with self.path.open("rb") as handle:
                return self._read_header(handle)
        except FileNotFoundError:
            return None

    def _read_header(self, handle: Any) -> dict[str, Any]:
        magic = handle.read(len(HEADER))
        line = handle.readline(_MAX_HEADER)
        try:
            if magic != HEADER or not line.endswith(b"\n"):
                raise ValueError("no header")
            header = json.loads(line)
            if not isinstance(header, dict) or not isinstance(header.get("id"), str):
                raise ValueError("no id")
        except ValueError:
            raise IndexFileError(
                f"{self.path} is not an svllreid change log (or its first bytes are damaged); move it away to use "
                "the index as it was built, without the changes made since"
            ) from None
        header["_size"] = handle.tell()
        return header

    def read(self, since: LogState | None = None) -> tuple[list[Change], LogState] | None:
        """The whole records after ``since`` (from the first record when ``since`` is None or another log's
        state), with the state after them; None when there is no log.

        Raises:
            IndexFileError: a file that is not a change log, or a whole record that cannot be read.
        """
        try:
            handle = self.path.open("rb")
        except FileNotFoundError:
            return None
        with handle:
            header = self._read_header(handle)
            offset = since.offset if since is not None and since.id == header["id"] else header["_size"]
            handle.seek(offset)
            data = handle.read()
        changes, used = self._records(data, offset)
        return changes, LogState(header["id"], offset + used)

    def _records(self, data: bytes, offset: int) -> tuple[list[Change], int]:
        changes: list[Change] = []
        at = 0
        while len(data) - at >= _RECORD_HEAD.size:
            magic, length, digest = _RECORD_HEAD.unpack_from(data, at)
            end = at + _RECORD_HEAD.size + length
            if magic != RECORD or end > len(data):
                break  # a record still being written, or the torn end of a killed writer
            payload = data[at + _RECORD_HEAD.size : end]
            if hashlib.sha256(payload).digest() != digest:
                break
            try:
                changes.append(Change.decode(payload))
            except (ValueError, KeyError, TypeError) as err:
                raise IndexFileError(
                    f"{self.path}: the change at byte {offset + at} cannot be read ({err}); it was written by another "
                    "svllreid version, or the file was edited"
                ) from None
            at = end
        return changes, at

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """Hold the writers' exclusive lock (waits for another writer to finish)."""
        import fcntl  # POSIX; the live gallery's writers need it

        self.lock_path.parent.mkdir(parents=True, exist_ok=True)
        with self.lock_path.open("a+b") as handle:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle.fileno(), fcntl.LOCK_UN)

    def reset(self, base: str) -> str:
        """Replace the log by an empty one for the gallery ``base`` (a rename: readers see the old log or the
        new one); returns its id. Call under :meth:`locked`."""
        log_id = uuid.uuid4().hex
        header = json.dumps({"id": log_id, "base": base}).encode("utf-8") + b"\n"
        atomic_write(self.path, lambda tmp: Path(tmp).write_bytes(HEADER + header))
        return log_id

    def append(self, change: Change, state: LogState) -> LogState:
        """Write ``change`` after the records of ``state`` (the writer's view, just read under the lock),
        cutting off any torn bytes a killed writer left there, and flush it to disk; returns the state after
        it. Call under :meth:`locked`."""
        record = change.encode()
        with self.path.open("r+b") as handle:
            handle.truncate(state.offset)
            handle.seek(state.offset)
            half = len(record) // 2  # two writes: the crash tests stop a writer between them
            handle.write(record[:half])
            handle.flush()
            failpoint("log-torn")
            handle.write(record[half:])
            handle.flush()
            os.fsync(handle.fileno())
        failpoint("log-appended")
        return LogState(state.id, state.offset + len(record))


def base_fingerprint(n: int, dim: int, *, backend: str, meta: dict[str, Any], paths: Sequence[str]) -> str:
    """Which gallery a log's changes apply to: a digest of the index's size, width, backend, network, build
    time or compaction, and first and last paths (rebuilding the index gives another one)."""
    live = meta.get("live") if isinstance(meta.get("live"), dict) else {}
    facts = {
        "n": n,
        "dim": dim,
        "backend": backend,
        "weights": meta.get("weights_sha256"),
        "built": meta.get("built_at"),
        "generation": (live or {}).get("generation"),
        "ends": [Path(paths[0]).name, Path(paths[-1]).name] if n else [],
    }
    return hashlib.sha256(json.dumps(facts, sort_keys=True).encode("utf-8")).hexdigest()[:32]
