"""Training on the CPU without paying for page faults: keep freed memory in the process.

A training step allocates and frees the same large activations every time. glibc's malloc hands blocks
above its mmap threshold straight back to the kernel and trims the heap's top as soon as it is free, so
the next step maps the memory again and faults on every page: measured on a ViT-B/16 stage-2 step at
256×128 (one thread), about 310,000 minor page faults and 13.8 s per step; with the settings below about
16,000 and 12.0 s. The numbers a step computes do not change, only where its memory comes from.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import sys

__all__ = ["MMAP_THRESHOLD", "TRIM_THRESHOLD", "keep_freed_memory"]

log = logging.getLogger(__name__)

#: glibc's mallopt parameters (malloc.h).
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
#: Freed memory stays in the heap up to this much before it is given back to the kernel.
TRIM_THRESHOLD = 1 << 30
#: Blocks up to this size come from the heap (glibc's largest accepted value on 64-bit systems).
MMAP_THRESHOLD = 32 << 20

_applied: bool | None = None


def keep_freed_memory() -> bool:
    """Raise glibc's trim and mmap thresholds for this process, once; True when they are in effect.

    Does nothing (False) where the C library is not glibc (macOS, Windows, musl).
    """
    global _applied
    if _applied is not None:
        return _applied
    _applied = False
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    # mallopt returns 1 on success.
    _applied = mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD) == 1 and mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD) == 1
    if _applied:
        log.debug("glibc keeps freed memory (trim threshold %d, mmap threshold %d)", TRIM_THRESHOLD, MMAP_THRESHOLD)
    return _applied
