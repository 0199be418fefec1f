"""ember's CPU worker threads: one parallel loop at a time, chunks claimed dynamically, no spinning.

In: `run(i)` for chunks i = 0..n-1 (each call releases the GIL: a ctypes kernel call, a numpy BLAS
call) and a thread count.  Out: every chunk run once; the first exception re-raised.

    parallel_for(lambda i: kernel(ptrs, lo[i], hi[i]), n=8, threads=2)

How, and why:
  * The calling thread works too: it claims chunks from a shared counter (itertools.count, atomic
    under the GIL) right after waking the workers, so a worker that wakes late (a sleeping thread
    takes 10-50 us to wake) or not at all (descheduled on a busy machine) only means the caller
    runs more of the chunks -- splitting a loop into more chunks than threads is what keeps one
    slow thread from stalling the step.
  * Workers sleep on a queue (a futex): nothing spins.  OpenBLAS's own threads spin after each
    call; ember runs numpy's BLAS on one thread and splits large products itself
    (ember/kernels/blas_threads.py), so no thread of ours competes with the next kernel.
  * At the end the caller sleeps on a lock until the chunks other threads claimed are done.  If it
    waited long in STRIKES loops in a row -- workers are descheduled, the machine is oversubscribed --
    parallel loops are switched off for a while (everything runs on the calling thread: 20 ms at
    first, doubling while the stragglers persist, up to BACKOFF_S), then tried again.
  * Counters: `stats()` (loops, chunks run by workers, backoffs) for benchmarks and tests.

Nothing here imports ember: the module can sit under any layer that needs threads.
"""
from __future__ import annotations

import itertools
import os
import queue
import threading
import time
from collections.abc import Callable

__all__ = ["parallel_for", "num_threads", "stats", "backing_off", "BACKOFF_S", "CHUNKS_PER_THREAD"]

CHUNKS_PER_THREAD = 4      # a parallel loop is cut into at most this many chunks per thread

_CPU_COUNT = os.cpu_count() or 1   # os.cpu_count() can cost ~0.1 ms: read it once

# A loop where the caller waited for other threads longer than STRAGGLE_FRACTION of its own time in
# the loop (and at least STRAGGLE_MIN_S) straggled.  STRIKES straggling loops in a row switch parallel
# loops off, first for BACKOFF_MIN_S; while stragglers persist each further back-off doubles, up to
# BACKOFF_S, and clean loops halve it again.  One isolated straggle (a page fault, a late wake-up on a
# quiet machine) used to switch threads off for 0.25 s at once: half the GPT step's loops then ran on
# one thread (509 of 1061 in 30 quiet steps).  A peer process that takes a core makes every loop
# straggle: the back-off then climbs to BACKOFF_S within a few loops, as before.
STRAGGLE_FRACTION = 0.5
STRAGGLE_MIN_S = 200e-6
STRIKES = 2
BACKOFF_MIN_S = 0.02
BACKOFF_S = 0.25


def num_threads() -> int:
    """EMBER_NUM_THREADS (ember.set_num_threads), default: all cores."""
    env = os.environ.get("EMBER_NUM_THREADS")
    if env:
        return max(1, int(env))
    return _CPU_COUNT


class _Loop:
    """One parallel loop: chunks are claimed from `claim`; `done` is released by the last one."""

    __slots__ = ("run", "n", "claim", "finished", "done", "errors")

    def __init__(self, run: Callable[[int], object], n: int):
        self.run, self.n = run, n
        self.claim = itertools.count()
        self.finished = itertools.count(1)
        self.done = threading.Lock()
        self.done.acquire()
        self.errors: list = []

    def work(self) -> int:
        """Run chunks until none is left; returns how many this thread ran."""
        run, n, ran = self.run, self.n, 0
        while True:
            i = next(self.claim)
            if i >= n:
                return ran
            try:
                run(i)
            except BaseException as e:  # noqa: BLE001 - re-raised by the caller
                self.errors.append(e)
            ran += 1
            if next(self.finished) == n:
                self.done.release()


_queue: queue.SimpleQueue = queue.SimpleQueue()
_workers: list[threading.Thread] = []
_start_lock = threading.Lock()
_backoff_until = 0.0
_backoff_s = BACKOFF_MIN_S   # the next back-off's length
_strikes = 0                 # straggling loops in a row
_stats = {"loops": 0, "serial_loops": 0, "chunks_by_workers": 0, "backoffs": 0}


def _worker() -> None:
    while True:
        job = _queue.get()
        ran = job.work()
        _stats["chunks_by_workers"] += ran


def _ensure_workers(n: int) -> None:
    if len(_workers) >= n:
        return
    with _start_lock:
        while len(_workers) < n:
            t = threading.Thread(target=_worker, name=f"ember-worker-{len(_workers)}", daemon=True)
            t.start()
            _workers.append(t)


def backing_off() -> bool:
    """True while parallel loops are off after a straggling worker."""
    return _backoff_until > time.monotonic()


def parallel_for(run: Callable[[int], object], n: int, threads: int | None = None) -> None:
    """run(0), ..., run(n-1), on the calling thread and up to threads-1 workers (see the docstring)."""
    global _backoff_until, _backoff_s, _strikes
    threads = num_threads() if threads is None else threads
    helpers = min(threads, n) - 1
    if helpers <= 0 or _backoff_until > time.monotonic():
        _stats["serial_loops"] += 1
        for i in range(n):
            run(i)
        return
    _ensure_workers(helpers)
    job = _Loop(run, n)
    for _ in range(helpers):
        _queue.put(job)
    t0 = time.perf_counter()
    job.work()
    t1 = time.perf_counter()
    job.done.acquire()           # sleeps until the chunks other threads claimed are finished
    waited = time.perf_counter() - t1
    _stats["loops"] += 1
    if waited > STRAGGLE_MIN_S and waited > STRAGGLE_FRACTION * (t1 - t0):
        _strikes += 1
        if _strikes >= STRIKES:
            _backoff_until = time.monotonic() + _backoff_s
            _backoff_s = min(2 * _backoff_s, BACKOFF_S)
            _strikes = 0
            _stats["backoffs"] += 1
    else:
        _strikes = 0
        _backoff_s = max(BACKOFF_MIN_S, _backoff_s / 2)
    if job.errors:
        raise job.errors[0]


def stats() -> dict:
    return dict(_stats)
