"""What keeps a served gallery current: a thread that picks up the changes other processes make to the
index (``svllreid index add / remove / compact``) and compacts the gallery when removed images pile up,
and a thumbnail cache that forgets removed images.

Removed images keep their rows, in memory and in the change log, until the gallery is compacted: a server
whose images come and go would grow without end. So the watcher compacts the gallery itself once the
removed rows reach :data:`AUTO_COMPACT_SHARE` of all rows (and at least :data:`AUTO_COMPACT_MIN`), in its
own thread: searches go on meanwhile, on the gallery as it was. Rows are numbered afresh then; clients that
remove images by row pass the ``generation`` their rows came with, and a stale one removes nothing.

Thumbnails are kept in memory only, at most :data:`THUMBNAILS` of them, least recently used first out,
for as long as the server runs; an image's thumbnail leaves the cache when the image leaves the gallery,
and the whole cache is emptied when the gallery is compacted (its rows are numbered afresh).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import threading
from collections import OrderedDict
from collections.abc import Callable

from svllreid.search.live import LiveIndex

__all__ = [
    "AUTO_COMPACT_MIN",
    "AUTO_COMPACT_SHARE",
    "REFRESH_SECONDS",
    "THUMBNAILS",
    "GalleryWatcher",
    "ThumbnailCache",
    "keep_large_arrays_returnable",
    "release_freed_memory",
    "wants_compaction",
]

log = logging.getLogger(__name__)

#: Thumbnails kept in memory (about 10 KB each).
THUMBNAILS = 4096
#: How often the server looks for changes made by other processes, by default.
REFRESH_SECONDS = 2.0
#: The share of rows removed, and the fewest removed rows, at which the server compacts the gallery.
AUTO_COMPACT_SHARE = 0.25
AUTO_COMPACT_MIN = 1000


def wants_compaction(index: LiveIndex) -> bool:
    """Whether ``index`` holds enough removed rows to compact it (see the module docstring)."""
    removed = index.removed
    return removed >= AUTO_COMPACT_MIN and removed >= AUTO_COMPACT_SHARE * len(index) and index.size > 0


class ThumbnailCache:
    """Thumbnails by gallery row, made by ``make(row)`` when missing; safe to use from several threads."""

    def __init__(self, make: Callable[[int], bytes], index: LiveIndex, maxsize: int = THUMBNAILS):
        self._make = make
        self._index = index
        self._maxsize = maxsize
        self._items: OrderedDict[tuple[str, int], bytes] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._items)

    def get(self, row: int) -> bytes:
        """The thumbnail of ``row`` (made now, without the lock, if it is not kept)."""
        key = (self._index.generation, row)
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key]
        data = self._make(row)
        with self._lock:
            if self._index.is_live(row) and key[0] == self._index.generation:  # not removed while it was made
                self._items[key] = data
                while len(self._items) > self._maxsize:
                    self._items.popitem(last=False)
        return data

    def forget_removed(self) -> int:
        """Drop the thumbnails of rows no longer in the gallery, and all of them after a compaction; returns
        how many were dropped."""
        generation = self._index.generation
        with self._lock:
            gone = [key for key in self._items if key[0] != generation or not self._index.is_live(key[1])]
            for key in gone:
                del self._items[key]
        return len(gone)


def _libc() -> ctypes.CDLL | None:
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.malloc_trim, libc.mallopt  # noqa: B018 - glibc's calls, or not glibc
    except (OSError, AttributeError):  # not glibc (musl, macOS, Windows)
        return None
    return libc


def keep_large_arrays_returnable(threshold: int = 1 << 20) -> bool:
    """Serve allocations of ``threshold`` bytes or more with their own mappings, which go back to the system
    when freed. glibc does so from 128 KiB, but raises that threshold (up to 32 MiB) each time such a block
    is freed; then a gallery's arrays, freed at each compaction, come from the heap, which keeps their pages.
    Called once by ``svllreid serve``; False where the C library is not glibc."""
    libc = _libc()
    if libc is None:
        return False
    m_mmap_threshold = -3  # glibc's malloc.h
    return bool(libc.mallopt(m_mmap_threshold, threshold))


def release_freed_memory() -> bool:
    """Give the pages the heap has freed back to the system (glibc's ``malloc_trim``), as after a compaction:
    the old gallery's arrays are freed, but glibc keeps the pages for reuse, and a server that compacts now
    and then would look as if it grew. False where the C library has no such call."""
    libc = _libc()
    if libc is None:
        return False
    libc.malloc_trim(0)
    return True


class GalleryWatcher:
    """A daemon thread that calls ``index.refresh()`` every ``interval`` seconds, compacts the gallery when
    :func:`wants_compaction` (unless ``compact`` is False) and, when the gallery changed, calls
    ``on_change()``; a failed refresh or compaction is logged and tried again at the next tick."""

    def __init__(
        self,
        index: LiveIndex,
        on_change: Callable[[], object],
        interval: float = REFRESH_SECONDS,
        *,
        compact: bool = True,
    ):
        self.index = index
        self.interval = interval
        self.compact = compact
        self.compactions = 0
        self._on_change = on_change
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="svllreid-gallery", daemon=True)

    def start(self) -> GalleryWatcher:
        self._thread.start()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout)

    def _watch(self) -> None:
        failing = False
        while not self._stop.wait(self.interval):
            try:
                changed = self.index.refresh()
                if self.compact and wants_compaction(self.index):
                    report = self.index.compact()
                    self.compactions += 1
                    changed = True
                    release_freed_memory()
                    log.info(
                        "compacted %s: %d images kept, %d removed ones dropped",
                        self.index.path,
                        report.kept,
                        report.dropped,
                    )
                if changed:
                    self._on_change()
                failing = False
            except Exception as err:  # a log being rewritten, a disk error: the gallery stays as it was
                if not failing:
                    log.error(
                        "could not read or compact the changes to %s; serving the gallery as it was",
                        self.index.path,
                        exc_info=err,
                    )
                failing = True
