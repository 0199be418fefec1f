"""CuPy, when it is there: the one probe of whether it imports and sees a GPU, and the extern array
kernels on CuPy arrays (ember/kernels/blas.py has their numpy twins; `blas.run_extern` picks by xp).

    cupy_or_none()   the cupy module when it imports and sees a GPU, else None (checked once)
    need()           cupy, or a RuntimeError saying what is missing
    matmul           out = a @ b (batched, broadcasting) through cuBLAS; transposes are views
    conv2d           im2col (a strided view of the padded input, copied once into
                     [N, C*kh*kw, OH*OW]) and one batched GEMM with the weights, written into NCHW
"""
from __future__ import annotations

__all__ = ["cupy_or_none", "need", "matmul", "conv2d"]

_cupy = None
_checked = False


def cupy_or_none():
    """The cupy module when it imports and sees a GPU, else None (checked once)."""
    global _cupy, _checked
    if not _checked:
        _checked = True
        try:
            import cupy
            if cupy.cuda.runtime.getDeviceCount() > 0:
                _cupy = cupy
        except Exception:  # no cupy, no driver, no device: CUDA is simply unavailable
            _cupy = None
    return _cupy


def need():
    cp = cupy_or_none()
    if cp is None:
        raise RuntimeError("CUDA is not available: it needs CuPy (pip install 'ember[cuda]', cupy-cuda12x or "
                           "cupy-cuda13x) and an NVIDIA GPU with a driver")
    return cp


def _matmul_into(a, b, out) -> None:
    cp = cupy_or_none()
    try:
        cp.matmul(a, b, out=out)
    except (TypeError, ValueError):   # an older CuPy without out= for this case
        out[...] = cp.matmul(a, b)


def matmul(a, b, out, transpose_a: bool = False, transpose_b: bool = False) -> None:
    """out = a @ b (batched, broadcasting) through cuBLAS; transposes are views, not copies."""
    if transpose_a:
        a = a.swapaxes(-1, -2)
    if transpose_b:
        b = b.swapaxes(-1, -2)
    _matmul_into(a, b, out)


def conv2d(x, w, bias, out, stride=1, padding=0, dilation=1, groups: int = 1) -> None:
    """im2col + one batched GEMM per call: out[n, g*og:(g+1)*og] = w_g @ cols[n, g]."""
    from .blas import _pair
    cp = cupy_or_none()
    (sh, sw), (ph, pw), (dh, dw) = _pair(stride), _pair(padding), _pair(dilation)
    n, c, _, _ = x.shape
    o, cgr, kh, kw = w.shape
    _, _, oh, ow = out.shape
    if ph or pw:
        x = cp.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    x = cp.ascontiguousarray(x)
    s_n, s_c, s_h, s_w = x.strides
    # windows[n, c, a, b, i, j] = x[n, c, i*sh + a*dh, j*sw + b*dw]
    win = cp.lib.stride_tricks.as_strided(x, shape=(n, c, kh, kw, oh, ow),
                                          strides=(s_n, s_c, dh * s_h, dw * s_w, sh * s_h, sw * s_w))
    ck = cgr * kh * kw
    cols = cp.ascontiguousarray(win).reshape(n, groups, ck, oh * ow)     # the one im2col copy
    og = o // groups
    wg = w.reshape(1, groups, og, ck)
    _matmul_into(wg, cols, out.reshape(n, groups, og, oh * ow))          # NCHW directly
    if bias is not None:
        out += bias.reshape(1, o, 1, 1)
