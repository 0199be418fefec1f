"""Kernels of ember's own code generator run by eager ops: built as kernel IR, compiled once per key, kept.

In: a key (hashable: everything the kernel depends on -- op, shapes, dtypes, window) and a builder returning a
kernel IR `Kernel` (ember/ir/kernel.py, docs/kernel-ir.md).  Out: `kernel(key, build)` -> the compiled
kernel (`k.launch(arrays)`: contiguous numpy arrays in kernel.args order, inputs then outputs, written in
place; `k.at({"s0": n})` binds the sizes of a kernel built over size symbols), or None where no code
generator is available (the caller runs its numpy path).

    k = generated.kernel(("max_pool", ...), lambda: Kernel(...))
    if k is not None:
        k.launch([x, y, tap])

`sized(key, build, n)` is a kernel built over the size symbol s0 (one compile for every size) bound to n;
`elementwise(name, fn, arrays)` the one-pass case: out[i] = fn(loads of arrays[j][i]) over arrays of one
shape, in the first one's memory order.

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

__all__ = ["COMPILE", "MIN_SIZE", "MAX_KERNELS", "kernel", "sized", "size_symbol", "elementwise", "memory_order",
           "inverse", "built"]

COMPILE: Callable | None = None   # Kernel -> compiled kernel (runtime/eager_kernels.compile_one; ember/__init__.py)
MIN_SIZE = 4096       # arrays smaller than this stay with numpy: its few passes over them cost less than a
                      # call (~5 us), and a shape seen once is not worth a build (~20 ms)
MAX_KERNELS = 256     # compiled kernels kept (eager shapes vary; each holds its machine code)

_cache: dict = {}
_bound: dict = {}     # (key, size) -> a `sized` kernel bound to that size
_lock = threading.Lock()
_broken: list = []    # the compiler failed once: numpy from then on
built: list = []      # keys compiled in this process, in order (tests check which path ran)


def kernel(key: Hashable, build: Callable):
    """The kernel `build()` returns, compiled on the first call with this key; None when there is no code
    generator (or it failed: the error is not repeated for every call)."""
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


def sized(key: Hashable, build: Callable, n: int):
    """The kernel `build()` returns -- built over the size symbol s0 -- bound to s0 = n: one compiled kernel
    for every size, and a binding kept per size (binding costs ~50 us: the launch facts are recomputed)."""
    bound = _bound.get((key, n))
    if bound is None:
        k = kernel(key, build)
        if k is None:
            return None
        bound = k.at({"s0": n})
        with _lock:
            if len(_bound) >= MAX_KERNELS:
                del _bound[next(iter(_bound))]
            _bound[(key, n)] = bound
    return bound


def size_symbol():
    """The size symbol s0 (ember/ir/symbolic.py) that `sized` kernels are built over."""
    from ..ir.symbolic import SymInt
    return SymInt({("s0",): 1}, MIN_SIZE)


def elementwise(name: str, fn: Callable, arrays, dtype=None) -> np.ndarray | None:
    """out = fn(*loads) elementwise over numpy arrays of one shape (kernel IR expressions of one Load each;
    out's dtype is `dtype`, or the first array's), laid out like arrays[0]: the others are read in its
    memory order (copied into it when they lie otherwise).  `name` identifies fn.  None: too small, or no
    code generator -- the caller's numpy path."""
    a0 = arrays[0]
    if a0.size < MIN_SIZE or COMPILE is None or _broken:
        return None
    perm, b0 = memory_order(a0)
    bufs = [b0] + [np.ascontiguousarray(a.transpose(perm)) for a in arrays[1:]]
    odt = np.dtype(dtype or a0.dtype)

    def build():
        from ..ir import dtypes as dt
        from ..ir.kernel import Buf, Kernel, Load, Store, o
        n = size_symbol()
        ins = [Buf(f"x{i}", (n,), dt.from_numpy(b.dtype)) for i, b in enumerate(bufs)]
        out = Buf("out", (n,), dt.from_numpy(odt))
        value = fn(*(Load(b, [o(0)]) for b in ins))
        return Kernel(ins, [out], [n], stores=[Store(out, [o(0)], value)], name=f"eager_{name}")

    k = sized(("elementwise", name, tuple(b.dtype.str for b in bufs), odt.str), build, b0.size)
    if k is None:
        return None
    res = np.empty(b0.shape, odt)
    k.launch([b.reshape(-1) for b in bufs] + [res.reshape(-1)])
    return res.transpose(inverse(perm))
