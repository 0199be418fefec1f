"""numpy's BLAS thread count, per call: small GEMMs run on one thread.

OpenBLAS splits even tiny products across its threads; when the cores are busy (another process, our
own kernel thread pool) that costs far more than the product itself — measured here: a
(64,50)@(50,320) product took 28 ms with threads contending vs 0.02 ms on one thread. `gemm_threads`
picks 1 thread below a work threshold and the default above it. It talks to the OpenBLAS that numpy
bundles (scipy_openblas) through ctypes; with any other BLAS it does nothing.
"""
from __future__ import annotations

import ctypes
import glob
import os

import numpy as np

SMALL_GEMM_FLOPS = 8e6   # below this a product runs on one BLAS thread

_set = None
_default = None


def _load():
    global _set, _default
    libdir = os.path.join(os.path.dirname(np.__file__), os.pardir, "numpy.libs")
    for path in sorted(glob.glob(os.path.join(libdir, "libscipy_openblas*"))):
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        for setter, getter in (("scipy_openblas_set_num_threads64_", "scipy_openblas_get_num_threads64_"),
                               ("openblas_set_num_threads", "openblas_get_num_threads")):
            if hasattr(lib, setter) and hasattr(lib, getter):
                _set = getattr(lib, setter)
                _set.argtypes = [ctypes.c_int]
                _set.restype = None
                get = getattr(lib, getter)
                get.restype = ctypes.c_int
                _default = get()
                return
    _set = False


_load()
_current = _default


def set_threads(n: int) -> None:
    global _current
    if _set and n != _current:
        _set(n)
        _current = n


def gemm_threads(m: int, n: int, k: int, batch: int = 1) -> None:
    """Choose the thread count for an (m x k) @ (k x n) product, `batch` times."""
    if not _set:
        return
    set_threads(1 if 2.0 * m * n * k * batch < SMALL_GEMM_FLOPS else _default)


# The bfloat16 GEMM (a generated kernel: ember/runtime/gemm_bf16.py), installed by the ember package so
# that this module needs no import of the compiler: fn(a, b) -> bf16 array, a and b bfloat16.
BF16_MATMUL = None


def _matmul_16bit(a, b, out):
    """16-bit float products accumulate in float32 and round once, as PyTorch's CPU kernels: bfloat16
    through the generated GEMM, float16 (and bf16 without it) through float32 BLAS on upcast copies --
    16-bit values multiply exactly in float32, so only the order of the sums differs."""
    if a.dtype == b.dtype and a.dtype.kind == "V" and BF16_MATMUL is not None:
        r = BF16_MATMUL(a, b)
    else:
        r = matmul(a.astype(np.float32), b.astype(np.float32))
        with np.errstate(over="ignore"):
            r = r.astype(a.dtype if a.dtype == b.dtype else np.float32)
    if out is None:
        return r
    out[...] = r
    return out


def matmul(a, b, out=None):
    """np.matmul with the thread rule above (numpy arrays; other array types pass straight through).
    (Folding a 2-D @ batched product into one GEMM was measured slower here: the copies cost more.)"""
    if a.__class__ is not np.ndarray:
        return np.matmul(a, b, out=out) if out is not None else np.matmul(a, b)
    if a.dtype.itemsize == 2 and a.dtype.kind in "fV":
        return _matmul_16bit(a, b, out)
    if _set and a.ndim >= 2 and b.ndim >= 2:
        batch = 1
        for s in (a.shape[:-2] if a.ndim >= b.ndim else b.shape[:-2]):
            batch *= s
        gemm_threads(a.shape[-2], b.shape[-1], a.shape[-1], batch)
    with np.errstate(invalid="ignore", over="ignore"):   # inf/nan propagate silently, as in PyTorch
        return np.matmul(a, b, out=out) if out is not None else np.matmul(a, b)
