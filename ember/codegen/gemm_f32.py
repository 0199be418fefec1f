"""LLVM IR for ember's float32 matrix products.  Pure text.

In: the register tiles to emit (a `TileSet`; `tile_set(vector_bits)` picks AVX-512's or AVX2's).
Out: `emit_module(...)`, one LLVM module of C-callable functions that
the runtime (ember/runtime/gemm_f32.py) compiles once per process and calls on numpy buffers.

Three kernels, all around one register tile (`_tile_product`: an MR x NR tile of C, NR = 16 * nv float
lanes, lives in registers for a whole contraction; per k nv vectors of B's row k and one broadcast A value
per row, MR * nv FMAs) or around inner products:

  * outer form, `sgemm_outer_<MR>x<NR>`, for B with unit column stride, read in place: the thin products
    OpenBLAS handles badly ([20, 250] @ [250, 4096]: its packing is a full pass over the big operand and its
    tiles do not fit a 10- or 20-row product).  Row tiles outermost; columns past N masked (AVX-512 masked
    loads and stores); rows past M read the last row and are not stored.  sgemm_outerp / sgemm_outerg copy
    column blocks of B (or of an im2col gathered on the fly) into an L2 panel first.

        void sgemm_outer_<tag>(ptr a, i64 sam, i64 sak, ptr b, i64 sbk, ptr c, i64 ldc,
                               i64 m0, i64 m1, i64 n0, i64 n1, i64 K, i32 accumulate)

  * dot form, `sgemm_dot_<RA>x<RB>`, for A and B both contiguous along K (A row-major, B a transposed
    view such as a Linear weight): RA x RB dot products at once, 16 k at a time, each accumulator
    reduced across its lanes at the end; a K range [k0, k1) per call so the caller blocks K for the
    caches and splits it across threads.

        void sgemm_dot_<tag>(ptr a, i64 sam, ptr b, i64 sbn, ptr c, i64 ldc,
                             i64 m0, i64 m1, i64 n0, i64 n1, i64 k0, i64 k1, i32 accumulate)

  * packed form, for the large products (the GPT step's, square ones): B packed once per call into panels of
    NR columns per K block of kc rows (`sgemm_packb`: rows copied, a K-contiguous B -- x @ W^T -- transposed
    16 x 16 in registers, other strides gathered; zero past N), then `sgemm_packed_<tag>` over rows [m0, m1)
    with A read in place (any strides): per K block and group of nc columns, row tile by row tile, every
    panel of the group (A's rows in L1, B's panels streaming from L2, C written a row segment at a time).
    `sgemm_batch_<tag>` runs it over a batch of products, packing each one's B (attention's Q @ K^T).

        void sgemm_packb(ptr b, i64 sbk, i64 sbn, i64 K, i64 N, i64 nr, i64 kc, i64 p0, i64 p1, ptr bp)
        void sgemm_packed_<tag>(ptr a, i64 sam, i64 sak, ptr bp, ptr c, i64 ldc, i64 m0, i64 m1,
                                i64 n0, i64 n1, i64 N, i64 K, i64 kc, i64 nc, i32 accumulate)
        void sgemm_batch_<tag>(ptr a, i64 sab, i64 sam, i64 sak, ptr b, i64 sbb, i64 sbk, i64 sbn, ptr c,
                               i64 scb, i64 ldc, i64 M, i64 N, i64 K, i64 kc, i64 nc, i64 i0, i64 i1, ptr bp)

Threads share a product one call each, claiming pieces of its work from an i64 counter in native code:
`<kernel>_c` (`_emit_claiming`) takes the kernel's parameters plus `i64 chunk, ptr share` and runs the
range it splits (rows, column blocks, runs, B's panels or products) a chunk at a time as claimed.  A Python
call per chunk cost more than the chunk on attention's 64 products of 64 x 64 x 32 (two threads slower
than one).

        void sgemm_packedc_<tag>(ptr a, i64 sam, i64 sak, ptr b, i64 sbk, i64 sbn, ptr c, i64 ldc, i64 M,
                                 i64 N, i64 K, i64 kc, i64 nc, i32 accumulate, i64 p0, i64 p1, ptr bp)

Over a bfloat16 im2col gathered in place (compiled code under autocast: ember/passes/implicit_gemm.py),
`sgemm_outerg_bf16_<tag>` / `sgemm_dotg_bf16_<tag>` are the gathered forms with the source (and the dot
form's A) read as bf16 words and widened in registers -- float32 FMAs, no bf16 instruction needed -- the
outer form rounding C to bf16 as it stores it.

All write C[m0:m1, n0:n1] (row stride ldc, unit column stride); accumulate != 0 adds to what C holds.
All sizes and strides are in elements.  Nothing outside A[:M, :K], B[:K, :N] and C[m0:m1, n0:n1] is read
or written.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from .llvm_text import Fn as _Fn
from .llvm_text import ATTRIBUTES, IOTA16, Tile, claims, masked_moves, masked_store, module_head
from .llvm_text import masked_load, round_bf16, splat_f32, splat_i64, widen_bf16
from .llvm_text import mask16 as _mask
from .llvm_text import transpose16 as _transpose16

__all__ = ["OuterTile", "DotTile", "TileSet", "TILES", "tile_set", "emit_module"]

_V, _VI, _M = "<16 x float>", "<16 x i32>", "<16 x i1>"
DOT_PREFETCH_FLOATS = 512 # the dot form's prefetch distance along a row (32 lines: ~ memory latency here)


OuterTile = Tile         # MR rows x 16 * nv columns of C in mr * nv zmm accumulators


@dataclass(frozen=True)
class DotTile:
    """RA rows of A against RB columns of B: ra * rb accumulators, ra + rb loads per 16 k."""
    ra: int
    rb: int

    @property
    def tag(self) -> str:
        return f"{self.ra}x{self.rb}"


@dataclass(frozen=True)
class TileSet:
    """The register tiles of one vector width, per form.  A tile's 16-lane accumulators must fit the
    register file with room for B's vectors and the broadcast A value: a tile sized for 32 zmm registers
    spills on a 16-ymm core (each 16-lane vector is two ymm there) -- 6x64 ran at 0.36-0.49x of OpenBLAS
    on an AVX2 EPYC.  native_masks: C's edge stores as llvm.masked.store everywhere (AVX-512), or plain
    stores of whole vectors (AVX2: llvm_text.masked_store)."""
    outer: tuple
    dot: tuple
    packed: tuple
    native_masks: bool = True


TILES = {
    # AVX-512 (32 zmm).  Outer: 24 x 16 for narrow products, 10/12 x 32 for 10- and 20-row ones and 8 x 48
    # for wide ones: at most 26 accumulators.  Packed: 6 x 64 first (one thread, whole tiles: 6x64
    # ~105 GF/s, 8x48 and 12x32 ~8% slower, 24x16 and 8x32 ~15%, 5x80 ~20%: it runs out of registers); the
    # others for narrow or ragged N (8x32: attention's 64 x 32 products without a wasted row).
    512: TileSet(outer=(OuterTile(24, 1), OuterTile(12, 2), OuterTile(10, 2), OuterTile(8, 3)),
                 dot=(DotTile(4, 4), DotTile(2, 8)),
                 packed=(OuterTile(6, 4), OuterTile(8, 3), OuterTile(12, 2), OuterTile(24, 1), OuterTile(8, 2))),
    # AVX2 (16 ymm): at most 6 accumulators of 16 lanes (12 ymm), B's vector (2) and the broadcast (1) --
    # 6 x 16 is the AVX2 BLAS kernels' tile.  Packed, one thread, [1152,256] @ [256,192]: 6x16 96 GF/s,
    # 2x32 74, 4x16 74, 3x32 40 (its B vectors no longer fit beside 12 accumulators: left out).
    256: TileSet(outer=(OuterTile(6, 1), OuterTile(5, 1), OuterTile(4, 1), OuterTile(2, 2)),
                 dot=(DotTile(2, 2), DotTile(1, 4)),
                 packed=(OuterTile(6, 1), OuterTile(4, 1), OuterTile(2, 2)), native_masks=False),
}


def tile_set(vector_bits: int) -> TileSet:
    """The tiles for a target with vector registers this wide (TargetInfo.vector_bits): 128-bit targets
    take AVX2's (correct anywhere, since LLVM splits the vectors; only AVX-512 and AVX2 are tuned)."""
    return TILES[512] if vector_bits >= 512 else TILES[256]


def _load(f: _Fn, p: str, m: str | None, bf16: bool = False) -> str:
    """16 floats at p (lanes off in m read as zero); bf16: 16 bf16 words at p, widened (exact)."""
    if bf16:
        h = f.tmp(f"load <16 x i16>, ptr {p}, align 2") if m is None else masked_load(f, "<16 x i16>", p, 2, m)
        return widen_bf16(f, h)
    if m is None:
        return f.tmp(f"load {_V}, ptr {p}, align 4")
    return f.tmp(f"call {_V} @llvm.masked.load.v16f32.p0(ptr {p}, i32 4, {_M} {m}, {_V} zeroinitializer)")


def _elt(bf16: bool) -> str:
    """The element type that pointer arithmetic steps over: bf16 operands are i16 words."""
    return "i16" if bf16 else "float"


def _row_ptr(f: _Fn, base: str, i: str, r: int, last: str, stride: str, bf16: bool = False) -> str:
    """base + min(i + r, last) * stride: rows past the edge read the last row (their results dropped)."""
    ri = f.tmp(f"add i64 {i}, {r}")
    ri = f.tmp(f"call i64 @llvm.smin.i64(i64 {ri}, i64 {last})")
    return f.tmp(f"getelementptr {_elt(bf16)}, ptr {base}, i64 {f.tmp(f'mul i64 {ri}, {stride}')}")


def _accumulators(f: _Fn, n: int) -> list[str]:
    acc = [f.alloca(_V, "acc", 64) for _ in range(n)]
    for p in acc:
        f.emit(f"store {_V} zeroinitializer, ptr {p}, align 64")
    return acc


def _fma(f: _Fn, acc: str, x: str, y: str) -> None:
    old = f.tmp(f"load {_V}, ptr {acc}, align 64")
    f.emit(f"store {_V} {f.tmp(f'call {_V} @llvm.fma.v16f32({_V} {x}, {_V} {y}, {_V} {old})')}, ptr {acc}, align 64")


def _tile_product(f: _Fn, t: OuterTile, kn: str, b_row, arows: list[str], sak: str) -> list[str]:
    """The tile's mr * nv accumulators after k in [0, kn): per k, `b_row(k)` gives the nv vectors of B's
    row k, and one A value per row (arows[r] + k * sak) is broadcast against them (LLVM folds the load into
    the FMA as an embedded broadcast)."""
    acc = _accumulators(f, t.mr * t.nv)
    k, close_k = f.loop("0", kn, "1", "k")
    bvec = b_row(k)
    ak = f.tmp(f"mul i64 {k}, {sak}")
    for r in range(t.mr):
        x = f.tmp(f"load float, ptr {f.tmp(f'getelementptr float, ptr {arows[r]}, i64 {ak}')}, align 4")
        xs = splat_f32(f, x)
        for v in range(t.nv):
            _fma(f, acc[r * t.nv + v], xs, bvec[v])
    close_k()
    return acc


def _iota8(start: int) -> str:
    return f"<{', '.join(f'i32 {start + x}' for x in range(8))}>"


def _paired16(f: _Fn, w: str) -> str:
    """8 words holding 16 consecutive bf16 values -> <16 x float>: the 8 even-position values, then the 8
    odd ones (the "paired" lane order).  A shift or an and per word instead of a shuffle and a shift per
    value: the outer form's tiles accumulate in this order, and `_store_tile` pairs the rounded sums back."""
    lo = f.tmp(f"bitcast <8 x i32> {f.tmp(f'shl <8 x i32> {w}, splat (i32 16)')} to <8 x float>")
    hi = f.tmp(f"bitcast <8 x i32> {f.tmp(f'and <8 x i32> {w}, splat (i32 -65536)')} to <8 x float>")
    return f.tmp(f"shufflevector <8 x float> {lo}, <8 x float> {hi}, {_VI} {IOTA16}")


def _store_tile(f: _Fn, t: OuterTile, acc: list[str], i: str, j: str, m1: str, masks: list[str], accum: str,
                bf16: bool = False, paired: bool = False) -> None:
    """C[i:i+mr, j:j+nr] = (or +=, when accum) the accumulators: rows at or past m1 dropped, columns past
    the edge masked off (`masks`, one per vector).  bf16: C is bfloat16, each sum rounded once (nearest
    even, as eager's product rounds its float32 accumulators); accum is not read.  paired: a whole tile
    whose accumulators hold their columns in `_paired16`'s order."""
    for r in range(t.mr):
        ri = f.tmp(f"add i64 {i}, {r}")
        close_r = f.if_(f.tmp(f"icmp slt i64 {ri}, {m1}"), "row") if r else None
        rc = f.tmp(f"mul i64 {ri}, %ldc")
        crow = f.tmp(f"getelementptr {_elt(bf16)}, ptr %c, i64 {f.tmp(f'add i64 {j}, {rc}')}")
        ptrs = [f.tmp(f"getelementptr {_elt(bf16)}, ptr {crow}, i64 {16 * v}") for v in range(t.nv)]
        vals = [f.tmp(f"load {_V}, ptr {acc[r * t.nv + v]}, align 64") for v in range(t.nv)]
        if bf16:
            for v in range(t.nv):
                h = round_bf16(f, vals[v])
                if paired:      # word q = (even value q, odd value q): the columns' order again
                    parts = [f.tmp(f"shufflevector <16 x i16> {h}, <16 x i16> poison, <8 x i32> {_iota8(8 * x)}")
                             for x in range(2)]
                    half = [f.tmp(f"zext <8 x i16> {x} to <8 x i32>") for x in parts]
                    w = f.tmp(f"or <8 x i32> {half[0]}, {f.tmp(f'shl <8 x i32> {half[1]}, splat (i32 16)')}")
                    f.emit(f"store <8 x i32> {w}, ptr {ptrs[v]}, align 2")
                else:
                    masked_store(f, "<16 x i16>", h, ptrs[v], 2, masks[v])
            if close_r:
                close_r()
            continue
        add, put, end = f.fresh("row.add"), f.fresh("row.put"), f.fresh("row.stored")
        f.emit(f"br i1 {accum}, label %{add}, label %{put}")
        f.label(add)
        for v in range(t.nv):
            old = _load(f, ptrs[v], masks[v])
            masked_store(f, _V, f.tmp(f"fadd {_V} {vals[v]}, {old}"), ptrs[v], 4, masks[v])
        f.emit(f"br label %{end}")
        f.label(put)
        for v in range(t.nv):
            masked_store(f, _V, vals[v], ptrs[v], 4, masks[v])
        f.emit(f"br label %{end}")
        f.label(end)
        if close_r:
            close_r()


def _emit_outer(t: OuterTile, rows: bool = False, bf16: bool = False) -> str:
    """sgemm_outer_<tag>: row tiles outermost, column tiles inside (C written in order), for a B in L2.
    rows: sgemm_outerv_<tag>, B's row k starts at the pointer rows[k] (a gathered operand read in place).
    bf16 (with rows): sgemm_outerv_bf16_<tag>, B and C bfloat16 (B widened as loaded; A stays float32)."""
    bargs = "ptr noalias %rows" if rows else "ptr noalias %b, i64 %sbk"
    name = f"sgemm_outer{'v' if rows else ''}_{'bf16_' if bf16 else ''}{t.tag}"
    f = _Fn(f"define void @{name}(ptr noalias %a, i64 %sam, i64 %sak, {bargs}, "
            "ptr noalias %c, i64 %ldc, i64 %m0, i64 %m1, i64 %n0, i64 %n1, i64 %K, i32 %accumulate) #0")
    accum = f.tmp("icmp ne i32 %accumulate, 0")
    last = f.tmp("sub i64 %m1, 1")
    i, close_outer = f.loop("%m0", "%m1", str(t.mr), "i")
    arows = [_row_ptr(f, "%a", i, r, last, "%sam") for r in range(t.mr)]
    j, close_inner = f.loop("%n0", "%n1", str(t.nr), "j")
    nleft = f.tmp(f"sub i64 %n1, {j}")
    masks = [_mask(f, f.tmp(f"sub i64 {nleft}, {16 * v}")) for v in range(t.nv)]

    def b_ptr(k: str, v: int) -> str:
        if rows:
            rk = f.tmp(f"load ptr, ptr {f.tmp(f'getelementptr ptr, ptr %rows, i64 {k}')}, align 8")
            brow = f.tmp(f"getelementptr {_elt(bf16)}, ptr {rk}, i64 {j}")
        else:
            kb = f.tmp(f"mul i64 {k}, %sbk")
            brow = f.tmp(f"getelementptr float, ptr %b, i64 {f.tmp(f'add i64 {j}, {kb}')}")
        return f.tmp(f"getelementptr {_elt(bf16)}, ptr {brow}, i64 {16 * v}")

    def b_row(k: str) -> list[str]:
        # masked loads: the masks are loop-invariant (all lanes on interior tiles), and AVX-512 masked loads
        # cost what plain ones do
        return [_load(f, b_ptr(k, v), masks[v], bf16) for v in range(t.nv)]

    def b_row_paired(k: str) -> list[str]:
        return [_paired16(f, f.tmp(f"load <8 x i32>, ptr {b_ptr(k, v)}, align 2")) for v in range(t.nv)]
    if bf16:    # whole tiles in the paired lane order (`_paired16`), edge tiles in the columns' order
        whole, edge, done = f.fresh("tile.whole"), f.fresh("tile.edge"), f.fresh("tile.done")
        f.emit(f"br i1 {f.tmp(f'icmp sge i64 {nleft}, {t.nr}')}, label %{whole}, label %{edge}")
        f.label(whole)
        acc = _tile_product(f, t, "%K", b_row_paired, arows, "%sak")
        _store_tile(f, t, acc, i, j, "%m1", masks, accum, bf16, paired=True)
        f.emit(f"br label %{done}")
        f.label(edge)
    acc = _tile_product(f, t, "%K", b_row, arows, "%sak")
    _store_tile(f, t, acc, i, j, "%m1", masks, accum, bf16)     # rows past m1 dropped, columns past n1 masked off
    if bf16:
        f.emit(f"br label %{done}")
        f.label(done)
    close_inner()
    close_outer()
    return f.text()


def _emit_outer_packed(t: OuterTile) -> str:
    """sgemm_outerp_<tag>: for a B larger than L2, column blocks of cb at a time copied row by row into
    `panel` ([K, cb], one sequential stream per row segment: what the hardware prefetchers follow), then
    sgemm_outerr_<tag> over the panel.  Reading B in place, tile by tile, is K concurrent streams
    (26 for conv1, 251 for conv2): from DRAM that ran at half of BLAS's speed."""
    f = _Fn(f"define void @sgemm_outerp_{t.tag}(ptr noalias %a, i64 %sam, i64 %sak, ptr noalias %b, i64 %sbk, "
            "ptr noalias %c, i64 %ldc, i64 %m0, i64 %m1, i64 %n0, i64 %n1, i64 %K, i32 %accumulate, "
            "ptr noalias %panel, i64 %cb) #0")
    jb, close_jb = f.loop("%n0", "%n1", "%cb", "jb")
    w = f.tmp(f"call i64 @llvm.smin.i64(i64 %cb, i64 {f.tmp(f'sub i64 %n1, {jb}')})")
    k, close_k = f.loop("0", "%K", "1", "k")
    row = f.tmp(f"add i64 {jb}, {f.tmp(f'mul i64 {k}, %sbk')}")
    src = f.tmp(f"getelementptr float, ptr %b, i64 {row}")
    dst = f.tmp(f"getelementptr float, ptr %panel, i64 {f.tmp(f'mul i64 {k}, %cb')}")
    x, close_x = f.loop("0", w, "16", "x")
    m = _mask(f, f.tmp(f"sub i64 {w}, {x}"))
    v = _load(f, f.tmp(f"getelementptr float, ptr {src}, i64 {x}"), m)
    to = f.tmp(f"getelementptr float, ptr {dst}, i64 {x}")
    masked_store(f, _V, v, to, 4, m)
    close_x()
    close_k()
    cj = f.tmp(f"getelementptr float, ptr %c, i64 {jb}")
    f.emit(f"call void @sgemm_outer_{t.tag}(ptr %a, i64 %sam, i64 %sak, ptr %panel, i64 %cb, ptr {cj}, i64 %ldc, "
           f"i64 %m0, i64 %m1, i64 0, i64 {w}, i64 %K, i32 %accumulate)")
    close_jb()
    return f.text()


def _emit_pack_b() -> str:
    """sgemm_packb: panels [p0, p1) of B (nr columns each, for every K block of kc rows) into bp, zero past
    column N.  Block q, panel p starts at q * ceil(N / nr) * kc * nr + p * kq * nr floats (kq: the block's
    rows), row k of it at + k * nr.  Three copies by B's layout: rows with unit column stride, 16 lanes at a
    time; a K-contiguous B (a Linear weight read transposed), 16 x 16 blocks transposed in registers (a
    gather per row ran 4x slower: W's rows 2 KB apart share a few L1 sets); any other strides, gathered."""
    f = _Fn("define void @sgemm_packb(ptr noalias %b, i64 %sbk, i64 %sbn, i64 %K, i64 %N, i64 %nr, i64 %kc, "
            "i64 %p0, i64 %p1, ptr noalias %bp) #0")
    nr1 = f.tmp("sub i64 %nr, 1")
    npan = f.tmp(f"udiv i64 {f.tmp(f'add i64 %N, {nr1}')}, %nr")
    lastn = f.tmp("sub i64 %N, 1")
    lanes = f.tmp(f"mul <16 x i64> {f.tmp(f'sext {_VI} {IOTA16} to <16 x i64>')}, {splat_i64(f, '%sbn')}")
    rowwise, other, tposed, gathered = (f.fresh(x) for x in ("pk.rows", "pk.other", "pk.tposed", "pk.gathered"))
    done = f.fresh("pk.done")
    f.emit(f"br i1 {f.tmp('icmp eq i64 %sbn, 1')}, label %{rowwise}, label %{other}")
    f.label(other)
    f.emit(f"br i1 {f.tmp('icmp eq i64 %sbk, 1')}, label %{tposed}, label %{gathered}")

    def panels(kstep: str, body) -> None:
        """for each K block, panel, 16-column group x, and k (step kstep): body(pc, k, kq, j, dst, x)."""
        pc, close_pc = f.loop("0", "%K", "%kc", "pc")
        kq = f.tmp(f"call i64 @llvm.smin.i64(i64 %kc, i64 {f.tmp(f'sub i64 %K, {pc}')})")
        qbase = f.tmp(f"mul i64 {f.tmp(f'mul i64 {pc}, {npan}')}, %nr")
        pn, close_p = f.loop("%p0", "%p1", "1", "p")
        j0 = f.tmp(f"mul i64 {pn}, %nr")
        poff = f.tmp(f"mul i64 {j0}, {kq}")
        dst = f.tmp(f"getelementptr float, ptr %bp, i64 {f.tmp(f'add i64 {qbase}, {poff}')}")
        x, close_x = f.loop("0", "%nr", "16", "x")
        k, close_k = f.loop("0", kq, kstep, "k")
        body(pc, k, kq, f.tmp(f"add i64 {j0}, {x}"), dst, x)
        close_k()
        close_x()
        close_p()
        close_pc()
        f.emit(f"br label %{done}")

    def to(dst: str, k: str, x: str) -> str:
        kn = f.tmp(f"mul i64 {k}, %nr")
        return f.tmp(f"getelementptr float, ptr {dst}, i64 {f.tmp(f'add i64 {kn}, {x}')}")

    def row_of_b(pc: str, k: str) -> str:
        kb = f.tmp(f"add i64 {pc}, {k}")
        return f.tmp(f"getelementptr float, ptr %b, i64 {f.tmp(f'mul i64 {kb}, %sbk')}")

    def copy_row(pc, k, kq, j, dst, x) -> None:
        src = row_of_b(pc, k)
        v = _load(f, f.tmp(f"getelementptr float, ptr {src}, i64 {j}"), _mask(f, f.tmp(f"sub i64 %N, {j}")))
        f.emit(f"store {_V} {v}, ptr {to(dst, k, x)}, align 64")

    def gather_row(pc, k, kq, j, dst, x) -> None:
        src = row_of_b(pc, k)
        cols = f.tmp(f"add <16 x i64> {splat_i64(f, f.tmp(f'mul i64 {j}, %sbn'))}, {lanes}")
        ptrs = f.tmp(f"getelementptr float, ptr {src}, <16 x i64> {cols}")
        m = _mask(f, f.tmp(f"sub i64 %N, {j}"))
        v = f.tmp(f"call {_V} @llvm.masked.gather.v16f32.v16p0(<16 x ptr> {ptrs}, i32 4, {_M} {m}, "
                  f"{_V} zeroinitializer)")
        f.emit(f"store {_V} {v}, ptr {to(dst, k, x)}, align 64")

    def transpose_block(pc, k, kq, j, dst, x) -> None:
        # 16 columns of B (rows of the stored transpose, K-contiguous) x 16 k, lanes past K or N zero
        rem = f.tmp(f"sub i64 {kq}, {k}")
        kmask = _mask(f, rem)
        k0 = f.tmp(f"add i64 {pc}, {k}")
        cols = []
        for lane in range(16):
            n = f.tmp(f"add i64 {j}, {lane}")
            inside = f.tmp(f"icmp slt i64 {n}, %N")
            n = f.tmp(f"call i64 @llvm.smin.i64(i64 {n}, i64 {lastn})")
            nb = f.tmp(f"mul i64 {n}, %sbn")
            src = f.tmp(f"getelementptr float, ptr %b, i64 {f.tmp(f'add i64 {nb}, {k0}')}")
            cols.append(_load(f, src, f.tmp(f"select i1 {inside}, {_M} {kmask}, {_M} zeroinitializer")))
        for kk, v in enumerate(_transpose16(f, cols)):
            close = f.if_(f.tmp(f"icmp slt i64 {kk}, {rem}"), "kin") if kk else None
            f.emit(f"store {_V} {v}, ptr {to(dst, f.tmp(f'add i64 {k}, {kk}'), x)}, align 64")
            if close:
                close()

    f.label(rowwise)
    panels("1", copy_row)
    f.label(tposed)
    panels("16", transpose_block)
    f.label(gathered)
    panels("1", gather_row)
    f.label(done)
    return f.text()


def _emit_packed(t: OuterTile) -> str:
    """sgemm_packed_<tag>: C[m0:m1, n0:n1] of C = A @ B (n0 a multiple of t.nr) over a B packed by sgemm_packb
    (panels of t.nr columns, K blocks of kc, N columns in all), A read in place (any strides).  Per K block,
    per group of nc columns (its panels, kq x nc floats, stay in L2), row tile by row tile, every panel of the
    group: the tile's rows of A stay in L1 while
    B streams from L2, and C is written a whole row segment at a time.  (Panel by panel with every row tile
    inside, the panel in L1, was 0-10% slower, most where C comes from memory: 64-column strips of C rows are
    a poor stream.  Copying A into slivers of MR rows first, as BLIS does, was slower on every GPT shape, dY^T
    of the weight gradients included.)  K blocks after the first add to C, as does every block when
    accumulate != 0."""
    f = _Fn(f"define void @sgemm_packed_{t.tag}(ptr noalias %a, i64 %sam, i64 %sak, ptr noalias %bp, "
            "ptr noalias %c, i64 %ldc, i64 %m0, i64 %m1, i64 %n0, i64 %n1, i64 %N, i64 %K, i64 %kc, i64 %nc, "
            "i32 %accumulate) #0")
    npan = f.tmp(f"udiv i64 {f.tmp(f'add i64 %N, {t.nr - 1}')}, {t.nr}")
    given = f.tmp("icmp ne i32 %accumulate, 0")
    last = f.tmp("sub i64 %m1, 1")
    pc, close_pc = f.loop("0", "%K", "%kc", "pc")
    kq = f.tmp(f"call i64 @llvm.smin.i64(i64 %kc, i64 {f.tmp(f'sub i64 %K, {pc}')})")
    accum = f.tmp(f"or i1 {given}, {f.tmp(f'icmp ne i64 {pc}, 0')}")
    qoff = f.tmp(f"mul i64 {pc}, {npan}")
    bq = f.tmp(f"getelementptr float, ptr %bp, i64 {f.tmp(f'mul i64 {qoff}, {t.nr}')}")
    a0 = f.tmp(f"getelementptr float, ptr %a, i64 {f.tmp(f'mul i64 {pc}, %sak')}")
    jc, close_jc = f.loop("%n0", "%n1", "%nc", "jc")
    je = f.tmp(f"call i64 @llvm.smin.i64(i64 {f.tmp(f'add i64 {jc}, %nc')}, i64 %n1)")
    ir, close_i = f.loop("%m0", "%m1", str(t.mr), "ir")
    arows = [_row_ptr(f, a0, ir, r, last, "%sam") for r in range(t.mr)]
    jr, close_j = f.loop(jc, je, str(t.nr), "jr")
    bpan = f.tmp(f"getelementptr float, ptr {bq}, i64 {f.tmp(f'mul i64 {jr}, {kq}')}")
    nleft = f.tmp(f"sub i64 %N, {jr}")
    masks = [_mask(f, f.tmp(f"sub i64 {nleft}, {16 * v}")) for v in range(t.nv)]

    def b_row(k: str) -> list[str]:
        row = f.tmp(f"getelementptr float, ptr {bpan}, i64 {f.tmp(f'mul i64 {k}, {t.nr}')}")
        return [f.tmp(f"load {_V}, ptr {f.tmp(f'getelementptr float, ptr {row}, i64 {16 * v}')}, align 64")
                for v in range(t.nv)]
    acc = _tile_product(f, t, kq, b_row, arows, "%sak")
    _store_tile(f, t, acc, ir, jr, "%m1", masks, accum)
    close_j()
    close_i()
    close_jc()
    close_pc()
    return f.text()


def _emit_batch(t: OuterTile) -> str:
    """sgemm_batch_<tag>: products [i0, i1) of a batch (operand i at a + i * sab, b + i * sbb, c + i * scb;
    a stride 0 broadcasts), each one B packed into bp (sgemm_packb) and all its rows (sgemm_packed_<tag>) --
    attention's many small products in one call."""
    f = _Fn(f"define void @sgemm_batch_{t.tag}(ptr noalias %a, i64 %sab, i64 %sam, i64 %sak, ptr noalias %b, "
            "i64 %sbb, i64 %sbk, i64 %sbn, ptr noalias %c, i64 %scb, i64 %ldc, i64 %M, i64 %N, i64 %K, i64 %kc, "
            "i64 %nc, i64 %i0, i64 %i1, ptr noalias %bp) #0")
    npan = f.tmp(f"udiv i64 {f.tmp(f'add i64 %N, {t.nr - 1}')}, {t.nr}")
    i, close = f.loop("%i0", "%i1", "1", "bi")
    ai = f.tmp(f"getelementptr float, ptr %a, i64 {f.tmp(f'mul i64 {i}, %sab')}")
    bi = f.tmp(f"getelementptr float, ptr %b, i64 {f.tmp(f'mul i64 {i}, %sbb')}")
    ci = f.tmp(f"getelementptr float, ptr %c, i64 {f.tmp(f'mul i64 {i}, %scb')}")
    f.emit(f"call void @sgemm_packb(ptr {bi}, i64 %sbk, i64 %sbn, i64 %K, i64 %N, i64 {t.nr}, i64 %kc, i64 0, "
           f"i64 {npan}, ptr %bp)")
    f.emit(f"call void @sgemm_packed_{t.tag}(ptr {ai}, i64 %sam, i64 %sak, ptr %bp, ptr {ci}, i64 %ldc, i64 0, "
           "i64 %M, i64 0, i64 %N, i64 %N, i64 %K, i64 %kc, i64 %nc, i32 0)")
    close()
    return f.text()


_DEFINE = re.compile(r"define void @(\w+)\(([^)]*)\)")


def _emit_claiming(kernel_text: str, lo: str, hi: str) -> str:
    """<name>_c(<the kernel's parameters>, i64 chunk, ptr share): the kernel over its range [lo, hi) (two of its
    parameters) in pieces of `chunk` claimed from the i64 at share -- set to lo by the caller, shared by the
    threads that run one product, one call each (null: every piece here).  A thread that starts late or is
    descheduled leaves the others the rest, and no Python call runs per piece: with one per piece, two threads
    were slower than one on attention's 64 products of 64 x 64 x 32."""
    name, params = _DEFINE.search(kernel_text).groups()
    f = _Fn(f"define void @{name}_c({params}, i64 %chunk, ptr %share) #0")
    v, close = claims(f, "%share", f"%{lo}", f"%{hi}", "%chunk", "piece")
    end = f.tmp(f"call i64 @llvm.smin.i64(i64 {f.tmp(f'add i64 {v}, %chunk')}, i64 %{hi})")
    args = []
    for p in params.split(","):
        ty, arg = p.split()[0], p.split()[-1]
        args.append(f"{ty} {v if arg == '%' + lo else end if arg == '%' + hi else arg}")
    f.emit(f"call void @{name}({', '.join(args)})")
    close()
    return f.text()


def _emit_packed_cols(t: OuterTile) -> str:
    """sgemm_packedc_<tag>: B's panels [p0, p1) (t.nr columns each) packed into bp (sgemm_packb) and multiplied
    by all of A's rows [0, M) -- the product split by panels, for a result wider than tall (its claiming
    wrapper packs each claimed piece into the claiming thread's bp)."""
    f = _Fn(f"define void @sgemm_packedc_{t.tag}(ptr noalias %a, i64 %sam, i64 %sak, ptr noalias %b, i64 %sbk, "
            "i64 %sbn, ptr noalias %c, i64 %ldc, i64 %M, i64 %N, i64 %K, i64 %kc, i64 %nc, i32 %accumulate, "
            "i64 %p0, i64 %p1, ptr noalias %bp) #0")
    f.emit(f"call void @sgemm_packb(ptr %b, i64 %sbk, i64 %sbn, i64 %K, i64 %N, i64 {t.nr}, i64 %kc, i64 %p0, "
           "i64 %p1, ptr %bp)")
    n0 = f.tmp(f"mul i64 %p0, {t.nr}")
    n1 = f.tmp(f"call i64 @llvm.smin.i64(i64 {f.tmp(f'mul i64 %p1, {t.nr}')}, i64 %N)")
    f.emit(f"call void @sgemm_packed_{t.tag}(ptr %a, i64 %sam, i64 %sak, ptr %bp, ptr %c, i64 %ldc, i64 0, "
           f"i64 %M, i64 {n0}, i64 {n1}, i64 %N, i64 %K, i64 %kc, i64 %nc, i32 %accumulate)")
    return f.text()


def _gathered_row(f: _Fn, k: str, r: str, bf16: bool = False) -> str:
    """Row k of a gathered operand at run r: kaddr[k] + kstep[k] * starts[r] elements (see `emit_module`)."""
    base = f.tmp(f"load i64, ptr {f.tmp(f'getelementptr i64, ptr %kaddr, i64 {k}')}, align 8")
    step = f.tmp(f"load i64, ptr {f.tmp(f'getelementptr i64, ptr %kstep, i64 {k}')}, align 8")
    start = f.tmp(f"load i64, ptr {f.tmp(f'getelementptr i64, ptr %starts, i64 {r}')}, align 8")
    off = f.tmp(f"mul i64 {step}, {start}")
    addr = f.tmp(f"add i64 {base}, {f.tmp(f'shl i64 {off}, {1 if bf16 else 2}')}")
    return f.tmp(f"inttoptr i64 {addr} to ptr")


def _emit_outer_gathered(t: OuterTile, bf16: bool = False) -> str:
    """sgemm_outerg_<tag>: the outer form over a gathered B (an im2col never stored), read in place: for
    each run r of L columns, row k's pointer kaddr[k] + kstep[k] * starts[r] goes into `rows` (K
    pointers, the caller's scratch), then sgemm_outerv_<tag> over the run, cb columns at a time (the
    K x cb block of B stays in L2 while every row tile reads it); C's columns are the runs' columns,
    run after run.  Measured against copying the runs' rows into an L2 panel first (one thread,
    MNIST conv1 [10,26]x36864: 348 -> 232 us; conv2 [20,251]x4096: 566 -> 401 us; a 64-channel 3x3
    convolution [64,289]x32768: 24.7 -> 14.4 ms): the copy cost more than the K row streams it saved.
    bf16: sgemm_outerg_bf16_<tag>, the source and C bfloat16 (A float32)."""
    tag = ("bf16_" if bf16 else "") + t.tag
    f = _Fn(f"define void @sgemm_outerg_{tag}(ptr noalias %a, i64 %sam, i64 %sak, ptr noalias %kaddr, "
            "ptr noalias %kstep, ptr noalias %starts, i64 %L, ptr noalias %c, i64 %ldc, i64 %m0, i64 %m1, "
            "i64 %r0, i64 %r1, i64 %K, i32 %accumulate, ptr noalias %rows, i64 %cb) #0")
    r, close_r = f.loop("%r0", "%r1", "1", "r")
    k, close_k = f.loop("0", "%K", "1", "k")
    f.emit(f"store ptr {_gathered_row(f, k, r, bf16)}, ptr {f.tmp(f'getelementptr ptr, ptr %rows, i64 {k}')}, "
           "align 8")
    close_k()
    cj = f.tmp(f"getelementptr {_elt(bf16)}, ptr %c, i64 {f.tmp(f'mul i64 {r}, %L')}")
    jb, close_jb = f.loop("0", "%L", "%cb", "jb")
    je = f.tmp(f"call i64 @llvm.smin.i64(i64 {f.tmp(f'add i64 {jb}, %cb')}, i64 %L)")
    f.emit(f"call void @sgemm_outerv_{tag}(ptr %a, i64 %sam, i64 %sak, ptr %rows, ptr {cj}, i64 %ldc, "
           f"i64 %m0, i64 %m1, i64 {jb}, i64 {je}, i64 %K, i32 %accumulate)")
    close_jb()
    close_r()
    return f.text()


def _pair_halves(f: _Fn, w: str) -> tuple[str, str]:
    """16 words of two bf16 values each -> (their low halves, their high halves) as float32 (exact)."""
    lo = f.tmp(f"bitcast {_VI} {f.tmp(f'shl {_VI} {w}, splat (i32 16)')} to {_V}")
    return lo, f.tmp(f"bitcast {_VI} {f.tmp(f'and {_VI} {w}, splat (i32 -65536)')} to {_V}")


def _emit_dot(t: DotTile, gathered: bool = False, bf16: bool = False) -> str:
    """sgemm_dot_<tag>: K in blocks of kc (A's and B's rows of a block stay in L1/L2 across the tiles);
    between blocks a tile's ra * rb vector accumulators wait in `scratch` (16 floats each, tile-major),
    so each dot product is reduced across its lanes once, after the last block.  gathered: sgemm_dotg_<tag>,
    B's rows are an im2col never stored: block q (kc = L, one run) of row n starts at
    kaddr[n] + kstep[n] * starts[q] (the weight gradient of a convolution, dY @ columns^T).  bf16 (with
    gathered): sgemm_dotg_bf16_<tag>, A and the source bfloat16, widened as loaded; C stays float32."""
    if gathered:
        bargs = "ptr noalias %kaddr, ptr noalias %kstep, ptr noalias %starts"
        name = f"sgemm_dotg_{'bf16_' if bf16 else ''}{t.tag}"
    else:
        bargs, name = "ptr noalias %b, i64 %sbn", f"sgemm_dot_{t.tag}"
    f = _Fn(f"define void @{name}(ptr noalias %a, i64 %sam, {bargs}, ptr noalias %c, "
            "i64 %ldc, i64 %m0, i64 %m1, i64 %n0, i64 %n1, i64 %k0, i64 %k1, i64 %kc, ptr noalias %scratch, "
            "i32 %accumulate) #0")
    nacc = t.ra * t.rb
    accum = f.tmp("icmp ne i32 %accumulate, 0")
    lasti, lastj = f.tmp("sub i64 %m1, 1"), f.tmp("sub i64 %n1, 1")
    width = f.tmp("sub i64 %n1, %n0")
    ntj = f.tmp(f"udiv i64 {f.tmp(f'add i64 {width}, {t.rb - 1}')}, {t.rb}")     # column tiles
    acc = [f.alloca(_V, "acc", 64) for _ in range(nacc)]
    kb, close_kb = f.loop("%k0", "%k1", "%kc", "kb")
    ke = f.tmp(f"call i64 @llvm.smin.i64(i64 {f.tmp(f'add i64 {kb}, %kc')}, i64 %k1)")
    first = f.tmp(f"icmp eq i64 {kb}, %k0")
    lastblk = f.tmp(f"icmp eq i64 {ke}, %k1")
    span = f.tmp(f"sub i64 {ke}, {kb}")
    step_k = 32 if bf16 else 16
    kmain = f.tmp(f"add i64 {kb}, {f.tmp(f'and i64 {span}, -{step_k}')}")      # the end of the whole steps
    left = f.tmp(f"sub i64 {ke}, {kmain}")
    tail = _mask(f, left)
    tail2 = _mask(f, f.tmp(f"sub i64 {left}, 16")) if bf16 else None
    i, close_i = f.loop("%m0", "%m1", str(t.ra), "i")
    arows = [_row_ptr(f, "%a", i, r, lasti, "%sam", bf16) for r in range(t.ra)]
    di = f.tmp(f"sub i64 {i}, %m0")
    ti = f.tmp(f"mul i64 {f.tmp(f'udiv i64 {di}, {t.ra}')}, {ntj}")
    j, close_j = f.loop("%n0", "%n1", str(t.rb), "j")
    if gathered:    # this block's piece of each row, indexed from the block's start
        q = f.tmp(f"udiv i64 {kb}, %kc")
        rows = [f.tmp(f"call i64 @llvm.smin.i64(i64 {f.tmp(f'add i64 {j}, {s}')}, i64 {lastj})") for s in range(t.rb)]
        bcols = [f.tmp(f"getelementptr {_elt(bf16)}, ptr {_gathered_row(f, n, q, bf16)}, "
                       f"i64 {f.tmp(f'sub i64 0, {kb}')}") for n in rows]
    else:
        bcols = [_row_ptr(f, "%b", j, s, lastj, "%sbn") for s in range(t.rb)]
    dj = f.tmp(f"sub i64 {j}, %n0")
    tile = f.tmp(f"add i64 {ti}, {f.tmp(f'udiv i64 {dj}, {t.rb}')}")
    saved = f.tmp(f"getelementptr {_V}, ptr %scratch, i64 {f.tmp(f'mul i64 {tile}, {nacc}')}")
    # the accumulators: zero on the first block, else as the previous block left them
    fresh, resume, go = f.fresh("acc.zero"), f.fresh("acc.load"), f.fresh("acc.ready")
    f.emit(f"br i1 {first}, label %{fresh}, label %{resume}")
    f.label(fresh)
    for p in acc:
        f.emit(f"store {_V} zeroinitializer, ptr {p}, align 64")
    f.emit(f"br label %{go}")
    f.label(resume)
    for q, p in enumerate(acc):
        v = f.tmp(f"load {_V}, ptr {f.tmp(f'getelementptr {_V}, ptr {saved}, i64 {q}')}, align 64")
        f.emit(f"store {_V} {v}, ptr {p}, align 64")
    f.emit(f"br label %{go}")
    f.label(go)

    def step(k: str, m: str | None) -> None:
        av = [_load(f, f.tmp(f"getelementptr {_elt(bf16)}, ptr {p}, i64 {k}"), m, bf16) for p in arows]
        bv = [_load(f, f.tmp(f"getelementptr {_elt(bf16)}, ptr {p}, i64 {k}"), m, bf16) for p in bcols]
        if m is None and DOT_PREFETCH_FLOATS:   # each row is a stream of its own: prefetch it ahead
            for p in arows + bcols:
                kf = f.tmp(f"add i64 {k}, {DOT_PREFETCH_FLOATS}")
                ahead = f.tmp(f"getelementptr float, ptr {p}, i64 {kf}")
                f.emit(f"call void @llvm.prefetch.p0(ptr {ahead}, i32 0, i32 3, i32 1)")
        for r in range(t.ra):
            for s in range(t.rb):
                _fma(f, acc[r * t.rb + s], av[r], bv[s])
    def pair_step(k: str) -> None:
        """32 k of bf16 at once, as 16 words of two: the low halves' products and the high halves' (the
        lanes of a dot product are summed at the end, so any split works; this one widens a word with one
        shift or one and, where widening each value on its own took a shuffle and a shift)."""
        words = [f.tmp(f"load <16 x i32>, ptr {f.tmp(f'getelementptr i16, ptr {p}, i64 {k}')}, align 2")
                 for p in arows + bcols]
        for p in arows + bcols:
            ahead = f.tmp(f"getelementptr i16, ptr {p}, i64 {f.tmp(f'add i64 {k}, {DOT_PREFETCH_FLOATS}')}")
            f.emit(f"call void @llvm.prefetch.p0(ptr {ahead}, i32 0, i32 3, i32 1)")
        halves = [_pair_halves(f, w) for w in words]
        av, bv = halves[:t.ra], halves[t.ra:]
        for r in range(t.ra):
            for s in range(t.rb):
                for h in range(2):
                    _fma(f, acc[r * t.rb + s], av[r][h], bv[s][h])
    k, close_k = f.loop(kb, kmain, str(step_k), "k")
    (pair_step if bf16 else lambda k: step(k, None))(k)
    close_k()
    if bf16:    # the block's last (ke - kb) % 32 k as two masked steps of 16, each only when it has lanes
        close = f.if_(f.tmp(f"icmp sgt i64 {left}, 0"), "tail")
        step(kmain, tail)
        close2 = f.if_(f.tmp(f"icmp sgt i64 {left}, 16"), "tail2")
        step(f.tmp(f"add i64 {kmain}, 16"), tail2)
        close2()
        close()
    else:
        step(kmain, tail)   # the block's last (ke - kb) % 16 k, masked (no lanes when a multiple of 16)
    park, final, done = f.fresh("acc.park"), f.fresh("acc.final"), f.fresh("tile.done")
    f.emit(f"br i1 {lastblk}, label %{final}, label %{park}")
    f.label(park)
    for q, p in enumerate(acc):
        v = f.tmp(f"load {_V}, ptr {p}, align 64")
        f.emit(f"store {_V} {v}, ptr {f.tmp(f'getelementptr {_V}, ptr {saved}, i64 {q}')}, align 64")
    f.emit(f"br label %{done}")
    f.label(final)
    for r in range(t.ra):
        ri = f.tmp(f"add i64 {i}, {r}")
        rin = f.tmp(f"icmp slt i64 {ri}, %m1")
        crow = f.tmp(f"getelementptr float, ptr %c, i64 {f.tmp(f'mul i64 {ri}, %ldc')}")
        for s in range(t.rb):
            sj = f.tmp(f"add i64 {j}, {s}")
            close = f.if_(f.tmp(f"and i1 {rin}, {f.tmp(f'icmp slt i64 {sj}, %n1')}"), "st")
            v = f.tmp(f"load {_V}, ptr {acc[r * t.rb + s]}, align 64")
            x = f.tmp(f"call reassoc float @llvm.vector.reduce.fadd.v16f32(float -0.0, {_V} {v})")
            p = f.tmp(f"getelementptr float, ptr {crow}, i64 {sj}")
            old = f.tmp(f"load float, ptr {p}, align 4")
            summed = f.tmp(f"fadd float {x}, {old}")
            f.emit(f"store float {f.tmp(f'select i1 {accum}, float {summed}, float {x}')}, ptr {p}, align 4")
            close()
    f.emit(f"br label %{done}")
    f.label(done)
    close_j()
    close_i()
    close_kb()
    return f.text()


def emit_module(tiles: TileSet = TILES[512], triple: str = "", data_layout: str = "") -> str:
    with masked_moves(tiles.native_masks):
        return _emit_module(tiles, triple, data_layout)


def _emit_module(tiles: TileSet, triple: str, data_layout: str) -> str:
    outer, dot, packed = tiles.outer, tiles.dot, tiles.packed
    head = module_head(triple, data_layout)
    decls = [f"declare {_V} @llvm.fma.v16f32({_V}, {_V}, {_V})",
             f"declare {_V} @llvm.masked.load.v16f32.p0(ptr, i32, {_M}, {_V})",
             f"declare void @llvm.masked.store.v16f32.p0({_V}, ptr, i32, {_M})",
             f"declare float @llvm.vector.reduce.fadd.v16f32(float, {_V})",
             "declare void @llvm.prefetch.p0(ptr, i32, i32, i32)", "declare i64 @llvm.smin.i64(i64, i64)",
             "declare i64 @llvm.smax.i64(i64, i64)",
             f"declare {_V} @llvm.masked.gather.v16f32.v16p0(<16 x ptr>, i32, {_M}, {_V})",
             f"declare <16 x i16> @llvm.masked.load.v16i16.p0(ptr, i32, {_M}, <16 x i16>)",
             f"declare void @llvm.masked.store.v16i16.p0(<16 x i16>, ptr, i32, {_M})"]
    parts = head + decls + [_emit_outer(t) for t in outer] + [_emit_outer_packed(t) for t in outer]
    parts += [_emit_outer(t, rows=True) for t in outer] + [_emit_outer_gathered(t) for t in outer]
    parts += [_emit_dot(t) for t in dot] + [_emit_dot(t, gathered=True) for t in dot]
    # bfloat16 im2cols gathered in place (compiled code under autocast): float32 FMAs on widened values
    parts += [_emit_outer(t, rows=True, bf16=True) for t in outer] + [_emit_outer_gathered(t, True) for t in outer]
    parts += [_emit_dot(t, gathered=True, bf16=True) for t in dot]
    parts += [_emit_pack_b()] + [_emit_packed(t) for t in packed] + [_emit_batch(t) for t in packed]
    parts += [_emit_packed_cols(t) for t in packed]
    # the claiming wrappers (`_emit_claiming`), each over the range its runtime splits across threads
    ranges = {"sgemm_outer_": ("m0", "m1"), "sgemm_outerp_": ("n0", "n1"), "sgemm_outerg_": ("r0", "r1"),
              "sgemm_dot_": ("n0", "n1"), "sgemm_dotg_": ("n0", "n1"), "sgemm_packed_": ("m0", "m1"),
              "sgemm_packedc_": ("p0", "p1"), "sgemm_batch_": ("i0", "i1")}
    parts += [_emit_claiming(p, *r) for p in list(parts) for pre, r in ranges.items() if f"define void @{pre}" in p]
    parts.append(ATTRIBUTES)
    return "\n\n".join(parts) + "\n"
