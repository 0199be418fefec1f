"""The bfloat16 matrix product on the CPU: compiles ember/codegen/gemm_bf16.py once and calls it.

In: numpy arrays of ml_dtypes bfloat16, a[..., M, K] @ b[..., K, N] (any strides; batch dims broadcast),
an optional bf16 bias[N] added before rounding, and the output dtype (bfloat16 or float32).  An operand
may be float32: it is rounded to bfloat16 as it is packed (nearest even, as eager's cast), so the result
equals the product of the bf16 casts bit for bit without the copies -- a compiled graph's cast feeding
the product folds into it this way (ember/passes/fusion/decide.py).
Out: a new C-contiguous array, accumulated in float32 and rounded once (round-to-nearest-even).

    from ember.runtime import gemm_bf16
    c = gemm_bf16.matmul(a, b)                         # bf16 out, like torch's bf16 mm
    c = gemm_bf16.matmul(a, b, bias=bias, out_dtype=np.float32)

The machine code uses vdpbf16ps when the host CPU has AVX512-BF16 (`llvm.get_host_cpu_features()`),
else float32 FMAs on the widened halves (`Bf16Gemm(GemmConfig(dpbf16=False))` forces that path).
Object code goes through the disk cache of ember/runtime/cache.py like every compiled kernel.

Threads: a product of at least PARALLEL_MIN_FLOPS runs on num_threads() threads in one parallel loop of
ember/kernels/workers.py (a handoff costs ~50 us here, so one, not one per phase) of one kernel call per
thread; the calls claim their work from a shared counter as they go (the kernels' `_claims`), so a
thread that starts late or is descheduled only leaves more for the others, and no Python runs per chunk
(each Python call after a kernel that swept the caches costs tens of microseconds).  What they claim
(`_split`): rows, in chunks that shrink towards the end, when B is no bigger than A -- the threads pack
B once, together, into one buffer (groups of panels claimed first; a group another thread has not
finished is packed privately, never waited for); else chunks of B's column panels, each packing its
panels and all of A, or pieces of a staged B; batches: products.  Smaller products run on the calling
thread in one call (gemm_cols): B packed, then every row; a product of one row block whose packed B
outgrows CHUNK_BYTES packs and uses B chunk by chunk, while it is in cache.

Few rows, a short K, a bf16 B with unit column stride (a small convolution's forward, [10,25]@[25,36864]):
B is not packed but staged and interleaved in registers (gemm_colsb, `Bf16Gemm.direct_b_tile`).  A long K
into a small result with both operands K-contiguous (a weight gradient, [10,36864]@[36864,25]): inner
products, nothing packed (gemm_dot, `Bf16Gemm.dot_ok`), split by columns over threads.

Small products (below PARALLEL_MIN_FLOPS) whose shapes, strides and dtypes were seen before on this
thread run from a plan (`_Plan`): one ctypes call of gemm_entry on the arrays themselves, its other
arguments fixed in the plan -- a general call costs ~10 us of Python and ctypes (four
`__array_interface__` look-ups, 19 converted integers), as much as a [64,320]@[320,50] product.

`convert(x, dtype)`: float32 <-> bfloat16 of a contiguous array by the module's cvt functions (eager
casts go through it: ember/kernels/casts.py).

The one compiled instance per configuration lives as long as the process (`instance()`): its engine
owns the machine code that every call jumps into, so it must never be collected while in use.
"""
from __future__ import annotations

import ctypes
import math
import threading

import ml_dtypes
import numpy as np

from ember.codegen import gemm_bf16 as gen
from ember.codegen import llvm as cg
from ember.kernels import blas_threads, casts, workers
from ember.runtime import cpu
from ember.runtime.gemm_operands import batch_stride, data_offset, operand, unit_stride
from ember.runtime.gemm_operands import ptr as _ptr

__all__ = ["Bf16Gemm", "instance", "matmul", "convert", "host_has_bf16", "PARALLEL_MIN_FLOPS", "SMALL_FLOPS"]

BF16 = np.dtype(ml_dtypes.bfloat16)
_OPERAND = (BF16, np.dtype(np.float32))
# Below this a product runs on the calling thread: the pool handoff (~55 us, two per product) costs more
# than the second core saves (bf16 products run at ~100+ GFLOP/s per core here).
PARALLEL_MIN_FLOPS = 24e6
# A float32 <-> bf16 cast of at least this many elements per thread is split across threads: measured (2
# threads, quiet) 1M elements 256 -> 170 us (f32 -> bf16) and 134 -> 111 us back, but at 131k-524k elements
# the handoff costs more than the second core saves (131k: 41 -> 61 us)
CONVERT_PARALLEL_MIN = 1 << 19
# Below this a product goes to numpy's float32 BLAS on upcast copies (`_small`): ~10 us of Python and
# ctypes per call here would cost more than the kernel saves.
SMALL_FLOPS = 1e6
# gemm_cols packs and uses B this many bytes at a time (in L2) when the product has one row block
# (conv1 [10,25]@[25,36864], interleaved medians: 244-293 us against 284-302 us packing all of B first)
CHUNK_BYTES = 192 * 1024
# Products run as inner products (gemm_dot: `dot_ok`): both operands K-contiguous bf16, at most this many
# rows and columns, at least this K (measured: [10,36864]@[36864,25] 63 -> 190 GF/s, [20,4096]@[4096,250]
# 102 -> 178, [64,8192]@[8192,64] 177 -> 157: tiles there waste nothing)
DOT_MAX_M, DOT_MAX_N, DOT_MIN_K = 32, 512, 1024
# Products that read B without packing it (gemm_colsb: `Bf16Gemm.direct_b_tile`): at most this many rows
# and this K, at least this many columns (measured 1.2-2.8x over packing for M <= 32, K <= 250)
DIRECT_B_MAX_M, DIRECT_B_MAX_K, DIRECT_B_MIN_N = 32, 256, 256

_P, _I64, _I32 = ctypes.c_void_p, ctypes.c_int64, ctypes.c_int32
# gemm_rows' trailing arguments when its B is packed already (no sharing between threads)
_UNSHARED = (None, 0, 0, 0, None, 0, None, 0)
# Threads that split a product's rows pack B together, in about this many groups of panels per thread:
# small enough that the last group packed is long done when another thread reaches it
SHARE_GROUPS_PER_THREAD = 4
# time per useful lane relative to 8x48 (fewer accumulators: more loads per vdpbf16ps), measured
_TILE_COST = {(24, 1): 1.25, (12, 2): 1.05, (8, 2): 1.1,
              (4, 1): 1.25}      # AVX2's 4x16, relative to 6x16 (gen.AVX2_TILES)


def host_has_bf16() -> bool:
    cg.init_native()
    return bool(cg.llvm.get_host_cpu_features().get("avx512bf16", False))


class _Workspace(threading.local):
    """Packing buffers, reused across calls (fresh allocations cost page faults), one set per thread;
    `plans`: this thread's small-product plans (`_Plan`), which hold the buffers' addresses -- dropped
    whenever a buffer is replaced."""

    def __init__(self):
        self.bufs: dict = {}
        self.plans: dict = {}

    def get(self, name: str, nbytes: int) -> tuple:
        """(64-byte aligned uint8 array of nbytes, its address): B panels load as aligned zmm."""
        hit = self.bufs.get(name)
        if hit is None or hit[0].nbytes < nbytes:
            raw = np.empty(nbytes + 64, np.uint8)
            off = (-_ptr(raw)) % 64
            arr = raw[off:off + nbytes]
            hit = self.bufs[name] = (arr, _ptr(arr), raw)
            self.plans.clear()
        return hit[0][:nbytes], hit[1]

    def addr(self, name: str, nbytes: int) -> int:
        """The address of get(name, nbytes)'s buffer (no array view made: a small product's calls add up)."""
        hit = self.bufs.get(name)
        if hit is None or hit[0].nbytes < nbytes:
            return self.get(name, nbytes)[1]
        return hit[1]


class Bf16Gemm:
    """One compiled configuration: its NativeLibrary (ember/runtime/cpu.py) and the functions it holds."""

    def __init__(self, cfg: gen.GemmConfig | None = None):
        self.cfg = cfg or gen.host_config(host_has_bf16(), cpu.host_target().vector_bits)
        if self.cfg.dpbf16 and not host_has_bf16():
            raise RuntimeError("Bf16Gemm: this CPU has no AVX512-BF16 (use GemmConfig(dpbf16=False))")
        target = cpu.host_target()
        text = gen.emit_module(self.cfg, target.triple, target.data_layout)
        self._lib = cpu.NativeLibrary(text, "gemm_bf16", gen.__file__)
        fn = self._lib.function
        self.fns = {}   # tile -> (pack_b, gemm_rows, gemm_block)
        for t in self.cfg.tiles:
            self.fns[t] = (fn(f"pack_b_{t.tag}", _P, _I64, _I64, _I32, _I64, _I64, _I64, _I64, _P),
                           fn(f"gemm_rows_{t.tag}", _P, _I64, _I64, _I32, _P, _I64, _I64, _I64, _I64, _I64, _P,
                              _I64, _P, _I64, _P, _P, _P, _I64, _I64, _I32, _P, _I64, _P, _I64),
                           fn(f"gemm_block_{t.tag}", _P, _P, _I64, _I64, _I64, _P, _I64, _P, _I64, _P, _I32),
                           fn(f"gemm_batch_{t.tag}", _P, _I64, _I64, _I64, _I32, _P, _I64, _I64, _I64, _I32,
                              _I64, _I64, _I64, _I64, _I64, _P, _I64, _I64, _P, _I64, _I64, _P, _P, _P, _P),
                           fn(f"gemm_cols_{t.tag}", _P, _I64, _I64, _I32, _P, _I64, _I64, _I32, _I64, _I64, _I64,
                              _P, _I64, _P, _I64, _P, _P, _P, _I64, _P))
        # gemm_colsb per tile: B staged, not packed (few rows, short K: `direct_b_tile`)
        self.fns_b = {t: fn(f"gemm_colsb_{t.tag}", _P, _I64, _I64, _I32, _P, _I64, _I64, _I64, _I64, _P, _I64, _P,
                            _I64, _P, _P, _P, _P) for t in self.cfg.direct_b_tiles}
        # gemm_dot: inner products for a long K into a small result (`dot_ok`)
        self._dot = fn("gemm_dot", _P, _I64, _P, _I64, _I64, _I64, _I64, _I64, _I64, _P, _I64, _P, _I64, _P, _P)
        # the small-product entry takes the arrays themselves (py_object: no conversion); only where
        # numpy's C struct is laid out as checked (_DATA_OFFSET), else every call takes the path above
        self._entry = {}
        if _DATA_OFFSET is not None:
            objs = (ctypes.py_object,) * 4
            self._entry = {t: fn(f"gemm_entry_{t.tag}", _P, *objs) for t in self.cfg.tiles}
            self._entry_b = {t: fn(f"gemm_entryb_{t.tag}", _P, *objs) for t in self.cfg.direct_b_tiles}
        self._cvt = {np.dtype(np.float32): fn("cvt_bf16_f32", _P, _P, _I64),   # keyed by the target dtype
                     BF16: fn("cvt_f32_bf16", _P, _P, _I64)}
        self._ws = _Workspace()
        self._tile_of: dict = {}

    def convert(self, x: np.ndarray, to) -> np.ndarray | None:
        """x (C-contiguous float32 or bfloat16) cast to the other one as a new array; None for anything
        else (the caller then uses numpy)."""
        to = np.dtype(to)
        fn = self._cvt.get(to)
        if fn is None or not x.flags.c_contiguous or x.dtype != (BF16 if to == np.float32 else np.float32):
            return None
        out = np.empty(x.shape, to)
        src, dst, n = _ptr(x), _ptr(out), x.size
        nt = min(workers.num_threads(), n // CONVERT_PARALLEL_MIN)
        if nt < 2:
            fn(src, dst, n)
            return out
        # whole 16-lane steps per chunk; the caller claims chunks too, so a late thread never stalls it
        step = -(-n // (2 * nt) // 16) * 16
        sb, db = x.itemsize, out.itemsize

        def chunk(i):
            lo = i * step
            if lo < n:
                fn(src + lo * sb, dst + lo * db, min(step, n - lo))
        workers.parallel_for(chunk, -(-n // step), nt)
        return out

    def tile_for(self, n: int, m: int = 1 << 20) -> gen.Tile:
        """The tile that wastes the least work on an M x N product: padded rows times padded columns
        times the tile's relative cost (narrow tiles load more per FMA: measured 5-25% slower per lane
        than 8x48).  Matters for few rows too: a 10-row product wastes 6 of 16 rows on 8-row tiles."""
        t = self._tile_of.get((n, m)) or self._tile_of.get(n)
        if t is None:
            t = min(self.cfg.tiles, key=lambda t: (-(-m // t.mr) * t.mr * -(-n // t.nr) * t.nr *
                                                   _TILE_COST.get((t.mr, t.nv), 1.0), -t.nv, -t.mr))
            self._tile_of[(n, m)] = t
        return t

    def direct_b_tile(self, M: int, N: int, K: int, b_ls: int, b_w: int) -> gen.Tile | None:
        """The gemm_colsb tile for a product that reads B without packing it -- a bf16 B with unit column
        stride, few rows, a short K and many columns (a small convolution's forward: [10,25]@[25,36864]
        packed ran at ~45% of the speed) -- or None.  The tile with the least time by a measured model:
        per row tile and 16 columns, ~3 units to load and interleave B's pair and one per row."""
        cfg = self.cfg
        if b_w or b_ls != 1 or M > DIRECT_B_MAX_M or K > min(DIRECT_B_MAX_K, cfg.kc) or N < DIRECT_B_MIN_N:
            return None
        # (all of A is packed into the buffer of one MC x KC block)
        fits = [t for t in cfg.direct_b_tiles if -(-M // t.mr) * t.mr <= cfg.mc]
        return min(fits, key=lambda t: (-(-M // t.mr) * (3 + t.mr), -t.nv), default=None)

    @staticmethod
    def dot_ok(M: int, N: int, K: int, a_w: int, b_w: int) -> bool:
        """Does gemm_dot take this product: bf16 A and B both K-contiguous, a long K into a small result
        (a weight gradient: [10,36864]@[36864,25] packed ran at a third of the speed)?"""
        return a_w == 1 and b_w == 1 and M <= DOT_MAX_M and N <= DOT_MAX_N and K >= DOT_MIN_K

    def _run_dot(self, a_ptr, a_ls, b_ptr, b_ls, M, N, K, c_ptr, ldc, o_ptr, ldo, bias_ptr, nt) -> None:
        """gemm_dot over the product, its columns split into chunks of whole tiles when nt > 1; each
        thread's partial sums in its own buffer.  Every result is summed the same way whatever the split."""
        rj = self.cfg.dot_tile[1]
        nch = 1
        if nt > 1 and 2.0 * M * N * K >= PARALLEL_MIN_FLOPS and not workers.backing_off():
            nch = min(-(-N // rj), 2 * nt)
        cols = [min(N, rj * (-(-N // rj) * i // nch)) for i in range(nch + 1)]

        def chunk(i):
            j0, j1 = cols[i], cols[i + 1]
            if j1 > j0:
                self._dot(a_ptr, a_ls, b_ptr, b_ls, M, N, K, j0, j1, c_ptr, ldc, o_ptr, ldo, bias_ptr,
                          self._ws.addr("dot", M * (j1 - j0) * 64))
        if nch == 1:
            chunk(0)
        else:
            workers.parallel_for(chunk, nch, nt)

    def _stage(self, K: int) -> int:
        """Address of the calling thread's gemm_colsb staging buffer for K rows."""
        return self._ws.addr("bs", K * (self.cfg.stage_cols + 32) * 2)

    # ------------------------------------------------------------------------------ one product
    def mm(self, a: np.ndarray, b: np.ndarray, bias: np.ndarray | None = None, out_dtype=BF16,
           out: np.ndarray | None = None, threads: int | None = None) -> np.ndarray:
        """a[M, K] @ b[K, N] (+ bias[N]) for 2-D bfloat16 (or float32: rounded to bf16 as packed) arrays;
        returns out[M, N] (C-contiguous)."""
        cfg = self.cfg
        (M, K), (K2, N) = a.shape, b.shape
        if K != K2:
            raise ValueError(f"mat1 and mat2 shapes cannot be multiplied ({M}x{K} and {K2}x{N})")
        if out_dtype is not BF16:
            out_dtype = np.dtype(out_dtype)
        if out is None:
            out = np.empty((M, N), out_dtype)
        if M == 0 or N == 0:
            return out
        if K == 0:
            out[...] = 0 if bias is None else bias.astype(np.float32)
            return out
        if 2.0 * M * N * K < SMALL_FLOPS:   # call overhead would dominate: float32 BLAS, the same products
            return _small(a, b, bias, out)
        a_ptr, a_ls, a_ks, a_w, a = operand(a, 1)
        b_ptr, b_ls, b_ks, b_w, b = operand(b, 0)
        bias_ptr = None
        if bias is not None:
            bias = np.ascontiguousarray(bias, BF16)
            bias_ptr = _ptr(bias)
        if out_dtype == np.float32:
            c, o = out, None
        else:   # bf16 out: float32 partial sums only when K spans several blocks
            o = out
            c = None
        c_ptr, ldc = (_ptr(c), N) if c is not None else (None, 0)
        if o is not None and K > cfg.kc:
            c_ptr, ldc = self._ws.addr("c", M * N * 4), N
        o_ptr, ldo = (_ptr(o), N) if o is not None else (None, 0)
        tile = self.tile_for(N, M)
        pack_b, gemm_rows = self.fns[tile][:2]
        nt = workers.num_threads() if threads is None else max(1, threads)
        if self.dot_ok(M, N, K, a_w, b_w):
            self._run_dot(a_ptr, a_ls, b_ptr, b_ls, M, N, K, c_ptr if o_ptr is None else None, ldc, o_ptr, ldo,
                          bias_ptr, nt)
            return out
        b_bytes = gen.packed_b_bytes(cfg, tile, N, K)
        a_bytes = gen.packed_a_bytes(cfg)
        npanels = -(-N // tile.nr)
        split = None
        if nt > 1 and 2.0 * M * N * K >= PARALLEL_MIN_FLOPS and not workers.backing_off():
            split = _split(-(-M // cfg.mc), npanels, M, N, nt)
        direct = self.direct_b_tile(M, N, K, b_ls, b_w)
        if split is None and direct is not None:
            self.fns_b[direct](a_ptr, a_ls, a_ks, a_w, b_ptr, b_ks, M, N, K, c_ptr, ldc, o_ptr, ldo, bias_ptr,
                               self._ws.addr("ap", a_bytes), self._stage(K), None)
            return out
        if split is None:
            # one call (a ctypes call with its arguments costs ~1.5 us: a tenth of a small product): pack B
            # and run every row; with one row block and a big B, chunk by chunk while the packed panels
            # are in cache (each is read once)
            chunk = N
            if M <= cfg.mc and npanels * gen.panel_bytes(cfg, tile.nr, K) > 2 * CHUNK_BYTES:
                chunk = self._chunk(tile, K)
            self.fns[tile][4](a_ptr, a_ls, a_ks, a_w, b_ptr, b_ls, b_ks, b_w, M, N, K, c_ptr, ldc, o_ptr, ldo,
                              bias_ptr, self._ws.addr("ap", a_bytes), self._ws.addr("bp", b_bytes), chunk, None)
            return out
        # One parallel loop (each pool handoff costs ~50 us here), one kernel call per thread: the threads
        # claim rows (packing B together), or chunks of B's panels (each packing its panels and all of A),
        # or pieces of a staged B, from a shared counter as they go -- a Python call per chunk after a
        # kernel that swept the caches costs tens of microseconds.  Buffers are the running thread's own
        # (_Workspace).
        how, nch = split
        if how == "rows":
            # one gemm_rows call per thread: they pack B once, together, into the calling thread's buffer
            # (groups of panels claimed from `share`) and claim chunks of rows as they go (`_emit_rows`)
            gpan = -(-npanels // min(npanels, SHARE_GROUPS_PER_THREAD * nt))
            share = np.zeros(2 + -(-npanels // gpan), np.int64)
            sp, bp = _ptr(share), self._ws.addr("bp", b_bytes)
            priv_bytes = gpan * gen.panel_bytes(cfg, tile.nr, cfg.kc)

            def chunk(i):
                ws = self._ws
                gemm_rows(a_ptr, a_ls, a_ks, a_w, bp, M, N, K, 0, M, c_ptr, ldc, o_ptr, ldo, bias_ptr,
                          ws.addr("ap", a_bytes), b_ptr, b_ls, b_ks, b_w, sp, gpan, ws.addr("bpriv", priv_bytes),
                          2 * nt)
        elif direct is not None:    # pieces of B's columns, staged (gemm_colsb)
            fb, share = self.fns_b[direct], np.zeros(1, np.int64)
            sp = _ptr(share)

            def chunk(i):
                fb(a_ptr, a_ls, a_ks, a_w, b_ptr, b_ks, M, N, K, c_ptr, ldc, o_ptr, ldo, bias_ptr,
                   self._ws.addr("ap", a_bytes), self._stage(K), sp)
        else:       # chunks of B's panels (gemm_cols)
            width = tile.nr * -(-npanels // nch)
            if M <= cfg.mc:
                width = min(width, self._chunk(tile, K))
            line = math.lcm(tile.nr, 32)    # whole 64-byte lines of a bf16 row: no line written by two threads
            width = -(-width // line) * line
            cols_fn, share = self.fns[tile][4], np.zeros(1, np.int64)
            sp = _ptr(share)

            def chunk(i):
                cols_fn(a_ptr, a_ls, a_ks, a_w, b_ptr, b_ls, b_ks, b_w, M, N, K, c_ptr, ldc, o_ptr, ldo, bias_ptr,
                        self._ws.addr("ap", a_bytes), self._ws.addr("bp", b_bytes), width, sp)
        workers.parallel_for(chunk, nt, nt)
        return out

    def _chunk(self, tile: gen.Tile, k: int) -> int:
        """Columns per chunk of gemm_cols: whole panels whose packed B (what the chunk touches) is about
        CHUNK_BYTES."""
        per_panel = gen.panel_bytes(self.cfg, tile.nr, k)
        return tile.nr * max(1, CHUNK_BYTES // per_panel)

    def matmul(self, a: np.ndarray, b: np.ndarray, bias: np.ndarray | None = None, out_dtype=BF16,
               threads: int | None = None, out: np.ndarray | None = None) -> np.ndarray:
        """np.matmul semantics for bf16 arrays of 2+ dims (batch dims broadcast).  out: a C-contiguous
        array of the result's shape and out_dtype to write into (a compiled graph's buffer)."""
        # a small product whose shapes, layouts and dtypes were seen before: one call of the entry
        # with the arrays (_Plan); the checks below ran when the plan was made
        ws = self._ws
        if bias is not None and not isinstance(bias, np.ndarray):
            return self._matmul(a, b, bias, out_dtype, threads, out)
        key = (a.shape, a.strides, a.dtype, b.shape, b.strides, b.dtype, out_dtype,
               None if bias is None else (bias.shape, bias.strides, bias.dtype))
        plan = ws.plans.get(key)
        if plan is not None and plan.flops < PARALLEL_MIN_FLOPS:
            if out is None:
                out = np.empty(plan.shape, plan.dtype)
                plan.fn(plan.addr, a, b, out, bias)
                return out
            if out.shape == plan.shape and out.dtype == plan.dtype and out.flags.c_contiguous:
                plan.fn(plan.addr, a, b, out, bias)
                return out
        r = self._matmul(a, b, bias, out_dtype, threads, out)
        if plan is None and self._entry:
            plan = self._plan(a, b, bias, out_dtype)
            if plan is not None:
                if len(ws.plans) >= _MAX_PLANS:
                    ws.plans.clear()
                ws.plans[key] = plan
        return r

    def _plan(self, a: np.ndarray, b: np.ndarray, bias, out_dtype) -> "_Plan | None":
        """The plan of a small product (or batch of them) that `_matmul` would run in one gemm_cols,
        gemm_colsb or gemm_batch call on these operands as they lie (no copies), or None."""
        if a.ndim < 2 or b.ndim < 2 or a.dtype not in _OPERAND or b.dtype not in _OPERAND:
            return None
        cfg = self.cfg
        K, N = b.shape[-2:]
        if a.shape[-1] != K or K == 0:
            return None
        if b.ndim == 2 and (a.ndim == 2 or a.flags.c_contiguous):     # one product over all of a's rows
            M, nb, a_bs, b_bs = a.size // K, 0, 0, 0
            a2, b2 = a.reshape(M, K), b
            shape = a.shape[:-1] + (N,)
        else:
            batch = np.broadcast_shapes(a.shape[:-2], b.shape[:-2])
            ab, bb = np.broadcast_to(a, batch + a.shape[-2:]), np.broadcast_to(b, batch + b.shape[-2:])
            a_bs, b_bs = batch_stride(ab), batch_stride(bb)
            if a_bs is None or b_bs is None or not unit_stride(ab) or not unit_stride(bb):
                return None
            M, nb = a.shape[-2], int(np.prod(batch))
            a2, b2 = ab[(0,) * len(batch)], bb[(0,) * len(batch)]
            shape = batch + (M, N)
        flops = 2.0 * M * N * K * max(nb, 1)
        if not SMALL_FLOPS <= flops < PARALLEL_MIN_FLOPS:
            return None
        if bias is not None and (bias.dtype != BF16 or bias.shape != (N,) or not bias.flags.c_contiguous):
            return None
        _, a_ls, a_ks, a_w, ax = operand(a2, 1)
        _, b_ls, b_ks, b_w, bx = operand(b2, 0)
        if ax is not a2 or bx is not b2:         # a copy: the plan could not read the operand in place
            return None
        if not nb and self.dot_ok(M, N, K, a_w, b_w):
            return None
        out_dtype = np.dtype(out_dtype)
        ws = self._ws
        direct = None if nb else self.direct_b_tile(M, N, K, b_ls, b_w)
        if direct is not None:
            fn, chunk, bp = self._entry_b[direct], 0, self._stage(K)
        else:
            tile = self.tile_for(N, M)
            npanels = -(-N // tile.nr)
            chunk = N
            if not nb and M <= cfg.mc and npanels * gen.panel_bytes(cfg, tile.nr, K) > 2 * CHUNK_BYTES:
                chunk = self._chunk(tile, K)
            fn, bp = self._entry[tile], ws.addr("bp", gen.packed_b_bytes(cfg, tile, N, K))
        c_ws = ws.addr("c", max(nb, 1) * M * N * 4) if out_dtype == BF16 and K > cfg.kc else 0
        vals = dict(data_offset=_DATA_OFFSET, a_ls=a_ls, a_ks=a_ks, a_w=a_w, b_ls=b_ls, b_ks=b_ks, b_w=b_w, M=M,
                    N=N, K=K, c=c_ws, ldc=N, out_f32=int(out_dtype == np.float32), has_bias=int(bias is not None),
                    ap=ws.addr("ap", gen.packed_a_bytes(cfg)), bp=bp, chunk=chunk, nb=nb, a_bs=a_bs, b_bs=b_bs)
        slots = np.array([vals[k] for k in gen.PLAN_SLOTS], np.int64)
        return _Plan(fn, _ptr(slots), slots, shape, out_dtype, flops)

    def _matmul(self, a, b, bias, out_dtype, threads, out):
        if a.ndim < 2 or b.ndim < 2:
            raise ValueError("gemm_bf16.matmul needs operands of at least 2 dimensions")
        if a.dtype not in _OPERAND or b.dtype not in _OPERAND:
            raise TypeError(f"gemm_bf16.matmul takes bfloat16 (or float32, rounded to bfloat16) arrays, got "
                            f"{a.dtype} and {b.dtype}")
        if out is not None:
            want = np.broadcast_shapes(a.shape[:-2], b.shape[:-2]) + (a.shape[-2], b.shape[-1])
            if out.shape != want or out.dtype != np.dtype(out_dtype) or not out.flags.c_contiguous:
                raise ValueError(f"gemm_bf16.matmul: out must be a C-contiguous {np.dtype(out_dtype)} array of "
                                 f"shape {want}, got {out.dtype} {out.shape}")
        if a.ndim == 2 and b.ndim == 2:
            return self.mm(a, b, bias, out_dtype, out=out, threads=threads)
        if b.ndim == 2 and a.flags.c_contiguous:      # a Linear layer: one product over all rows
            M = a.size // a.shape[-1]
            r = self.mm(a.reshape(M, a.shape[-1]), b, bias, out_dtype, threads=threads,
                        out=None if out is None else out.reshape(M, b.shape[-1]))
            return r.reshape(a.shape[:-1] + (b.shape[-1],)) if out is None else out
        batch = np.broadcast_shapes(a.shape[:-2], b.shape[:-2])
        (M, K), N = a.shape[-2:], b.shape[-1]
        if K != b.shape[-2]:
            raise ValueError(f"matmul: shapes {a.shape} and {b.shape} cannot be multiplied")
        if out is None:
            out = np.empty(batch + (M, N), np.dtype(out_dtype))
        ab = np.broadcast_to(a, batch + a.shape[-2:])
        bb = np.broadcast_to(b, batch + b.shape[-2:])
        nb = out.size // max(M * N, 1)
        if out.size == 0:
            return out
        if K == 0 or 2.0 * M * N * K * nb < SMALL_FLOPS:    # one float32 BLAS call for the whole batch
            return _small(ab, bb, bias, out)
        # one kernel call for the batch needs batch dims that step by one stride and a unit-stride matrix
        # axis: copy an operand that has neither (attention's transposed heads; a mixed broadcast)
        sa, sb = batch_stride(ab), batch_stride(bb)
        if sa is None or not unit_stride(ab):
            ab = np.ascontiguousarray(ab)
            sa = batch_stride(ab)
        if sb is None or not unit_stride(bb):
            bb = np.ascontiguousarray(bb)
            sb = batch_stride(bb)
        self._batched(ab[(0,) * len(batch)], sa, bb[(0,) * len(batch)], sb, nb, bias, out.reshape(nb, M, N),
                      threads)
        return out

    def _batched(self, a0, sa, b0, sb, nb, bias, out, threads):
        """nb products a0 + i*sa @ b0 + i*sb (batch strides in elements) into out[nb, M, N], split over
        threads by products."""
        cfg = self.cfg
        (M, K), N = a0.shape, b0.shape[1]
        a_ptr, a_ls, a_ks, a_w, _ = operand(a0, 1)
        b_ptr, b_ls, b_ks, b_w, _ = operand(b0, 0)
        tile = self.tile_for(N, M)
        batch_fn = self.fns[tile][3]
        bias_ptr = None
        if bias is not None:
            bias = np.ascontiguousarray(bias, BF16)
            bias_ptr = _ptr(bias)
        o_ptr, obs, c_ptr, cbs = None, 0, None, 0
        if out.dtype == np.float32:
            c_ptr, cbs = _ptr(out), M * N
        else:
            o_ptr, obs = _ptr(out), M * N
            if K > cfg.kc:
                c_ptr, cbs = self._ws.addr("c", nb * M * N * 4), M * N
        nt = workers.num_threads() if threads is None else max(1, threads)
        nt = min(nt, nb) if 2.0 * M * N * K * nb >= PARALLEL_MIN_FLOPS and not workers.backing_off() else 1
        b_bytes = gen.packed_b_bytes(cfg, tile, N, K)
        a_bytes = gen.packed_a_bytes(cfg)
        share = np.zeros(1, np.int64) if nt > 1 else None    # (the products claimed by nt calls at once)
        sp = None if share is None else _ptr(share)

        def chunk(i):   # packing buffers are the running thread's own (_Workspace)
            batch_fn(a_ptr, sa, a_ls, a_ks, a_w, b_ptr, sb, b_ls, b_ks, b_w, 0, nb, M, N, K, c_ptr, cbs, N, o_ptr,
                     obs, N, bias_ptr, self._ws.addr("ap", a_bytes), self._ws.addr("bp", b_bytes), sp)
        if nt == 1:
            chunk(0)
        else:
            workers.parallel_for(chunk, nt, nt)


class _Plan:
    """One small product's call, made once per shape, layout and dtypes: gemm_entry (fn) and its slots
    (gen.PLAN_SLOTS, at addr), the result's shape and dtype, and its flops (the plan runs on the calling
    thread: only while it is below PARALLEL_MIN_FLOPS)."""
    __slots__ = ("fn", "addr", "slots", "shape", "dtype", "flops")

    def __init__(self, fn, addr: int, slots: np.ndarray, shape: tuple, dtype: np.dtype, flops: float):
        self.fn, self.addr, self.slots, self.shape, self.dtype, self.flops = fn, addr, slots, shape, dtype, flops


_DATA_OFFSET = data_offset()
_MAX_PLANS = 512


def _split(row_blocks: int, panels: int, M: int, N: int, nt: int):
    """How nt threads share one product: ("rows", nt) -- claiming chunks of rows as they go: when B is no
    bigger than A (K*N <= M*K) and there are rows to go round -- or ("cols", chunks) -- B's panels in this
    many chunks, each packing all of A; None: one thread."""
    if row_blocks >= 2 * nt and N <= M:
        return "rows", nt
    if panels >= nt:
        return "cols", min(panels, 2 * nt)
    if row_blocks >= nt:
        return "rows", row_blocks
    return None


def _widened(x: np.ndarray) -> np.ndarray:
    """x's bf16 values as float32 (a float32 operand rounded to bf16 first, as the kernel packs it),
    C-contiguous: BLAS's order of sums can depend on the layout, and a float32 operand and its bf16 cast
    need not share one (the cast of a strided array is contiguous) -- they must give the same bits."""
    if x.dtype == np.float32:
        x = casts.astype(x, BF16)
    return x.astype(np.float32, order="C")


def _small(a, b, bias, out):
    """A small product (or batch of them) in float32 through numpy's BLAS: bf16 x bf16 products are
    exact in float32, so this differs from the kernel only in the order of the float32 sums."""
    if a.shape[-1] == 0:
        out[...] = 0 if bias is None else bias.astype(np.float32)
        return out
    if b.ndim > 2 and not any(b.strides[:-2]):
        # one B for the whole batch (broadcast): one 2-D product over all of A's rows, as `matmul` runs a
        # C-contiguous A -- BLAS sums a batch and its folded rows in different orders, and a float32 A and its
        # bf16 cast (of other layouts) take the two routes
        wa = _widened(np.broadcast_to(a, b.shape[:-2] + a.shape[-2:]))
        r = blas_threads.matmul(wa.reshape(-1, a.shape[-1]), _widened(b[(0,) * (b.ndim - 2)]))
        r = r.reshape(b.shape[:-2] + (a.shape[-2], b.shape[-1]))
    else:
        r = blas_threads.matmul(_widened(a), _widened(b))
    if bias is not None:
        r += bias.astype(np.float32)
    with np.errstate(over="ignore", invalid="ignore"):
        out[...] = r
    return out


_INSTANCE = None
_LOCK = threading.Lock()


def instance() -> Bf16Gemm:
    """The process-wide compiled GEMM for this CPU (built on first use)."""
    global _INSTANCE
    if _INSTANCE is None:
        with _LOCK:
            if _INSTANCE is None:
                _INSTANCE = Bf16Gemm()
    return _INSTANCE


def matmul(a: np.ndarray, b: np.ndarray, bias: np.ndarray | None = None, out_dtype=BF16,
           out: np.ndarray | None = None) -> np.ndarray:
    return instance().matmul(a, b, bias, out_dtype, out=out)


def convert(x: np.ndarray, to) -> np.ndarray | None:
    """Bf16Gemm.convert on the process-wide instance."""
    return instance().convert(x, to)
