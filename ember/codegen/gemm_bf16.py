"""LLVM IR for a bfloat16 matrix product with float32 accumulation (BLIS-style blocking).  Pure text.

In: `GemmConfig` (register tiles MR x NR, cache blocks MC x KC, and whether the target has AVX512-BF16).
Out: `emit_module(cfg, triple, data_layout)` -> the text of one LLVM module with C-callable functions per
register tile; the runtime (ember/runtime/gemm_bf16.py) compiles it once per process and calls
them on numpy buffers.

The product C[M, N] = A[M, K] @ B[K, N] (bf16 inputs as uint16 words, any strides):

  * Packing.  Both operands are copied into "pair panels": a panel holds R lanes (R = MR rows of A, or
    NR columns of B) and, for each pair of K indices (2p, 2p+1), one 32-bit word per lane holding
    (x[lane, 2p], x[lane, 2p+1]) -- exactly the operand layout of the bf16 dot-product instruction.
    Lanes past the matrix edge and the K index past an odd K are zero, so edge tiles compute garbage-free
    zeros.  `pack_b` packs B (all of it, or a range of panels); A is packed per MC x KC block inside
    `gemm_rows`.  Two copy paths in the one `pack` function (its lane count is an argument), chosen by
    the caller from the strides: K-contiguous (whole 32-bit words: a transpose, done in 4 x 4 blocks of
    words through registers) or lanes-contiguous (two K rows interleaved, 16 lanes at a time when the
    lane stride is 1).  Packing one word at a time had cost up to 45% of a small-M product.  A narrow
    product (N <= direct_a_max_n) with a K-contiguous A and an even K skips packing A: `gemm_blockd`
    reads its rows in place.  A product of few rows and a short K over a bf16 B with unit column stride
    (a small convolution's forward) skips packing B: `gemm_colsb` copies B's rows into a small stage,
    512 columns at a time, and `gemm_blockb` interleaves each K pair's two rows into the word layout in
    registers (one vpermt2w per vector) -- B is read once there, so packing was a pass of its own.
  * Micro-kernel.  MR x NR accumulators (NR/16 zmm vectors per row) live in registers for the whole
    KC block; per K pair it loads NR/16 vectors of B, broadcasts one 32-bit A word per row and issues
    MR*NR/16 `vdpbf16ps` (llvm.x86.avx512bf16.dpbf16ps.512: acc += a_hi*b_hi + a_lo*b_lo per lane).
    Without AVX512-BF16 the same loop widens each half-word to float32 (shift / mask) and uses two
    FMAs in the instruction's order: same layout, same results up to denormals (vdpbf16ps flushes
    denormal inputs and results to zero).  With `f32_panels` (AVX2) packing does that widening once: each
    pair occupies 8 bytes, a panel row being its r low halves as float32, then its r high halves, and
    the loop loads float32 operands (offsets into panels count pairs either way: `GemmConfig.unit`).
  * Stores (per tile, from flags): add the partial sums already in the float32 C (K blocks after the
    first), add a bf16 bias per column (the last K block), and write float32 C or round to bf16
    (nearest-even, NaN -> quiet NaN; vcvtneps2bf16 on AVX512-BF16) into the output O.  A whole tile with
    no partial sums is stored straight from the registers; an edge tile skips the rows past the edge
    and masks off the columns past it (AVX-512 masked loads/stores), so nothing outside [M, N] is read
    or written.

Functions (all sizes i64, element strides; words & 1 when the K stride is 1, words & 2 when the operand is
float32 -- rounded to bf16 as it is packed, exactly as eager's cast, so a cast feeding the product costs no
pass of its own):

    void pack_b(ptr b, i64 lane_stride, i64 k_stride, i32 words, i64 N, i64 K, i64 p0, i64 p1, ptr bp)
        panels [p0, p1) of B (lanes = columns) for every KC block, into bp (whole packed B).
    void gemm_rows(ptr a, i64 lane_stride, i64 k_stride, i32 words, ptr bp, i64 M, i64 N, i64 K,
                   i64 m0, i64 m1, ptr c, i64 ldc, ptr o, i64 ldo, ptr bias, ptr ap,
                   ptr b, i64 b_lane_stride, i64 b_k_stride, i32 b_words, ptr share, i64 gpan, ptr bpriv,
                   i64 rdiv)
        rows [m0, m1) of the product, in even blocks of at most MC rows.  c: float32 [M, ldc] (needed when o
        is null or K > KC); o: bf16 output [M, ldo] or null; bias: bf16 [N] or null; ap: scratch for one
        packed A block.  share null: bp holds all of B packed (b .. rdiv unused).  Else threads that split
        the rows pack B into bp together, in groups of gpan panels claimed from share, and claim the rows
        in chunks of 1/rdiv of those left (rdiv > 0; see `_emit_rows`).
    void gemm_block(ptr ap, ptr bp, i64 mc, i64 nc, i64 kp, ptr c, i64 ldc, ptr o, i64 ldo,
                    ptr bias, i32 flags)
        the macro-kernel over one packed A block and one packed B block (flags: 1 accumulate into c,
        2 add bias, 4 write o).  Exposed for tests.
    void gemm_batch(ptr a, i64 a_batch_stride, <A's strides>, ptr b, i64 b_batch_stride, <B's strides>,
                    i64 b0, i64 b1, i64 M, i64 N, i64 K, ptr c, i64 c_batch_stride, i64 ldc, ptr o,
                    i64 o_batch_stride, i64 ldo, ptr bias, ptr ap, ptr bp, ptr share)
        products b0..b1 of a batch (strides 0 broadcast an operand), packing B per product into bp; a
        broadcast A that fits one MC x KC block is packed once.  share: null, or a counter from which
        several threads, one call each, claim the products (`_claims`: no Python call per chunk).
    void gemm_cols(<A as gemm_batch>, <B as gemm_batch>, i64 M, i64 N, i64 K, ptr c, i64 ldc, ptr o, i64 ldo,
                   ptr bias, ptr ap, ptr bp, i64 chunk, ptr share)
        the whole product, chunk columns at a time: pack the chunk's B panels, then all rows over them
        (while they are in cache).  For products of one row block, whose packed B is read once; share as
        gemm_batch's (the chunks claimed).
    void gemm_entry(ptr plan, ptr a, ptr b, ptr out, ptr bias)
        gemm_cols or gemm_batch with the arrays passed as numpy objects and everything else read from
        a plan of i64 slots (PLAN_SLOTS): one cheap ctypes call for a small product.

Each function exists once per register tile, suffixed with its tag (`gemm_rows_8x48`).  Per tile of
`direct_b_tiles` (B unpacked): gemm_blockb (gemm_block over B's rows in place, %ldb apart),
    void gemm_colsb(<A as gemm_batch>, ptr b, i64 ldb, i64 M, i64 N, i64 K, ptr c, i64 ldc, ptr o,
                    i64 ldo, ptr bias, ptr ap, ptr stage, ptr share)
and gemm_entryb (gemm_entry for it).  Once: gemm_dot (a long K into a small result as inner products,
both operands K-contiguous: weight gradients; see `_emit_dot`).  Besides them,
`cvt_f32_bf16(ptr src, ptr dst, i64 n)` and `cvt_bf16_f32(...)`: contiguous casts for eager code.

Packed B holds, for K block q (KC rows) and panel p: ceil(kc/2) * NR pairs (`panel_bytes`) at
    q * ceil(N/NR) * (KC/2) * NR + p * ceil(kc/2) * NR.
"""
from __future__ import annotations

from dataclasses import dataclass

from .llvm_text import Fn as _Fn
from .llvm_text import IOTA16 as _IOTA16
from .llvm_text import ATTRIBUTES, Tile, module_head
from .llvm_text import round_bf16 as _round_bf16
from .llvm_text import vec as _vec
from .llvm_text import widen_bf16 as _widen_bf16
from .llvm_text import claims as _claims
from .llvm_text import masked_load as _masked_load
from .llvm_text import masked_moves as _masked_moves
from .llvm_text import masked_store as _masked_store
from .llvm_text import splat_f32 as _splat_f32
from .llvm_text import splat_i32 as _splat_i32

__all__ = ["Tile", "GemmConfig", "host_config", "AVX2_TILES", "emit_module",
           "panel_bytes", "packed_b_bytes", "packed_a_bytes", "PLAN_SLOTS"]


@dataclass(frozen=True)
class GemmConfig:
    # One tile per width class: narrow products (N <= 16: conv layers with few channels) waste no
    # lanes on a 16-wide tile with many rows; wide ones use 3 vectors x 8 rows (fewest loads per FMA);
    # 8x32 for 32/64-column products with rows in eights (attention's 64 x 64 tiles: +10% over 12x32).
    tiles: tuple = (Tile(24, 1), Tile(12, 2), Tile(8, 3), Tile(8, 2))
    mc: int = 96           # rows of an A block (L2): a multiple of every tile's mr
    kc: int = 1024         # K depth of a block (even): every further block re-reads and re-writes float32 C
                           # (384 was 6-11% slower than 512 at K = 512; 1024 over 512: 1024^3 +5% on one
                           # thread, +13% on two; [512,1024]@[1024,128] +5%; the A block, 192 KiB, in L2)
    dpbf16: bool = True    # emit vdpbf16ps (the target has avx512bf16); else float32 FMAs
    direct_a_max_n: int = 128   # products at most this wide read a K-contiguous A in place: +3-7% at N = 128,
                                # -2% at N = 384 and -20% at N = 4096 (packing pays back over many panels)
    # tiles of gemm_colsb (B not packed: few rows, short K, many columns)
    # (measured at K = 25, N = 36864: each M from 1 to 32 has one of these within ~10% of the best)
    direct_b_tiles: tuple = (Tile(1, 4), Tile(2, 4), Tile(3, 4), Tile(4, 4), Tile(5, 4), Tile(6, 3), Tile(8, 3))
    dot_tile: tuple = (5, 5)   # gemm_dot's results per register tile (rows x columns of the product)
    dot_kb: int = 4096         # gemm_dot's K block (a multiple of 32)
    masked16: bool = True  # the target moves bf16 words under a mask natively (AVX512-BW); else packing and the
                           # casts move whole vectors plainly, only an edge the masked move AVX2 scalarises
                           # (llvm_text.masked_load; AVX2: conv1's forward 15 -> 22 GF/s, casts 1.6-4.5x)
    stage_cols: int = 512  # gemm_colsb stages B this many columns at a time (a multiple of 32; 256: the same,
                           # 128: 5-10% slower; prefetching the next piece while multiplying: no faster)
    f32_panels: bool = False    # without vdpbf16ps: packing widens each pair word into its two float32 values
                                # (a panel row holds the r low halves, then the r high halves), so the micro-
                                # kernel multiplies loaded float32 operands -- widening each word at every use
                                # cost a shift and a mask per FMA pair (AVX2: 54 -> ~90 GF/s on one thread)

    @property
    def word_bytes(self) -> int:
        """Bytes of one packed pair: a 32-bit word, or its two float32 values (f32_panels)."""
        return 8 if self.f32_panels else 4

    @property
    def unit(self) -> str:
        """The LLVM type one packed pair occupies, for offsets into packed panels."""
        return "i64" if self.f32_panels else "i32"

    def check(self) -> None:
        if self.kc % 2 or any(self.mc % t.mr or t.mr < 1 or t.nv < 1 or t.mr * t.nv > 28 for t in self.tiles):
            raise ValueError(f"bad GEMM blocking {self}: kc must be even, mc a multiple of every tile's mr, "
                             "and a tile at most 28 registers")
        if self.f32_panels and (self.dpbf16 or self.masked16 or self.direct_b_tiles):
            raise ValueError(f"bad GEMM blocking {self}: float32 panels are for targets without vdpbf16ps and "
                             "masked 16-bit moves, and read B packed")
        if self.stage_cols % 32 or any(t.mr < 1 or t.nv < 1 or t.mr * t.nv > 28 for t in self.direct_b_tiles):
            raise ValueError(f"bad GEMM blocking {self}: stage_cols must be a multiple of 32 and a tile at most "
                             "28 registers")


# AVX2 (16 ymm, no bf16 instructions): float32 panels (`f32_panels`), so the micro-kernel is gemm_f32's and so
# are the tiles.  One thread, whole tiles, GF/s ([384,512]@[512,384] / [1024,128]@[128,512]): 6x16 95 / 92,
# 5x16 87 / 85, 4x16 77 / 72, 2x32 74 / 75, 1x64 50 / 73, 3x32 and 2x48 33 (spilled).  (Widening the pair words
# at each use instead: 2x32 best at 52-54.)  6x16 has 16 columns too, so 2x32 never wastes fewer lanes.  No
# direct-B tiles: gemm_blockb interleaves B's rows with vpermt2w, which AVX2 emulates (conv2's forward ran at
# half the speed of packing B); no direct A either: read in place, A's pairs are widened at every use
# ([1024,512]@[512,128]: 83 GF/s direct, 165 packed).  gemm_dot's tile: 2 x 2 results (8 ymm accumulators;
# 5 x 5 spilled): GF/s on [10,36864]@[36864,26] / [12,4096]@[4096,100]: 2x2 49 / 47, 1x4 36 / 36, 2x3 31 /
# 31, 3x2 28 / 32, 5x5 29 / 27, 3x3 24 / 28 -- and it beats packing up to DOT_MAX_M rows ([20,4096]@[4096,
# 251] 90 / 73, [32,8192]@[8192,32] 50 / 40).
AVX2_TILES = (Tile(6, 1), Tile(4, 1))


def host_config(dpbf16: bool, vector_bits: int) -> GemmConfig:
    """The configuration for a CPU with (dpbf16) or without AVX512-BF16 and vector registers this wide."""
    if vector_bits >= 512:
        return GemmConfig(dpbf16=dpbf16)
    return GemmConfig(tiles=AVX2_TILES, dpbf16=False, direct_b_tiles=(), masked16=False, f32_panels=True,
                      direct_a_max_n=0, dot_tile=(2, 2))


def panel_bytes(cfg: GemmConfig, lanes: int, k: int) -> int:
    """Bytes of one packed panel of `lanes` lanes over k rows of K (a pair of them per `word_bytes`)."""
    return (k + 1) // 2 * lanes * cfg.word_bytes


def packed_b_bytes(cfg: GemmConfig, tile: Tile, n: int, k: int) -> int:
    """Bytes of the packed B (every K block sized as a full one)."""
    return -(-k // cfg.kc) * -(-n // tile.nr) * panel_bytes(cfg, tile.nr, cfg.kc)


def packed_a_bytes(cfg: GemmConfig) -> int:
    """Bytes of one packed MC x KC block of A."""
    return panel_bytes(cfg, cfg.mc, cfg.kc)


_V16F, _V16I = "<16 x float>", "<16 x i32>"
_ATTRS = '#0'
# called once per block: as calls, each body is compiled once (inlined copies tripled the build time)
_NOINLINE = '#1'


def _lanes_below(f: _Fn, n: str) -> str:
    """<16 x i1>: lanes 0..15 below n (an i32; lanes past the end of a row or panel masked off)."""
    return f.tmp(f"icmp slt {_V16I} {_IOTA16}, {_splat_i32(f, n)}", "mask")


# ------------------------------------------------------------------------------------- packing
def _put_pairs(f: _Fn, cfg: GemmConfig, pan: str, rowr: str, lane: str, w: str, n: int = 1, r: str = "%r") -> None:
    """Store w (n pair words: i32 or <n x i32>) at lanes [lane, lane + n) of the panel row that starts at
    pair rowr (= row * r) of pan.  f32_panels: as float32 values, the row's r low halves, then its r high."""
    if not cfg.f32_panels:
        p = f.tmp(f"getelementptr i32, ptr {pan}, i64 {f.tmp(f'add i64 {rowr}, {lane}')}")
        f.emit(f"store {_vec(n, 'i32')} {w}, ptr {p}, align 4")
        return
    rowp = f.tmp(f"getelementptr i64, ptr {pan}, i64 {rowr}")
    for half, at in zip(_halves(f, w, n), (lane, f.tmp(f"add i64 {lane}, {r}"))):
        f.emit(f"store {_vec(n, 'float')} {half}, ptr {f.tmp(f'getelementptr float, ptr {rowp}, i64 {at}')}, align 4")


def _halves(f: _Fn, w: str, n: int) -> tuple[str, str]:
    """The float32 values of pair words w (i32 or <n x i32>): (low halves, high halves)."""
    vi, vf = _vec(n, "i32"), _vec(n, "float")
    out = []
    for op, k in (("shl", 16), ("and", -65536)):
        c = str(k) if n == 1 else f"splat (i32 {k})"
        out.append(f.tmp(f"bitcast {vi} {f.tmp(f'{op} {vi} {w}, {c}')} to {vf}"))
    return tuple(out)


def _zero_lanes(f: _Fn, cfg: GemmConfig, lo: str, r: str, kfp: str, dpan: str) -> None:
    """Zero lanes [lo, r) of the pairs [0, kfp) of a panel (lanes past the matrix edge)."""
    kp, close_k = f.loop("0", kfp, "1", "zk")
    row = f.tmp(f"mul i64 {kp}, {r}")
    rr, close_r = f.loop(lo, r, "1", "zr")
    _put_pairs(f, cfg, dpan, row, rr, "0")
    close_r()
    close_k()


class _Src:
    """How `pack` reads its source: bf16 words as they are, or float32 values rounded to bf16 on the way
    (a cast folded into the product: ember/passes/fusion/decide.py)."""

    def __init__(self, f: _Fn, f32: bool):
        self.f, self.f32 = f, f32
        self.elt = "float" if f32 else "i16"

    def at(self, base: str, off: str) -> str:
        return self.f.tmp(f"getelementptr {self.elt}, ptr {base}, i64 {off}")

    def half(self, p: str) -> str:
        """One bf16 value (i16)."""
        if not self.f32:
            return self.f.tmp(f"load i16, ptr {p}, align 2")
        return _round_bf16(self.f, self.f.tmp(f"load float, ptr {p}, align 4"), 1)

    def words(self, p: str, n: int) -> str:
        """n consecutive pairs (2n values) as <n x i32> (n = 1: an i32)."""
        f = self.f
        if not self.f32:
            return f.tmp(f"load {'i32' if n == 1 else f'<{n} x i32>'}, ptr {p}, align 2")
        h = _round_bf16(f, f.tmp(f"load <{2 * n} x float>, ptr {p}, align 4"), 2 * n)
        return f.tmp(f"bitcast <{2 * n} x i16> {h} to {'i32' if n == 1 else f'<{n} x i32>'}")

    def vec16(self, p: str) -> str:
        """16 values as <16 x i16>, every lane read."""
        f = self.f
        if not self.f32:
            return f.tmp(f"load <16 x i16>, ptr {p}, align 2")
        return _round_bf16(f, f.tmp(f"load {_V16F}, ptr {p}, align 4"), 16)

    def masked16(self, p: str, m: str) -> str:
        """16 values under mask m as <16 x i16> (masked-off lanes 0)."""
        f = self.f
        if not self.f32:
            return _masked_load(f, "<16 x i16>", p, 2, m)
        v = f.tmp(f"call {_V16F} @llvm.masked.load.v16f32.p0(ptr {p}, i32 4, <16 x i1> {m}, {_V16F} zeroinitializer)")
        return _round_bf16(f, v, 16)


def _pair_words(f: _Fn, lo: str, hi: str) -> str:
    """<16 x i16> rows 2p and 2p+1 -> <16 x i32> words (x[2p] low, x[2p+1] high)."""
    lo = f.tmp(f"zext <16 x i16> {lo} to {_V16I}")
    hi = f.tmp(f"shl {_V16I} {f.tmp(f'zext <16 x i16> {hi} to {_V16I}')}, splat (i32 16)")
    return f.tmp(f"or {_V16I} {lo}, {hi}")


def _pack_pairs_plain(f: _Fn, cfg: GemmConfig, src: _Src, pa: str, pb: str, dpan: str, drow: str, hi_in: str,
                      lbase: str, rr: str, r: str, nv: str) -> None:
    """One K pair of up to 16 lanes of a lanes-contiguous panel (`pack`'s vector path) without masked
    moves: AVX2 scalarises 16-bit masked loads and its masked 32-bit stores are slow on Zen 2, and an A
    panel of 2 or 6 lanes is all edge (a transposed A packed that way took 3x the product's own time).
    16 lanes inside the panel and the matrix move as whole vectors; fewer, one word at a time."""
    room = f.tmp(f"sub i64 %lanes, {f.tmp(f'add i64 {lbase}, {rr}')}")
    panel_left = f.tmp(f"sub i64 {r}, {rr}")
    whole = f.tmp(f"and i1 {f.tmp(f'icmp sge i64 {room}, 16')}, {f.tmp(f'icmp sge i64 {panel_left}, 16')}")
    vb, sb, done = f.fresh("pwhole"), f.fresh("pscalar"), f.fresh("pdone")
    f.emit(f"br i1 {whole}, label %{vb}, label %{sb}")
    f.label(vb)
    lo = src.vec16(pa)
    hi = src.vec16(f.tmp(f"select i1 {hi_in}, ptr {pb}, ptr {pa}"))    # (no row 2p+1 past an odd K)
    hi = f.tmp(f"select i1 {hi_in}, <16 x i16> {hi}, <16 x i16> zeroinitializer")
    _put_pairs(f, cfg, dpan, drow, rr, _pair_words(f, lo, hi), 16)
    f.emit(f"br label %{done}")
    f.label(sb)
    n = f.tmp(f"select i1 {f.tmp(f'icmp slt i64 {panel_left}, 16')}, i64 {panel_left}, i64 16")
    valid = f.tmp(f"sub i64 {nv}, {rr}")
    q, close_q = f.loop("0", n, "1", "pq")
    lane = f.tmp(f"add i64 {rr}, {q}")
    _put_pairs(f, cfg, dpan, drow, lane, "0")
    close_in = f.if_(f.tmp(f"icmp slt i64 {q}, {valid}"), "pin")
    lo = f.tmp(f"zext i16 {src.half(src.at(pa, q))} to i32")
    _put_pairs(f, cfg, dpan, drow, lane, lo)
    close_hi = f.if_(hi_in, "phi")
    hi = f.tmp(f"shl i32 {f.tmp(f'zext i16 {src.half(src.at(pb, q))} to i32')}, 16")
    _put_pairs(f, cfg, dpan, drow, lane, f.tmp(f"or i32 {lo}, {hi}"))
    close_hi()
    close_in()
    close_q()
    f.emit(f"br label %{done}")
    f.label(done)


def _emit_pack_dispatch() -> str:
    """pack(...): %words & 2 says the source is float32 (pack32), else bf16 (pack16); %words & 1 is the
    K-contiguous flag both take."""
    args = ("ptr %src, i64 %ls, i64 %ks, i32 %w, i64 %lanes, i64 %K, i64 %lane0, i64 %nl, i64 %k0, i64 %kc, "
            "ptr %dst, i64 %r")
    return "\n".join([
        "define internal void @pack(ptr noalias %src, i64 %ls, i64 %ks, i32 %words, i64 %lanes, i64 %K, "
        f"i64 %lane0, i64 %nl, i64 %k0, i64 %kc, ptr noalias %dst, i64 %r) {_NOINLINE} {{",
        "entry:",
        "  %f = and i32 %words, 2",
        "  %is32 = icmp ne i32 %f, 0",
        "  %w = and i32 %words, 1",
        "  br i1 %is32, label %p32, label %p16",
        "p32:",
        f"  call void @pack32({args})",
        "  ret void",
        "p16:",
        f"  call void @pack16({args})",
        "  ret void",
        "}"])


def _emit_pack(cfg: GemmConfig, f32: bool = False) -> str:
    """pack lanes [lane0, lane0+nl) x K [k0, k0+kc) of src into panels of %r lanes at dst (one function
    for every panel width: a compile-time width per tile multiplied the build time).  f32: pack32, the
    source is float32 rounded to bf16 as it is read."""
    f = _Fn(f"define internal void @pack{32 if f32 else 16}(ptr noalias %src, i64 %ls, i64 %ks, i32 %words, "
            f"i64 %lanes, i64 %K, i64 %lane0, i64 %nl, i64 %k0, i64 %kc, ptr noalias %dst, i64 %r) {_NOINLINE}")
    src = _Src(f, f32)
    r = "%r"
    kc1 = f.tmp("add i64 %kc, 1")
    kpc = f.tmp(f"lshr i64 {kc1}, 1", "kpc")
    nl1 = f.tmp("add i64 %nl, %r")
    nl1 = f.tmp(f"sub i64 {nl1}, 1")
    npan = f.tmp(f"udiv i64 {nl1}, {r}", "npan")
    kfp = f.tmp("lshr i64 %kc, 1", "kfp")    # pairs with both halves inside (blocks end inside the matrix)
    isw = f.tmp("icmp ne i32 %words, 0")
    p, close_p = f.loop("0", npan, "1", "p")
    lbase = f.tmp(f"mul i64 {p}, {r}")
    lbase = f.tmp(f"add i64 %lane0, {lbase}", "lb")
    lend = f.tmp(f"add i64 {lbase}, {r}")
    lfull = f.tmp(f"icmp sle i64 {lend}, %lanes")
    avail = f.tmp(f"sub i64 %lanes, {lbase}")
    nv = f.tmp(f"select i1 {lfull}, i64 {r}, i64 {avail}", "nvalid")    # lanes inside the matrix
    poff = f.tmp(f"mul i64 {p}, {kpc}")
    poff = f.tmp(f"mul i64 {poff}, {r}")
    dpan = f.tmp(f"getelementptr {cfg.unit}, ptr %dst, i64 {poff}", "dp")
    fast, slow, done = f.fresh("fast"), f.fresh("slow"), f.fresh("pdone")
    kslow = f.alloca("i64", "kslow")     # where the checked loop starts: kfp, or kpc when a fast path did all
    f.emit(f"store i64 {kfp}, ptr {kslow}")
    f.emit(f"br label %{fast}")
    # -- fast: the pairs [0, kfp) whole; lanes [0, nvalid) copied, [nvalid, r) zero (an edge panel)
    f.label(fast)
    wl, il = f.fresh("wfast"), f.fresh("ifast")
    f.emit(f"br i1 {isw}, label %{wl}, label %{il}")
    f.label(wl)     # K contiguous: each pair is one 32-bit word of the lane's row -- a transpose,
    # in 4 x 4 blocks of words through registers (one word at a time cost a tenth of a whole product)
    r4 = f.tmp(f"and i64 {nv}, -4", "r4")
    kv = f.tmp(f"and i64 {kfp}, -4", "kv")
    rq, close_rq = f.loop("0", r4, "4", "tr")
    rows = []
    for q in range(4):
        lane = f.tmp(f"add i64 {lbase}, {rq}")
        lane = f.tmp(f"add i64 {lane}, {q}")
        off = f.tmp(f"mul i64 {lane}, %ls")
        off = f.tmp(f"add i64 {off}, %k0")
        rows.append(src.at("%src", off))
    kq, close_kq = f.loop("0", kv, "4", "tk")
    k2 = f.tmp(f"shl i64 {kq}, 1")
    v = [src.words(src.at(rw, k2), 4) for rw in rows]
    lo01 = f.tmp(f"shufflevector <4 x i32> {v[0]}, <4 x i32> {v[1]}, <4 x i32> <i32 0, i32 4, i32 1, i32 5>")
    hi01 = f.tmp(f"shufflevector <4 x i32> {v[0]}, <4 x i32> {v[1]}, <4 x i32> <i32 2, i32 6, i32 3, i32 7>")
    lo23 = f.tmp(f"shufflevector <4 x i32> {v[2]}, <4 x i32> {v[3]}, <4 x i32> <i32 0, i32 4, i32 1, i32 5>")
    hi23 = f.tmp(f"shufflevector <4 x i32> {v[2]}, <4 x i32> {v[3]}, <4 x i32> <i32 2, i32 6, i32 3, i32 7>")
    outs = [(lo01, lo23, "0, i32 1, i32 4, i32 5"), (lo01, lo23, "2, i32 3, i32 6, i32 7"),
            (hi01, hi23, "0, i32 1, i32 4, i32 5"), (hi01, hi23, "2, i32 3, i32 6, i32 7")]
    for q, (x, y, sel) in enumerate(outs):
        col = f.tmp(f"shufflevector <4 x i32> {x}, <4 x i32> {y}, <4 x i32> <i32 {sel}>")
        di = f.tmp(f"add i64 {kq}, {q}")
        _put_pairs(f, cfg, dpan, f.tmp(f"mul i64 {di}, {r}"), rq, col, 4)
    close_kq()
    close_rq()
    # the rest one word at a time: pairs [kv, kfp) of the blocked lanes, all pairs of the last nvalid % 4
    rr, close_r = f.loop("0", nv, "1", "wr")
    lane = f.tmp(f"add i64 {lbase}, {rr}")
    rowoff = f.tmp(f"mul i64 {lane}, %ls")
    rowoff = f.tmp(f"add i64 {rowoff}, %k0")
    rowp = src.at("%src", rowoff)
    blocked = f.tmp(f"icmp slt i64 {rr}, {r4}")
    kfrom = f.tmp(f"select i1 {blocked}, i64 {kv}, i64 0")
    kp, close_k = f.loop(kfrom, kfp, "1", "wk")
    k2 = f.tmp(f"shl i64 {kp}, 1")
    word = src.words(src.at(rowp, k2), 1)
    _put_pairs(f, cfg, dpan, f.tmp(f"mul i64 {kp}, {r}"), rr, word)
    close_k()
    close_r()
    _zero_lanes(f, cfg, nv, r, kfp, dpan)
    f.emit(f"br label %{slow}")
    f.label(il)     # lanes contiguous (any stride): interleave the rows 2p and 2p+1
    unit, vl, sl = f.tmp("icmp eq i64 %ls, 1"), f.fresh("ivec"), f.fresh("iscalar")
    f.emit(f"br i1 {unit}, label %{vl}, label %{sl}")
    f.label(vl)     # lane stride 1: 16 lanes at a time (masked at the panel's end), zext / shift / or;
    # also the last pair of an odd K (its high half masked off), so the checked loop has nothing left
    f.emit(f"store i64 {kpc}, ptr {kslow}")
    kp, close_k = f.loop("0", kpc, "1", "vk")
    k2 = f.tmp(f"shl i64 {kp}, 1")
    hi_in = f.tmp(f"icmp slt i64 {f.tmp(f'or i64 {k2}, 1')}, %kc")
    k2 = f.tmp(f"add i64 %k0, {k2}")
    lo_off = f.tmp(f"mul i64 {k2}, %ks")
    lo_off = f.tmp(f"add i64 {lo_off}, {lbase}")
    hi_off = f.tmp(f"add i64 {lo_off}, %ks")
    drow = f.tmp(f"mul i64 {kp}, {r}")
    rr, close_r = f.loop("0", r, "16", "vr")
    pa = src.at("%src", f.tmp(f"add i64 {lo_off}, {rr}"))
    pb = src.at("%src", f.tmp(f"add i64 {hi_off}, {rr}"))
    if not f.native_masks:
        _pack_pairs_plain(f, cfg, src, pa, pb, dpan, drow, hi_in, lbase, rr, r, nv)
    else:
        dp = f.tmp(f"getelementptr i32, ptr {dpan}, i64 {f.tmp(f'add i64 {drow}, {rr}')}")
        left = f.tmp(f"trunc i64 {f.tmp(f'sub i64 {r}, {rr}')} to i32")
        m = _lanes_below(f, left)           # lanes of the panel
        valid = f.tmp(f"trunc i64 {f.tmp(f'sub i64 {nv}, {rr}')} to i32")
        mv = _lanes_below(f, valid)         # ... inside the matrix
        lo = src.masked16(pa, mv)
        mvh = f.tmp(f"select i1 {hi_in}, <16 x i1> {mv}, <16 x i1> zeroinitializer")
        hi = src.masked16(pb, mvh)
        f.emit(f"call void @llvm.masked.store.v16i32.p0({_V16I} {_pair_words(f, lo, hi)}, ptr {dp}, i32 4, "
               f"<16 x i1> {m})")
    close_r()
    close_k()
    f.emit(f"br label %{slow}")
    f.label(sl)
    kp, close_k = f.loop("0", kfp, "1", "ik")
    k2 = f.tmp(f"shl i64 {kp}, 1")
    k2 = f.tmp(f"add i64 %k0, {k2}")
    lo_off = f.tmp(f"mul i64 {k2}, %ks")
    hi_off = f.tmp(f"add i64 {lo_off}, %ks")
    rr, close_r = f.loop("0", nv, "1", "ir")
    lane = f.tmp(f"add i64 {lbase}, {rr}")
    loff = f.tmp(f"mul i64 {lane}, %ls")
    a = f.tmp(f"add i64 {loff}, {lo_off}")
    b = f.tmp(f"add i64 {loff}, {hi_off}")
    lo = src.half(src.at("%src", a))
    hi = src.half(src.at("%src", b))
    lo = f.tmp(f"zext i16 {lo} to i32")
    hi = f.tmp(f"zext i16 {hi} to i32")
    hi = f.tmp(f"shl i32 {hi}, 16")
    word = f.tmp(f"or i32 {lo}, {hi}")
    _put_pairs(f, cfg, dpan, f.tmp(f"mul i64 {kp}, {r}"), rr, word)
    close_r()
    close_k()
    _zero_lanes(f, cfg, nv, r, kfp, dpan)
    f.emit(f"br label %{slow}")
    # -- slow: the last pair of an odd K (its high half zero), every lane checked; zeros outside the matrix
    f.label(slow)
    kp, close_k = f.loop(f.tmp(f"load i64, ptr {kslow}"), kpc, "1", "sk")
    k2 = f.tmp(f"shl i64 {kp}, 1")
    klo = f.tmp(f"add i64 %k0, {k2}")
    khi = f.tmp(f"add i64 {klo}, 1")
    klo_ok = f.tmp(f"icmp slt i64 {klo}, %K")
    khi_ok = f.tmp(f"icmp slt i64 {khi}, %K")
    kcl = f.tmp(f"sub i64 %kc, {k2}")      # inside this block too (only the last block can be odd)
    khi_in = f.tmp(f"icmp sgt i64 {kcl}, 1")
    khi_ok = f.tmp(f"and i1 {khi_ok}, {khi_in}")
    rr, close_r = f.loop("0", r, "1", "sr")
    lane = f.tmp(f"add i64 {lbase}, {rr}")
    lane_ok = f.tmp(f"icmp slt i64 {lane}, %lanes")
    di = f.tmp(f"mul i64 {kp}, {r}")
    if cfg.f32_panels:
        _put_pairs(f, cfg, dpan, di, rr, "0")
    else:
        di = f.tmp(f"add i64 {di}, {rr}")
        dp = f.tmp(f"getelementptr i32, ptr {dpan}, i64 {di}")
        f.emit(f"store i32 0, ptr {dp}, align 4")
    c_lo = f.tmp(f"and i1 {lane_ok}, {klo_ok}")
    close_lo = f.if_(c_lo, "lo")
    loff = f.tmp(f"mul i64 {lane}, %ls")
    ko = f.tmp(f"mul i64 {klo}, %ks")
    a = f.tmp(f"add i64 {loff}, {ko}")
    v = src.half(src.at("%src", a))
    if cfg.f32_panels:      # the word so far (high half zero), then with its high half
        lo = f.tmp(f"zext i16 {v} to i32")
        _put_pairs(f, cfg, dpan, di, rr, lo)
    else:
        dp16 = f.tmp(f"getelementptr i16, ptr {dp}, i64 0")
        f.emit(f"store i16 {v}, ptr {dp16}, align 4")
    c_hi = f.tmp(f"and i1 {lane_ok}, {khi_ok}")
    close_hi = f.if_(c_hi, "hi")
    ko = f.tmp(f"mul i64 {khi}, %ks")
    b = f.tmp(f"add i64 {loff}, {ko}")
    v = src.half(src.at("%src", b))
    if cfg.f32_panels:
        hi = f.tmp(f"shl i32 {f.tmp(f'zext i16 {v} to i32')}, 16")
        _put_pairs(f, cfg, dpan, di, rr, f.tmp(f"or i32 {lo}, {hi}"))
    else:
        dp16 = f.tmp(f"getelementptr i16, ptr {dp}, i64 1")
        f.emit(f"store i16 {v}, ptr {dp16}, align 2")
    close_hi()
    close_lo()
    close_r()
    close_k()
    f.emit(f"br label %{done}")
    f.label(done)
    close_p()
    return f.text()


def _operand(f: _Fn, cfg: GemmConfig, v: str, splat: bool = False):
    """A pair operand of `_dp`, prepared once for all the products that use it: v is <16 x i32> (two bf16
    per lane), or with splat one i32 for every lane.  vdpbf16ps: v as <32 x bfloat>; the fallback: the
    low and high halves widened to float32 (of the scalar before the splat: one shift, not sixteen)."""
    if cfg.dpbf16:
        return f.tmp(f"bitcast {_V16I} {_splat_i32(f, v) if splat else v} to <32 x bfloat>")
    if splat:
        return tuple(_splat_f32(f, f.tmp(f"bitcast i32 {f.tmp(f'{op} i32 {v}, {k}')} to float"))
                     for op, k in (("shl", 16), ("and", -65536)))
    return tuple(f.tmp(f"bitcast {_V16I} {f.tmp(f'{op} {_V16I} {v}, splat (i32 {k})')} to {_V16F}")
                 for op, k in (("shl", 16), ("and", -65536)))


def _dp(f: _Fn, cfg: GemmConfig, cur: str, a, b) -> str:
    """cur + the pair products of operands a and b (`_operand`): vdpbf16ps, or two float32 FMAs in its
    order (the high halves first)."""
    if cfg.dpbf16:
        return f.tmp(f"call {_V16F} @llvm.x86.avx512bf16.dpbf16ps.512({_V16F} {cur}, <32 x bfloat> {a}, "
                     f"<32 x bfloat> {b})")
    t = f.tmp(f"call {_V16F} @llvm.fma.v16f32({_V16F} {a[1]}, {_V16F} {b[1]}, {_V16F} {cur})")
    return f.tmp(f"call {_V16F} @llvm.fma.v16f32({_V16F} {a[0]}, {_V16F} {b[0]}, {_V16F} {t})")


# -------------------------------------------------------------------------------- macro-kernel
def _col_masks(f: _Fn, ncols: str, nv: int) -> list[str]:
    """Per vector j of a tile, the mask of its lanes below column ncols (i32) of the tile."""
    return [_lanes_below(f, f.tmp(f"sub i32 {ncols}, {16 * j}")) for j in range(nv)]


def _load16(f: _Fn, base: str, off, mask: str) -> str:
    """16 bf16 words at base + off (elements) under mask; masked-off lanes are zero and never read."""
    p = f.tmp(f"getelementptr i16, ptr {base}, i64 {off}")
    return f.tmp(f"call <16 x i16> @llvm.masked.load.v16i16.p0(ptr {p}, i32 2, <16 x i1> {mask}, "
                 "<16 x i16> zeroinitializer)")


def _b_row_pairs(f: _Fn, bcol: str, kk: str, masks: list[str]) -> list[str]:
    """K pair kk of B read in place (gemm_blockb): rows 2kk and 2kk+1 from bcol, rows %ldb apart, 16
    columns per vector under `masks`, interleaved into <16 x i32> words (x[2kk] low, x[2kk+1] high) --
    the packed layout; the high row of an odd %kc's last pair is zero (never read)."""
    k2 = f.tmp(f"shl i64 {kk}, 1")
    lo_p = f.tmp(f"getelementptr i16, ptr {bcol}, i64 {f.tmp(f'mul i64 {k2}, %ldb')}", "blo")
    hi_p = f.tmp(f"getelementptr i16, ptr {lo_p}, i64 %ldb", "bhi")
    hi_in = f.tmp(f"icmp slt i64 {f.tmp(f'or i64 {k2}, 1')}, %kc")
    inter = ", ".join(f"i32 {i}, i32 {i + 16}" for i in range(16))
    out = []
    for j, m in enumerate(masks):
        mh = f.tmp(f"select i1 {hi_in}, <16 x i1> {m}, <16 x i1> zeroinitializer")
        lo, hi = _load16(f, lo_p, 16 * j, m), _load16(f, hi_p, 16 * j, mh)
        w = f.tmp(f"shufflevector <16 x i16> {lo}, <16 x i16> {hi}, <32 x i32> <{inter}>")
        out.append(f.tmp(f"bitcast <32 x i16> {w} to {_V16I}", "b"))
    return out


def _emit_block(cfg: GemmConfig, tile: Tile, direct: bool = False, b_rows: bool = False) -> str:
    """gemm_block_<tag> over a packed A block and a packed B block.
    direct: gemm_blockd_<tag>, reading A where it lies (%ap is A[row 0, k 0] of the block, rows %lda
    elements apart, K contiguous and even) -- for products with few columns, where packing A cost a tenth
    of the time and buys no reuse.
    b_rows: gemm_blockb_<tag>, reading B where it lies (%b is B[k 0, column 0] of the block, rows %ldb
    elements apart, columns contiguous; %kc rows, the pair past an odd %kc zero in its high half): each
    K pair's two rows are interleaved in registers into the instruction's word layout -- for products
    with few rows and a short K (a small convolution's forward), where B is read once and packing it
    was a pass over memory of its own."""
    mr, nv, nr = tile.mr, tile.nv, tile.nr
    if b_rows:
        name, bargs = f"gemm_blockb_{tile.tag}", "ptr noalias %b, i64 %ldb, i64 %kc, "
    else:
        name, bargs = f"gemm_block{'d' if direct else ''}_{tile.tag}", "ptr noalias %bp, "
    lda = "i64 %lda, " if direct else ""
    f = _Fn(f"define void @{name}(ptr noalias %ap, {lda}{bargs}i64 %mc, i64 %nc, i64 %kp, "
            f"ptr noalias %c, i64 %ldc, ptr noalias %o, i64 %ldo, ptr noalias %bias, i32 %flags) {_NOINLINE}")
    acc = f.alloca(f"[{mr * nv} x {_V16F}]", "acc", 64)
    stage = f.alloca(f"[{mr * nv} x {_V16F}]", "stage", 64)
    # %flags: 1 add the partial sums in C, 2 add the bias, 4 write bf16 O (else float32 C)
    accum, hasb, wo = (f.tmp(f"icmp ne i32 {f.tmp(f'and i32 %flags, {bit}')}, 0", hint)
                       for bit, hint in ((1, "accum"), (2, "hasbias"), (4, "writeo")))
    jr, close_j = f.loop("0", "%nc", str(nr), "jr")
    nrem = f.tmp(f"sub i64 %nc, {jr}")
    nfull = f.tmp(f"icmp sge i64 {nrem}, {nr}")
    ncl = f.tmp(f"trunc i64 {f.tmp(f'select i1 {nfull}, i64 {nr}, i64 {nrem}')} to i32", "ncols")
    if b_rows:
        bpan = f.tmp(f"getelementptr i16, ptr %b, i64 {jr}", "bcol")
        lmasks = _col_masks(f, ncl, nv)        # loads stay inside the matrix's columns
    else:
        pj = f.tmp(f"udiv i64 {jr}, {nr}")
        boff = f.tmp(f"mul i64 {pj}, %kp")
        boff = f.tmp(f"mul i64 {boff}, {nr}")
        bpan = f.tmp(f"getelementptr {cfg.unit}, ptr %bp, i64 {boff}", "bpan")
    ir_, close_i = f.loop("0", "%mc", str(mr), "ir")
    if direct:      # one pointer per row; rows past the block's edge read its last row (results dropped)
        last = f.tmp("sub i64 %mc, 1")
        rows = []
        for i in range(mr):
            ri = f.tmp(f"add i64 {ir_}, {i}")
            inside = f.tmp(f"icmp slt i64 {ri}, %mc")
            ri = f.tmp(f"select i1 {inside}, i64 {ri}, i64 {last}")
            rows.append(f.tmp(f"getelementptr i16, ptr %ap, i64 {f.tmp(f'mul i64 {ri}, %lda')}", "arow"))
    else:
        pi = f.tmp(f"udiv i64 {ir_}, {mr}")
        aoff = f.tmp(f"mul i64 {pi}, %kp")
        aoff = f.tmp(f"mul i64 {aoff}, {mr}")
        apan = f.tmp(f"getelementptr {cfg.unit}, ptr %ap, i64 {aoff}", "apan")
    # accumulators to zero
    for q in range(mr * nv):
        p = f.tmp(f"getelementptr {_V16F}, ptr {acc}, i64 {q}")
        f.emit(f"store {_V16F} zeroinitializer, ptr {p}, align 64")
    _accumulate(f, cfg, tile, acc, bpan, lmasks if b_rows else None, rows if direct else None,
                None if direct else apan)
    # ---- store the tile
    mrem = f.tmp(f"sub i64 %mc, {ir_}")
    whole = f.tmp(f"and i1 {f.tmp(f'icmp sge i64 {mrem}, {mr}')}, {nfull}")
    quick = f.tmp(f"and i1 {whole}, {f.tmp(f'xor i1 {accum}, true')}", "quick")
    qb, slow_, tile_end = f.fresh("quick"), f.fresh("general"), f.fresh("tile_end")
    f.emit(f"br i1 {quick}, label %{qb}, label %{slow_}")
    f.label(qb)
    _store_whole(f, cfg, tile, acc, ir_, jr, hasb, wo, tile_end)
    f.label(slow_)
    _store_edge(f, cfg, tile, acc, stage, ir_, jr, mrem, ncl, accum, hasb, wo)
    f.emit(f"br label %{tile_end}")
    f.label(tile_end)
    close_i()
    close_j()
    return f.text()


def _accumulate(f: _Fn, cfg: GemmConfig, tile: Tile, acc: str, bpan: str, lmasks, rows, apan) -> None:
    """The K loop of one tile, one pair of K per iteration: acc (mr * nv accumulators, registers after
    SROA) += A's words (rows: one pointer per row, read in place; else the packed panel apan) times B's
    (lmasks: B's rows in place at bpan, interleaved in registers; else the packed panel bpan)."""
    mr, nv, nr = tile.mr, tile.nv, tile.nr
    direct, b_rows = rows is not None, lmasks is not None
    kk, close_k = f.loop("0", "%kp", "1", "k")
    if b_rows:
        bvec = [_operand(f, cfg, b) for b in _b_row_pairs(f, bpan, kk, lmasks)]
    elif cfg.f32_panels:    # row kk: nr low halves, then nr high halves, as float32
        brow = f.tmp(f"getelementptr i64, ptr {bpan}, i64 {f.tmp(f'mul i64 {kk}, {nr}')}")
        bvec = [tuple(f.tmp(f"load {_V16F}, ptr {f.tmp(f'getelementptr float, ptr {brow}, i64 {16 * j + h}')}, "
                            "align 4", "b") for h in (0, nr)) for j in range(nv)]
    else:
        bo = f.tmp(f"mul i64 {kk}, {nr}")
        bvec = []
        for j in range(nv):
            o = f.tmp(f"add i64 {bo}, {16 * j}")
            p = f.tmp(f"getelementptr i32, ptr {bpan}, i64 {o}")
            bvec.append(f.tmp(f"load {_V16I}, ptr {p}, align 64", "b"))
        bvec = [_operand(f, cfg, b) for b in bvec]
    ao = f.tmp(f"mul i64 {kk}, {2 if direct else mr}")
    arow = None if direct or not cfg.f32_panels else f.tmp(f"getelementptr i64, ptr {apan}, i64 {ao}")
    for i in range(mr):
        if arow is not None:
            a = tuple(_splat_f32(f, f.tmp(f"load float, ptr {f.tmp(f'getelementptr float, ptr {arow}, i64 {i + h}')}"
                                          ", align 4", "a")) for h in (0, mr))
        elif direct:
            p = f.tmp(f"getelementptr i16, ptr {rows[i]}, i64 {ao}")
            a = _operand(f, cfg, f.tmp(f"load i32, ptr {p}, align 2", "a"), splat=True)
        else:
            o = f.tmp(f"add i64 {ao}, {i}")
            p = f.tmp(f"getelementptr i32, ptr {apan}, i64 {o}")
            a = _operand(f, cfg, f.tmp(f"load i32, ptr {p}, align 4", "a"), splat=True)
        for j in range(nv):
            p = f.tmp(f"getelementptr {_V16F}, ptr {acc}, i64 {i * nv + j}")
            nxt = _dp(f, cfg, f.tmp(f"load {_V16F}, ptr {p}, align 64"), a, bvec[j])
            f.emit(f"store {_V16F} {nxt}, ptr {p}, align 64")
    close_k()


def _store_whole(f: _Fn, cfg: GemmConfig, tile: Tile, acc: str, ir_: str, jr: str, hasb: str, wo: str,
                 tile_end: str) -> None:
    """A whole tile with no partial sums to add (every tile when K fits one block): straight-line stores
    from the registers, no masks or staging (small-K products spend a tenth of their time here) -- four
    variants, bias or not, bf16 O or float32 C, so a product without a bias spends no add on it."""
    mr, nv = tile.mr, tile.nv
    variants = [(b, o, f.fresh(f"q{'b' if b else ''}{'o' if o else 'c'}"))
                for b in (True, False) for o in (True, False)]
    sel_o = f.fresh("qsel")
    f.emit(f"br i1 {hasb}, label %{sel_o}b, label %{sel_o}n")
    for b in (True, False):
        f.label(f"{sel_o}{'b' if b else 'n'}")
        to_o, to_c = (next(lab for bb, oo, lab in variants if bb == b and oo == o) for o in (True, False))
        f.emit(f"br i1 {wo}, label %{to_o}, label %{to_c}")
    for with_bias, to_bf16, lab in variants:
        f.label(lab)
        bvals = []
        if with_bias:
            for j in range(nv):
                bidx = f.tmp(f"add i64 {jr}, {16 * j}")
                bptr = f.tmp(f"getelementptr i16, ptr %bias, i64 {bidx}")
                bvals.append(_widen_bf16(f, f.tmp(f"load <16 x i16>, ptr {bptr}, align 2")))
        for i in range(mr):
            row = f.tmp(f"add i64 {ir_}, {i}")
            base = f.tmp(f"mul i64 {row}, {'%ldo' if to_bf16 else '%ldc'}")
            base = f.tmp(f"add i64 {base}, {jr}")
            for j in range(nv):
                p = f.tmp(f"getelementptr {_V16F}, ptr {acc}, i64 {i * nv + j}")
                v = f.tmp(f"load {_V16F}, ptr {p}, align 64")
                if with_bias:
                    v = f.tmp(f"fadd {_V16F} {v}, {bvals[j]}")
                idx = f.tmp(f"add i64 {base}, {16 * j}")
                if to_bf16:
                    ptr = f.tmp(f"getelementptr i16, ptr %o, i64 {idx}")
                    f.emit(f"store <16 x i16> {_round_bf16(f, v, native=cfg.dpbf16)}, ptr {ptr}, align 2")
                else:
                    ptr = f.tmp(f"getelementptr float, ptr %c, i64 {idx}")
                    f.emit(f"store {_V16F} {v}, ptr {ptr}, align 4")
        f.emit(f"br label %{tile_end}")


def _store_edge(f: _Fn, cfg: GemmConfig, tile: Tile, acc: str, stage: str, ir_: str, jr: str, mrem: str, ncl: str,
                accum: str, hasb: str, wo: str) -> None:
    """Any tile (an edge tile, partial sums to add): rows past the edge are skipped, columns past it masked
    off (AVX-512 masked loads/stores never touch masked lanes), so nothing outside [M, N] is read or
    written; adds the float32 partial sums in C (accum) and the bias (hasb), writes O (wo) or C."""
    mr, nv = tile.mr, tile.nv
    masks = _col_masks(f, ncl, nv)
    # the accumulators go to a staging array read by a row loop (one copy of the store code instead of
    # MR; `acc` keeps constant indices only, so it still lives in registers during the K loop)
    for q in range(mr * nv):
        p = f.tmp(f"getelementptr {_V16F}, ptr {acc}, i64 {q}")
        v = f.tmp(f"load {_V16F}, ptr {p}, align 64")
        sp = f.tmp(f"getelementptr {_V16F}, ptr {stage}, i64 {q}")
        f.emit(f"store {_V16F} {v}, ptr {sp}, align 64")
    i, close_row = f.loop("0", _min(f, mrem, str(mr)), "1", "row")
    row = f.tmp(f"add i64 {ir_}, {i}")
    crow = f.tmp(f"mul i64 {row}, %ldc")
    crow = f.tmp(f"add i64 {crow}, {jr}")
    orow = f.tmp(f"mul i64 {row}, %ldo")
    orow = f.tmp(f"add i64 {orow}, {jr}")
    sbase = f.tmp(f"mul i64 {i}, {nv}")
    for j in range(nv):
        m = masks[j]
        q = f.tmp(f"add i64 {sbase}, {j}")
        p = f.tmp(f"getelementptr {_V16F}, ptr {stage}, i64 {q}")
        cidx = f.tmp(f"add i64 {crow}, {16 * j}")
        cp = f.tmp(f"getelementptr float, ptr %c, i64 {cidx}")
        close = f.if_(accum, "acc")
        v = f.tmp(f"load {_V16F}, ptr {p}, align 64", "v")
        old = f.tmp(f"call {_V16F} @llvm.masked.load.v16f32.p0(ptr {cp}, i32 4, <16 x i1> {m}, "
                    f"{_V16F} zeroinitializer)")
        f.emit(f"store {_V16F} {f.tmp(f'fadd {_V16F} {v}, {old}')}, ptr {p}, align 64")
        close()
        close = f.if_(hasb, "bias")
        v = f.tmp(f"load {_V16F}, ptr {p}, align 64")
        bidx = f.tmp(f"add i64 {jr}, {16 * j}")
        bptr = f.tmp(f"getelementptr i16, ptr %bias, i64 {bidx}")
        bh = _masked_load(f, "<16 x i16>", bptr, 2, m, native=True)
        f.emit(f"store {_V16F} {f.tmp(f'fadd {_V16F} {v}, {_widen_bf16(f, bh)}')}, ptr {p}, align 64")
        close()
        v = f.tmp(f"load {_V16F}, ptr {p}, align 64")
        wo_b, wc_b, w_done = f.fresh("wo"), f.fresh("wc"), f.fresh("wdone")
        f.emit(f"br i1 {wo}, label %{wo_b}, label %{wc_b}")
        f.label(wo_b)
        oidx = f.tmp(f"add i64 {orow}, {16 * j}")
        op = f.tmp(f"getelementptr i16, ptr %o, i64 {oidx}")
        # (masked even on AVX2: the whole-vector branch of `_masked_store` here cost 20% on 1024^3 there)
        _masked_store(f, "<16 x i16>", _round_bf16(f, v, native=cfg.dpbf16), op, 2, m, native=True)
        f.emit(f"br label %{w_done}")
        f.label(wc_b)
        f.emit(f"call void @llvm.masked.store.v16f32.p0({_V16F} {v}, ptr {cp}, i32 4, <16 x i1> {m})")
        f.emit(f"br label %{w_done}")
        f.label(w_done)
    close_row()


# ------------------------------------------------------------------------------------- drivers
class _Out:
    """A product's outputs as a driver sees them (%c float32, %o bf16, %bias bf16: each may be null) and
    the gemm_block flags of its last K block (2: add the bias, 4: write O)."""

    def __init__(self, f: _Fn):
        self.f = f
        self.has = {k: f.tmp(f"icmp ne ptr %{k}, null", f"has{k}") for k in ("c", "o", "bias")}
        fb = f.tmp(f"select i1 {self.has['bias']}, i32 2, i32 0")
        fo = f.tmp(f"select i1 {self.has['o']}, i32 4, i32 0")
        self.flags = f.tmp(f"or i32 {fb}, {fo}", "fin")

    def at(self, c_off: str | None = None, o_off: str | None = None, bias_off: str | None = None) -> tuple:
        """(c, o, bias) moved on by these element offsets (None: where they are); a null one stays null."""
        out = []
        for k, elt, off in (("c", "float", c_off), ("o", "i16", o_off), ("bias", "i16", bias_off)):
            p = f"%{k}"
            if off is not None:
                moved = self.f.tmp(f"getelementptr {elt}, ptr {p}, i64 {off}")
                p = self.f.tmp(f"select i1 {self.has[k]}, ptr {moved}, ptr null")
            out.append(p)
        return tuple(out)


def _k_blocks(f: _Fn, cfg: GemmConfig, nr: int):
    """for pc in [0, K) step KC, over packed B of panels nr wide: returns (pc, kcb: the block's K rows,
    kpc: its pairs, last: i1, bq: the block's packed B at %bp, close)."""
    npb = _cdiv(f, "%N", str(nr))
    qstride = f.tmp(f"mul i64 {npb}, {cfg.kc // 2 * nr}")
    pc, close = f.loop("0", "%K", str(cfg.kc), "pc")
    krem = f.tmp(f"sub i64 %K, {pc}")
    kcb = _min(f, krem, str(cfg.kc))
    kpc = f.tmp(f"lshr i64 {f.tmp(f'add i64 {kcb}, 1')}, 1", "kpc")
    last = f.tmp(f"icmp sle i64 {krem}, {cfg.kc}", "lastk")
    q = f.tmp(f"udiv i64 {pc}, {cfg.kc}")
    bq = f.tmp(f"getelementptr {cfg.unit}, ptr %bp, i64 {f.tmp(f'mul i64 {q}, {qstride}')}", "bq")
    return pc, kcb, kpc, last, bq, close


def _emit_pack_b(cfg: GemmConfig, tile: Tile) -> str:
    f = _Fn(f"define void @pack_b_{tile.tag}(ptr noalias %b, i64 %ls, i64 %ks, i32 %words, i64 %N, i64 %K, i64 %p0, "
            f"i64 %p1, ptr noalias %bp) {_NOINLINE}")
    nr = tile.nr
    lane0 = f.tmp(f"mul i64 %p0, {nr}")
    nl = f.tmp(f"mul i64 {f.tmp('sub i64 %p1, %p0')}, {nr}")
    pc, kcb, kpc, _, bq, close = _k_blocks(f, cfg, nr)
    poff = f.tmp(f"mul i64 {f.tmp(f'mul i64 %p0, {kpc}')}, {nr}")     # panel p0 of this K block
    dst = f.tmp(f"getelementptr {cfg.unit}, ptr {bq}, i64 {poff}")
    f.emit(f"call void @pack(ptr %b, i64 %ls, i64 %ks, i32 %words, i64 %N, i64 %K, i64 {lane0}, "
           f"i64 {nl}, i64 {pc}, i64 {kcb}, ptr {dst}, i64 {nr})")
    close()
    return f.text()


def _emit_rows(cfg: GemmConfig, tile: Tile) -> str:
    """gemm_rows_<tag>: rows [m0, m1) of the product, in blocks of at most MC rows (A packed per block, or
    read in place), each block over B's panels in groups of %gpan.  %share null: %bp holds all of B packed.
    Else several threads, each calling gemm_rows once, share the product (%share: i64 [group counter,
    row counter = m0, one flag per group], set by the caller):
      * B: each call first claims groups of panels from the group counter and packs them into %bp (all K
        blocks), flagging each when done; then a group whose flag is not yet set -- another thread is still
        packing it, or was descheduled doing so -- is packed again, for the K block at hand, into the
        thread's own %bpriv (B from %b, %bls, %bks, %bw) instead of waiting: nobody ever waits, and nobody
        packs B twice in the common case.  The sums are the same whichever copy a tile reads.
      * rows: claimed from the row counter in chunks of a 1/%rdiv of what is left (whole tiles, at least
        4 tiles' rows, at most one MC block), so that the chunks shrink towards the end and the threads
        finish together; the claiming is here, not in Python, because each Python call after a kernel
        that swept the caches costs tens of microseconds (a [1024,128]@[128,384] product split in 8 Python
        chunks took a third more CPU time than on one thread)."""
    f = _Fn(f"define void @gemm_rows_{tile.tag}(ptr noalias %a, i64 %ls, i64 %ks, i32 %words, ptr %bp, i64 %M, "
            "i64 %N, i64 %K, i64 %m0, i64 %m1, ptr noalias %c, i64 %ldc, ptr noalias %o, i64 %ldo, "
            "ptr noalias %bias, ptr noalias %ap, ptr noalias %b, i64 %bls, i64 %bks, i32 %bw, ptr %share, "
            f"i64 %gpan, ptr noalias %bpriv, i64 %rdiv) {_NOINLINE}")
    nr, mc = tile.nr, cfg.mc
    npb = _cdiv(f, "%N", str(nr))
    shared = f.tmp("icmp ne ptr %share, null", "shared")
    gpan = f.tmp(f"select i1 {shared}, i64 %gpan, i64 {npb}", "gpan")
    ngr = _cdiv(f, npb, gpan)
    # ---- claim and pack groups of B's panels (shared only)
    close_s = f.if_(shared, "claim")
    head, go, stop = f.fresh("claim"), f.fresh("pack"), f.fresh("claimed")
    f.emit(f"br label %{head}")
    f.label(head)       # until the counter runs past the last group
    g = f.tmp("atomicrmw add ptr %share, i64 1 monotonic, align 8", "g")
    f.emit(f"br i1 {f.tmp(f'icmp slt i64 {g}, {ngr}')}, label %{go}, label %{stop}")
    f.label(go)
    p0 = f.tmp(f"mul i64 {g}, {gpan}")
    p1 = _min(f, f.tmp(f"add i64 {p0}, {gpan}"), npb)
    f.emit(f"call void @pack_b_{tile.tag}(ptr %b, i64 %bls, i64 %bks, i32 %bw, i64 %N, i64 %K, i64 {p0}, i64 {p1}, "
           "ptr %bp)")
    flag = f.tmp(f"getelementptr i64, ptr %share, i64 {f.tmp(f'add i64 {g}, 2')}")
    f.emit(f"store atomic i64 1, ptr {flag} release, align 8")
    f.emit(f"br label %{head}")
    f.label(stop)
    close_s()
    out = _Out(f)
    # A read in place (no packing) when it is K-contiguous, K is even (no pair straddles a row's end)
    # and the product has few columns (packing buys reuse across column panels only)
    kodd = f.tmp("and i64 %K, 1")
    direct = f.tmp("icmp eq i32 %words, 1")      # (not a float32 A: words & 2)
    direct = f.tmp(f"and i1 {direct}, {f.tmp(f'icmp eq i64 {kodd}, 0')}")
    direct = f.tmp(f"and i1 {direct}, {f.tmp(f'icmp sle i64 %N, {cfg.direct_a_max_n}')}", "direct")
    # ---- claim rows [r0, r1): all of [m0, m1) at once (a private counter, one claim), or chunks from %share
    dynamic = f.tmp(f"and i1 {shared}, {f.tmp('icmp sgt i64 %rdiv, 0')}", "dynamic")
    mine = f.alloca("i64", "next")
    f.emit(f"store i64 %m0, ptr {mine}")
    counter = f.tmp(f"select i1 {dynamic}, ptr {f.tmp('getelementptr i64, ptr %share, i64 1')}, ptr {mine}")
    rdiv = f.tmp(f"select i1 {dynamic}, i64 %rdiv, i64 1")
    head, try_, work, done = f.fresh("rclaim"), f.fresh("rtry"), f.fresh("rwork"), f.fresh("rdone")
    f.emit(f"br label %{head}")
    f.label(head)
    r0 = f.tmp(f"load atomic i64, ptr {counter} monotonic, align 8", "r0")
    f.emit(f"br i1 {f.tmp(f'icmp sge i64 {r0}, %m1')}, label %{done}, label %{try_}")
    f.label(try_)
    left = f.tmp(f"sub i64 %m1, {r0}")
    size = f.tmp(f"mul i64 {_cdiv(f, _cdiv(f, left, rdiv), str(tile.mr))}, {tile.mr}")
    size = f.tmp(f"select i1 {f.tmp(f'icmp slt i64 {size}, {4 * tile.mr}')}, i64 {4 * tile.mr}, i64 {size}")
    # (claimed: at most one block -- a thread descheduled holding a chunk leaves the others at most that)
    size = _min(f, size, f.tmp(f"select i1 {dynamic}, i64 {mc}, i64 {size}"))
    r1 = _min(f, f.tmp(f"add i64 {r0}, {size}"), "%m1")
    got = f.tmp(f"cmpxchg ptr {counter}, i64 {r0}, i64 {r1} monotonic monotonic, align 8")
    f.emit(f"br i1 {f.tmp(f'extractvalue {{ i64, i1 }} {got}, 1')}, label %{work}, label %{head}")
    f.label(work)
    # blocks of even size (whole tiles, at most MC rows): a chunk of rows is no MC-sized blocks and a
    # sliver, which reads all of B for a few rows
    nrows = f.tmp(f"sub i64 {r1}, {r0}")
    bsz = _cdiv(f, nrows, _cdiv(f, nrows, str(mc)))
    bsz = f.tmp(f"mul i64 {_cdiv(f, bsz, str(tile.mr))}, {tile.mr}", "bsz")
    ic, close_i = f.loop(r0, r1, bsz, "ic")
    mcb = _min(f, f.tmp(f"sub i64 {r1}, {ic}"), bsz)
    pc, kcb, kpc, last, bq, close_p = _k_blocks(f, cfg, nr)
    close_pa = f.if_(f.tmp(f"xor i1 {direct}, true"), "packa")
    f.emit(f"call void @pack(ptr %a, i64 %ls, i64 %ks, i32 %words, i64 %M, i64 %K, i64 {ic}, "
           f"i64 {mcb}, i64 {pc}, i64 {kcb}, ptr %ap, i64 {tile.mr})")
    close_pa()
    first = f.tmp(f"icmp eq i64 {pc}, 0")
    flags = f.tmp(f"select i1 {first}, i32 0, i32 1")
    flags = f.tmp(f"or i32 {flags}, {f.tmp(f'select i1 {last}, i32 {out.flags}, i32 0')}", "flags")
    crow, orow = f.tmp(f"mul i64 {ic}, %ldc"), f.tmp(f"mul i64 {ic}, %ldo")
    aoff = f.tmp(f"add i64 {f.tmp(f'mul i64 {ic}, %ls')}, {pc}")
    a0 = f.tmp(f"getelementptr i16, ptr %a, i64 {aoff}")
    # ---- the block over each group of panels
    gi, close_g = f.loop("0", ngr, "1", "grp")
    p0 = f.tmp(f"mul i64 {gi}, {gpan}")
    p1 = _min(f, f.tmp(f"add i64 {p0}, {gpan}"), npb)
    col0 = f.tmp(f"mul i64 {p0}, {nr}", "col0")
    ncols = _min(f, f.tmp(f"sub i64 %N, {col0}"), f.tmp(f"mul i64 {f.tmp(f'sub i64 {p1}, {p0}')}, {nr}"))
    bsrc = f.alloca("ptr", "bsrc")
    goff = f.tmp(f"mul i64 {f.tmp(f'mul i64 {p0}, {kpc}')}, {nr}")
    f.emit(f"store ptr {f.tmp(f'getelementptr {cfg.unit}, ptr {bq}, i64 {goff}')}, ptr {bsrc}")
    flag = f.tmp(f"getelementptr i64, ptr %share, i64 {f.tmp(f'add i64 {gi}, 2')}")
    close_sh = f.if_(shared, "chk")
    ready = f.tmp(f"icmp ne i64 {f.tmp(f'load atomic i64, ptr {flag} acquire, align 8')}, 0")
    close_nr = f.if_(f.tmp(f"xor i1 {ready}, true"), "own")
    f.emit(f"call void @pack(ptr %b, i64 %bls, i64 %bks, i32 %bw, i64 %N, i64 %K, i64 {col0}, i64 {ncols}, i64 {pc}, "
           f"i64 {kcb}, ptr %bpriv, i64 {nr})")
    f.emit(f"store ptr %bpriv, ptr {bsrc}")
    close_nr()
    close_sh()
    bg = f.tmp(f"load ptr, ptr {bsrc}")
    cg_, og, biasg = out.at(f.tmp(f"add i64 {crow}, {col0}"), f.tmp(f"add i64 {orow}, {col0}"), col0)
    rest = (f"i64 {mcb}, i64 {ncols}, i64 {kpc}, ptr {cg_}, i64 %ldc, ptr {og}, i64 %ldo, ptr {biasg}, "
            f"i32 {flags})")
    blk, blkd, joined = f.fresh("blk"), f.fresh("blkd"), f.fresh("blkdone")
    f.emit(f"br i1 {direct}, label %{blkd}, label %{blk}")
    f.label(blk)
    f.emit(f"call void @gemm_block_{tile.tag}(ptr %ap, ptr {bg}, {rest}")
    f.emit(f"br label %{joined}")
    f.label(blkd)
    f.emit(f"call void @gemm_blockd_{tile.tag}(ptr {a0}, i64 %ls, ptr {bg}, {rest}")
    f.emit(f"br label %{joined}")
    f.label(joined)
    close_g()
    close_p()
    close_i()
    f.emit(f"br label %{head}")
    f.label(done)
    return f.text()


# gemm_rows' trailing arguments when %bp already holds all of B
_UNSHARED = "ptr null, i64 0, i64 0, i32 0, ptr null, i64 0, ptr null, i64 0"


def _cdiv(f: _Fn, x: str, y: str) -> str:
    """ceil(x / y) of two non-negative i64 (y > 0)."""
    y1 = f.tmp(f"sub i64 {y}, 1")
    return f.tmp(f"udiv i64 {f.tmp(f'add i64 {x}, {y1}')}, {y}")


def _min(f: _Fn, x: str, y: str) -> str:
    """min(x, y) of two i64."""
    return f.tmp(f"select i1 {f.tmp(f'icmp slt i64 {x}, {y}')}, i64 {x}, i64 {y}")


def _emit_cols_b(cfg: GemmConfig, tile: Tile) -> str:
    """gemm_colsb_<tag>(ptr a, i64 als, i64 aks, i32 aw, ptr b, i64 ldb, i64 M, i64 N, i64 K, ptr c, i64 ldc,
    ptr o, i64 ldo, ptr bias, ptr ap, ptr stage, ptr share): the whole product of a bf16 B with unit column stride,
    M <= the tile's row block and K <= KC (the runtime checks), without packing B: A is packed once,
    then B goes through `stage` cfg.stage_cols columns at a time -- each row's piece copied in turn (one
    stream at a time), stage_cols + 32 elements apart -- and gemm_blockb reads the pieces there.
    Read where they lie, B's rows, a power-of-two-ish multiple of 4 KiB apart in a convolution's
    [C*k*k, N*L] (36864 columns: 72 KiB), share one L1 set: every tile's K lines then missed (2.6x slower).
    share: null, or an i64 counter (0) from which the threads that run one call each claim the pieces."""
    f = _Fn(f"define void @gemm_colsb_{tile.tag}(ptr noalias %a, i64 %als, i64 %aks, i32 %aw, ptr noalias %b, "
            "i64 %ldb, i64 %M, i64 %N, i64 %K, ptr noalias %c, i64 %ldc, ptr noalias %o, i64 %ldo, ptr noalias %bias, "
            f"ptr noalias %ap, ptr noalias %stage, ptr %share) {_NOINLINE}")
    cols, lds = cfg.stage_cols, cfg.stage_cols + 32
    f.emit(f"call void @pack(ptr %a, i64 %als, i64 %aks, i32 %aw, i64 %M, i64 %K, i64 0, i64 %M, i64 0, i64 %K, "
           f"ptr %ap, i64 {tile.mr})")
    kpc = f.tmp(f"lshr i64 {f.tmp('add i64 %K, 1')}, 1")
    out = _Out(f)
    n0, close = _claims(f, "%share", "0", "%N", str(cols), "n0")
    nn = _min(f, f.tmp(f"sub i64 %N, {n0}"), str(cols))
    src0 = f.tmp(f"getelementptr i16, ptr %b, i64 {n0}")
    k, close_k = f.loop("0", "%K", "1", "sk")
    srow = f.tmp(f"getelementptr i16, ptr {src0}, i64 {f.tmp(f'mul i64 {k}, %ldb')}")
    drow = f.tmp(f"getelementptr i16, ptr %stage, i64 {f.tmp(f'mul i64 {k}, {lds}')}")
    for v in range(0, cols, 16):     # masked past the matrix's last column
        m = _col_masks(f, f.tmp(f"trunc i64 {f.tmp(f'sub i64 {nn}, {v}')} to i32"), 1)[0]
        x = _load16(f, srow, v, m)
        f.emit(f"store <16 x i16> {x}, ptr {f.tmp(f'getelementptr i16, ptr {drow}, i64 {v}')}, align 2")
    close_k()
    cp, op, bp = out.at(n0, n0, n0)
    f.emit(f"call void @gemm_blockb_{tile.tag}(ptr %ap, ptr %stage, i64 {lds}, i64 %K, i64 %M, i64 {nn}, i64 {kpc}, "
           f"ptr {cp}, i64 %ldc, ptr {op}, i64 %ldo, ptr {bp}, i32 {out.flags})")
    close()
    return f.text()


def _emit_batch(cfg: GemmConfig, tile: Tile) -> str:
    """Products [b0, b1) of a batch, each packing its own B into bp (one call for a whole batch of
    small products: a convolution's per-image GEMMs, attention's per-head ones).  A broadcast A that
    fits one block (a convolution's weight) is packed once for the whole batch.  share: null, or an i64
    counter (b0) from which the threads that run one call each claim the products."""
    f = _Fn(f"define void @gemm_batch_{tile.tag}(ptr %a, i64 %abs, i64 %als, i64 %aks, i32 %aw, ptr %b, "
            "i64 %bbs, i64 %bls, i64 %bks, i32 %bw, i64 %b0, i64 %b1, i64 %M, i64 %N, i64 %K, ptr %c, "
            "i64 %cbs, i64 %ldc, ptr %o, i64 %obs, i64 %ldo, ptr %bias, ptr noalias %ap, ptr noalias %bp, "
            f"ptr %share) {_ATTRS}")
    n1 = f.tmp(f"add i64 %N, {tile.nr - 1}")
    npb = f.tmp(f"udiv i64 {n1}, {tile.nr}")
    # element sizes in bytes: 4 for a float32 operand (words & 2: rounded to bf16 as it is packed)
    asz = f.tmp(f"select i1 {f.tmp('icmp uge i32 %aw, 2')}, i64 4, i64 2")
    bsz = f.tmp(f"select i1 {f.tmp('icmp uge i32 %bw, 2')}, i64 4, i64 2")
    out = _Out(f)       # (its flags: one K block, no partial sums to add)
    a0 = f.tmp("icmp eq i64 %abs, 0")
    a1 = f.tmp(f"icmp sle i64 %M, {cfg.mc}")
    a2 = f.tmp(f"icmp sle i64 %K, {cfg.kc}")
    once = f.tmp(f"and i1 {a0}, {a1}")
    once = f.tmp(f"and i1 {once}, {a2}", "aonce")
    k1 = f.tmp("add i64 %K, 1")
    kpc = f.tmp(f"lshr i64 {k1}, 1")
    close_once = f.if_(once, "packa")
    f.emit(f"call void @pack(ptr %a, i64 %als, i64 %aks, i32 %aw, i64 %M, i64 %K, i64 0, i64 %M, i64 0, i64 %K, "
           f"ptr %ap, i64 {tile.mr})")
    close_once()
    bi, close = _claims(f, "%share", "%b0", "%b1", "1", "bt")
    ao = f.tmp(f"mul i64 {bi}, %abs")
    ap_ = f.tmp(f"getelementptr i8, ptr %a, i64 {f.tmp(f'mul i64 {ao}, {asz}')}")
    bo = f.tmp(f"mul i64 {bi}, %bbs")
    bp_ = f.tmp(f"getelementptr i8, ptr %b, i64 {f.tmp(f'mul i64 {bo}, {bsz}')}")
    cp, op, _ = out.at(f.tmp(f"mul i64 {bi}, %cbs"), f.tmp(f"mul i64 {bi}, %obs"))
    f.emit(f"call void @pack_b_{tile.tag}(ptr {bp_}, i64 %bls, i64 %bks, i32 %bw, i64 %N, i64 %K, i64 0, "
           f"i64 {npb}, ptr %bp)")
    blk, rows, nxt = f.fresh("blk"), f.fresh("rows"), f.fresh("next")
    f.emit(f"br i1 {once}, label %{blk}, label %{rows}")
    f.label(blk)
    f.emit(f"call void @gemm_block_{tile.tag}(ptr %ap, ptr %bp, i64 %M, i64 %N, i64 {kpc}, ptr {cp}, i64 %ldc, "
           f"ptr {op}, i64 %ldo, ptr %bias, i32 {out.flags})")
    f.emit(f"br label %{nxt}")
    f.label(rows)
    f.emit(f"call void @gemm_rows_{tile.tag}(ptr {ap_}, i64 %als, i64 %aks, i32 %aw, ptr %bp, i64 %M, i64 %N, "
           f"i64 %K, i64 0, i64 %M, ptr {cp}, i64 %ldc, ptr {op}, i64 %ldo, ptr %bias, ptr %ap, {_UNSHARED})")
    f.emit(f"br label %{nxt}")
    f.label(nxt)
    close()
    return f.text()


def _emit_cols(cfg: GemmConfig, tile: Tile) -> str:
    """Columns of a product in chunks of %chunk: pack the chunk's B panels, then run every row over them,
    so the packed panels are still in cache when the micro-kernel reads them.  For products with one row
    block (few rows, many columns: a small convolution's forward), where each packed panel is read once
    -- packing all of B first streamed it out to memory and back.  share: null, or an i64 counter (0) from
    which the threads that run one call each claim the chunks (each packing its own B panels and all of A)."""
    f = _Fn(f"define void @gemm_cols_{tile.tag}(ptr %a, i64 %als, i64 %aks, i32 %aw, ptr %b, i64 %bls, i64 %bks, "
            "i32 %bw, i64 %M, i64 %N, i64 %K, ptr %c, i64 %ldc, ptr %o, i64 %ldo, ptr %bias, ptr noalias %ap, "
            f"ptr noalias %bp, i64 %chunk, ptr %share) {_ATTRS}")
    bsz = f.tmp(f"select i1 {f.tmp('icmp uge i32 %bw, 2')}, i64 4, i64 2")
    out = _Out(f)
    n0, close = _claims(f, "%share", "0", "%N", "%chunk", "n0")
    nn = _min(f, f.tmp(f"sub i64 %N, {n0}"), "%chunk")
    npan = _cdiv(f, nn, str(tile.nr))
    boff = f.tmp(f"mul i64 {f.tmp(f'mul i64 {n0}, %bls')}, {bsz}")
    bsrc = f.tmp(f"getelementptr i8, ptr %b, i64 {boff}")
    f.emit(f"call void @pack_b_{tile.tag}(ptr {bsrc}, i64 %bls, i64 %bks, i32 %bw, i64 {nn}, i64 %K, i64 0, "
           f"i64 {npan}, ptr %bp)")
    cp, op, bp = out.at(n0, n0, n0)
    f.emit(f"call void @gemm_rows_{tile.tag}(ptr %a, i64 %als, i64 %aks, i32 %aw, ptr %bp, i64 %M, i64 {nn}, "
           f"i64 %K, i64 0, i64 %M, ptr {cp}, i64 %ldc, ptr {op}, i64 %ldo, ptr {bp}, ptr %ap, {_UNSHARED})")
    close()
    return f.text()


# ------------------------------------------------------------------------------ inner products
def _emit_dot(cfg: GemmConfig) -> str:
    """gemm_dot(ptr a, i64 lda, ptr b, i64 ldb, i64 M, i64 N, i64 K, i64 j0, i64 j1, ptr c, i64 ldc,
    ptr o, i64 ldo, ptr bias, ptr acc): columns [j0, j1) of a product whose A rows and B columns are both
    K-contiguous (B given by its columns, %ldb apart) and whose K dwarfs M x N -- a weight gradient,
    [10,36864] @ [36864,25] -- as inner products: no packing, no padding of a 10 x 25 result to whole
    tiles.  dot_tile (RI x RJ) results at a time, each a 16-lane vector of partial sums (one vdpbf16ps per
    32 K values: the pairs of A's row and B's column line up), RI + RJ loads per RI * RJ instructions; K
    in blocks of dot_kb (A's and B's block rows stay in L2 across the tiles), the partial sums kept
    between blocks in %acc (M x (j1 - j0) vectors); then each result is the sum of its 16 lanes (+ bias),
    stored as float32 C or bf16 O.  Rows and columns past the edge repeat the last one (the same sums,
    stored to the same place)."""
    ri, rj = cfg.dot_tile
    kb = cfg.dot_kb
    f = _Fn("define void @gemm_dot(ptr noalias %a, i64 %lda, ptr noalias %b, i64 %ldb, i64 %M, i64 %N, i64 %K, "
            "i64 %j0, i64 %j1, ptr noalias %c, i64 %ldc, ptr noalias %o, i64 %ldo, ptr noalias %bias, "
            f"ptr noalias %acc) {_NOINLINE}")
    regs = f.alloca(f"[{ri * rj} x {_V16F}]", "regs", 64)
    nj = f.tmp("sub i64 %j1, %j0", "nj")
    mlast = f.tmp("sub i64 %M, 1")
    jlast = f.tmp("sub i64 %j1, 1")
    iota = "<" + ", ".join(f"i16 {x}" for x in range(32)) + ">"

    def slot(i: str, j: str) -> str:       # %acc's vector for result (i, j)
        q = f.tmp(f"add i64 {f.tmp(f'mul i64 {i}, {nj}')}, {f.tmp(f'sub i64 {j}, %j0')}")
        return f.tmp(f"getelementptr {_V16F}, ptr %acc, i64 {q}")

    def reg(r: int, s: int) -> str:
        return f.tmp(f"getelementptr {_V16F}, ptr {regs}, i64 {r * rj + s}")

    def step(arows: list, bcols: list, k: str, mask: str | None) -> None:
        """One 32-wide K step: every row's and column's 32 values, then RI x RJ instructions."""
        def load(base: str) -> str:
            p = f.tmp(f"getelementptr i16, ptr {base}, i64 {k}")
            if mask is None:
                v = f.tmp(f"load <32 x i16>, ptr {p}, align 2")
            else:
                v = f.tmp(f"call <32 x i16> @llvm.masked.load.v32i16.p0(ptr {p}, i32 2, <32 x i1> {mask}, "
                          "<32 x i16> zeroinitializer)")
            return f.tmp(f"bitcast <32 x i16> {v} to {_V16I}")
        av = [_operand(f, cfg, load(p)) for p in arows]
        for s_, bp in enumerate(bcols):
            bv = _operand(f, cfg, load(bp))
            for r in range(ri):
                p = reg(r, s_)
                cur = f.tmp(f"load {_V16F}, ptr {p}, align 64")
                f.emit(f"store {_V16F} {_dp(f, cfg, cur, av[r], bv)}, ptr {p}, align 64")

    k0, close_kb = f.loop("0", "%K", str(kb), "kb")
    kend = f.tmp(f"add i64 {k0}, {kb}")
    kend = f.tmp(f"select i1 {f.tmp(f'icmp slt i64 {kend}, %K')}, i64 {kend}, i64 %K", "kend")
    rem = f.tmp(f"and i64 {f.tmp(f'sub i64 {kend}, {k0}')}, 31")
    kfull = f.tmp(f"sub i64 {kend}, {rem}", "kfull")      # the block's whole 32-wide steps end here
    first = f.tmp(f"icmp eq i64 {k0}, 0")
    i, close_i = f.loop("0", "%M", str(ri), "di")
    rows, arows = [], []
    for r in range(ri):
        x = f.tmp(f"add i64 {i}, {r}")
        x = f.tmp(f"select i1 {f.tmp(f'icmp slt i64 {x}, %M')}, i64 {x}, i64 {mlast}")
        rows.append(x)
        arows.append(f.tmp(f"getelementptr i16, ptr %a, i64 {f.tmp(f'mul i64 {x}, %lda')}"))
    j, close_j = f.loop("%j0", "%j1", str(rj), "dj")
    cols, bcols = [], []
    for s_ in range(rj):
        x = f.tmp(f"add i64 {j}, {s_}")
        x = f.tmp(f"select i1 {f.tmp(f'icmp slt i64 {x}, %j1')}, i64 {x}, i64 {jlast}")
        cols.append(x)
        bcols.append(f.tmp(f"getelementptr i16, ptr %b, i64 {f.tmp(f'mul i64 {x}, %ldb')}"))
    for r in range(ri):
        for s_ in range(rj):
            old = f.tmp(f"load {_V16F}, ptr {slot(rows[r], cols[s_])}, align 4")
            old = f.tmp(f"select i1 {first}, {_V16F} zeroinitializer, {_V16F} {old}")
            f.emit(f"store {_V16F} {old}, ptr {reg(r, s_)}, align 64")
    k, close_k = f.loop(k0, kfull, "32", "dk")
    step(arows, bcols, k, None)
    close_k()
    tail = f.tmp(f"icmp slt i64 {kfull}, {kend}")
    close_t = f.if_(tail, "dtail")      # the last K values of the block, masked
    left = f.tmp(f"trunc i64 {f.tmp(f'sub i64 {kend}, {kfull}')} to i16")
    lv = f.tmp(f"insertelement <32 x i16> poison, i16 {left}, i64 0")
    lv = f.tmp(f"shufflevector <32 x i16> {lv}, <32 x i16> poison, <32 x i32> zeroinitializer")
    step(arows, bcols, kfull, f.tmp(f"icmp ult <32 x i16> {iota}, {lv}"))
    close_t()
    for r in range(ri):
        for s_ in range(rj):
            v = f.tmp(f"load {_V16F}, ptr {reg(r, s_)}, align 64")
            f.emit(f"store {_V16F} {v}, ptr {slot(rows[r], cols[s_])}, align 4")
    close_j()
    close_i()
    close_kb()
    # each result: the sum of its lanes (+ bias), float32 C or bf16 O
    hasb = f.tmp("icmp ne ptr %bias, null")
    haso = f.tmp("icmp ne ptr %o, null")
    i, close_i = f.loop("0", "%M", "1", "ri")
    j, close_j = f.loop("%j0", "%j1", "1", "rj")
    v = f.tmp(f"load {_V16F}, ptr {slot(i, j)}, align 4")
    v = f.tmp(f"call reassoc float @llvm.vector.reduce.fadd.v16f32(float -0.0, {_V16F} {v})")
    res = f.alloca("float", "res", 4)
    f.emit(f"store float {v}, ptr {res}")
    close_b = f.if_(hasb, "dbias")
    bh = f.tmp(f"load i16, ptr {f.tmp(f'getelementptr i16, ptr %bias, i64 {j}')}, align 2")
    f.emit(f"store float {f.tmp(f'fadd float {v}, {_widen_bf16(f, bh, 1)}')}, ptr {res}")
    close_b()
    v = f.tmp(f"load float, ptr {res}")
    wo, wc, wd = f.fresh("dwo"), f.fresh("dwc"), f.fresh("dwd")
    f.emit(f"br i1 {haso}, label %{wo}, label %{wc}")
    f.label(wo)
    oi = f.tmp(f"add i64 {f.tmp(f'mul i64 {i}, %ldo')}, {j}")
    f.emit(f"store i16 {_round_bf16(f, v, 1)}, ptr {f.tmp(f'getelementptr i16, ptr %o, i64 {oi}')}, align 2")
    f.emit(f"br label %{wd}")
    f.label(wc)
    ci = f.tmp(f"add i64 {f.tmp(f'mul i64 {i}, %ldc')}, {j}")
    f.emit(f"store float {v}, ptr {f.tmp(f'getelementptr float, ptr %c, i64 {ci}')}, align 4")
    f.emit(f"br label %{wd}")
    f.label(wd)
    close_j()
    close_i()
    return f.text()


# Slots of the plan `gemm_entry` reads (i64 each; the runtime fills them once per shape and layout)
# (nb > 0: a batch of nb products, a_bs / b_bs elements apart -- gemm_batch; else one product -- gemm_cols)
PLAN_SLOTS = ("data_offset", "a_ls", "a_ks", "a_w", "b_ls", "b_ks", "b_w", "M", "N", "K", "c", "ldc",
              "out_f32", "has_bias", "ap", "bp", "chunk", "nb", "a_bs", "b_bs")


def _emit_entry(tile: Tile, colsb: bool = False) -> str:
    """gemm_entry_<tag>(ptr plan, ptr a, ptr b, ptr out, ptr bias): gemm_cols (gemm_batch when plan.nb > 0:
    products [0, nb) into out[nb, M, N]) with every argument but the
    four arrays read from a plan (PLAN_SLOTS), the arrays passed as numpy objects whose data pointer
    lies plan.data_offset bytes in (numpy's C ABI: PyArrayObject's `data`; the runtime checks the offset).
    For small products, where a ctypes call of 19 converted integers (~3.5 us) and four
    `__array_interface__` look-ups (~1 us each) cost as much as the product itself.
    colsb: gemm_entryb_<tag>, the same for gemm_colsb (slot b_ks is its %ldb, bp its stage)."""
    f = _Fn(f"define void @gemm_entry{'b' if colsb else ''}_{tile.tag}(ptr noalias %plan, ptr %ha, ptr %hb, "
            f"ptr %hout, ptr %hbias) {_ATTRS}")
    slot = {}
    for i, name in enumerate(PLAN_SLOTS):
        slot[name] = f.tmp(f"load i64, ptr {f.tmp(f'getelementptr i64, ptr %plan, i64 {i}')}, align 8", name)

    def data(h: str) -> str:
        field = f.tmp(f"getelementptr i8, ptr {h}, i64 {slot['data_offset']}")
        return f.tmp(f"load ptr, ptr {field}, align 8")
    a, b, out = data("%ha"), data("%hb"), data("%hout")
    f32 = f.tmp(f"icmp ne i64 {slot['out_f32']}, 0")
    cws = f.tmp(f"inttoptr i64 {slot['c']} to ptr")
    c = f.tmp(f"select i1 {f32}, ptr {out}, ptr {cws}")
    o = f.tmp(f"select i1 {f32}, ptr null, ptr {out}")
    ldc = f.tmp(f"select i1 {f32}, i64 {slot['N']}, i64 {slot['ldc']}")
    hasb = f.tmp(f"icmp ne i64 {slot['has_bias']}, 0")
    bias = f.alloca("ptr", "bias")
    f.emit(f"store ptr null, ptr {bias}")
    close = f.if_(hasb, "bias")      # never read through %hbias without a bias (it is Python's None)
    f.emit(f"store ptr {data('%hbias')}, ptr {bias}")
    close()
    bias = f.tmp(f"load ptr, ptr {bias}")
    ap = f.tmp(f"inttoptr i64 {slot['ap']} to ptr")
    bp = f.tmp(f"inttoptr i64 {slot['bp']} to ptr")
    aw = f.tmp(f"trunc i64 {slot['a_w']} to i32")
    bw = f.tmp(f"trunc i64 {slot['b_w']} to i32")
    if colsb:
        f.emit(f"call void @gemm_colsb_{tile.tag}(ptr {a}, i64 {slot['a_ls']}, i64 {slot['a_ks']}, i32 {aw}, ptr {b}, "
               f"i64 {slot['b_ks']}, i64 {slot['M']}, i64 {slot['N']}, i64 {slot['K']}, ptr {c}, i64 {ldc}, ptr {o}, "
               f"i64 {slot['N']}, ptr {bias}, ptr {ap}, ptr {bp}, ptr null)")
        return f.text()
    batched = f.tmp(f"icmp sgt i64 {slot['nb']}, 0")
    bt, one, end = f.fresh("batch"), f.fresh("one"), f.fresh("end")
    f.emit(f"br i1 {batched}, label %{bt}, label %{one}")
    f.label(bt)
    mn = f.tmp(f"mul i64 {slot['M']}, {slot['N']}")
    f.emit(f"call void @gemm_batch_{tile.tag}(ptr {a}, i64 {slot['a_bs']}, i64 {slot['a_ls']}, i64 {slot['a_ks']}, "
           f"i32 {aw}, ptr {b}, i64 {slot['b_bs']}, i64 {slot['b_ls']}, i64 {slot['b_ks']}, i32 {bw}, i64 0, "
           f"i64 {slot['nb']}, i64 {slot['M']}, i64 {slot['N']}, i64 {slot['K']}, ptr {c}, i64 {mn}, i64 {ldc}, "
           f"ptr {o}, i64 {mn}, i64 {slot['N']}, ptr {bias}, ptr {ap}, ptr {bp}, ptr null)")
    f.emit(f"br label %{end}")
    f.label(one)
    f.emit(f"call void @gemm_cols_{tile.tag}(ptr {a}, i64 {slot['a_ls']}, i64 {slot['a_ks']}, i32 {aw}, ptr {b}, "
           f"i64 {slot['b_ls']}, i64 {slot['b_ks']}, i32 {bw}, i64 {slot['M']}, i64 {slot['N']}, i64 {slot['K']}, "
           f"ptr {c}, i64 {ldc}, ptr {o}, i64 {slot['N']}, ptr {bias}, ptr {ap}, ptr {bp}, i64 {slot['chunk']}, "
           "ptr null)")
    f.emit(f"br label %{end}")
    f.label(end)
    return f.text()


# ---------------------------------------------------------------------------------- conversions
def _emit_convert(to_bf16: bool) -> str:
    """cvt_f32_bf16(ptr src, ptr dst, i64 n): n float32 -> bfloat16 with the epilogue's integer rounding
    (nearest even, NaN -> 0x7FC0, denormals kept: PyTorch's and ml_dtypes' cast, bit for bit);
    cvt_bf16_f32: the exact widening.  16 lanes a step, the tail masked.  Eager autocast casts every
    activation and gradient: numpy's astype takes ~1 ns an element for bfloat16, these ~0.05."""
    name, src_t, dst_t = ("cvt_f32_bf16", _V16F, "<16 x i16>") if to_bf16 else ("cvt_bf16_f32", "<16 x i16>", _V16F)
    f = _Fn(f"define void @{name}(ptr noalias %src, ptr noalias %dst, i64 %n) {_ATTRS}")
    src_sz, dst_sz = (4, 2) if to_bf16 else (2, 4)
    i, close = f.loop("0", "%n", "16", "i")
    left = f.tmp(f"trunc i64 {f.tmp(f'sub i64 %n, {i}')} to i32")
    m = _lanes_below(f, left)
    sp = f.tmp(f"getelementptr i{8 * src_sz}, ptr %src, i64 {i}")
    dp = f.tmp(f"getelementptr i{8 * dst_sz}, ptr %dst, i64 {i}")
    if to_bf16:
        v = _masked_load(f, _V16F, sp, 4, m)
        _masked_store(f, "<16 x i16>", _round_bf16(f, v), dp, 2, m)
    else:
        v = _masked_load(f, "<16 x i16>", sp, 2, m)
        _masked_store(f, _V16F, _widen_bf16(f, v), dp, 4, m)
    close()
    return f.text()


def emit_module(cfg: GemmConfig, triple: str = "", data_layout: str = "") -> str:
    """The module text (see the module docstring)."""
    cfg.check()
    with _masked_moves(cfg.masked16):    # the packing and the casts' moves (the epilogue's stay masked)
        return _emit_module(cfg, triple, data_layout)


def _emit_module(cfg: GemmConfig, triple: str, data_layout: str) -> str:
    head = module_head(triple, data_layout)
    decls = ([f"declare {_V16F} @llvm.x86.avx512bf16.dpbf16ps.512({_V16F}, <32 x bfloat>, <32 x bfloat>)",
              f"declare <16 x bfloat> @llvm.x86.avx512bf16.cvtneps2bf16.512({_V16F})"]
             if cfg.dpbf16 else [f"declare {_V16F} @llvm.fma.v16f32({_V16F}, {_V16F}, {_V16F})"])
    decls += [f"declare {_V16F} @llvm.masked.load.v16f32.p0(ptr, i32, <16 x i1>, {_V16F})",
              "declare <16 x i16> @llvm.masked.load.v16i16.p0(ptr, i32, <16 x i1>, <16 x i16>)",
              f"declare void @llvm.masked.store.v16f32.p0({_V16F}, ptr, i32, <16 x i1>)",
              f"declare void @llvm.masked.store.v16i32.p0({_V16I}, ptr, i32, <16 x i1>)",
              "declare void @llvm.masked.store.v16i16.p0(<16 x i16>, ptr, i32, <16 x i1>)",
              "declare <32 x i16> @llvm.masked.load.v32i16.p0(ptr, i32, <32 x i1>, <32 x i16>)",
              f"declare float @llvm.vector.reduce.fadd.v16f32(float, {_V16F})"]
    parts = head + decls + [_emit_pack_dispatch(), _emit_pack(cfg), _emit_pack(cfg, f32=True),
                            _emit_convert(True), _emit_convert(False)]
    for t in cfg.tiles:
        parts += [_emit_block(cfg, t), _emit_block(cfg, t, direct=True), _emit_pack_b(cfg, t), _emit_rows(cfg, t),
                  _emit_batch(cfg, t), _emit_cols(cfg, t), _emit_entry(t)]
    for t in cfg.direct_b_tiles:
        parts += [_emit_block(cfg, t, b_rows=True), _emit_cols_b(cfg, t), _emit_entry(t, colsb=True)]
    parts.append(_emit_dot(cfg))
    parts.append(ATTRIBUTES)
    parts.append('attributes #1 = { nounwind noinline "prefer-vector-width"="512" }')
    return "\n\n".join(parts) + "\n"
