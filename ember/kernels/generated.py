"""Kernels of ember's own code generator run by eager ops: built as kernel IR, compiled once per key, kept.

In: a key (hashable: everything the kernel depends on -- op, shapes, dtypes, window) and a builder returning a
kernel IR `Kernel` (ember/ir/kernel.py, docs/kernel-ir.md).  Out: `kernel(key, build)` -> the compiled
kernel's launcher `run(arrays)` (contiguous numpy arrays in kernel.args order: inputs, then outputs, written
in place), or None where no code generator is available (the caller runs its numpy path).

    run = generated.kernel(("relu_grad", dtype, n), lambda: Kernel(...))
    if run is not None:
        run([g, y, out])

Why: an eager op that numpy spells as several whole-array passes (a max pool's running maximum and its
winner, a fold's strided adds, a masked gradient) runs as one loop of the compiled path's code instead --
the same generator, the same vectorised loops, split across ember's threads when large.

The compiler sits above this layer (ember/runtime/cpu.py), so it is handed in: ember/runtime/eager_kernels.py
puts its `compile_one` into COMPILE when ember is imported.  Compiled objects also go to the disk cache
(ember/runtime/cache.py): a new process finds a kernel it built before in a few milliseconds.
"""
from __future__ import annotations

import threading
from typing import Callable, Hashable

import numpy as np

__all__ = ["COMPILE", "MIN_SIZE", "MAX_KERNELS", "kernel", "memory_order", "built"]

COMPILE: Callable | None = None   # Kernel -> launcher; set by ember/runtime/eager_kernels.py
MIN_SIZE = 4096       # arrays smaller than this stay with numpy: its few passes over them cost less than a
                      # call (~5 us), and a shape seen once is not worth a build (~20 ms)
MAX_KERNELS = 256     # compiled kernels kept (eager shapes vary; each holds its machine code)

_cache: dict = {}
_lock = threading.Lock()
_broken: list = []    # the compiler failed once: numpy from then on
built: list = []      # keys compiled in this process, in order (tests check which path ran)


def kernel(key: Hashable, build: Callable) -> Callable | None:
    """The launcher of the kernel `build()` returns, compiled on the first call with this key; None when
    there is no code generator (or it failed: the error is not repeated for every call)."""
    run = _cache.get(key)
    if run is not None:
        return run
    if COMPILE is None or _broken:
        return None
    with _lock:
        run = _cache.get(key)
        if run is None:
            k = build()                    # a bad kernel is a bug here: it raises
            try:
                run = COMPILE(k)
            except Exception:  # noqa: BLE001 - no working LLVM here: the numpy paths serve
                _broken.append(True)
                return None
            if len(_cache) >= MAX_KERNELS:
                del _cache[next(iter(_cache))]          # the oldest
            _cache[key] = run
            built.append(key)
    return run


def memory_order(a: np.ndarray) -> tuple[tuple[int, ...], np.ndarray]:
    """(perm, buf): a == buf.transpose(inverse(perm)) with buf C-contiguous -- a's dims in memory order
    (outermost first) and its data as a row-major buffer a kernel can take.  A permuted contiguous array
    (a convolution's batch-last result) is not copied; anything else is, once, in that order."""
    perm = tuple(sorted(range(a.ndim), key=lambda i: (-abs(a.strides[i]), i)))
    buf = a.transpose(perm)
    if not buf.flags.c_contiguous:
        buf = np.ascontiguousarray(buf)
    return perm, buf


def inverse(perm) -> tuple[int, ...]:
    inv = [0] * len(perm)
    for i, p in enumerate(perm):
        inv[p] = i
    return tuple(inv)
