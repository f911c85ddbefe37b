"""Give the memory of large request bodies back to the OS once they are served.

glibc keeps freed heap memory for reuse: after 16 stalled 60 MB uploads left, a gateway still held 605 MB.
Two causes, two fixes. Bodies arrive as ~64 KB chunks below the mmap threshold, so they land on the heap, and
the free space between live objects is only returned by malloc_trim(0) (which also releases pages in the
middle of the heap). And glibc raises its mmap threshold to the size of any mmapped block freed (up to
32 MB), so after one large body every later one lands on the heap too; pinning the threshold stops that.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import ctypes.util
import sys

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD_BYTES = 1024 * 1024  # a joined body over 1 MB is its own mapping, unmapped when freed
TRIM_THRESHOLD_BYTES = 16 * 1024 * 1024  # free heap top over this goes back at once
TRIM_AFTER_BYTES = 8 * 1024 * 1024  # body bytes released since the last trim that warrant one
TRIM_DELAY_S = 0.05  # the handler's frame, which holds the body, is gone by then


def _libc() -> ctypes.CDLL | None:
    if not sys.platform.startswith("linux"):
        return None
    with contextlib.suppress(OSError):
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        if hasattr(libc, "mallopt") and hasattr(libc, "malloc_trim"):  # glibc, not musl
            return libc
    return None


_LIBC = _libc()


def pin_malloc_thresholds() -> None:
    """Call once at server start: fixed mmap and trim thresholds instead of glibc's sliding ones."""
    if _LIBC is not None:
        _LIBC.mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES)
        _LIBC.mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES)


class MemoryReturn:
    """Counts body bytes released and trims the heap, at most once per event-loop turn, past a threshold."""

    def __init__(self, after_bytes: int = TRIM_AFTER_BYTES) -> None:
        self.after_bytes = after_bytes
        self.trims = 0
        self._pending = 0
        self._scheduled = False

    def released(self, n: int) -> None:
        self._pending += n
        if self._pending >= self.after_bytes and not self._scheduled and _LIBC is not None:
            self._scheduled = True
            asyncio.get_running_loop().call_later(TRIM_DELAY_S, self._trim)

    def _trim(self) -> None:
        self._scheduled = False
        self._pending = 0
        self.trims += 1
        if _LIBC is not None:
            _LIBC.malloc_trim(0)
