"""Handing freed heap back to the system (glibc), for the one-off loads of a process: no torch, no numpy.

glibc keeps freed pages of its heap mapped where live data sits above them, and the arenas of the loads
here (the lexicon cache's automata builds, the safetensors and npz reads, JSON parsing, quantisation
temporaries) are freed below data that stays: RSS that nothing uses until the next allocations of that
size. ``malloc_trim(0)`` releases every whole free page of every arena; it costs a few milliseconds, so it
runs after a load, never per screening.
"""

from __future__ import annotations

import ctypes
from functools import lru_cache

__all__ = ["return_freed_memory"]


@lru_cache(maxsize=1)
def _libc() -> ctypes.CDLL | None:
    try:
        lib = ctypes.CDLL("libc.so.6")
        lib.malloc_trim  # noqa: B018 - glibc has it; musl and other C libraries do not
    except (OSError, AttributeError):
        return None
    return lib


def return_freed_memory() -> None:
    """Hand the heap pages freed so far back to the system (a no-op where the C library is not glibc)."""
    lib = _libc()
    if lib is not None:
        lib.malloc_trim(0)
