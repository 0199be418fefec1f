"""Extern kernels on numpy arrays: matmul / bmm through numpy's BLAS, conv2d as im2col + GEMM.

In: the extern op name, input arrays, a preallocated output array and the ExternKernel's attrs.
Out: the output array written in place.  `run_extern(..., xp=)` is what every runtime device calls
(ember/runtime/device.py ExternCallable, which then runs the fused epilogue on the result); for CuPy
arrays it dispatches to the twins in ember/kernels/gpu.py.

    matmul  a[..., m, k] @ b[..., k, n] (numpy broadcasting); attrs transpose_a / transpose_b use the
            transpose of the last two dims (a Linear layer is matmul(x, w, transpose_b=True)); cast_a /
            cast_b ("bfloat16") round a float32 operand to that dtype first -- a cast folded into the
            product (ember/passes/fusion/decide.py): the bf16 GEMM rounds it as it packs, no copy
    bmm     same, 3-D operands
    conv2d  x[N, C, H, W], w[O, C/groups, kh, kw], optional bias[O]; attrs stride, padding,
            dilation (int or pair), groups
"""
from __future__ import annotations

import sys
from typing import Sequence

import ml_dtypes
import numpy as np

from . import blas_threads, casts

__all__ = ["run_extern", "matmul", "conv2d", "conv2d_output_shape"]


def _pair(v) -> tuple[int, int]:
    if isinstance(v, (tuple, list)):
        return int(v[0]), int(v[1])
    return int(v), int(v)


_BF16 = np.dtype(ml_dtypes.bfloat16)
_DTYPES = {"bfloat16": _BF16, "float16": np.dtype(np.float16)}


def matmul(a: np.ndarray, b: np.ndarray, out: np.ndarray, transpose_a: bool = False,
           transpose_b: bool = False, cast_a: str | None = None, cast_b: str | None = None,
           gather_b: tuple | None = None, bias: np.ndarray | None = None) -> None:
    """out = a @ b (operands as the flags say), + bias[N] before the one rounding of a 16-bit result (addmm)."""
    if bias is not None:
        b = gathered(np, b, gather_b) if gather_b is not None else b
        _matmul_bias(a, b, out, transpose_a, transpose_b, cast_a, cast_b, bias)
        return
    if transpose_a:
        a = np.swapaxes(a, -1, -2)
    if gather_b is not None:      # b is the source of an im2col that was never stored (passes/implicit_gemm.py)
        if blas_threads.F32_GATHERED is not None and blas_threads.F32_GATHERED(a, b, gather_b, out, transpose_b) \
                is not None:
            return
        b = gathered(np, b, gather_b)
    if transpose_b:
        b = np.swapaxes(b, -1, -2)
    if cast_a or cast_b:
        if _folds(a, b, out, cast_a, cast_b):
            blas_threads.BF16_MATMUL(a, b, out=out)   # rounds the float32 operands as it packs them
            return
        a = casts.astype(a, _DTYPES[cast_a]) if cast_a else a
        b = casts.astype(b, _DTYPES[cast_b]) if cast_b else b
    blas_threads.matmul(a, b, out=out)


def _matmul_bias(a, b, out, transpose_a, transpose_b, cast_a, cast_b, bias) -> None:
    """addmm: the bf16 GEMM adds the bias in its epilogue; other dtypes sum in float32 (or wider) and round
    once into out."""
    a = np.swapaxes(a, -1, -2) if transpose_a else a
    b = np.swapaxes(b, -1, -2) if transpose_b else b
    a = casts.astype(a, _DTYPES[cast_a]) if cast_a else a
    b = casts.astype(b, _DTYPES[cast_b]) if cast_b else b
    if blas_threads.BF16_MATMUL is not None and a.dtype == b.dtype == bias.dtype == out.dtype == _BF16 \
            and out.flags.c_contiguous:
        blas_threads.BF16_MATMUL(a, b, bias, out=out)
        return
    wide = np.promote_types(out.dtype, np.float32)
    r = blas_threads.matmul(a.astype(wide, copy=False), b.astype(wide, copy=False)) + bias.astype(wide, copy=False)
    out[...] = casts.astype(r, out.dtype) if r.dtype != out.dtype else r


def gathered(xp, src, desc: tuple):
    """The [K, J] matrix a gather descriptor stands for, materialized: row k is src.flat[koff[k] + joff]
    (joff: each run's start plus 0..L-1), or a constant row.  desc = (K, J, L, koff, starts, consts); see
    ember/passes/implicit_gemm.py, and ember/runtime/gemm_f32.py for the kernels that read it in place."""
    K, J, L, koff, starts, consts = desc
    out = xp.empty((K, J), src.dtype)
    rows = [k for k in range(K) if koff[k] >= 0]
    joff = (xp.asarray(starts, dtype=xp.int64)[:, None] + xp.arange(L)).reshape(-1)
    if rows:
        out[rows] = src.reshape(-1)[xp.asarray([koff[k] for k in rows])[:, None] + joff[None, :]]
    for k, value in consts:
        out[k] = value
    return out


def _folds(a, b, out, cast_a, cast_b) -> bool:
    """Can the bf16 GEMM read these operands as they are (float32 ones rounded while packed)?"""
    if blas_threads.BF16_MATMUL is None or out.dtype != _BF16 or not out.flags.c_contiguous:
        return False
    return all(x.dtype == (np.float32 if c else _BF16) and c in (None, "bfloat16")
               for x, c in ((a, cast_a), (b, cast_b)))


def conv2d_output_shape(x_shape, w_shape, stride=1, padding=0, dilation=1) -> tuple:
    n, _, h, w = x_shape
    o, _, kh, kw = w_shape
    (sh, sw), (ph, pw), (dh, dw) = _pair(stride), _pair(padding), _pair(dilation)
    oh = (h + 2 * ph - dh * (kh - 1) - 1) // sh + 1
    ow = (w + 2 * pw - dw * (kw - 1) - 1) // sw + 1
    return (n, o, oh, ow)


def conv2d(x: np.ndarray, w: np.ndarray, bias: np.ndarray | None, out: np.ndarray, stride=1,
           padding=0, dilation=1, groups: int = 1) -> None:
    """im2col (a strided window view, copied once into GEMM layout) + one GEMM per group."""
    (sh, sw), (ph, pw), (dh, dw) = _pair(stride), _pair(padding), _pair(dilation)
    n, c, _, _ = x.shape
    o, cg, kh, kw = w.shape
    _, _, oh, ow = out.shape
    if ph or pw:
        x = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    # windows[n, c, i, j, a, b] = x[n, c, i + a*dh, j + b*dw]; then stride over i, j
    span_h, span_w = dh * (kh - 1) + 1, dw * (kw - 1) + 1
    win = np.lib.stride_tricks.sliding_window_view(x, (span_h, span_w), axis=(2, 3))
    win = win[:, :, ::sh, ::sw, ::dh, ::dw][:, :, :oh, :ow]
    og = o // groups
    for g in range(groups):
        cols = win[:, g * cg:(g + 1) * cg]                                # [N, cg, OH, OW, kh, kw]
        cols = cols.transpose(0, 2, 3, 1, 4, 5).reshape(n * oh * ow, cg * kh * kw)
        wg = w[g * og:(g + 1) * og].reshape(og, cg * kh * kw)
        res = blas_threads.matmul(cols, wg.T)                             # [N*OH*OW, og] (bf16: the bf16 GEMM)
        out[:, g * og:(g + 1) * og] = res.reshape(n, oh, ow, og).transpose(0, 3, 1, 2)
    if bias is not None:
        out += bias.reshape(1, o, 1, 1)


def run_extern(op: str, inputs: Sequence, out, attrs: dict, xp=np) -> None:
    """out = op(*inputs) for an ExternKernel's op and attrs, on numpy (xp=numpy) or CuPy arrays."""
    if xp is np:
        lib = sys.modules[__name__]
    else:
        from . import gpu as lib
    if op in ("matmul", "bmm"):
        a, b = inputs[0], inputs[1]
        bias = inputs[2] if attrs.get("bias") else None
        if xp is np:
            lib.matmul(a, b, out, bool(attrs.get("transpose_a")), bool(attrs.get("transpose_b")),
                       attrs.get("cast_a"), attrs.get("cast_b"), attrs.get("gather_b"), bias)
            return
        if bias is not None:
            raise NotImplementedError("addmm (a 16-bit product with its bias) runs on the CPU only")
        if attrs.get("gather_b"):
            b = gathered(xp, b, attrs["gather_b"])
        a = a.astype(_DTYPES[attrs["cast_a"]]) if attrs.get("cast_a") else a  # (CuPy: no folded GEMM: a cast)
        b = b.astype(_DTYPES[attrs["cast_b"]]) if attrs.get("cast_b") else b
        lib.matmul(a, b, out, bool(attrs.get("transpose_a")), bool(attrs.get("transpose_b")))
    elif op == "conv2d":
        bias = inputs[2] if len(inputs) > 2 else None
        lib.conv2d(inputs[0], inputs[1], bias, out, attrs.get("stride", 1), attrs.get("padding", 0),
                   attrs.get("dilation", 1), int(attrs.get("groups", 1)))
    else:
        raise NotImplementedError(f"extern op {op!r}" + ("" if xp is np else " on CUDA"))
