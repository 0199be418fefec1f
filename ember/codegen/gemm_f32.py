"""LLVM IR for float32 matrix products of the shapes BLAS handles badly: few rows, short or very long
contractions (the convolution products of small CNNs, the layers of small MLPs).  Pure text.

In: the register tiles to emit.  Out: `emit_module(...)`, one LLVM module of C-callable functions that
the runtime (ember/runtime/gemm_f32.py) compiles once per process and calls on numpy buffers.

OpenBLAS packs both operands into panels and blocks for the caches; that pays off on large square
products, but on [20, 250] @ [250, 4096] or [10, 36864] @ [36864, 25] it runs at 25-45% of its own
peak here (the packing is a full pass over the big operand, and its tiles do not fit a 10- or 20-row
product).  Two unpacked kernels cover those shapes:

  * outer form, `sgemm_outer_<MR>x<NR>`, for B with unit column stride (rows of B contiguous):
    an MR x NR tile of C (NR = 16 * nv float lanes) lives in registers for the whole contraction;
    per k it loads nv vectors of B's row k straight from B and broadcasts one A value per row (A any
    strides), MR * nv FMAs.  Column tiles outermost, so the K x NR strip of B stays in cache while every
    row tile uses it.  Columns past N are masked (AVX-512 masked loads and stores); rows past M read the
    last row and are not stored.

        void sgemm_outer_<tag>(ptr a, i64 sam, i64 sak, ptr b, i64 sbk, ptr c, i64 ldc,
                               i64 m0, i64 m1, i64 n0, i64 n1, i64 K, i32 accumulate)

  * dot form, `sgemm_dot_<RA>x<RB>`, for A and B both contiguous along K (A row-major, B a transposed
    view such as a Linear weight): RA x RB dot products at once, 16 k at a time, each accumulator
    reduced across its lanes at the end; a K range [k0, k1) per call so the caller blocks K for the
    caches and splits it across threads.

        void sgemm_dot_<tag>(ptr a, i64 sam, ptr b, i64 sbn, ptr c, i64 ldc,
                             i64 m0, i64 m1, i64 n0, i64 n1, i64 k0, i64 k1, i32 accumulate)

Both write C[m0:m1, n0:n1] (row stride ldc, unit column stride); accumulate != 0 adds to what C holds.
All sizes and strides are in elements.  Nothing outside A[:M, :K], B[:K, :N] and C[m0:m1, n0:n1] is read
or written.
"""
from __future__ import annotations

from dataclasses import dataclass

from .llvm_text import Fn as _Fn
from .llvm_text import IOTA16, Tile, splat_f32, splat_i32

__all__ = ["OuterTile", "DotTile", "OUTER_TILES", "DOT_TILES", "emit_module"]

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


# 24 x 16 for narrow products, 10/12 x 32 for 10- and 20-row ones and 8 x 48 for wide ones: at most 26
# accumulators, leaving registers for the B vectors and the broadcast.
OUTER_TILES = (OuterTile(24, 1), OuterTile(12, 2), OuterTile(10, 2), OuterTile(8, 3))
DOT_TILES = (DotTile(4, 4), DotTile(2, 8))


def _mask(f: _Fn, left: str) -> str:
    """Lanes [0, left) of 16 (left any i64: <= 0 gives none, >= 16 all)."""
    lo = f.tmp(f"call i64 @llvm.smax.i64(i64 {left}, i64 0)")
    lo = f.tmp(f"call i64 @llvm.smin.i64(i64 {lo}, i64 16)")
    return f.tmp(f"icmp slt {_VI} {IOTA16}, {splat_i32(f, f.tmp(f'trunc i64 {lo} to i32'))}")


def _load(f: _Fn, p: str, m: str | None) -> str:
    if m is None:
        return f.tmp(f"load {_V}, ptr {p}, align 4")
    return f.tmp(f"call {_V} @llvm.masked.load.v16f32.p0(ptr {p}, i32 4, {_M} {m}, {_V} zeroinitializer)")


def _row_ptr(f: _Fn, base: str, i: str, r: int, last: str, stride: str) -> str:
    """base + min(i + r, last) * stride: rows past the edge read the last row (their results dropped)."""
    ri = f.tmp(f"add i64 {i}, {r}")
    ri = f.tmp(f"call i64 @llvm.smin.i64(i64 {ri}, i64 {last})")
    return f.tmp(f"getelementptr float, ptr {base}, i64 {f.tmp(f'mul i64 {ri}, {stride}')}")


def _accumulators(f: _Fn, n: int) -> list[str]:
    acc = [f.alloca(_V, "acc", 64) for _ in range(n)]
    for p in acc:
        f.emit(f"store {_V} zeroinitializer, ptr {p}, align 64")
    return acc


def _fma(f: _Fn, acc: str, x: str, y: str) -> None:
    old = f.tmp(f"load {_V}, ptr {acc}, align 64")
    f.emit(f"store {_V} {f.tmp(f'call {_V} @llvm.fma.v16f32({_V} {x}, {_V} {y}, {_V} {old})')}, ptr {acc}, align 64")


def _emit_outer(t: OuterTile, rows: bool = False) -> str:
    """sgemm_outer_<tag>: row tiles outermost, column tiles inside (C written in order), for a B in L2.
    rows: sgemm_outerv_<tag>, B's row k starts at the pointer rows[k] (a gathered operand read in place)."""
    bargs = "ptr noalias %rows" if rows else "ptr noalias %b, i64 %sbk"
    f = _Fn(f"define void @sgemm_outer{'v' if rows else ''}_{t.tag}(ptr noalias %a, i64 %sam, i64 %sak, {bargs}, "
            "ptr noalias %c, i64 %ldc, i64 %m0, i64 %m1, i64 %n0, i64 %n1, i64 %K, i32 %accumulate) #0")
    accum = f.tmp("icmp ne i32 %accumulate, 0")
    last = f.tmp("sub i64 %m1, 1")
    i, close_outer = f.loop("%m0", "%m1", str(t.mr), "i")
    arows = [_row_ptr(f, "%a", i, r, last, "%sam") for r in range(t.mr)]
    j, close_inner = f.loop("%n0", "%n1", str(t.nr), "j")
    nleft = f.tmp(f"sub i64 %n1, {j}")
    masks = [_mask(f, f.tmp(f"sub i64 {nleft}, {16 * v}")) for v in range(t.nv)]
    acc = _accumulators(f, t.mr * t.nv)
    k, close_k = f.loop("0", "%K", "1", "k")
    if rows:
        rk = f.tmp(f"load ptr, ptr {f.tmp(f'getelementptr ptr, ptr %rows, i64 {k}')}, align 8")
        brow = f.tmp(f"getelementptr float, ptr {rk}, i64 {j}")
    else:
        kb = f.tmp(f"mul i64 {k}, %sbk")
        brow = f.tmp(f"getelementptr float, ptr %b, i64 {f.tmp(f'add i64 {j}, {kb}')}")
    ak = f.tmp(f"mul i64 {k}, %sak")
    # masked loads: the masks are loop-invariant (all lanes on interior tiles), and AVX-512 masked loads
    # cost what plain ones do
    bvec = [_load(f, f.tmp(f"getelementptr float, ptr {brow}, i64 {16 * v}"), masks[v]) for v in range(t.nv)]
    for r in range(t.mr):
        x = f.tmp(f"load float, ptr {f.tmp(f'getelementptr float, ptr {arows[r]}, i64 {ak}')}, align 4")
        xs = splat_f32(f, x)
        for v in range(t.nv):
            _fma(f, acc[r * t.nv + v], xs, bvec[v])
    close_k()
    # store the tile: rows past m1 dropped, columns past n1 masked off
    for r in range(t.mr):
        ri = f.tmp(f"add i64 {i}, {r}")
        close_r = f.if_(f.tmp(f"icmp slt i64 {ri}, %m1"), "row") if r else None
        rc = f.tmp(f"mul i64 {ri}, %ldc")
        crow = f.tmp(f"getelementptr float, ptr %c, i64 {f.tmp(f'add i64 {j}, {rc}')}")
        ptrs = [f.tmp(f"getelementptr float, ptr {crow}, i64 {16 * v}") for v in range(t.nv)]
        vals = [f.tmp(f"load {_V}, ptr {acc[r * t.nv + v]}, align 64") for v in range(t.nv)]
        add, put, end = f.fresh("row.add"), f.fresh("row.put"), f.fresh("row.stored")
        f.emit(f"br i1 {accum}, label %{add}, label %{put}")
        f.label(add)
        for v in range(t.nv):
            old = _load(f, ptrs[v], masks[v])
            f.emit(f"call void @llvm.masked.store.v16f32.p0({_V} {f.tmp(f'fadd {_V} {vals[v]}, {old}')}, "
                   f"ptr {ptrs[v]}, i32 4, {_M} {masks[v]})")
        f.emit(f"br label %{end}")
        f.label(put)
        for v in range(t.nv):
            f.emit(f"call void @llvm.masked.store.v16f32.p0({_V} {vals[v]}, ptr {ptrs[v]}, i32 4, {_M} {masks[v]})")
        f.emit(f"br label %{end}")
        f.label(end)
        if close_r:
            close_r()
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
    f.emit(f"call void @llvm.masked.store.v16f32.p0({_V} {v}, ptr {to}, i32 4, {_M} {m})")
    close_x()
    close_k()
    cj = f.tmp(f"getelementptr float, ptr %c, i64 {jb}")
    f.emit(f"call void @sgemm_outer_{t.tag}(ptr %a, i64 %sam, i64 %sak, ptr %panel, i64 %cb, ptr {cj}, i64 %ldc, "
           f"i64 %m0, i64 %m1, i64 0, i64 {w}, i64 %K, i32 %accumulate)")
    close_jb()
    return f.text()


def _gathered_row(f: _Fn, k: str, r: str) -> str:
    """Row k of a gathered operand at run r: kaddr[k] + kstep[k] * starts[r] floats (see `emit_module`)."""
    base = f.tmp(f"load i64, ptr {f.tmp(f'getelementptr i64, ptr %kaddr, i64 {k}')}, align 8")
    step = f.tmp(f"load i64, ptr {f.tmp(f'getelementptr i64, ptr %kstep, i64 {k}')}, align 8")
    start = f.tmp(f"load i64, ptr {f.tmp(f'getelementptr i64, ptr %starts, i64 {r}')}, align 8")
    off = f.tmp(f"mul i64 {step}, {start}")
    addr = f.tmp(f"add i64 {base}, {f.tmp(f'shl i64 {off}, 2')}")
    return f.tmp(f"inttoptr i64 {addr} to ptr")


def _emit_outer_gathered(t: OuterTile) -> str:
    """sgemm_outerg_<tag>: the outer form over a gathered B (an im2col never stored), read in place: for
    each run r of L columns, row k's pointer kaddr[k] + kstep[k] * starts[r] goes into `rows` (K
    pointers, the caller's scratch), then sgemm_outerv_<tag> over the run, cb columns at a time (the
    K x cb block of B stays in L2 while every row tile reads it); C's columns are the runs' columns,
    run after run.  Measured against copying the runs' rows into an L2 panel first (one thread,
    MNIST conv1 [10,26]x36864: 348 -> 232 us; conv2 [20,251]x4096: 566 -> 401 us; a 64-channel 3x3
    convolution [64,289]x32768: 24.7 -> 14.4 ms): the copy cost more than the K row streams it saved."""
    f = _Fn(f"define void @sgemm_outerg_{t.tag}(ptr noalias %a, i64 %sam, i64 %sak, ptr noalias %kaddr, "
            "ptr noalias %kstep, ptr noalias %starts, i64 %L, ptr noalias %c, i64 %ldc, i64 %m0, i64 %m1, "
            "i64 %r0, i64 %r1, i64 %K, i32 %accumulate, ptr noalias %rows, i64 %cb) #0")
    r, close_r = f.loop("%r0", "%r1", "1", "r")
    k, close_k = f.loop("0", "%K", "1", "k")
    f.emit(f"store ptr {_gathered_row(f, k, r)}, ptr {f.tmp(f'getelementptr ptr, ptr %rows, i64 {k}')}, align 8")
    close_k()
    cj = f.tmp(f"getelementptr float, ptr %c, i64 {f.tmp(f'mul i64 {r}, %L')}")
    jb, close_jb = f.loop("0", "%L", "%cb", "jb")
    je = f.tmp(f"call i64 @llvm.smin.i64(i64 {f.tmp(f'add i64 {jb}, %cb')}, i64 %L)")
    f.emit(f"call void @sgemm_outerv_{t.tag}(ptr %a, i64 %sam, i64 %sak, ptr %rows, ptr {cj}, i64 %ldc, "
           f"i64 %m0, i64 %m1, i64 {jb}, i64 {je}, i64 %K, i32 %accumulate)")
    close_jb()
    close_r()
    return f.text()


def _emit_dot(t: DotTile, gathered: bool = False) -> str:
    """sgemm_dot_<tag>: K in blocks of kc (A's and B's rows of a block stay in L1/L2 across the tiles);
    between blocks a tile's ra * rb vector accumulators wait in `scratch` (16 floats each, tile-major),
    so each dot product is reduced across its lanes once, after the last block.  gathered: sgemm_dotg_<tag>,
    B's rows are an im2col never stored: block q (kc = L, one run) of row n starts at
    kaddr[n] + kstep[n] * starts[q] (the weight gradient of a convolution, dY @ columns^T)."""
    if gathered:
        bargs = "ptr noalias %kaddr, ptr noalias %kstep, ptr noalias %starts"
        name = f"sgemm_dotg_{t.tag}"
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
    kmain = f.tmp(f"add i64 {kb}, {f.tmp(f'and i64 {span}, -16')}")      # the end of the whole 16-k steps
    tail = _mask(f, f.tmp(f"sub i64 {ke}, {kmain}"))
    i, close_i = f.loop("%m0", "%m1", str(t.ra), "i")
    arows = [_row_ptr(f, "%a", i, r, lasti, "%sam") for r in range(t.ra)]
    di = f.tmp(f"sub i64 {i}, %m0")
    ti = f.tmp(f"mul i64 {f.tmp(f'udiv i64 {di}, {t.ra}')}, {ntj}")
    j, close_j = f.loop("%n0", "%n1", str(t.rb), "j")
    if gathered:    # this block's piece of each row, indexed from the block's start
        q = f.tmp(f"udiv i64 {kb}, %kc")
        rows = [f.tmp(f"call i64 @llvm.smin.i64(i64 {f.tmp(f'add i64 {j}, {s}')}, i64 {lastj})") for s in range(t.rb)]
        bcols = [f.tmp(f"getelementptr float, ptr {_gathered_row(f, n, q)}, i64 {f.tmp(f'sub i64 0, {kb}')}")
                 for n in rows]
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
        av = [_load(f, f.tmp(f"getelementptr float, ptr {p}, i64 {k}"), m) for p in arows]
        bv = [_load(f, f.tmp(f"getelementptr float, ptr {p}, i64 {k}"), m) for p in bcols]
        if m is None and DOT_PREFETCH_FLOATS:   # each row is a stream of its own: prefetch it ahead
            for p in arows + bcols:
                kf = f.tmp(f"add i64 {k}, {DOT_PREFETCH_FLOATS}")
                ahead = f.tmp(f"getelementptr float, ptr {p}, i64 {kf}")
                f.emit(f"call void @llvm.prefetch.p0(ptr {ahead}, i32 0, i32 3, i32 1)")
        for r in range(t.ra):
            for s in range(t.rb):
                _fma(f, acc[r * t.rb + s], av[r], bv[s])
    k, close_k = f.loop(kb, kmain, "16", "k")
    step(k, None)
    close_k()
    step(kmain, tail)       # the block's last (ke - kb) % 16 k, masked (no lanes when a multiple of 16)
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


def emit_module(outer=OUTER_TILES, dot=DOT_TILES, triple: str = "", data_layout: str = "") -> str:
    head = [f'target triple = "{triple}"'] if triple else []
    if data_layout:
        head.append(f'target datalayout = "{data_layout}"')
    decls = [f"declare {_V} @llvm.fma.v16f32({_V}, {_V}, {_V})",
             f"declare {_V} @llvm.masked.load.v16f32.p0(ptr, i32, {_M}, {_V})",
             f"declare void @llvm.masked.store.v16f32.p0({_V}, ptr, i32, {_M})",
             f"declare float @llvm.vector.reduce.fadd.v16f32(float, {_V})",
             "declare void @llvm.prefetch.p0(ptr, i32, i32, i32)", "declare i64 @llvm.smin.i64(i64, i64)",
             "declare i64 @llvm.smax.i64(i64, i64)"]
    parts = head + decls + [_emit_outer(t) for t in outer] + [_emit_outer_packed(t) for t in outer]
    parts += [_emit_outer(t, rows=True) for t in outer] + [_emit_outer_gathered(t) for t in outer]
    parts += [_emit_dot(t) for t in dot] + [_emit_dot(t, gathered=True) for t in dot]
    parts.append('attributes #0 = { nounwind "prefer-vector-width"="512" }')
    return "\n\n".join(parts) + "\n"
