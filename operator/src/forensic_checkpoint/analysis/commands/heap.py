"""glibc malloc settings for analysing large archives.

The memory engine and the findings handle pages as fresh ``bytes`` of 8-16 MiB (yara-x takes
nothing else). glibc serves allocations that large with mmap and gives them back with munmap,
so every chunk pays its page faults and zeroing again. On the 2.07 GiB benchmark archive that
was ~1.7 s of system time in a 4.3 s ``analyze --search``. Served from the heap, and with freed
memory kept for the next chunk, the same run took 2.5-2.7 s at the same peak RSS
(docs/benchmarks.md has the later figures).
Small archives skip this: ``ctypes`` alone costs a few ms of a ~0.2 s run.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

#: mallopt parameters (malloc.h)
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
#: glibc's highest mmap threshold on 64-bit (DEFAULT_MMAP_THRESHOLD_MAX): chunks and pieces
#: (<= 16 MiB + overlap) come from the heap
MMAP_THRESHOLD = 32 << 20
#: free memory at the top of the heap is given back only beyond this
TRIM_THRESHOLD = 256 << 20
#: archives at least this large get the settings
LARGE_ARCHIVE = 64 << 20


def reuse_freed_memory() -> bool:
    """Apply the settings to this process; False where the C library has no ``mallopt``."""
    import ctypes

    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    return bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(
        mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD)
    )


def tune_for(archives: Iterable[str | Path]) -> bool:
    """``reuse_freed_memory()`` when one of ``archives`` is large; True if applied."""
    for archive in archives:
        try:
            large = Path(archive).stat().st_size >= LARGE_ARCHIVE
        except OSError:
            continue  # the analysis itself reports a missing file
        if large:
            return reuse_freed_memory()
    return False
