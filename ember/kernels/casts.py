"""Casts between float32 and bfloat16 for eager code: numpy's astype, or a generated kernel when the ember
package has installed one.

In: a numpy array and a target dtype.  Out: `astype(x, dtype)` -> a new array, as x.astype(dtype).

ml_dtypes' bfloat16 astype runs ~1 ns an element here, and eager autocast casts every activation and
gradient (a Linear layer's forward and backward under autocast cast more bytes than its GEMMs read);
the generated kernels (ember/codegen/gemm_bf16.py: cvt_f32_bf16, cvt_bf16_f32) do ~0.05 ns with the
same rounding bit for bit.  The package installs them (`CONVERT`) so this module needs no import of the
compiler; small arrays stay on numpy (a ctypes call costs more than it saves).
"""
from __future__ import annotations

import ml_dtypes
import numpy as np

__all__ = ["astype", "CONVERT", "MIN_ELEMENTS"]

CONVERT = None          # fn(x, dtype) -> array | None: float32 <-> bfloat16 of a C-contiguous array
MIN_ELEMENTS = 4096
_PAIRS = {(np.dtype(np.float32), np.dtype(ml_dtypes.bfloat16)), (np.dtype(ml_dtypes.bfloat16), np.dtype(np.float32))}


def astype(x: np.ndarray, dtype) -> np.ndarray:
    """x.astype(dtype); float32 <-> bfloat16 of large contiguous arrays through CONVERT."""
    if CONVERT is not None and x.__class__ is np.ndarray and x.size >= MIN_ELEMENTS and \
            (x.dtype, np.dtype(dtype)) in _PAIRS:       # (np.float32 the type hashes unlike its dtype)
        if x.flags.c_contiguous:
            r = CONVERT(x, dtype)
        elif x.flags.f_contiguous:      # a transposed result (a weight's gradient): keep its layout
            r = CONVERT(x.T, dtype)
            r = None if r is None else r.T
        else:
            dense = _dense_order(x)
            if dense is not None:       # a permuted dense array (a product's result read through a
                r = CONVERT(x.transpose(dense), dtype)     # permute): cast in memory order, keep the layout
                r = None if r is None else r.transpose(np.argsort(dense))
            else:                       # an expanded gradient, a strided view: one copy still beats astype
                if x.dtype != np.float32:   # (bf16: copied as uint16, numpy's own strided copy: 1.7x faster)
                    x = np.ascontiguousarray(x.view(np.uint16)).view(x.dtype)
                r = CONVERT(np.ascontiguousarray(x), dtype)
        if r is not None:
            return r
    return x.astype(dtype)


def _dense_order(x: np.ndarray):
    """The axis order that makes x C-contiguous (its strides sorted, a permutation of a dense buffer), or
    None (overlapping, expanded or gapped strides)."""
    perm = sorted(range(x.ndim), key=lambda i: (-abs(x.strides[i]), i))
    xt = x.transpose(perm)
    return perm if xt.flags.c_contiguous else None
