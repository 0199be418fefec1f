"""How the process's C allocator hands out the memory of eager arrays (glibc only).

Eager code allocates and frees arrays of tens of KB to tens of MB every op.  glibc's malloc returns freed
memory at the top of its heap to the kernel once more than the trim threshold (by default twice the
largest block freed so far, dynamically) is free, and maps blocks above the mmap threshold fresh each
time: either way the next array of that size takes a page fault on every 4 KB it touches (~0.25 us
each, ~1 ms for a 4 MB float32 array -- measured: a bf16 -> float32 cast of 1M elements ran 132 us in a
loop and 1306 us inside an eager training step).  `tune()` fixes the mmap threshold at glibc's own
dynamic ceiling (32 MB: bigger blocks are still mapped and unmapped, rarely enough) and keeps up to
256 MB of freed heap -- the reuse a caching allocator (PyTorch's CUDA one, or jemalloc, which PyTorch's
CPU performance guides recommend) gives.  Eager steps on a 2-core AVX2 EPYC, ms, with a 1 GB trim
threshold: MNIST bf16 12.4 -> 9.4, GPT float32 51.9 -> 43.9, GPT bf16 63.0 -> 58.0, compiled steps (whose
executor reuses its buffers) unchanged; with the 256 MB set here, twice each, alternating with
EMBER_MALLOC_TUNING=0: MNIST bf16 12.0/12.2 -> 8.8/8.7, GPT float32 44.8/45.3 -> 39.1/39.4, MNIST float32
4.7 -> 4.9 (unchanged).  The cost: a process keeps up to 256 MB it freed instead of returning it.

EMBER_MALLOC_TUNING=0 leaves the allocator alone (set before importing ember).
"""
from __future__ import annotations

import ctypes
import os
import platform

__all__ = ["tune", "TUNED", "MMAP_THRESHOLD", "TRIM_THRESHOLD"]

MMAP_THRESHOLD = 32 << 20
TRIM_THRESHOLD = 256 << 20
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3      # mallopt parameters (malloc.h)
TUNED = False


def tune() -> bool:
    """Set the thresholds once per process (glibc, unless EMBER_MALLOC_TUNING=0); True when set."""
    global TUNED
    if TUNED or os.environ.get("EMBER_MALLOC_TUNING", "1") == "0" or platform.libc_ver()[0] != "glibc":
        return TUNED
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    TUNED = bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD))
    return TUNED
