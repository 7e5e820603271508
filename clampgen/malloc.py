"""Keeps freed memory in the process on glibc, so a step's large temporaries reuse warm pages.

glibc's malloc returns big blocks to the OS (mmap above M_MMAP_THRESHOLD, heap trimming above
M_TRIM_THRESHOLD); the next step then allocates fresh pages and pays a page fault per 4 KiB on
first touch. An optimisation step allocates the same sizes every time, so keeping them is the
cheaper policy (docs/performance.md measures it). This is the effect
people get from preloading jemalloc or tcmalloc for PyTorch on CPU. Called by the command-line
entry points, never at import; a no-op where glibc's mallopt is absent.

    from clampgen.malloc import keep_freed_memory
    keep_freed_memory()
"""

import ctypes
import ctypes.util

M_TRIM_THRESHOLD, M_TOP_PAD, M_MMAP_THRESHOLD = -1, -2, -3  # glibc malloc.h
_done = False


def keep_freed_memory(threshold: int = 1 << 30) -> bool:
    """Raise glibc's mmap and trim thresholds to `threshold` bytes; True if it took effect."""
    global _done
    if _done:
        return True
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    # glibc caps M_MMAP_THRESHOLD at 32 MiB (HEAP_MAX/2 on 64-bit): blocks above it stay mmapped
    ok = all(
        mallopt(param, value) == 1
        for param, value in (
            (M_MMAP_THRESHOLD, min(threshold, 32 << 20)),
            (M_TRIM_THRESHOLD, threshold),
            (M_TOP_PAD, 64 << 20),
        )
    )
    _done = ok
    return ok
