"""This machine's reference figures for the profiler's table: the copy bandwidth a kernel's GB/s is
compared with, and the float32 GEMM rate a library call's GFLOP/s is compared with (each measured
once per process, on first use)."""
from __future__ import annotations

import math
import time

import numpy as np

_BW: float | None = None
_PEAK: float | None = None


def _threads() -> int:
    from ..runtime.cpu import num_threads
    return num_threads()


def copy_bandwidth_gbs(nbytes: int = 32 << 20) -> float:
    """Bytes read + written per second by a numpy copy of `nbytes` into a reused buffer, the best
    of 5 on one thread and on all of ember's threads (measured once per process)."""
    global _BW
    if _BW is None:
        from concurrent.futures import ThreadPoolExecutor
        n = nbytes // 4
        src = np.ones(n, np.float32)
        dst = np.zeros_like(src)
        nt = max(1, _threads())
        parts = [(i * n // nt, (i + 1) * n // nt) for i in range(nt)]
        best = math.inf
        with ThreadPoolExecutor(max_workers=nt) as pool:
            for threads in (1, nt):
                for _ in range(5):
                    t0 = time.perf_counter()
                    if threads == 1:
                        np.copyto(dst, src)
                    else:
                        list(pool.map(lambda ab: np.copyto(dst[ab[0]:ab[1]], src[ab[0]:ab[1]]), parts))
                    best = min(best, time.perf_counter() - t0)
        _BW = 2 * nbytes / best / 1e9
    return _BW


def gemm_peak_gflops(n: int = 512) -> float:
    """GFLOP/s of a numpy float32 n^3 GEMM, best of 5 (measured once per process)."""
    global _PEAK
    if _PEAK is None:
        a = np.ones((n, n), np.float32)
        out = np.empty_like(a)
        best = math.inf
        for _ in range(6):
            t0 = time.perf_counter()
            np.matmul(a, a, out=out)
            best = min(best, time.perf_counter() - t0)
        _PEAK = 2 * n ** 3 / best / 1e9
    return _PEAK
