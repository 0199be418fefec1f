"""Eager kernels from the code generator: pointwise ops numpy has no fast loop for, compiled once.

numpy has no erf: the reference kernel (ember/ir/ops.py `_erf`) evaluates a rational approximation
with ~25 whole-array float64 passes, ~50 ms per million float32 values here -- about half of an
eager GPT step with exact GELU.  The same op as a one-node kernel of the compiled path (LLVM,
vectorised, split over the worker threads) takes ~1 ms, and agrees with compiled graphs exactly.

    fast = unary_kernel("erf")          # fast(xp, x) -> array, or the reference for what it does not take
    ember.frontend.dispatch.register("erf", fast)     # done by ember/__init__.py

One kernel per (op, dtype), over a 1-D buffer whose length is a size symbol (ember/ir/symbolic.py),
so every array size uses the same machine code; compiled on first use and kept in the disk cache.
Arrays below MIN_SIZE, non-contiguous or non-CPU arrays, and other dtypes take the reference kernel.

The eager ops below this layer (pooling, a convolution's fold, masked gradients: ember/kernels/window_ops.py)
build their kernels themselves and compile them through `compile_one`, which this module hands to
ember/kernels/generated.py when it is imported (the kernels layer cannot import the compiler).
"""
from __future__ import annotations

import threading

import numpy as np

from ember.ir import dtypes as dt
from ember.ir.ops import OPS
from ember.kernels import generated

__all__ = ["unary_kernel", "compile_one", "FAST_UNARY", "MIN_SIZE"]

FAST_UNARY = ("erf",)      # measured slower in numpy than in generated code (see the docstring)
MIN_SIZE = 4096            # below this the call overhead (~10 us) outweighs the gain
_DTYPES = {np.dtype(np.float32): dt.float32, np.dtype(np.float64): dt.float64}
_cache: dict = {}
_lock = threading.Lock()


def _compiled(op: str, d: dt.DType):
    """The bound kernel y[i] = op(x[i]) over n = s0 values (compiled once per op and dtype)."""
    key = (op, d)
    k = _cache.get(key)
    if k is None:
        with _lock:
            k = _cache.get(key)
            if k is None:
                # kernel IR and llvmlite load on first use: `import ember` stays as fast as it was
                from ember.ir.kernel import Buf, Kernel, Load, Store, Unary, o
                from ember.ir.symbolic import SymInt
                from ember.runtime.cpu import compile_kernels
                n = SymInt({("s0",): 1}, MIN_SIZE)
                x, y = Buf("x", (n,), d), Buf("y", (n,), d)
                kern = Kernel([x], [y], [n], stores=[Store(y, [o(0)], Unary(op, Load(x, [o(0)])))],
                              name=f"eager_{op}_{d.short}")
                k = _cache[key] = compile_kernels([kern])[kern.name]
    return k


def unary_kernel(op: str):
    """fast(xp, x): op through generated code for large contiguous float32/float64 numpy arrays,
    the reference kernel otherwise (and for good if compiling fails)."""
    ref = OPS[op].ref
    broken = []

    def fast(xp, x, **attrs):
        d = _DTYPES.get(getattr(x, "dtype", None))
        if broken or xp is not np or d is None or x.size < MIN_SIZE or not x.flags.c_contiguous:
            return ref(xp, x, **attrs)
        try:
            k = _compiled(op, d)
        except Exception:  # noqa: BLE001 - no working code generator here: numpy it is
            broken.append(True)
            return ref(xp, x, **attrs)
        out = np.empty_like(x)
        k.at({"s0": x.size}).launch([x.reshape(-1), out.reshape(-1)])
        return out

    fast.__name__ = f"{op}_generated"
    fast.reference = ref                # what it runs below MIN_SIZE (and what constant folding uses)
    return fast


def compile_one(kernel):
    """A kernel IR Kernel compiled alone (through the disk cache): its KernelCallable (`launch(arrays)`,
    `at(sizes)`, ember/runtime/cpu.py)."""
    from ember.runtime.cpu import compile_kernels
    return compile_kernels([kernel])[kernel.name]


generated.COMPILE = compile_one
