"""numpy's BLAS on one thread; large products split across ember's worker threads instead.

OpenBLAS splits even tiny products across its threads, and its threads spin after each call: when
the cores are busy (another process, our own kernel threads) that costs far more than the product
itself -- measured here: a (64,50)@(50,320) product took 28 ms with threads contending vs 0.02 ms
on one thread.  So numpy's OpenBLAS (scipy_openblas, reached through ctypes; with any other BLAS
this does nothing) is set to one thread, and `matmul` cuts a product of at least
PARALLEL_GEMM_FLOPS into row, column or batch blocks run by ember/kernels/workers.py: the same
sleeping workers and dynamic chunk claiming as the compiled kernels, so one descheduled thread
cannot stall the product and no BLAS thread spins while the next kernel runs.  numpy's matmul
releases the GIL inside BLAS, so the blocks run in parallel.
"""
from __future__ import annotations

import ctypes
import glob
import os

import numpy as np

from . import workers

SMALL_GEMM_FLOPS = 8e6        # kept for compatibility: products below this never split
PARALLEL_GEMM_FLOPS = 4e6     # products of at least this many flops are split across ember's workers
MIN_BLOCK = 32                # rows / columns per block (BLAS kernels want whole register tiles)

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
    """numpy's BLAS runs on one thread inside ember (see the module docstring)."""
    if _set:
        set_threads(1)


def _blocks(size: int, threads: int) -> int:
    return max(1, min(workers.CHUNKS_PER_THREAD * threads, size // MIN_BLOCK))


# Shapes where one numpy/OpenBLAS call is slow, and what is faster (measured on this machine, one
# thread, the convolution products of the MNIST CNN):
#   a long contraction into a small result, [10,36864] @ [36864,25] (a weight gradient):
#       0.88 ms; cut k into blocks of K_BLOCK and sum the partial products: 0.27 ms
#   a small result with few rows, [20,4096] @ [4096,250]: 1.0 ms; computed transposed,
#       [250,4096] @ [4096,20], then copied back: 0.59 ms
#   a short contraction, [10,25] @ [25,36864]: 0.51 ms; in column blocks whose [k, cols] panel
#       stays in the L2 cache (PANEL_BYTES): 0.26 ms
# The blocks depend on the shape only, never on the thread count, so results do not either; the
# blocks are also what the worker threads share out.
SMALL_RESULT = 1 << 16        # elements of m x n below which the two first rules apply
K_BLOCK = 2048
K_SPLIT_MIN = 4 * K_BLOCK
FEW_ROWS = 32
PANEL_BYTES = 256 << 10
# row blocks are cut as for this many threads, whatever the count (at least 2: the blocks that split a
# product on a 2-core machine)
ROW_BLOCK_THREADS = max(2, os.cpu_count() or 1)


def _gemm2d(a, b, out, threads: int):
    """out = a @ b for 2-D operands: ember's own kernels for the thin float32 shapes they win on, else
    numpy's BLAS with the rules above."""
    if F32_MATMUL is not None:
        r = F32_MATMUL(a, b, out)
        if r is not None:
            return r
    m, k = a.shape
    n = b.shape[1]
    if out is None:
        out = np.empty((m, n), dtype=np.result_type(a, b))
    if m == 1:      # a vector-matrix product (a bias or layer-norm weight gradient, ones @ X): BLAS's gemv
        return np.matmul(a, b, out=out)   # streams B once; the rules below cost 1.4-2.3x on cold [1024, 128..512]
    parallel = threads > 1 and 2.0 * m * n * k >= PARALLEL_GEMM_FLOPS and not workers.backing_off()
    nt = threads if parallel else 1
    if m * n <= SMALL_RESULT and k >= K_SPLIT_MIN:
        nb = -(-k // K_BLOCK)
        cut = [k * i // nb for i in range(nb + 1)]
        parts = np.empty((nb, m, n), dtype=out.dtype)
        workers.parallel_for(lambda i: np.matmul(a[:, cut[i]:cut[i + 1]], b[cut[i]:cut[i + 1]], out=parts[i]),
                             nb, nt)
        np.sum(parts, axis=0, out=out)
        return out
    if m < FEW_ROWS and m * n <= SMALL_RESULT and n >= 4 * m:
        out[...] = _gemm2d(b.T, a.T, None, threads).T
        return out
    blk = n
    if k * n * a.itemsize > 2 * PANEL_BYTES:
        blk = max(256, PANEL_BYTES // (k * a.itemsize) // 64 * 64)
    nb = -(-n // blk)
    if parallel and n >= m:
        nb = max(nb, _blocks(n, nt))
    elif 2.0 * m * n * k >= PARALLEL_GEMM_FLOPS:
        # row blocks by the shape alone, run serially when not in parallel: OpenBLAS's bits for a row depend
        # on the block it sits in (its edge kernels sum in another order), so a count that followed the
        # threads would change the result with them
        rb = _blocks(m, ROW_BLOCK_THREADS)
        if rb > 1:
            cut = [m * i // rb for i in range(rb + 1)]
            workers.parallel_for(lambda i: np.matmul(a[cut[i]:cut[i + 1]], b, out=out[cut[i]:cut[i + 1]]), rb, nt)
            return out
    if nb < 2:
        return np.matmul(a, b, out=out)
    cut = [n * i // nb for i in range(nb + 1)]
    workers.parallel_for(lambda i: np.matmul(a, b[:, cut[i]:cut[i + 1]], out=out[:, cut[i]:cut[i + 1]]), nb, nt)
    return out


# ember's float32 GEMM (a generated kernel: ember/runtime/gemm_f32.py), installed by the ember package:
# fn(a, b, out) -> out, or None for a product it leaves to BLAS (2-D, or batched a[..., M, K] @ b[..., K, N]).
F32_MATMUL = None
# fn(a, src, desc, out, transposed) -> out or None: a @ G (G^T) for a G gathered from src, never stored
# (ember/kernels/blas.py `gathered`), by the same module's kernels
F32_GATHERED = None

# The bfloat16 GEMM (a generated kernel: ember/runtime/gemm_bf16.py), installed by the ember package so
# that this module needs no import of the compiler: fn(a, b, bias=None, out=None) -> bf16 array, a, b (and bias[N]) bfloat16.
BF16_MATMUL = None


def _matmul_16bit(a, b, out):
    """16-bit float products accumulate in float32 and round once, as PyTorch's CPU kernels: bfloat16
    through the generated GEMM, float16 (and bf16 without it) through float32 BLAS on upcast copies --
    16-bit values multiply exactly in float32, so only the order of the sums differs."""
    if a.dtype == b.dtype and a.dtype.kind == "V" and BF16_MATMUL is not None:
        if out is not None and out.dtype == a.dtype and out.flags.c_contiguous:
            return BF16_MATMUL(a, b, out=out)      # straight into a compiled graph's buffer
        r = BF16_MATMUL(a, b)
    else:
        r = matmul(a.astype(np.float32), b.astype(np.float32))
        with np.errstate(over="ignore"):
            r = r.astype(a.dtype if a.dtype == b.dtype else np.float32)
    if out is None:
        return r
    out[...] = r
    return out


def _matmul_empty(a, b, out):
    dtype = np.result_type(a, b)
    wide = np.float32 if dtype.itemsize == 2 and dtype.kind in "fV" else dtype
    r = np.matmul(a.astype(wide, copy=False), b.astype(wide, copy=False)).astype(dtype, copy=False)
    if out is None:
        return r
    out[...] = r
    return out


def matmul(a, b, out=None):
    """np.matmul with the block rules above, split across ember's worker threads when large
    (numpy arrays; other array types pass straight through).  (Folding a 2-D @ batched product
    into one GEMM was measured slower here: the copies cost more.)"""
    if a.__class__ is not np.ndarray:
        return np.matmul(a, b, out=out) if out is not None else np.matmul(a, b)
    if a.size == 0 or b.size == 0:      # an empty batch (or K = 0: zeros): nothing for the blocked paths
        return _matmul_empty(a, b, out)
    if a.dtype.itemsize == 2 and a.dtype.kind in "fV":
        return _matmul_16bit(a, b, out)
    if _set and _current != 1:
        set_threads(1)
    with np.errstate(invalid="ignore", over="ignore"):   # inf/nan propagate silently, as in PyTorch
        if a.ndim < 2 or b.ndim < 2 or b.__class__ is not np.ndarray or a.dtype.kind not in "fc" \
                or b.dtype.kind not in "fc":
            return np.matmul(a, b, out=out) if out is not None else np.matmul(a, b)
        threads = workers.num_threads()
        if a.ndim == 2 and b.ndim == 2:
            return _gemm2d(a, b, out, threads)
        if F32_MATMUL is not None:      # batched float32 products it wins on (attention's Q @ K^T)
            r = F32_MATMUL(a, b, out)
            if r is not None:
                return r
        m, k, n = a.shape[-2], a.shape[-1], b.shape[-1]
        lead = np.broadcast_shapes(a.shape[:-2], b.shape[:-2])
        batch = 1
        for d in lead:
            batch *= d
        if threads < 2 or 2.0 * m * n * k * batch < PARALLEL_GEMM_FLOPS or workers.backing_off():
            return np.matmul(a, b, out=out) if out is not None else np.matmul(a, b)
        if out is None:
            out = np.empty(lead + (m, n), dtype=np.result_type(a, b))
        if lead and lead[0] >= 2 * threads and a.ndim == b.ndim:
            nb = min(lead[0], workers.CHUNKS_PER_THREAD * threads)
            cut = [lead[0] * i // nb for i in range(nb + 1)]
            pa = (lambda i: a[cut[i]:cut[i + 1]]) if a.shape[0] > 1 else (lambda i: a)
            pb = (lambda i: b[cut[i]:cut[i + 1]]) if b.shape[0] > 1 else (lambda i: b)
            blocks = lambda i: np.matmul(pa(i), pb(i), out=out[cut[i]:cut[i + 1]])  # noqa: E731
        elif n >= m:
            nb = _blocks(n, threads)
            cut = [n * i // nb for i in range(nb + 1)]
            blocks = lambda i: np.matmul(a, b[..., cut[i]:cut[i + 1]], out=out[..., cut[i]:cut[i + 1]])  # noqa: E731
        else:
            nb = _blocks(m, threads)
            cut = [m * i // nb for i in range(nb + 1)]
            blocks = lambda i: np.matmul(a[..., cut[i]:cut[i + 1], :], b, out=out[..., cut[i]:cut[i + 1], :])  # noqa: E731
        if nb < 2:
            return np.matmul(a, b, out=out)
        workers.parallel_for(blocks, nb, threads)
        return out
