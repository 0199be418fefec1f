"""What it costs to hand a parallel loop to ember's worker threads (ember/kernels/workers.py), next
to the ThreadPoolExecutor hand-off the CPU runtime used before (one submit + result per kernel).

    python benchmarks/dispatch_overhead.py [--calls 3000]

Each "chunk" is a C call that releases the GIL and does no work (getpid through ctypes, as a
compiled kernel's chunk is a ctypes call), so the figures are pure overhead: medians and minima in
microseconds per loop.
"""
from __future__ import annotations

import argparse
import ctypes
import os
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from ember.kernels import workers  # noqa: E402


def timed(f, calls: int) -> tuple[float, float]:
    for _ in range(50):
        f()
    ts = []
    for _ in range(calls):
        t0 = time.perf_counter()
        f()
        ts.append(time.perf_counter() - t0)
    return statistics.median(ts) * 1e6, min(ts) * 1e6


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--calls", type=int, default=3000)
    args = ap.parse_args()
    chunk = ctypes.CDLL(None).getpid        # releases the GIL, returns at once
    chunk.argtypes = []
    pool = ThreadPoolExecutor(1)

    def executor_handoff():                 # the old runtime: the caller runs chunk 0, a pool thread chunk 1
        fut = pool.submit(chunk)
        chunk()
        fut.result()

    cases = [("2 chunks on the calling thread (no threads)", lambda: (chunk(), chunk())),
             ("ThreadPoolExecutor: submit + result (before)", executor_handoff),
             ("workers.parallel_for, 2 chunks, 2 threads", lambda: workers.parallel_for(lambda i: chunk(), 2, 2)),
             ("workers.parallel_for, 8 chunks, 2 threads", lambda: workers.parallel_for(lambda i: chunk(), 8, 2))]
    print(f"hand-off overhead per parallel loop, {args.calls} loops each (load average {os.getloadavg()[0]:.2f})")
    for name, f in cases:
        med, mn = timed(f, args.calls)
        print(f"  {name:48s} median {med:7.1f} us   min {mn:6.1f} us")
    print(f"  worker stats: {workers.stats()}")


if __name__ == "__main__":
    main()
