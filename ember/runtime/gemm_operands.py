"""How the generated GEMMs read numpy arrays: data addresses and the strides the kernels take.

In: numpy arrays (bf16 or float32 operands of a matrix product).  Out: `ptr(x)` (the data address),
`operand(x, k_axis)` (pointer, lane stride, K stride, flags, and the array to keep alive -- a copy when no
axis steps by one element), `unit_stride(x)`, `batch_stride(x)` (the one stride through a batch's dims,
or None), `data_offset()` (where numpy's C struct keeps the data pointer, for kernels that take the
array objects themselves: ember/runtime/gemm_bf16.py's plans).
"""
from __future__ import annotations

import ctypes
import sys

import numpy as np

__all__ = ["ptr", "operand", "unit_stride", "batch_stride", "data_offset"]


def ptr(a: np.ndarray) -> int:
    return a.__array_interface__["data"][0]


def operand(x: np.ndarray, k_axis: int):
    """(pointer, lane stride, K stride, words flags, array kept alive) for a 2-D bf16 or float32 operand
    whose K axis is `k_axis` (1 for A[M, K], 0 for B[K, N]); copies it when neither axis is unit-stride.
    flags: 1 K-contiguous, 2 float32 (rounded to bf16 as packed)."""
    sz = x.itemsize
    f32 = 2 if sz == 4 else 0
    st = [s // sz for s in x.strides]
    if any(s < 0 for s in st) or x.strides[0] % sz or x.strides[1] % sz:
        x = np.ascontiguousarray(x)
        st = [s // sz for s in x.strides]
    ks, ls = st[k_axis], st[1 - k_axis]
    if ks == 1 or x.shape[k_axis] == 1:
        return ptr(x), ls, 1, 1 | f32, x
    if ls == 1 or x.shape[1 - k_axis] == 1:
        return ptr(x), ls, ks, f32, x
    x = np.ascontiguousarray(x)
    st = [s // sz for s in x.strides]
    return ptr(x), st[1 - k_axis], 1 if k_axis == 1 else st[0], int(k_axis == 1) | f32, x


def unit_stride(x) -> bool:
    """Does one of the matrix axes step by one element (the kernel's packing reads it in place)?"""
    return x.itemsize in (x.strides[-1], x.strides[-2]) or 1 in x.shape[-2:]


def batch_stride(x):
    """The one element stride that steps through x's batch dims in order, or None when they do not
    flatten (0 when x is broadcast along all of them)."""
    st = None
    expected = None
    for n, s in zip(reversed(x.shape[:-2]), reversed(x.strides[:-2])):
        if n == 1:
            continue
        if s % x.itemsize:
            return None
        if st is None:
            st = s
        elif s != expected:
            return None
        expected = s * n
    return 0 if st is None else st // x.itemsize


def data_offset() -> int | None:
    """Where numpy's C struct keeps an array's data pointer (PyArrayObject's `data`, right after the object
    header: 16 bytes on 64-bit CPython), checked on a few arrays; None when it is not there (another
    Python, another numpy): the caller takes another way."""
    if sys.implementation.name != "cpython" or ctypes.sizeof(ctypes.c_void_p) != 8:
        return None
    base = np.arange(24, dtype=np.float32).reshape(4, 6)
    for x in (base, base[1:, 2:], base.T, np.empty(0)):
        if ctypes.c_void_p.from_address(id(x) + 16).value != ptr(x):
            return None
    return 16
