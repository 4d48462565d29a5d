"""A live gallery: an index file and the changes made to it since it was built (its change log,
:mod:`svllreid.search.changelog`), searched as one gallery that grows and shrinks without a rebuild.

Rows
    The index file's images are rows ``0 .. N-1``; each added image takes the next row, in the order of
    the log, so every process that opens the gallery numbers them alike. A removed row is never returned
    again, and its number is not reused. :meth:`LiveIndex.compact` writes the gallery as a new index file
    (removed images dropped, rows numbered afresh) and starts an empty log.

Searching
    The index file's backend (exact, or any faiss backend, including the compressed ``faiss-ivfpq``) ranks
    its own rows, asked for as many more results as it has removed rows so that the ``k`` best living
    ones are among them, and the added rows are ranked exactly; the two lists are merged in the exact
    backend's order (descending score, then row). Added rows therefore cost an exact search each until the
    gallery is compacted, and removed rows of the index file widen its search: compact when either grows
    to a sizeable share of the gallery.

Consistency
    A :class:`LiveIndex` answers from an immutable snapshot, replaced whole when changes are applied: a
    search that runs during a change sees the gallery before it or after it, never half of it.
    :meth:`LiveIndex.refresh` applies what other processes wrote to the log (and reloads the index file
    when another process compacted it); :meth:`add`, :meth:`remove` and :meth:`compact` take the log's
    lock, so that writers in several processes take turns.
"""

from __future__ import annotations

import logging
import math
import os
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, overload

import numpy as np

from svllreid.search.changelog import Change, ChangeLog, LogState, base_fingerprint, failpoint
from svllreid.search.index import GalleryIndex, SearchResult, _as_matrix, _top_k, _unit_rows
from svllreid.search.index_file import absolute

__all__ = ["CompactReport", "LiveIndex", "RenumberedError", "uploads_folder"]

log = logging.getLogger(__name__)

#: Added images that may wait before the files they leave behind are swept (see :meth:`LiveIndex.compact`).
ORPHAN_AGE_S = 3600.0


def uploads_folder(index_path: str | os.PathLike[str]) -> Path:
    """Where images added through ``svllreid serve`` are stored: ``INDEX.images/`` beside the index file."""
    path = Path(index_path)
    return path.with_name(path.name + ".images")


class RenumberedError(ValueError):
    """Rows numbered before a compaction, given after it (they may name other images now)."""


@dataclass(frozen=True)
class _Snapshot:
    """The gallery at one moment. The lists and the buffer behind ``added`` are shared with later snapshots,
    which only ever append to them: this one reads its first ``rows - len(base)`` entries only."""

    base: GalleryIndex
    fingerprint: str
    base_labels: dict[str, list[str]]
    added: np.ndarray  # float32 [M, D] unit rows
    added_paths: list[str]
    added_labels: dict[str, list[str | None]]
    added_times: list[float]
    dead: np.ndarray  # bool [N + M]
    dead_in_base: int
    log: LogState | None
    changes: int

    @property
    def rows(self) -> int:
        return len(self.dead)

    @property
    def size(self) -> int:
        return len(self.dead) - int(self.dead.sum())

    def is_live(self, row: int) -> bool:
        return 0 <= row < self.rows and not bool(self.dead[row])


@dataclass(frozen=True)
class CompactReport:
    """What :meth:`LiveIndex.compact` did: images ``kept`` and ``dropped`` (removed ones), files deleted,
    and the backend settings of the new file (with a ``note`` when the old ones no longer fitted)."""

    kept: int
    dropped: int
    files_deleted: int
    params: dict[str, int]
    note: str = ""


class _RowPaths(Sequence[str]):
    """Every row's path, the removed ones too (their numbers stay taken)."""

    def __init__(self, snap: _Snapshot):
        self._snap = snap

    def __len__(self) -> int:
        return self._snap.rows

    @overload
    def __getitem__(self, i: int) -> str: ...

    @overload
    def __getitem__(self, i: slice) -> list[str]: ...

    def __getitem__(self, i: int | slice) -> str | list[str]:
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        n = len(self._snap.base)
        if not -len(self) <= i < len(self):
            raise IndexError(f"row {i} of {len(self)}")
        i %= len(self)
        return self._snap.base.paths[i] if i < n else self._snap.added_paths[i - n]

    def __iter__(self) -> Iterator[str]:
        return (self[i] for i in range(len(self)))


class LiveIndex:
    """An index file with its change log applied: search it as a :class:`GalleryIndex`, change it with
    :meth:`add` and :meth:`remove`. Open one with :meth:`open`.

    Attributes:
        path: the index file.
        log: its :class:`~svllreid.search.changelog.ChangeLog`.
    """

    def __init__(self, path: str | os.PathLike[str], base: GalleryIndex):
        self.path = Path(path)
        self.log = ChangeLog(self.path)
        self._lock = threading.RLock()  # this process's writers and refreshes take turns
        self._stale_warned: str | None = None
        self._snap = self._start(base)
        self.refresh()

    @classmethod
    def open(cls, path: str | os.PathLike[str]) -> LiveIndex:
        """The gallery of the index file ``path`` and its change log.

        Raises:
            IndexFileError: not an index file, or a damaged change log. MissingExtraError: as :meth:`GalleryIndex.load`.
        """
        return cls(path, cls._load(Path(path)))

    @staticmethod
    def _load(path: Path) -> GalleryIndex:
        return GalleryIndex.load(path)

    def _start(self, base: GalleryIndex) -> _Snapshot:
        """The snapshot of the index file ``base`` alone (its identity on disk noted, to see it replaced)."""
        self._file_id = _file_id(self.path)
        self._buffer = np.empty((0, base.dim), np.float32)
        return _Snapshot(
            base=base,
            fingerprint=base_fingerprint(len(base), base.dim, backend=base.backend, meta=base.meta, paths=base.paths),
            base_labels=base.labels,
            added=self._buffer,
            added_paths=[],
            added_labels={},
            added_times=[],
            dead=np.zeros(len(base), bool),
            dead_in_base=0,
            log=None,
            changes=0,
        )

    # ------------------------------------------------------------------------------------------------
    # What the gallery is (read from the current snapshot)
    # ------------------------------------------------------------------------------------------------

    def __len__(self) -> int:
        """Rows ever numbered (removed ones included): rows are ``0 .. len - 1``; see :attr:`size`."""
        return self._snap.rows

    @property
    def size(self) -> int:
        """Images in the gallery now (removed ones not counted)."""
        return self._snap.size

    @property
    def removed(self) -> int:
        """Rows removed since the index file was written (what :meth:`compact` drops)."""
        return int(self._snap.dead.sum())

    @property
    def added(self) -> int:
        """Rows added since the index file was written."""
        snap = self._snap
        return snap.rows - len(snap.base)

    @property
    def changes(self) -> int:
        """Changes applied from the log since the index file was written."""
        return self._snap.changes

    @property
    def generation(self) -> str:
        """Which index file the rows are numbered from (it changes when the gallery is compacted)."""
        return self._snap.fingerprint

    @property
    def base(self) -> GalleryIndex:
        return self._snap.base

    @property
    def meta(self) -> dict[str, Any]:
        return self._snap.base.meta

    @property
    def backend(self) -> str:
        return self._snap.base.backend

    @property
    def params(self) -> dict[str, int]:
        return self._snap.base.params

    @property
    def dim(self) -> int:
        return self._snap.base.dim

    @property
    def text_dim(self) -> int:
        """As :attr:`GalleryIndex.text_dim`."""
        return self._snap.base.text_dim

    @property
    def paths(self) -> Sequence[str]:
        """Every row's image path (a removed row's too: check :meth:`is_live`)."""
        return _RowPaths(self._snap)

    def is_live(self, row: int) -> bool:
        """Whether ``row`` is an image of the gallery now (not removed, not out of range)."""
        return self._snap.is_live(row)

    @property
    def label_kinds(self) -> list[str]:
        """The kinds of labels some image has (``identity``, ``camera``)."""
        snap = self._snap
        return sorted(set(snap.base_labels) | set(snap.added_labels))

    def row_labels(self, row: int) -> dict[str, str]:
        """The labels of image ``row`` that are known (kind -> name)."""
        snap = self._snap
        n = len(snap.base)
        if row < n:
            return {kind: names[row] for kind, names in snap.base_labels.items() if names[row]}
        return {kind: name for kind, names in snap.added_labels.items() if (name := names[row - n])}

    def added_at(self, row: int) -> float:
        """When image ``row`` joined the gallery (seconds since the epoch): its change, or the index file's
        build (or compaction) for the file's own images."""
        snap = self._snap
        n = len(snap.base)
        if row >= n:
            return snap.added_times[row - n]
        return float(_base_times(snap.base, self.path)[row])

    def row_features(self, rows: Sequence[int]) -> np.ndarray:
        """float32 ``[len(rows), D]`` unit features of gallery ``rows``."""
        return _features(self._snap, np.asarray(rows, np.int64).reshape(-1))

    # ------------------------------------------------------------------------------------------------
    # Searching
    # ------------------------------------------------------------------------------------------------

    def search(self, queries: Any, topk: int = 10) -> SearchResult:
        """As :meth:`GalleryIndex.search`, over the living rows: ``min(topk, size)`` per query."""
        snap = self._snap
        base = snap.base
        q, _ = base._unit_queries(
            queries,
            topk,
            "query features",
            base.dim,
            "the index holds {dim}-dim features; was it built with another model?",
        )
        return self._merged(snap, q, topk, base.search, columns=slice(None))

    def search_text(self, text_feats: Any, topk: int = 10) -> SearchResult:
        """As :meth:`GalleryIndex.search_text`, over the living rows."""
        snap = self._snap
        base = snap.base
        q, _ = base._unit_queries(
            text_feats,
            topk,
            "text features",
            base.text_dim,
            "the index's f_proj has {dim}; were they encoded by another model?",
        )
        return self._merged(snap, q, topk, base.search_text, columns=slice(base.dim - base.text_dim, None))

    def _merged(self, snap: _Snapshot, q: np.ndarray, topk: int, search_base: Any, *, columns: slice) -> SearchResult:
        k = min(int(topk), snap.size)
        if not len(q) or not k:
            return SearchResult.empty(k)
        n = len(snap.base)
        parts: list[tuple[np.ndarray, np.ndarray]] = []
        if n - snap.dead_in_base:
            found = search_base(q, min(n, k + snap.dead_in_base))  # the k best living ones are among these
            parts.append((found.scores, found.indices))
        m = snap.rows - n
        if m:
            added = snap.added[:m, columns]
            if columns != slice(None):
                added = _unit_rows(np.ascontiguousarray(added), "added f_proj")
            block = q @ added.T
            block[:, snap.dead[n:]] = -np.inf
            scores, indices = _top_k(block, min(k, m))
            parts.append((scores, indices + n))
        scores = np.concatenate([p[0] for p in parts], axis=1)
        indices = np.concatenate([p[1] for p in parts], axis=1)
        gone = (indices < 0) | snap.dead[np.clip(indices, 0, None)] | ~np.isfinite(scores)
        scores = np.where(gone, -np.inf, scores).astype(np.float32)
        indices = np.where(gone, -1, indices)
        order = np.lexsort((np.where(gone, np.iinfo(np.int64).max, indices), -scores), axis=1)[:, :k]
        return SearchResult(np.take_along_axis(scores, order, 1), np.take_along_axis(indices, order, 1))

    # ------------------------------------------------------------------------------------------------
    # Changes
    # ------------------------------------------------------------------------------------------------

    def refresh(self) -> bool:
        """Apply the changes other processes wrote since the last look, and reload the index file if another
        process compacted it; True when the gallery changed."""
        with self._lock:
            before = self._snap
            if _file_id(self.path) != self._file_id:  # compacted (or rebuilt) by another process
                self._snap = self._start(self._load(self.path))
            self._snap = self._read_log(self._snap)
            return self._snap is not before

    def _read_log(self, snap: _Snapshot) -> _Snapshot:
        header = self.log.header()
        if header is None:
            return snap
        if header.get("base") != snap.fingerprint:
            folded = (snap.base.meta.get("live") or {}).get("folded_log")
            if header["id"] != folded and self._stale_warned != header["id"]:
                self._stale_warned = header["id"]
                log.warning(
                    "%s holds changes to another build of %s; they are not applied (the index file was rebuilt "
                    "after they were made): delete the log, or rebuild and add the images again",
                    self.log.path,
                    self.path,
                )
            return snap
        read = self.log.read(snap.log)
        if read is None:
            return snap
        changes, state = read
        if state == snap.log and not changes:
            return snap
        return self._applied(snap, changes, state)

    def _applied(self, snap: _Snapshot, changes: Sequence[Change], state: LogState) -> _Snapshot:
        """``snap`` with ``changes`` applied, as one new snapshot."""
        n = len(snap.base)
        rows = snap.rows
        dead_rows: list[int] = []
        added: list[np.ndarray] = []
        base_dir = Path(absolute(self.path)).parent
        for change in changes:
            if change.op == "add":
                assert change.feats is not None
                count = len(change.paths)
                added.append(change.feats)
                for kind, names in change.labels.items():
                    have = snap.added_labels.setdefault(kind, [])
                    have.extend([None] * (rows - n - len(have)))  # rows added before without this kind
                    have.extend(names)
                snap.added_paths.extend(os.path.normpath(base_dir / p) for p in change.paths)
                snap.added_times.extend([change.time] * count)
                rows += count
            else:
                dead_rows.extend(r for r in change.rows if 0 <= r < rows)
        for names in snap.added_labels.values():
            names.extend([None] * (rows - n - len(names)))
        buffer = self._grown(snap, rows - n, added)
        dead = np.zeros(rows, bool)
        dead[: snap.rows] = snap.dead
        dead[dead_rows] = True
        return replace(
            snap,
            added=buffer[: rows - n],
            dead=dead,
            dead_in_base=int(dead[:n].sum()),
            log=state,
            changes=snap.changes + len(changes),
        )

    def _grown(self, snap: _Snapshot, total: int, added: list[np.ndarray]) -> np.ndarray:
        """The buffer of added features with ``added`` written after the snapshot's rows: in place when it
        has room (past what any snapshot reads), else in a new buffer twice as large."""
        have = len(snap.added)
        if total > len(self._buffer):
            grown = np.empty((max(total, 2 * len(self._buffer), 64), snap.base.dim), np.float32)
            grown[:have] = self._buffer[:have]
            self._buffer = grown
        at = have
        for feats in added:
            self._buffer[at : at + len(feats)] = feats
            at += len(feats)
        return self._buffer

    def _write(
        self, make: Callable[[_Snapshot], Change | None], generation: str | None = None
    ) -> tuple[_Snapshot, Change | None]:
        """Under the lock, after the changes of other processes: ``make(snapshot)`` the change (None: nothing
        to write), append it to the log and apply it; returns the snapshot it was made on, and the change.

        Raises:
            RenumberedError: ``generation`` is given and the gallery's rows are numbered in another one.
        """
        with self._lock, self.log.locked():
            snap = self._snap = self._read_log(self._refreshed())
            if generation is not None and generation != snap.fingerprint:
                raise RenumberedError(
                    f"{self.path} was compacted since those rows were numbered, and its rows are numbered afresh: "
                    "search again for the images to remove"
                )
            change = make(snap)
            if change is None:
                return snap, None
            header = self.log.header()
            if header is None or header.get("base") != snap.fingerprint or snap.log is None:
                self.log.reset(snap.fingerprint)  # no log yet, or one of another build: this gallery's starts
                read = self.log.read(None)
                assert read is not None
                snap = replace(snap, log=read[1])
            assert snap.log is not None
            state = self.log.append(change, snap.log)
            self._snap = self._applied(snap, [change], state)
            return snap, change

    def _refreshed(self) -> _Snapshot:
        if _file_id(self.path) != self._file_id:
            self._snap = self._start(self._load(self.path))
        return self._snap

    def add(
        self,
        paths: Sequence[str | os.PathLike[str]],
        feats: Any,
        labels: Mapping[str, Sequence[str | None]] | None = None,
    ) -> list[int]:
        """Add images: their ``paths``, ``[B, D]`` features (re-normalised here) made by the gallery's network
        as the index file's were, and optional ``labels`` (kind -> one name or None per image). Written to
        the log, flushed to disk, and searched from then on; returns their rows.

        Raises:
            ValueError: bad features (width, non-finite, all-zero rows), paths or labels.
        """
        unit = _unit_rows(_as_matrix(feats, "added features"), "added features")
        if unit.shape[1] != self.dim:
            raise ValueError(
                f"added features have {unit.shape[1]} dims but the gallery's have {self.dim}: were they made by "
                "another model?"
            )
        listed = [os.fspath(p) for p in paths]
        if len(listed) != len(unit):
            raise ValueError(f"{len(listed)} paths for {len(unit)} added features; they must match one to one")
        names: dict[str, list[str | None]] = {}
        for kind, values in (labels or {}).items():
            values = list(values)
            if len(values) != len(unit) or not all(v is None or isinstance(v, str) for v in values):
                raise ValueError(f"{kind} labels must be one name (or None) per added image; got {len(values)}")
            names[str(kind)] = [v or None for v in values]
        base_dir = Path(absolute(self.path)).parent
        stored = tuple(os.path.relpath(absolute(p), base_dir) for p in listed)
        change = Change("add", time.time(), paths=stored, feats=unit, labels=names)
        before, _ = self._write(lambda snap: change)
        return list(range(before.rows, before.rows + len(unit)))

    def remove(self, rows: Sequence[int], *, generation: str | None = None) -> list[int]:
        """Remove the images ``rows`` (those still in the gallery; others are ignored): written to the log and
        never returned again. Files of removed images that ``svllreid serve`` stored (in
        :func:`uploads_folder`) are deleted. Returns the rows removed.

        Args:
            generation: the :attr:`generation` the rows were numbered in; when another process has compacted
                the gallery since (its rows renumbered), nothing is removed.

        Raises:
            RenumberedError: ``generation`` is not the gallery's any more.
        """
        # Rows are numbered in the generation of now, unless the caller says which: a compaction by another
        # process or thread before the lock is taken then refuses the removal instead of renumbering it.
        generation = self.generation if generation is None else generation
        uploads = str(uploads_folder(absolute(self.path))) + os.sep
        files: list[str] = []

        def removal(snap: _Snapshot) -> Change | None:
            listed = _RowPaths(snap)
            wanted = sorted({int(r) for r in rows if snap.is_live(int(r))})
            files.extend(path for path in (listed[r] for r in wanted) if path.startswith(uploads))
            return Change("remove", time.time(), rows=tuple(wanted)) if wanted else None

        _, change = self._write(removal, generation)
        for path in files:  # the record is on disk: the images are gone whatever happens to their files
            Path(path).unlink(missing_ok=True)
        return list(change.rows) if change is not None else []

    def rows_of(self, paths: Sequence[str | os.PathLike[str]]) -> dict[str, list[int]]:
        """The living rows of each of ``paths`` (as absolute paths), to remove images by file."""
        wanted = {absolute(p): [] for p in paths}  # type: dict[str, list[int]]
        snap = self._snap
        listed = _RowPaths(snap)
        for row in np.flatnonzero(~snap.dead):
            path = absolute(listed[int(row)])
            if path in wanted:
                wanted[path].append(int(row))
        return wanted

    def rows_added_before(self, moment: float) -> list[int]:
        """The living rows that joined the gallery before ``moment`` (seconds since the epoch)."""
        snap = self._snap
        times = np.concatenate([_base_times(snap.base, self.path), np.asarray(snap.added_times[: self.added], float)])
        return [int(r) for r in np.flatnonzero(~snap.dead[: len(times)] & (times < moment))]

    # ------------------------------------------------------------------------------------------------
    # Compaction
    # ------------------------------------------------------------------------------------------------

    def compact(self) -> CompactReport:
        """Write the gallery as a new index file in place of the old one (removed images dropped, rows
        renumbered, the same backend), then start an empty log; delete the stored files of removed images.

        A crash before the new file is in place leaves the old file and its log; after, the new file (the old
        log is then recognised as folded in and ignored).
        """
        with self._lock, self.log.locked():
            snap = self._snap = self._read_log(self._refreshed())
            keep = np.flatnonzero(~snap.dead)
            if not len(keep):
                raise ValueError(
                    f"every image of {self.path} has been removed; an index needs at least one: add images first, "
                    "or delete the index"
                )
            listed = _RowPaths(snap)
            meta = dict(snap.base.meta)
            kinds = sorted(set(snap.base_labels) | set(snap.added_labels))
            if kinds:
                meta["labels"] = {kind: [self.row_labels(int(r)).get(kind, "") for r in keep] for kind in kinds}
            times = [self.added_at(int(r)) for r in keep]
            meta["live"] = {
                "generation": uuid.uuid4().hex,
                "folded_log": snap.log.id if snap.log is not None else None,
                "added": _runs(times),
            }
            built, note = self._rebuilt(snap, keep, [listed[int(r)] for r in keep], meta)
            failpoint("compact-written")
            fingerprint = base_fingerprint(
                len(built), built.dim, backend=built.backend, meta=built.meta, paths=built.paths
            )
            self.log.reset(fingerprint)
            failpoint("compact-log-reset")
            dropped = np.flatnonzero(snap.dead)
            deleted = self._delete_uploads([listed[int(r)] for r in dropped], {absolute(p) for p in built.paths})
            self._snap = self._read_log(self._start(self._load(self.path)))
            return CompactReport(len(keep), len(dropped), deleted, dict(built.params), note)

    def _rebuilt(
        self, snap: _Snapshot, keep: np.ndarray, paths: list[str], meta: dict[str, Any]
    ) -> tuple[GalleryIndex, str]:
        """The new index file of the rows ``keep``: the old settings where they still fit, else the defaults."""
        base = snap.base
        settings = dict(base.params)
        chunk = 2**16

        def feats_of(rows: np.ndarray) -> np.ndarray:
            return _features(snap, rows)

        if base.backend == "faiss-ivfpq":

            def batches() -> Iterator[tuple[list[str], np.ndarray]]:
                for lo in range(0, len(keep), chunk):
                    yield paths[lo : lo + chunk], feats_of(keep[lo : lo + chunk])

            try:
                return GalleryIndex.build_streamed(batches(), self.path, meta=meta, **settings), ""
            except ValueError as err:  # the settings of the old size do not fit the new one
                note = f"the old settings {settings} no longer fit {len(keep)} images ({err}); defaults used"
                return GalleryIndex.build_streamed(batches(), self.path, meta=meta), note
        feats = feats_of(keep)
        wanted = {k: v for k, v in settings.items() if k in ("nlist", "nprobe", "hnsw_m", "ef_search")}
        note = ""
        try:
            built = GalleryIndex.build(feats, paths, meta=meta, backend=base.backend, **wanted)
        except ValueError as err:
            note = f"the old settings {wanted} no longer fit {len(keep)} images ({err}); defaults used"
            built = GalleryIndex.build(feats, paths, meta=meta, backend=base.backend)
        built.save(self.path)
        return built, note

    def _delete_uploads(self, removed: Sequence[str], kept: set[str]) -> int:
        """Delete the stored files of removed images, and stored files no image names that are older than
        :data:`ORPHAN_AGE_S` (left by a server stopped between storing a file and adding it); returns how many."""
        folder = uploads_folder(absolute(self.path))
        deleted = 0
        for path in removed:
            if path.startswith(str(folder) + os.sep) and absolute(path) not in kept and Path(path).exists():
                Path(path).unlink(missing_ok=True)
                deleted += 1
        if folder.is_dir():
            old = time.time() - ORPHAN_AGE_S
            for file in folder.rglob("*"):
                if file.is_file() and absolute(file) not in kept and file.stat().st_mtime < old:
                    file.unlink(missing_ok=True)
                    deleted += 1
        return deleted

    def __repr__(self) -> str:
        return (
            f"LiveIndex({self.path}, backend={self.backend!r}, images={self.size}, added={self.added}, "
            f"removed={self.removed})"
        )


def _features(snap: _Snapshot, rows: np.ndarray) -> np.ndarray:
    """float32 unit features of ``rows`` of ``snap`` (the index file's rows read in one go)."""
    n = len(snap.base)
    out = np.empty((len(rows), snap.base.dim), np.float32)
    in_base = rows < n
    if in_base.any():
        out[in_base] = np.asarray(snap.base.feats[rows[in_base]], np.float32)
    if (~in_base).any():
        out[~in_base] = snap.added[rows[~in_base] - n]
    return out


def _file_id(path: Path) -> tuple[int, int, int] | None:
    """What changes when the file is replaced (a rename over it) or rewritten."""
    try:
        stat = path.stat()
    except FileNotFoundError:
        return None
    return (stat.st_ino, stat.st_mtime_ns, stat.st_size)


def _runs(times: Sequence[float]) -> list[list[float]]:
    """``times`` as ``[time, count]`` runs (images added together share one)."""
    runs: list[list[float]] = []
    for t in times:
        if runs and runs[-1][0] == t:
            runs[-1][1] += 1
        else:
            runs.append([t, 1])
    return runs


def _base_times(base: GalleryIndex, path: Path) -> np.ndarray:
    """When each row of the index file joined the gallery (seconds since the epoch): its run in
    ``meta["live"]["added"]`` (a compacted file), else the file's ``built_at``, else the file's
    modification time."""
    live = base.meta.get("live")
    runs = live.get("added") if isinstance(live, dict) else None
    if isinstance(runs, list) and sum(int(c) for _, c in runs) == len(base):
        return np.repeat(np.array([float(t) for t, _ in runs]), [int(c) for _, c in runs])
    built = base.meta.get("built_at")
    if not isinstance(built, int | float) or not math.isfinite(built):
        try:
            built = path.stat().st_mtime
        except FileNotFoundError:
            built = 0.0
    return np.full(len(base), float(built))
