"""ember's own float32 matrix product (the kernels: ember/codegen/gemm_f32.py).

In: float32 numpy arrays a[..., M, K], b[..., K, N] (any strides the kernels accept; batch dims broadcast)
and an optional output with unit column stride.  Out: `matmul(a, b, out)` returns the product, or None when
this product is better left to BLAS (the caller, ember/kernels/blas_threads.py, then uses numpy).

    from ember.runtime import gemm_f32
    c = gemm_f32.matmul(a, b)          # None: not a shape for these kernels

Which products (`plan`, `plan_batched`), from interleaved measurements on this machine type (2 cores,
AMD Zen 4: one zmm FMA per cycle, ~113 GF/s per core; numpy's OpenBLAS on one thread per block as
blas_threads runs it):
  * B's rows contiguous and a thin product (M <= OUTER_MAX_M rows, or K <= OUTER_MAX_K): the outer
    form, tile by tile with the whole contraction in registers, split across threads by column tiles
    (or row tiles when N is narrow).
  * A and B both contiguous along K and a small result (M * N <= DOT_MAX_MN): the dot form, K cut into
    blocks of DOT_KC that stay in L2; across threads by K ranges summed at the end, or by row tiles.
  * Everything else from PACKED_MIN_M rows and PACKED_MIN_K deep whose tiles waste little (`packed_tile`):
    the packed form (`run_packed`: split by rows, or by panels when N > M).  The GPT step's products (x @ W^T,
    dY @ W, dY^T @ X; K 128-1024), one thread each, tenth percentiles: 1.00-1.16x OpenBLAS alone (hot or with
    C from memory; the dY^T @ X weight gradients at 1.00-1.07x), 0.96-1.24x inside the step.
  * Batched (`sgemm_batch`): products numpy runs slowly, a B without unit column stride (attention's
    Q @ K^T: 1.1-1.3x); numpy keeps the rest.  A batch that folds into rows is one 2-D product.
Everything else (small products, N = 65 heads) stays with BLAS.  Work is split by output rows (or products)
and K blocks are fixed by the shape, so the result is the same bits on any number of threads.

The compiled module lives as long as the process (`instance()`): every call jumps into its machine code.
"""
from __future__ import annotations

import ctypes
import functools
import re
import threading

import ml_dtypes
import numpy as np

from ember.codegen import gemm_f32 as gen
from ember.kernels import workers
from ember.runtime import cpu, gemm_operands

__all__ = ["F32Gemm", "instance", "matmul", "plan", "plan_batched", "host_tiles", "host_takes"]

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
CLAIMS_PER_THREAD = 4     # chunks per thread of a product shared in native code (an atomic add each)
B_CACHE_BYTES = 512 << 10  # a B this small is read from L2 by every row tile: rows outermost, C written in order
OUTERP_MIN_M = 16         # a B packed for fewer rows is used once: BLAS streams it as fast (conv1's [10,26] @
                          # [26,36864]: 302 us packed against 288 us, one thread)
PACKED_MIN_M = 96         # the packed form from this many rows and this K: the GPT head's [65, 1024] @ [1024, 128]
PACKED_MIN_K = 96         # and [1024, 65] @ [65, 128] ran at 0.94x and 0.89x of BLAS inside the step
PACKED_MIN_EFFICIENCY = 0.9  # and where its tiles waste little (N = 65: 8x48 at 0.68, slower than BLAS)
BATCH_MIN_M = 32          # batched products (attention's) from this many rows, with a B numpy reads slowly
BATCH_MIN_EFFICIENCY = 0.8  # (a K-contiguous B: Q @ K^T ran at 50-60 GF/s in numpy, 70-80 here)
PACKED_KC = 1024          # K block of the packed form: C is re-read once per further block (256 and 512 were
                          # 2-5% slower than one block on the GPT shapes, K <= 1024)
PACKED_B_BYTES = 512 << 10  # columns of B per group: kq x nc floats, streamed from L2 by every row tile
# speed of each packed tile on whole tiles relative to 6x64 (measured, one thread, [1152,256] @ [256,192])
PACKED_TILE_SPEED = {"6x64": 1.0, "8x48": 0.92, "12x32": 0.92, "24x16": 0.85, "8x32": 0.85,
                     "6x16": 1.0, "4x16": 0.77, "2x32": 0.78}     # AVX2's (gen.TILES[256]), the same way
PANEL_BYTES = 256 << 10   # a packed column block of B (sgemm_outerp): in L2 with room for C's rows

_P, _I64, _I32 = ctypes.c_void_p, ctypes.c_int64, ctypes.c_int32
_F32 = np.dtype(np.float32)
_BF16 = np.dtype(ml_dtypes.bfloat16)
_GATHERED = (("f32", ""), ("bf16", "bf16_"))     # gathered sources: element type, the kernels' name infix


_ptr = _addr = gemm_operands.ptr


class F32Gemm:
    """The compiled module (a NativeLibrary, ember/runtime/cpu.py) and its functions."""

    def __init__(self, tiles: gen.TileSet | None = None):
        target = cpu.host_target()
        self.tiles = tiles = tiles or host_tiles()      # (another width's tiles: tests)
        text = gen.emit_module(tiles, triple=target.triple, data_layout=target.data_layout)
        self._lib = cpu.NativeLibrary(text, "gemm_f32", gen.__file__)
        arity = {m.group(1): len(m.group(2).split(",")) for m in re.finditer(r"define void @(\w+)\(([^)]*)\)", text)}

        self.claiming: dict = {}    # id(kernel) -> its claiming wrapper `<name>_c` (ember/codegen/gemm_f32.py)

        def fn(name, *argtypes):
            # ctypes passes surplus or missing arguments unchecked: a prototype that lags the generator would
            # hand the kernel garbage sizes, so they are held to the emitted signature here
            if arity.get(name) != len(argtypes):
                raise RuntimeError(f"gemm_f32: {name} takes {arity.get(name)} arguments, its prototype {len(argtypes)}")
            f = self._lib.function(name, *argtypes)
            if name + "_c" in arity:
                self.claiming[id(f)] = fn(name + "_c", *argtypes, _I64, _P)
            return f
        self.outer = {t: fn(f"sgemm_outer_{t.tag}", _P, _I64, _I64, _P, _I64, _P, _I64, _I64, _I64, _I64, _I64,
                            _I64, _I32) for t in tiles.outer}
        self.outer_packed = {t: fn(f"sgemm_outerp_{t.tag}", _P, _I64, _I64, _P, _I64, _P, _I64, _I64, _I64, _I64,
                                   _I64, _I64, _I32, _P, _I64) for t in tiles.outer}
        self.dot = {t: fn(f"sgemm_dot_{t.tag}", _P, _I64, _P, _I64, _P, _I64, _I64, _I64, _I64, _I64, _I64, _I64,
                          _I64, _P, _I32) for t in tiles.dot}
        # gathered forms, per source element type ("f32", "bf16": the kernels' `_bf16_` variants)
        self.outer_gathered = {(e, t): fn(f"sgemm_outerg_{s}{t.tag}", _P, _I64, _I64, _P, _P, _P, _I64, _P, _I64,
                                          _I64, _I64, _I64, _I64, _I64, _I32, _P, _I64)
                               for e, s in _GATHERED for t in tiles.outer}
        self.dot_gathered = {(e, t): fn(f"sgemm_dotg_{s}{t.tag}", _P, _I64, _P, _P, _P, _P, _I64, _I64, _I64, _I64,
                                        _I64, _I64, _I64, _I64, _P, _I32) for e, s in _GATHERED for t in tiles.dot}
        self.pack_b = fn("sgemm_packb", _P, _I64, _I64, _I64, _I64, _I64, _I64, _I64, _I64, _P)
        self.packed = {t: fn(f"sgemm_packed_{t.tag}", _P, _I64, _I64, _P, _P, _I64, _I64, _I64, _I64, _I64, _I64,
                             _I64, _I64, _I64, _I32) for t in tiles.packed}
        self.batch = {t: fn(f"sgemm_batch_{t.tag}", _P, _I64, _I64, _I64, _P, _I64, _I64, _I64, _P, _I64, _I64, _I64,
                            _I64, _I64, _I64, _I64, _I64, _I64, _P) for t in tiles.packed}
        self.packed_cols = {t: fn(f"sgemm_packedc_{t.tag}", _P, _I64, _I64, _P, _I64, _I64, _P, _I64, _I64, _I64,
                                  _I64, _I64, _I64, _I32, _I64, _I64, _P) for t in tiles.packed}
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
                self.tiles.outer, key=lambda t: (-(-m // t.mr) * t.mr * -(-n // t.nr) * t.nr, -t.nv))
        return t

    def dot_tile(self, m: int, n: int) -> gen.DotTile:
        t = self._dot_tile.get((m, n))
        if t is None:
            t = self._dot_tile[(m, n)] = min(
                self.tiles.dot, key=lambda t: (-(-m // t.ra) * t.ra * -(-n // t.rb) * t.rb, -t.ra))
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
            self._share(fn, lambda piece: (pa, sam, sak, pb, sbk, pc, ldc, 0, m, 0, n, k, 0), tiles, t.mr, threads)
            return
        # B from memory: column blocks packed into an L2 panel each (sgemm_outerp), split by columns
        fn = self.outer_packed[t]
        cb = max(t.nr, PANEL_BYTES // (4 * k) // t.nr * t.nr)
        blocks = -(-n // cb)
        if not parallel or blocks < 2:
            fn(pa, sam, sak, pb, sbk, pc, ldc, 0, m, 0, n, k, 0, self._scratch("panel", k * cb), cb)
            return
        # the panel of the thread that runs a call (a buffer it wrote last stays in its L2)
        self._share(fn, lambda piece: (pa, sam, sak, pb, sbk, pc, ldc, 0, m, 0, n, k, 0,
                                       self._scratch("panel", k * cb), cb), blocks, cb, threads)

    def run_packed(self, pa, sam, sak, pb, sbk, sbn, pc, ldc, m, n, k, threads: int, tile=None, kc=None,
                   nc=None, split=None) -> None:
        """Across threads by rows: B packed once on the calling thread (~1% of the product), every chunk reads
        all of it.  Or, for a result wider than tall (split "cols"), by panels: each chunk packs and reads only
        its own columns of B and reads all of A, the smaller operand then (a weight gradient [128, 1024] @
        [1024, 512]: its packed B, 2 MB, is more than a core's L2).  Either way one call per thread, the
        chunks claimed in native code (see ember/codegen/gemm_f32.py)."""
        t = tile or packed_tile(m, n, self.tiles)[0]
        kc, nc = _blocking(t, k, kc, nc)
        npan = -(-n // t.nr)
        words = -(-k // kc) * npan * kc * t.nr
        nt = threads if threads > 1 and 2.0 * m * n * k >= PARALLEL_FLOPS and not workers.backing_off() else 1
        if (split or ("cols" if n > m else "rows")) == "cols" and nt > 1 and npan > 1:
            self._share(self.packed_cols[t], lambda piece: (pa, sam, sak, pb, sbk, sbn, pc, ldc, m, n, k, kc, nc, 0,
                                                            0, npan, self._scratch("packb", words)), npan, 1, nt)
            return
        bp = self._scratch("packb", words)
        self.pack_b(pb, sbk, sbn, k, n, t.nr, kc, 0, npan, bp)
        tiles = -(-m // t.mr)
        if nt == 1 or tiles < 2:
            self.packed[t](pa, sam, sak, bp, pc, ldc, 0, m, 0, n, n, k, kc, nc, 0)
            return
        self._share(self.packed[t], lambda piece: (pa, sam, sak, bp, pc, ldc, 0, m, 0, n, n, k, kc, nc, 0), tiles,
                    t.mr, nt)

    def run_batch(self, pa, sab, sam, sak, pb, sbb, sbk, sbn, pc, scb, ldc, nb, m, n, k, threads: int,
                  tile=None) -> None:
        """nb products, shared by the threads one call each, products claimed in native code (each packs its
        B into the running thread's buffer)."""
        t = tile or packed_tile(m, n, self.tiles)[0]
        kc, nc = _blocking(t, k)
        words = -(-k // kc) * -(-n // t.nr) * kc * t.nr
        fn = self.batch[t]
        nt = min(threads, nb) if threads > 1 and 2.0 * m * n * k * nb >= PARALLEL_FLOPS \
            and not workers.backing_off() else 1
        args = lambda piece: (pa, sab, sam, sak, pb, sbb, sbk, sbn, pc, scb, ldc, m, n, k, kc, nc, 0, nb,  # noqa: E731
                              self._scratch("packb", words))
        if nt == 1:
            fn(*args(nb))
            return
        self._share(fn, args, nb, 1, nt)

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
        # column pieces, every k for each; each call parks its tiles' accumulators in its thread's scratch
        self._share(fn, lambda piece: (pa, sam, pb, sbn, pc, ldc, 0, m, 0, n, 0, k, DOT_KC,
                                       self._scratch("dot", -(-m // t.ra) * piece * t.ra * 16), 0),
                    tiles, t.rb, threads)

    # ----------------------------------------------------------------------------- gathered operands
    def _gather_tables(self, desc: tuple, src_addr: int, dtype: np.dtype = _F32) -> tuple:
        """(kaddr, kstep, starts) int64 arrays for a gather descriptor (see `matmul_gathered`) and the
        source's address: row k of run r starts at kaddr[k] + size * kstep[k] * starts[r] bytes (size: the
        source's element size).  A constant row reads a buffer of L copies of its value with step 0 (the
        buffers live as long as the module)."""
        hit = self._gathers.get((desc, dtype))
        if hit is None:
            K, J, L, koff, starts, consts = desc
            koff = np.asarray(koff, np.int64)
            kstep = (koff >= 0).astype(np.int64)
            base = np.where(kstep == 1, dtype.itemsize * koff, 0)
            keep = []
            for k, value in consts:
                buf = np.full(L + 16, value, dtype)
                keep.append(buf)
                base[k] = _ptr(buf)
            if len(self._gathers) >= MAX_GATHERS:       # eager shapes vary: keep the table bounded
                self._gathers.clear()
            hit = self._gathers[(desc, dtype)] = (base, kstep, np.asarray(starts, np.int64), keep)
        base, kstep, starts, keep = hit
        # the constant rows' buffers travel with the call: a clear by another thread cannot free them under it
        return base + kstep * src_addr, kstep, starts, keep

    def run_outer_gathered(self, pa, sam, sak, desc, src_addr, pc, ldc, m, threads: int, dtype=_F32) -> None:
        """dtype: the source's (and C's) element type; A is float32 either way."""
        K, J, L = desc[0], desc[1], desc[2]
        kaddr, kstep, starts, _keep = self._gather_tables(desc, src_addr, dtype)
        t = self.outer_tile(m, L)
        fn = self.outer_gathered[("bf16" if dtype == _BF16 else "f32", t)]
        runs = J // L
        tabs = (_ptr(kaddr), _ptr(kstep), _ptr(starts))
        parallel = threads > 1 and 2.0 * m * J * K >= PARALLEL_FLOPS and runs > 1
        cb = L if m <= t.mr else max(t.nr, PANEL_BYTES // (dtype.itemsize * K) // t.nr * t.nr)  # B's block in L2
        # each call fills the row pointers of its runs in the running thread's scratch
        args = lambda piece: (pa, sam, sak, *tabs, L, pc, ldc, 0, m, 0, runs, K, 0,  # noqa: E731
                              self._scratch("rows", 2 * K), cb)
        if not parallel:
            fn(*args(runs))
            return
        self._share(fn, args, runs, 1, threads)

    def run_dot_gathered(self, pa, sam, desc, src_addr, pc, ldc, m, threads: int, dtype=_F32) -> None:
        """dtype: the source's (and A's) element type; C is float32 either way."""
        K, J, L = desc[0], desc[1], desc[2]
        kaddr, kstep, starts, _keep = self._gather_tables(desc, src_addr, dtype)
        t = self.dot_tile(m, K)
        fn = self.dot_gathered[("bf16" if dtype == _BF16 else "f32", t)]
        tabs = (_ptr(kaddr), _ptr(kstep), _ptr(starts))
        tiles = -(-K // t.rb)
        parallel = threads > 1 and 2.0 * m * J * K >= PARALLEL_FLOPS and tiles > 1
        args = lambda piece: (pa, sam, *tabs, pc, ldc, 0, m, 0, K, 0, J, L,  # noqa: E731
                              self._scratch("dotg", -(-m // t.ra) * piece * t.ra * 16), 0)
        if not parallel:
            fn(*args(tiles * t.rb))
            return
        self._share(fn, args, tiles, t.rb, threads)

    def _share(self, fn, args, units: int, unit: int, threads: int) -> None:
        """fn's range (rows, columns, runs or products: `units` of `unit` each, from 0) shared by up to
        `threads` threads, one call each of its claiming wrapper, pieces of _chunk(units) units claimed
        from one counter in native code.  args(piece) -> fn's arguments (called on the running thread, for
        its scratch)."""
        per = _chunk(units, threads)
        nt = min(threads, -(-units // per))
        piece = per * unit
        if nt < 2 or workers.backing_off():
            fn(*args(units * unit))
            return
        fc, share = self.claiming[id(fn)], np.zeros(1, np.int64)
        sp = _ptr(share)
        workers.parallel_for(lambda i: fc(*args(piece), piece, sp), nt, nt)

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


def _chunk(units: int, threads: int) -> int:
    """Units per claim when `threads` calls share `units` (rows tiles, panels) in native code: about
    CLAIMS_PER_THREAD claims per thread, so one that starts late or stalls leaves little to wait for."""
    return max(1, units // (CLAIMS_PER_THREAD * threads))


def _blocking(t: gen.OuterTile, k: int, kc: int | None = None, nc: int | None = None) -> tuple:
    """(kc, nc) of the packed form: K blocks of PACKED_KC, column groups whose panels fit PACKED_B_BYTES."""
    kc = kc or PACKED_KC
    return kc, nc or max(t.nr, PACKED_B_BYTES // (4 * min(k, kc)) // t.nr * t.nr)


@functools.lru_cache(maxsize=1)
def host_tiles() -> gen.TileSet:
    """The register tiles for this CPU's vector width (ember/codegen/gemm_f32.py `TILES`)."""
    return gen.tile_set(cpu.host_target().vector_bits)


def host_takes(form: str, sa: tuple) -> bool:
    """Does this CPU run the form `plan` picked faster than BLAS (sa: A's byte strides)?  AVX-512: every
    form (the rules above were measured there).  AVX2 (the 6x16 tiles, plain stores of whole vectors), on
    an AVX2 EPYC over two runs: the packed form over a K-contiguous A at 1.01-1.19x of OpenBLAS on the GPT
    step's forward and dX products; with A transposed (the weight gradients) 0.56-0.81x, the outer, dot and
    batch forms 0.64-1.08x -- BLAS keeps those.  A form forced by the caller (tests) runs anywhere."""
    return host_tiles() is gen.TILES[512] or (form == "packed" and sa[1] == 4)


@functools.lru_cache(maxsize=512)
def packed_tile(m: int, n: int, tiles: gen.TileSet | None = None) -> tuple:
    """(tile, efficiency) for the packed form on an M x N result among `tiles` (default this host's): the
    tile with the least padded area per unit of its speed, and the share of a whole-tile product by the
    fastest tile's speed it is expected to reach there."""
    def cost(t):
        return -(-m // t.mr) * t.mr * -(-n // t.nr) * t.nr / PACKED_TILE_SPEED[t.tag]
    t = min((tiles or host_tiles()).packed, key=cost)
    return t, m * n / cost(t)


def plan(m: int, k: int, n: int, sa: tuple, sb: tuple) -> str | None:
    """'outer', 'dot', 'packed' or None (BLAS) for [M, K] @ [K, N] with byte strides sa, sb (see the
    docstring)."""
    if m * n * k < MIN_FLOPS / 2 or (sa[0] | sa[1] | sb[0] | sb[1]) & 3:
        return None
    if sb[1] == 4 and (m <= OUTER_MAX_M or k <= OUTER_MAX_K) and (m > OUTERP_MIN_M or 4 * k * n <= B_CACHE_BYTES):
        return "outer"
    if sa[1] == 4 and sb[0] == 4 and m * n <= DOT_MAX_MN and m * n >= DOT_MIN_REUSE * (m + n):
        return "dot"
    if m >= PACKED_MIN_M and k >= PACKED_MIN_K and packed_tile(m, n)[1] >= PACKED_MIN_EFFICIENCY:
        return "packed"
    return None


def plan_batched(nb: int, m: int, k: int, n: int, sa: tuple, sb: tuple) -> str | None:
    """'batch' or None (numpy) for nb products [M, K] @ [K, N] with byte strides sa, sb of each product."""
    if nb * m * n * k < MIN_FLOPS / 2 or (sa[0] | sa[1] | sb[0] | sb[1]) & 3:
        return None
    if sb[1] == 4:      # rows of B contiguous: numpy's batched sgemm reads them in place as fast or faster
        return None     # (attention's P @ V, [64, 64] @ [64, 32]: ~95 GF/s against our 86-91 even reading B in
                        # place, and in the step 0.65-0.76x: operands and our buffers colder there)
    if m >= BATCH_MIN_M and packed_tile(m, n)[1] >= BATCH_MIN_EFFICIENCY:
        return "batch"
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
    """a @ b by the generated kernels, or None (leave it to BLAS).  form forces 'outer' / 'dot' / 'packed' /
    'batch' (tests).  Batched operands (a[..., M, K] @ b[..., K, N], batch dims broadcast): `_matmul_batched`."""
    if a.dtype != _F32 or b.dtype != _F32 or a.ndim < 2 or b.ndim < 2:
        return None
    if a.ndim > 2 or b.ndim > 2:
        return _matmul_batched(a, b, out, threads, form)
    (m, k), n = a.shape, b.shape[1]
    sa, sb = a.strides, b.strides
    if form is None:
        form = plan(m, k, n, sa, sb)
        if form is None or not host_takes(form, sa):
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
    if form == "packed":
        g.run_packed(pa, sa[0] >> 2, sa[1] >> 2, pb, sb[0] >> 2, sb[1] >> 2, pc, out.strides[0] >> 2, m, n, k, threads)
    elif form == "outer":
        g.run_outer(pa, sa[0] >> 2, sa[1] >> 2, pb, sb[0] >> 2, pc, out.strides[0] >> 2, m, n, k, threads)
    else:
        g.run_dot(pa, sa[0] >> 2, pb, sb[1] >> 2, pc, out.strides[0] >> 2, m, n, k, threads)
    return out


def _matmul_batched(a: np.ndarray, b: np.ndarray, out: np.ndarray | None, threads: int | None,
                    form: str | None) -> np.ndarray | None:
    """A batch of products in one call (sgemm_batch), or None: batch dims that do not flatten into one stride,
    or a plan that leaves it to numpy.  A batch whose rows fold into one matrix (a[B, M, K] @ w[K, N], a
    contiguous over B and M) is the 2-D product [B * M, K] @ [K, N]."""
    m, k, n = a.shape[-2], a.shape[-1], b.shape[-1]
    if b.shape[-2] != k or (a.strides[-2] | a.strides[-1] | b.strides[-2] | b.strides[-1]) & 3:
        return None
    try:
        lead = np.broadcast_shapes(a.shape[:-2], b.shape[:-2])
    except ValueError:
        return None
    nb = 1
    for d in lead:
        nb *= d
    if nb == 0 or m == 0 or n == 0:
        return None
    folds = form != "batch" and b.ndim == 2
    if form is None:
        if folds:
            form = plan(nb * m, k, n, a.strides[-2:], b.strides)
        else:
            form = plan_batched(nb, m, k, n, a.strides[-2:], b.strides[-2:])
        if form is None or not host_takes(form, a.strides[-2:]):
            return None
    if form is None or (not folds and form != "batch"):
        return None         # decided before any array is made: numpy runs most batched products
    a_ = a if a.shape[:-2] == lead else np.broadcast_to(a, lead + (m, k))     # (broadcast_to costs ~4 us)
    b_ = b if b.shape[:-2] == lead else np.broadcast_to(b, lead + (k, n))
    sab, sbb = gemm_operands.batch_stride(a_), gemm_operands.batch_stride(b_)
    if sab is None or sbb is None:
        return None
    sam, sak, sbk, sbn = a.strides[-2] >> 2, a.strides[-1] >> 2, b.strides[-2] >> 2, b.strides[-1] >> 2
    if folds and nb > 1 and sab != m * sam:
        return None
    if out is None:
        out = np.empty(lead + (m, n), _F32)
    elif (out.dtype != _F32 or out.shape != lead + (m, n) or out.strides[-1] != 4 or out.strides[-2] % 4
          or gemm_operands.batch_stride(out) is None or np.may_share_memory(out, a) or np.may_share_memory(out, b)):
        return None
    scb, ldc = gemm_operands.batch_stride(out), out.strides[-2] >> 2
    if folds:
        # one B for every product, and A's and C's rows run on from product to product: one 2-D product
        if nb > 1 and scb != m * ldc:
            return None
        a2 = np.lib.stride_tricks.as_strided(a_, (nb * m, k), (a.strides[-2], a.strides[-1]))
        c2 = np.lib.stride_tricks.as_strided(out, (nb * m, n), (out.strides[-2], 4))
        return out if matmul(a2, b, c2, threads, form) is not None else None
    pa, pb, pc = _addr(a_), _addr(b_), _addr(out)
    if (pa | pb | pc) & 3:
        return None
    threads = workers.num_threads() if threads is None else threads
    (_INSTANCE or instance()).run_batch(pa, sab, sam, sak, pb, sbb, sbk, sbn, pc, scb, ldc, nb, m, n, k, threads)
    return out


def matmul_gathered(a: np.ndarray, src: np.ndarray, desc: tuple, out: np.ndarray, transposed: bool = False,
                    threads: int | None = None) -> np.ndarray | None:
    """a @ G (transposed: a @ G^T) into out, where G = gathered(src, desc) is never stored: an im2col read
    straight from the convolution's input (ember/passes/implicit_gemm.py).  desc = (K, J, L, koff, starts,
    consts): G is [K, J]; its columns come in J / L runs of L contiguous source elements, run r starting at
    starts[r]; row k adds koff[k] (or is the constant of `consts`, koff -1: the bias row of ones).
    float32 throughout, or bfloat16 throughout (compiled code under autocast): then the products run as
    float32 FMAs on the widened values and round once into out, as the bf16 GEMM does.
    None: not for these kernels (the caller materializes G: ember/kernels/blas.py `gathered`)."""
    K, J, L = desc[0], desc[1], desc[2]
    dtype = src.dtype
    if (dtype not in (_F32, _BF16) or a.dtype != dtype or out.dtype != dtype or a.ndim != 2 or out.ndim != 2
            or not src.flags.c_contiguous or J % L):
        return None
    size = dtype.itemsize
    if out.strides[1] != size or out.strides[0] % size or (a.strides[0] | a.strides[1]) % size:
        return None
    m = a.shape[0]
    if transposed and (a.shape != (m, J) or out.shape != (m, K) or a.strides[1] != size):
        return None
    if not transposed and (a.shape != (m, K) or out.shape != (m, J)):
        return None
    if np.may_share_memory(out, src) or np.may_share_memory(out, a):
        return None
    threads = workers.num_threads() if threads is None else threads
    g = _INSTANCE or instance()
    if dtype == _BF16 and not transposed:
        a = a.astype(_F32)          # [M, K] weights, broadcast one value at a time: widened once here
    c = out if dtype == _F32 or not transposed else np.empty(out.shape, _F32)   # the dot form sums into float32
    pa, ps, pc = _addr(a), _addr(src), _addr(c)
    if transposed:
        g.run_dot_gathered(pa, a.strides[0] // size, desc, ps, pc, c.strides[0] // c.itemsize, m, threads, dtype)
    else:
        g.run_outer_gathered(pa, a.strides[0] >> 2, a.strides[1] >> 2, desc, ps, pc, out.strides[0] // size, m,
                             threads, dtype)
    if c is not out:
        out[...] = c.astype(_BF16)
    return out
