"""ember's own float32 matrix product for the shapes OpenBLAS handles badly (see ember/codegen/gemm_f32.py).

In: 2-D float32 numpy arrays a[M, K], b[K, N] (any strides the kernels accept) and an optional output
out[M, N] with unit column stride.  Out: `matmul(a, b, out)` returns the product, or None when this
product is better left to BLAS (the caller, ember/kernels/blas_threads.py, then uses numpy).

    from ember.runtime import gemm_f32
    c = gemm_f32.matmul(a, b)          # None: not a shape for these kernels

Which products (`plan`), from interleaved measurements on this machine type (2 cores, numpy's OpenBLAS
on one thread per block as blas_threads runs it):
  * B's rows contiguous and a thin product (M <= OUTER_MAX_M rows, or K <= OUTER_MAX_K): the outer
    form, tile by tile with the whole contraction in registers, split across threads by column tiles
    (or row tiles when N is narrow).
  * A and B both contiguous along K and a small result (M * N <= DOT_MAX_MN): the dot form, K cut into
    blocks of DOT_KC that stay in L2; across threads by K ranges summed at the end, or by row tiles.
Everything else (large square products, other layouts) stays with BLAS, which is faster there.

The compiled module lives as long as the process (`instance()`): every call jumps into its machine code.
"""
from __future__ import annotations

import ctypes
import threading

import numpy as np

from ember.codegen import gemm_f32 as gen
from ember.kernels import workers
from ember.runtime import cpu, gemm_operands

__all__ = ["F32Gemm", "instance", "matmul"]

MIN_FLOPS = 4e6           # smaller products stay with BLAS: ~5 us of Python and ctypes per call here
                          # (13 arguments) is more than the kernels save on them
OUTER_MAX_M = 64          # rows at most this many: the outer form (BLAS's tiles waste most of a row block)
OUTER_MAX_K = 64          # or a contraction at most this long (BLAS's packing is a full pass for little work)
DOT_MAX_MN = 128 * 128    # dot form for results at most this big (long contractions into small results)
DOT_MIN_REUSE = 8         # and M * N / (M + N) at least this: fewer flops per byte of A and B read (conv1's
                          # weight gradient, [10, 36864] @ [36864, 26]) is a stream that BLAS's packing reads better
DOT_K_PART = 16384        # longer contractions are cut in parts of this many k (run in parallel, then summed)
DOT_KC = 2048             # K block of the dot form (measured 2048 > 1024 > 512 on [20, 4096] @ [4096, 251])
MAX_GATHERS = 64          # gather descriptors whose tables are kept between calls
PARALLEL_FLOPS = 4e6      # products of at least this many flops run on all of ember's threads
B_CACHE_BYTES = 512 << 10  # a B this small is read from L2 by every row tile: rows outermost, C written in order
PACKED_MIN_M = 16         # a B packed for fewer rows is used once: BLAS streams it as fast (conv1's [10,26] @
                          # [26,36864]: 302 us packed against 288 us, one thread)
PANEL_BYTES = 256 << 10   # a packed column block of B (sgemm_outerp): in L2 with room for C's rows

_P, _I64, _I32 = ctypes.c_void_p, ctypes.c_int64, ctypes.c_int32
_F32 = np.dtype(np.float32)


_ptr = _addr = gemm_operands.ptr


class F32Gemm:
    """The compiled module (a NativeLibrary, ember/runtime/cpu.py) and its functions."""

    def __init__(self):
        target = cpu.host_target()
        text = gen.emit_module(triple=target.triple, data_layout=target.data_layout)
        self._lib = cpu.NativeLibrary(text, "gemm_f32", gen.__file__)
        fn = self._lib.function
        self.outer = {t: fn(f"sgemm_outer_{t.tag}", _P, _I64, _I64, _P, _I64, _P, _I64, _I64, _I64, _I64, _I64,
                            _I64, _I32) for t in gen.OUTER_TILES}
        self.outer_packed = {t: fn(f"sgemm_outerp_{t.tag}", _P, _I64, _I64, _P, _I64, _P, _I64, _I64, _I64, _I64,
                                   _I64, _I64, _I32, _P, _I64) for t in gen.OUTER_TILES}
        self.dot = {t: fn(f"sgemm_dot_{t.tag}", _P, _I64, _P, _I64, _P, _I64, _I64, _I64, _I64, _I64, _I64, _I64,
                          _I64, _P, _I32) for t in gen.DOT_TILES}
        self.outer_gathered = {t: fn(f"sgemm_outerg_{t.tag}", _P, _I64, _I64, _P, _P, _P, _I64, _P, _I64, _I64, _I64,
                                     _I64, _I64, _I64, _I32, _P, _I64) for t in gen.OUTER_TILES}
        self.dot_gathered = {t: fn(f"sgemm_dotg_{t.tag}", _P, _I64, _P, _P, _P, _P, _I64, _I64, _I64, _I64, _I64,
                                   _I64, _I64, _I64, _P, _I32) for t in gen.DOT_TILES}
        self._outer_tile: dict = {}
        self._dot_tile: dict = {}
        self._gathers: dict = {}   # gather descriptor -> (row offsets or const addresses, row steps, starts)
        self._local = threading.local()     # scratch for the dot form's parked accumulators, per thread

    # ----------------------------------------------------------------------------- tile choice
    def outer_tile(self, m: int, n: int) -> gen.OuterTile:
        """The tile wasting the fewest lanes on an M x N result (ties: more vectors, fewer B loads)."""
        t = self._outer_tile.get((m, n))
        if t is None:
            t = self._outer_tile[(m, n)] = min(
                gen.OUTER_TILES, key=lambda t: (-(-m // t.mr) * t.mr * -(-n // t.nr) * t.nr, -t.nv))
        return t

    def dot_tile(self, m: int, n: int) -> gen.DotTile:
        t = self._dot_tile.get((m, n))
        if t is None:
            t = self._dot_tile[(m, n)] = min(
                gen.DOT_TILES, key=lambda t: (-(-m // t.ra) * t.ra * -(-n // t.rb) * t.rb, -t.ra))
        return t

    # ----------------------------------------------------------------------------- products
    def run_outer(self, pa, sam, sak, pb, sbk, pc, ldc, m, n, k, threads: int) -> None:
        t = self.outer_tile(m, n)
        parallel = threads > 1 and 2.0 * m * n * k >= PARALLEL_FLOPS
        if 4 * k * n <= B_CACHE_BYTES:
            # B stays in L2: row tiles outermost (C written in order), split across threads by rows
            fn = self.outer[t]
            if not parallel or m <= t.mr:
                fn(pa, sam, sak, pb, sbk, pc, ldc, 0, m, 0, n, k, 0)
                return
            tiles = -(-m // t.mr)
            nb = min(tiles, workers.CHUNKS_PER_THREAD * threads)
            cut = [min(m, tiles * i // nb * t.mr) for i in range(nb + 1)]
            workers.parallel_for(lambda i: fn(pa, sam, sak, pb, sbk, pc, ldc, cut[i], cut[i + 1], 0, n, k, 0),
                                 nb, threads)
            return
        # B from memory: column blocks packed into an L2 panel each (sgemm_outerp), split by columns
        fn = self.outer_packed[t]
        cb = max(t.nr, PANEL_BYTES // (4 * k) // t.nr * t.nr)
        blocks = -(-n // cb)
        nb = min(blocks, workers.CHUNKS_PER_THREAD * threads) if parallel else 1
        cut = [min(n, blocks * i // nb * cb) for i in range(nb + 1)]
        if nb == 1:
            fn(pa, sam, sak, pb, sbk, pc, ldc, 0, m, 0, n, k, 0, self._scratch("panel", k * cb), cb)
            return
        # the panel of the thread that runs a chunk (not one per chunk: a buffer it wrote last stays in its L2)
        workers.parallel_for(lambda i: fn(pa, sam, sak, pb, sbk, pc, ldc, 0, m, cut[i], cut[i + 1], k, 0,
                                          self._scratch("panel", k * cb), cb), nb, threads)

    def run_dot(self, pa, sam, pb, sbn, pc, ldc, m, n, k, threads: int) -> None:
        t = self.dot_tile(m, n)
        fn = self.dot[t]
        scratch = -(-m // t.ra) * -(-n // t.rb) * t.ra * t.rb * 16      # floats of parked accumulators
        parallel = threads > 1 and 2.0 * m * n * k >= PARALLEL_FLOPS
        parts = -(-k // DOT_K_PART)
        if parts > 1:
            # a long contraction in parts of DOT_K_PART (fixed by the shape, so the sums are the same bits on
            # any number of threads), each into its own result, added in order
            cut = [min(k, i * DOT_K_PART) for i in range(parts + 1)]
            res = np.empty((parts - 1, m, n), _F32)
            dst = [(pc, ldc)] + [(_ptr(r), n) for r in res]
            bufs = [self._scratch(i, scratch) for i in range(parts)]
            workers.parallel_for(lambda i: fn(pa, sam, pb, sbn, dst[i][0], dst[i][1], 0, m, 0, n, cut[i],
                                              cut[i + 1], DOT_KC, bufs[i], 0), parts, threads if parallel else 1)
            out = np.ndarray((m, n), _F32, buffer=(ctypes.c_char * (4 * ldc * (m - 1) + 4 * n)).from_address(pc),
                             strides=(4 * ldc, 4))
            for r in res:
                np.add(out, r, out=out)
            return
        tiles = -(-n // t.rb)
        if not parallel or tiles < 2:
            fn(pa, sam, pb, sbn, pc, ldc, 0, m, 0, n, 0, k, DOT_KC, self._scratch(0, scratch), 0)
            return
        nb = min(tiles, workers.CHUNKS_PER_THREAD * threads)      # column chunks, every k for each
        cut = [min(n, tiles * i // nb * t.rb) for i in range(nb + 1)]
        per = -(-m // t.ra) * -(-tiles // nb) * t.ra * t.rb * 16
        bufs = [self._scratch(i, per) for i in range(nb)]
        workers.parallel_for(lambda i: fn(pa, sam, pb, sbn, pc, ldc, 0, m, cut[i], cut[i + 1], 0, k, DOT_KC,
                                          bufs[i], 0), nb, threads)

    # ----------------------------------------------------------------------------- gathered operands
    def _gather_tables(self, desc: tuple, src_addr: int) -> tuple:
        """(kaddr, kstep, starts) int64 arrays for a gather descriptor (see `matmul_gathered`) and the
        source's address: row k of run r starts at kaddr[k] + 4 * kstep[k] * starts[r] bytes.  A constant
        row reads a buffer of L copies of its value with step 0 (the buffers live as long as the module)."""
        hit = self._gathers.get(desc)
        if hit is None:
            K, J, L, koff, starts, consts = desc
            koff = np.asarray(koff, np.int64)
            kstep = (koff >= 0).astype(np.int64)
            base = np.where(kstep == 1, 4 * koff, 0)
            keep = []
            for k, value in consts:
                buf = np.full(L + 16, value, _F32)
                keep.append(buf)
                base[k] = _ptr(buf)
            if len(self._gathers) >= MAX_GATHERS:       # eager shapes vary: keep the table bounded
                self._gathers.clear()
            hit = self._gathers[desc] = (base, kstep, np.asarray(starts, np.int64), keep)
        base, kstep, starts, keep = hit
        # the constant rows' buffers travel with the call: a clear by another thread cannot free them under it
        return base + kstep * src_addr, kstep, starts, keep

    def run_outer_gathered(self, pa, sam, sak, desc, src_addr, pc, ldc, m, threads: int) -> None:
        K, J, L = desc[0], desc[1], desc[2]
        kaddr, kstep, starts, _keep = self._gather_tables(desc, src_addr)
        t = self.outer_tile(m, L)
        fn = self.outer_gathered[t]
        runs = J // L
        tabs = (_ptr(kaddr), _ptr(kstep), _ptr(starts))
        parallel = threads > 1 and 2.0 * m * J * K >= PARALLEL_FLOPS and runs > 1
        nb = min(runs, workers.CHUNKS_PER_THREAD * threads) if parallel else 1
        cut = [runs * i // nb for i in range(nb + 1)]
        cb = L if m <= t.mr else max(t.nr, PANEL_BYTES // (4 * K) // t.nr * t.nr)   # B's block in L2
        if nb == 1:
            fn(pa, sam, sak, *tabs, L, pc, ldc, 0, m, 0, runs, K, 0, self._scratch("rows", 2 * K), cb)
            return
        # each chunk fills the row pointers of its runs in the running thread's scratch
        workers.parallel_for(lambda i: fn(pa, sam, sak, *tabs, L, pc, ldc, 0, m, cut[i], cut[i + 1], K, 0,
                                          self._scratch("rows", 2 * K), cb), nb, threads)

    def run_dot_gathered(self, pa, sam, desc, src_addr, pc, ldc, m, threads: int) -> None:
        K, J, L = desc[0], desc[1], desc[2]
        kaddr, kstep, starts, _keep = self._gather_tables(desc, src_addr)
        t = self.dot_tile(m, K)
        fn = self.dot_gathered[t]
        tabs = (_ptr(kaddr), _ptr(kstep), _ptr(starts))
        tiles = -(-K // t.rb)
        parallel = threads > 1 and 2.0 * m * J * K >= PARALLEL_FLOPS and tiles > 1
        nb = min(tiles, workers.CHUNKS_PER_THREAD * threads) if parallel else 1
        cut = [min(K, tiles * i // nb * t.rb) for i in range(nb + 1)]
        per = -(-m // t.ra) * -(-tiles // nb) * t.ra * t.rb * 16
        bufs = [self._scratch(i, per) for i in range(nb)]
        if nb == 1:
            fn(pa, sam, *tabs, pc, ldc, 0, m, 0, K, 0, J, L, bufs[0], 0)
            return
        workers.parallel_for(lambda i: fn(pa, sam, *tabs, pc, ldc, 0, m, cut[i], cut[i + 1], 0, J, L, bufs[i], 0),
                             nb, threads)

    def _scratch(self, i: int, floats: int) -> int:
        """The address of the calling thread's scratch buffer i (64-byte aligned, at least `floats` floats),
        kept between calls (the dot form: chunk i of a parallel loop uses buffer i of the thread that started
        the loop; the packed outer form: the panel of the thread running the chunk)."""
        bufs = self._local.__dict__.setdefault("bufs", {})
        buf = bufs.get(i)
        if buf is None or buf[0].size < floats + 16:
            raw = np.empty(floats + 16, _F32)
            addr = _ptr(raw)
            buf = bufs[i] = (raw, addr + (-addr) % 64)
        return buf[1]


def plan(m: int, k: int, n: int, sa: tuple, sb: tuple) -> str | None:
    """'outer', 'dot' or None (BLAS) for [M, K] @ [K, N] with byte strides sa, sb (see the docstring)."""
    if m * n * k < MIN_FLOPS / 2 or (sa[0] | sa[1] | sb[0] | sb[1]) & 3:
        return None
    if sb[1] == 4 and (m <= OUTER_MAX_M or k <= OUTER_MAX_K) and (m > PACKED_MIN_M or 4 * k * n <= B_CACHE_BYTES):
        return "outer"
    if sa[1] == 4 and sb[0] == 4 and m * n <= DOT_MAX_MN and m * n >= DOT_MIN_REUSE * (m + n):
        return "dot"
    return None


_INSTANCE = None
_LOCK = threading.Lock()


def instance() -> F32Gemm:
    """The process-wide compiled module (built on first use)."""
    global _INSTANCE
    if _INSTANCE is None:
        with _LOCK:
            if _INSTANCE is None:
                _INSTANCE = F32Gemm()
    return _INSTANCE


def matmul(a: np.ndarray, b: np.ndarray, out: np.ndarray | None = None, threads: int | None = None,
           form: str | None = None) -> np.ndarray | None:
    """a @ b by the generated kernels, or None (leave it to BLAS).  form forces 'outer' / 'dot' (tests)."""
    if a.dtype != _F32 or b.dtype != _F32 or a.ndim != 2 or b.ndim != 2:
        return None
    (m, k), n = a.shape, b.shape[1]
    sa, sb = a.strides, b.strides
    form = form or plan(m, k, n, sa, sb)
    if form is None:
        return None
    if out is None:
        out = np.empty((m, n), _F32)
    elif out.dtype != _F32 or out.shape != (m, n) or out.strides[1] != 4 or out.strides[0] % 4 \
            or np.may_share_memory(out, a) or np.may_share_memory(out, b):
        return None
    pa, pb, pc = _addr(a), _addr(b), _addr(out)
    if (pa | pb | pc) & 3:
        return None
    threads = workers.num_threads() if threads is None else threads
    g = _INSTANCE or instance()
    if form == "outer":
        g.run_outer(pa, sa[0] >> 2, sa[1] >> 2, pb, sb[0] >> 2, pc, out.strides[0] >> 2, m, n, k, threads)
    else:
        g.run_dot(pa, sa[0] >> 2, pb, sb[1] >> 2, pc, out.strides[0] >> 2, m, n, k, threads)
    return out


def matmul_gathered(a: np.ndarray, src: np.ndarray, desc: tuple, out: np.ndarray, transposed: bool = False,
                    threads: int | None = None) -> np.ndarray | None:
    """a @ G (transposed: a @ G^T) into out, where G = gathered(src, desc) is never stored: an im2col read
    straight from the convolution's input (ember/passes/implicit_gemm.py).  desc = (K, J, L, koff, starts,
    consts): G is [K, J]; its columns come in J / L runs of L contiguous source elements, run r starting at
    starts[r]; row k adds koff[k] (or is the constant of `consts`, koff -1: the bias row of ones).
    None: not for these kernels (the caller materializes G: ember/kernels/blas.py `gathered`)."""
    K, J, L = desc[0], desc[1], desc[2]
    if (a.dtype != _F32 or src.dtype != _F32 or out.dtype != _F32 or a.ndim != 2 or not src.flags.c_contiguous
            or out.strides[1] != 4 or out.strides[0] % 4 or J % L or (a.strides[0] | a.strides[1]) & 3):
        return None
    m = a.shape[0]
    if transposed and (a.shape != (m, J) or out.shape != (m, K) or a.strides[1] != 4):
        return None
    if not transposed and (a.shape != (m, K) or out.shape != (m, J)):
        return None
    threads = workers.num_threads() if threads is None else threads
    g = _INSTANCE or instance()
    pa, ps, pc = _addr(a), _addr(src), _addr(out)
    if transposed:
        g.run_dot_gathered(pa, a.strides[0] >> 2, desc, ps, pc, out.strides[0] >> 2, m, threads)
    else:
        g.run_outer_gathered(pa, a.strides[0] >> 2, a.strides[1] >> 2, desc, ps, pc, out.strides[0] >> 2, m, threads)
    return out
