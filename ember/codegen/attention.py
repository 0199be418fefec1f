"""LLVM IR for fused scaled-dot-product attention on float32, forward and backward.  Pure text.

In: nothing.  Out: `emit_module(...)`, one LLVM module that ember/runtime/attention.py compiles once per
process.  One call runs attention units [u0, u1) (a unit: one (batch, head) pair); `_c` twins claim units
from a shared counter, as every parallel kernel does (codegen/llvm_text.claims).

    void attn_fwd(ptr q, ptr k, ptr v, ptr masked, ptr o, ptr st, i64 L, i64 S, i64 D, i64 Dv, i64 H,
                  float scale, float fill, i64 mixed, i64 offset, float p, float keep, i64 u0, i64 u1, ptr scratch)
    void attn_bwd(ptr q, ptr k, ptr v, ptr masked, ptr go, ptr dq, ptr dk, ptr dv, ptr st, i64 L, i64 S,
                  i64 D, i64 Dv, i64 H, float scale, float fill, i64 mixed, i64 offset, float p, float keep,
                  i64 u0, i64 u1, ptr scratch)

q [B, H, L, D], k [B, H, S, D], v [B, H, S, Dv], o and go [B, H, L, Dv]: rows read through the strides in `st`
(i64, in elements: q's batch, head and row strides, then k's, v's, masked's (bytes), o's or go's), each
row contiguous.  `masked` (i8, null for none) is True where a score is -inf before the softmax.  dq, dk, dv
are written contiguous, [B * H, L, D] / [B * H, S, D] / [B * H, S, Dv].  Per unit, in query blocks of QB rows:

    forward   Sc = (Q K^T) * scale, masked -> fill (-inf, or the finite value a masked_fill used);
              P = softmax(Sc) by rows;  P' = P * dropout factors (p > 0);  O = P' V
    backward  P again;  dV += P'^T dO;  dP = (dO V^T) * factors;  dS = P * (dP - rowsum(P * dP)) * scale;
              dQ = dS K;  dK += dS^T Q

The score block never leaves the thread's scratch (L1/L2): the unfused path wrote the [L, S] scores, the
probabilities and their gradients to memory and read each back, six batched products and four kernels per
layer.  The products are the outer-form register tiles of ember/codegen/gemm_f32.py (B read in place with
unit column stride; K and V are transposed into scratch once per unit where a product needs them as B).
Softmax in the order of the unfused graph -- max, exp(x - max), sum, divide -- with exp from the same
range reduction and polynomial as the compiled kernels (ember/codegen/llvm/math.py's constants).
scratch: (D + Dv) * Sp + 2 * QB * Sp floats (Sp = S rounded up to 16), 64-byte aligned, one per thread.
"""
from __future__ import annotations

import math
import struct

from .gemm_f32 import OuterTile, _emit_claiming, _emit_outer
from ..ir import rng
from .llvm.math import _EXP_F32, _P
from .llvm_text import ATTRIBUTES, Fn, mask16, masked_load, masked_moves, masked_store, module_head
from .llvm_text import splat_f32, splat_i64

__all__ = ["emit_module", "QB", "TILES", "scratch_floats", "ST_WORDS"]

QB = 64                   # query rows per backward block: its P and dS, [QB, S] each, stay in the thread's L2
MR = 8                    # query rows (keys for dK, dV) per tile: a causal mask's tiles skip ~44% of the work at 8
# (wide, narrow) outer-form tiles per vector width (ember/codegen/gemm_f32.py `TILES`): 6 x 64 where N > 32
# (the packed form's fastest), else 8 x 32; on AVX2 (16 ymm) 6 x 16 and 4 x 16
TILES = {512: (OuterTile(6, 4), OuterTile(8, 2)), 256: (OuterTile(6, 1), OuterTile(4, 1))}
ST_WORDS = 18             # strides in st: q, k, v, masked, o|go (3 each: batch, head, row), then spare
_V, _M = "<16 x float>", "<16 x i1>"
_NEG_INF = "0xFFF0000000000000"
_EXP_NORMAL_MIN = -87.33                 # e^x is a normal float32 from here up (2^-126 = e^-87.336)


def scratch_floats(S: int, D: int, Dv: int) -> int:
    sp = -(-S // 16) * 16
    return (D + Dv) * sp + 2 * QB * sp       # K^T, V^T, P and dS (the forward uses K^T and MR rows of P)


def _product(f: Fn, a, sam, sak, b, sbk, c, ldc, m, n, k, accumulate: str) -> None:
    """C[0:m, 0:n] (+)= A[0:m, 0:k] B[0:k, 0:n]: a call of attn_product (`_emit_product`)."""
    f.emit(f"call void @attn_product(ptr {a}, i64 {sam}, i64 {sak}, ptr {b}, i64 {sbk}, ptr {c}, i64 {ldc}, "
           f"i64 {m}, i64 {n}, i64 {k}, i32 {accumulate})")


def _emit_product(tiles: tuple) -> str:
    """attn_product: an outer-form product by the wide tile (6 x 64 on AVX-512) for more than MR rows and
    n > 32, else the narrow one (8 x 32: a tile of MR rows in 6 x 64 tiles is 6 + 2 rows, 1.5x the work)."""
    f = Fn("define void @attn_product(ptr noalias %a, i64 %sam, i64 %sak, ptr noalias %b, i64 %sbk, ptr noalias %c, "
           "i64 %ldc, i64 %m, i64 %n, i64 %k, i32 %accumulate) #0")
    wide = f.tmp(f"and i1 {f.tmp('icmp sgt i64 %n, 32')}, {f.tmp(f'icmp sgt i64 %m, {MR}')}")
    for t, pick in ((tiles[0], wide), (tiles[1], f.tmp(f"xor i1 {wide}, true"))):
        close = f.if_(pick, "wide" if t is tiles[0] else "narrow")
        f.emit(f"call void @sgemm_outer_{t.tag}(ptr %a, i64 %sam, i64 %sak, ptr %b, i64 %sbk, ptr %c, "
               "i64 %ldc, i64 0, i64 %m, i64 0, i64 %n, i64 %k, i32 %accumulate)")
        close()
    return f.text()


def _gep(f: Fn, ty: str, base: str, off: str) -> str:
    return f.tmp(f"getelementptr {ty}, ptr {base}, i64 {off}")


def _mul(f: Fn, a: str, b: str) -> str:
    return f.tmp(f"mul i64 {a}, {b}")


def _stride(f: Fn, i: int) -> str:
    return f.tmp(f"load i64, ptr {_gep(f, 'i64', '%st', str(i))}")


def _exp16(f: Fn, x: str) -> str:
    """e^x on 16 lanes: x = n ln2 + r (Cody-Waite), e^r by math.py's degree-6 fit, 2^n as two exponent-field
    multiplies.  Results below the smallest normal float are 0: every masked score is exp(-inf), and a
    subnormal product costs a microcode assist.  NaN stays NaN."""
    c = _P["f32"]

    def k(v: float) -> str:
        return splat_f32(f, _hexf(v))

    nan = f.tmp(f"fcmp uno {_V} {x}, {x}")
    hi, lo = k(c["exp_hi"]), k(_EXP_NORMAL_MIN)
    xc = f.tmp(f"select {_M} {f.tmp(f'fcmp ogt {_V} {x}, {hi}')}, {_V} {hi}, {_V} {x}")
    xc = f.tmp(f"select {_M} {f.tmp(f'fcmp olt {_V} {xc}, {lo}')}, {_V} {lo}, {_V} {xc}")
    xc = f.tmp(f"select {_M} {nan}, {_V} zeroinitializer, {_V} {xc}")
    n = f.tmp(f"call {_V} @llvm.roundeven.v16f32({_V} {f.tmp(f'fmul {_V} {xc}, {k(1.0 / math.log(2.0))}')})")
    ln2_hi, ln2_lo = k(-c["ln2_hi"]), k(-c["ln2_lo"])
    r = f.tmp(f"call {_V} @llvm.fma.v16f32({_V} {n}, {_V} {ln2_hi}, {_V} {xc})")
    r = f.tmp(f"call {_V} @llvm.fma.v16f32({_V} {n}, {_V} {ln2_lo}, {_V} {r})")
    p = k(_EXP_F32[0])
    for coef in _EXP_F32[1:]:
        p = f.tmp(f"call {_V} @llvm.fma.v16f32({_V} {p}, {_V} {r}, {_V} {k(coef)})")
    ni = f.tmp(f"fptosi {_V} {n} to <16 x i32>")
    n1 = f.tmp(f"ashr <16 x i32> {ni}, {_const('i32', 1)}")
    n2 = f.tmp(f"sub <16 x i32> {ni}, {n1}")
    scales = []
    for part in (n1, n2):
        biased = f.tmp(f"add <16 x i32> {part}, {_const('i32', c['bias'])}")
        bits = f.tmp(f"shl <16 x i32> {biased}, {_const('i32', c['mbits'])}")
        scales.append(f.tmp(f"bitcast <16 x i32> {bits} to {_V}"))
    res = f.tmp(f"fmul {_V} {f.tmp(f'fmul {_V} {p}, {scales[0]}')}, {scales[1]}")
    res = f.tmp(f"select {_M} {f.tmp(f'fcmp olt {_V} {x}, {lo}')}, {_V} zeroinitializer, {_V} {res}")
    return f.tmp(f"select {_M} {nan}, {_V} {x}, {_V} {res}")


def _hexf(v: float) -> str:
    """v rounded to float32, in LLVM's hex double form (the exact spelling of a float constant)."""
    return "0x" + struct.pack(">d", struct.unpack("<f", struct.pack("<f", v))[0]).hex().upper()



def _vload(f: Fn, p: str, lanes: str, fill: str = "zeroinitializer") -> str:
    return f.tmp(f"call {_V} @llvm.masked.load.v16f32.p0(ptr {p}, i32 4, {_M} {lanes}, {_V} {fill})")


def _vstore(f: Fn, v: str, p: str, lanes: str) -> None:
    masked_store(f, _V, v, p, 4, lanes)


def _blocks(f: Fn, n: str, hint: str):
    """for j in 0, 16, ... < n: returns (j, the lanes below n, close)."""
    j, close = f.loop("0", n, "16", hint)
    return j, mask16(f, f.tmp(f"sub i64 {n}, {j}")), close


def _accumulate(f: Fn, acc: str, op: str, v: str) -> None:
    """acc (a <16 x float> alloca) = op(acc, v)."""
    old = f.tmp(f"load {_V}, ptr {acc}, align 64")
    f.emit(f"store {_V} {f.tmp(op.format(old=old, v=v))}, ptr {acc}, align 64")


def _masked_lanes(f: Fn, has_mask: str, mrow: str, j: str, lanes: str, valid: str) -> str:
    """The lanes of columns j..j+15 whose score is masked (none without a mask).  Without a mask the byte
    load is off in every lane but still reads a valid address (`valid`): masked-off lanes at an unmapped
    one cost a microcode assist per load, which made the whole kernel 2.5x slower."""
    keep = f.tmp(f"select i1 {has_mask}, {_M} {lanes}, {_M} zeroinitializer")
    mp = f.tmp(f"select i1 {has_mask}, ptr {_gep(f, 'i8', mrow, j)}, ptr {valid}")
    mb = masked_load(f, "<16 x i8>", mp, 1, keep)
    return f.tmp(f"icmp ne <16 x i8> {mb}, zeroinitializer")


def _softmax_rows(f: Fn, sbuf: str, sp: str, rows: str, S: str, mrow0: str, sml: str, scale: str,
                  fill: str) -> None:
    """Rows [0, rows) of sbuf (row stride sp, S scores each) -> probabilities, in place: scaled, masked
    (mrow0: row 0's mask bytes, null for none; sml: the mask's row stride; masked scores become `fill`), max,
    exp(x - max), sum, divide."""
    ninf, sc, fv = splat_f32(f, _NEG_INF), splat_f32(f, scale), splat_f32(f, fill)
    has_mask = f.tmp(f"icmp ne ptr {mrow0}, null")
    r, close_r = f.loop("0", rows, "1", "sr")
    row = _gep(f, "float", sbuf, _mul(f, r, sp))
    mrow = _gep(f, "i8", mrow0, _mul(f, r, sml))
    mx, total = f.alloca(_V, "mx", 64), f.alloca(_V, "sum", 64)
    f.emit(f"store {_V} {ninf}, ptr {mx}, align 64")
    f.emit(f"store {_V} zeroinitializer, ptr {total}, align 64")
    j, lanes, close_j = _blocks(f, S, "sj")
    pj = _gep(f, "float", row, j)
    w = f.tmp(f"fmul {_V} {_vload(f, pj, lanes, ninf)}, {sc}")
    w = f.tmp(f"select {_M} {_masked_lanes(f, has_mask, mrow, j, lanes, pj)}, {_V} {fv}, {_V} {w}")
    w = f.tmp(f"select {_M} {lanes}, {_V} {w}, {_V} {ninf}")
    _vstore(f, w, pj, lanes)
    _accumulate(f, mx, f"call {_V} @llvm.maximum.v16f32({_V} {{old}}, {_V} {{v}})", w)
    close_j()
    top = splat_f32(f, f.tmp(f"call float @llvm.vector.reduce.fmaximum.v16f32({_V} "
                             f"{f.tmp(f'load {_V}, ptr {mx}, align 64')})"))
    j, lanes, close_j = _blocks(f, S, "ej")
    pj = _gep(f, "float", row, j)
    e = _exp16(f, f.tmp(f"fsub {_V} {_vload(f, pj, lanes, ninf)}, {top}"))
    e = f.tmp(f"select {_M} {lanes}, {_V} {e}, {_V} zeroinitializer")
    _vstore(f, e, pj, lanes)
    _accumulate(f, total, f"fadd {_V} {{old}}, {{v}}", e)
    close_j()
    tot = splat_f32(f, f.tmp(f"call reassoc float @llvm.vector.reduce.fadd.v16f32(float 0.0, {_V} "
                             f"{f.tmp(f'load {_V}, ptr {total}, align 64')})"))
    j, lanes, close_j = _blocks(f, S, "dj")
    pj = _gep(f, "float", row, j)
    _vstore(f, f.tmp(f"fdiv {_V} {_vload(f, pj, lanes)}, {tot}"), pj, lanes)
    close_j()
    close_r()


def _softmax_grad_rows(f: Fn, pbuf: str, dbuf: str, sp: str, rows: str, S: str, scale: str, mrow0: str,
                       sml: str) -> None:
    """dbuf (dP) -> dS = P * (dP - rowsum(P * dP)) * scale, in place, rows [0, rows); 0 where the score was
    masked (the gradient of masked_fill's where, also in a row of NaNs, which every score of is masked)."""
    sc = splat_f32(f, scale)
    has_mask = f.tmp(f"icmp ne ptr {mrow0}, null")
    r, close_r = f.loop("0", rows, "1", "gr")
    off = _mul(f, r, sp)
    prow, drow = _gep(f, "float", pbuf, off), _gep(f, "float", dbuf, off)
    mrow = _gep(f, "i8", mrow0, _mul(f, r, sml))
    acc = f.alloca(_V, "dot", 64)
    f.emit(f"store {_V} zeroinitializer, ptr {acc}, align 64")
    j, lanes, close_j = _blocks(f, S, "gj")
    p, d = (_vload(f, _gep(f, "float", row, j), lanes) for row in (prow, drow))
    pd = f.tmp(f"fmul {_V} {p}, {d}")
    _accumulate(f, acc, f"fadd {_V} {{old}}, {{v}}", pd)
    close_j()
    dot = splat_f32(f, f.tmp(f"call reassoc float @llvm.vector.reduce.fadd.v16f32(float 0.0, {_V} "
                             f"{f.tmp(f'load {_V}, ptr {acc}, align 64')})"))
    j, lanes, close_j = _blocks(f, S, "hj")
    pp, dp = _gep(f, "float", prow, j), _gep(f, "float", drow, j)
    centred = f.tmp(f"fsub {_V} {_vload(f, dp, lanes)}, {dot}")
    ds = f.tmp(f"fmul {_V} {f.tmp(f'fmul {_V} {_vload(f, pp, lanes)}, {centred}')}, {sc}")
    ds = f.tmp(f"select {_M} {_masked_lanes(f, has_mask, mrow, j, lanes, dp)}, {_V} zeroinitializer, {_V} {ds}")
    _vstore(f, ds, dp, lanes)
    close_j()
    close_r()


def _transpose(f: Fn, src: str, rstride: str, n: str, d: str, dst: str, sp: str) -> None:
    """dst[c * sp + j] = src[j * rstride + c] for j < n, c < d (a row-contiguous [n, d] block, transposed)."""
    j, close_j = f.loop("0", n, "1", "tj")
    row = _gep(f, "float", src, _mul(f, j, rstride))
    c, close_c = f.loop("0", d, "1", "tc")
    x = f.tmp(f"load float, ptr {_gep(f, 'float', row, c)}, align 4")
    f.emit(f"store float {x}, ptr {_gep(f, 'float', dst, f.tmp(f'add i64 {_mul(f, c, sp)}, {j}'))}, align 4")
    close_c()
    close_j()


def _unit_bases(f: Fn, u: str, names_and_strides) -> dict:
    """Each operand's base for unit u = b * H + h: ptr + b * batch stride + h * head stride."""
    b = f.tmp(f"sdiv i64 {u}, %H")
    h = f.tmp(f"srem i64 {u}, %H")
    out = {}
    for name, ty, i in names_and_strides:
        off = f.tmp(f"add i64 {_mul(f, b, _stride(f, i))}, {_mul(f, h, _stride(f, i + 1))}")
        out[name] = _gep(f, ty, f"%{name}", off)
    return out


def _row_extent(f: Fn, mrow: str, S: str) -> str:
    """1 + the last column of a mask row (i8 [S]) that is not masked, 0 when every one is: the row's scores
    past it are all -inf, so its probabilities there are exactly 0.  Scanned 16 bytes at a time from the end
    (a causal row stops at its diagonal)."""
    ext = f.alloca("i64", "ext")
    blk = f.alloca("i64", "blk")
    f.emit(f"store i64 0, ptr {ext}")
    up = f.tmp(f"add i64 {S}, 15")
    f.emit(f"store i64 {f.tmp(f'and i64 {up}, -16')}, ptr {blk}")
    head, body, found, done = (f.fresh(x) for x in ("ex.head", "ex.body", "ex.found", "ex.done"))
    f.emit(f"br label %{head}")
    f.label(head)
    j = f.tmp(f"sub i64 {f.tmp(f'load i64, ptr {blk}')}, 16")
    f.emit(f"store i64 {j}, ptr {blk}")
    f.emit(f"br i1 {f.tmp(f'icmp slt i64 {j}, 0')}, label %{done}, label %{body}")
    f.label(body)
    lanes = mask16(f, f.tmp(f"sub i64 {S}, {j}"))
    bytes_ = masked_load(f, "<16 x i8>", _gep(f, "i8", mrow, j), 1, lanes, fill=_const("i8", 1))
    open_ = f.tmp(f"bitcast {_M} {f.tmp(f'icmp eq <16 x i8> {bytes_}, zeroinitializer')} to i16")
    f.emit(f"br i1 {f.tmp(f'icmp eq i16 {open_}, 0')}, label %{head}, label %{found}")
    f.label(found)
    lz = f.tmp(f"zext i16 {f.tmp(f'call i16 @llvm.ctlz.i16(i16 {open_}, i1 true)')} to i64")
    end = f.tmp(f"add i64 {j}, 16")
    f.emit(f"store i64 {f.tmp(f'sub i64 {end}, {lz}')}, ptr {ext}")
    f.emit(f"br label %{done}")
    f.label(done)
    return f.tmp(f"load i64, ptr {ext}")


def _tile_extent(f: Fn, mrow0: str, sml: str, rows: str, S: str, skip: str) -> str:
    """The columns a tile of `rows` query rows needs: the largest row extent (all S without a mask).  A row with
    every score masked counts as all S: softmax makes it NaN, and its NaNs reach every key's dV, as unfused.
    skip false (a finite fill: masked scores still weigh in): all S."""
    out = f.alloca("i64", "text")
    f.emit(f"store i64 {S}, ptr {out}")
    close_m = f.if_(f.tmp(f"and i1 {skip}, {f.tmp(f'icmp ne ptr {mrow0}, null')}"), "masked")
    f.emit(f"store i64 1, ptr {out}")
    r, close_r = f.loop("0", rows, "1", "xr")
    e = _row_extent(f, _gep(f, "i8", mrow0, _mul(f, r, sml)), S)
    e = f.tmp(f"select i1 {f.tmp(f'icmp eq i64 {e}, 0')}, i64 {S}, i64 {e}")   # every score masked: all S
    old = f.tmp(f"load i64, ptr {out}")
    f.emit(f"store i64 {f.tmp(f'call i64 @llvm.smax.i64(i64 {old}, i64 {e})')}, ptr {out}")
    close_r()
    close_m()
    return f.tmp(f"load i64, ptr {out}")


def _zero(f: Fn, row: str, lo: str, hi: str) -> None:
    """row[lo:hi] = 0."""
    j, close = f.loop(lo, hi, "16", "z")
    _vstore(f, "zeroinitializer", _gep(f, "float", row, j), mask16(f, f.tmp(f"sub i64 {hi}, {j}")))
    close()



def _counter0(f: Fn, u: str, i: str) -> str:
    """The dropout counter of query row i's first score in unit u: offset + (u * L + i) * S (the flat index
    of [..., L, S], as F.dropout numbers the probabilities)."""
    row = f.tmp(f"add i64 {_mul(f, u, '%L')}, {i}")
    return f.tmp(f"add i64 %offset, {_mul(f, row, '%S')}")


def _keep16(f: Fn, base: str, j: str) -> str:
    """The dropout factors of counters base + j + 0..15: `keep` where the uniform draw (ember/ir/rng.py:
    splitmix64(c * GOLDEN + mixed), its top 24 bits times 2^-24) is >= p, else 0."""
    c = f.tmp(f"add <16 x i64> {splat_i64(f, f.tmp(f'add i64 {base}, {j}'))}, {_IOTA64}")
    scrambled = f.tmp(f"mul <16 x i64> {c}, {_const('i64', rng.GOLDEN)}")
    z = f.tmp(f"add <16 x i64> {scrambled}, {splat_i64(f, '%mixed')}")
    for shift, mul in zip(rng.SHIFTS, (rng.M1, rng.M2, None)):
        shifted = f.tmp(f"lshr <16 x i64> {z}, {_const('i64', shift)}")
        z = f.tmp(f"xor <16 x i64> {z}, {shifted}")
        if mul is not None:
            z = f.tmp(f"mul <16 x i64> {z}, {_const('i64', mul)}")
    high = f.tmp(f"lshr <16 x i64> {z}, {_const('i64', 40)}")
    top = f.tmp(f"trunc <16 x i64> {high} to <16 x i32>")
    u = f.tmp(f"fmul {_V} {f.tmp(f'uitofp <16 x i32> {top} to {_V}')}, {splat_f32(f, _hexf(2.0 ** -24))}")
    kept = f.tmp(f"fcmp oge {_V} {u}, {splat_f32(f, '%p')}")
    return f.tmp(f"select {_M} {kept}, {_V} {splat_f32(f, '%keep')}, {_V} zeroinitializer")


def _dropout(f: Fn, buf: str, sp: str, rows: str, ext: str, c0: str) -> None:
    """With p > 0: rows [0, rows) of buf, columns [0, ext), times their dropout factors (a product, not a
    select: a NaN row stays NaN, as P * mask does).  c0: row 0's first counter; a row is S counters on."""
    close_p = f.if_(f.tmp("fcmp ogt float %p, 0.0"), "dropout")
    r, close_r = f.loop("0", rows, "1", "dr")
    row = _gep(f, "float", buf, _mul(f, r, sp))
    base = f.tmp(f"add i64 {c0}, {_mul(f, r, '%S')}")
    j, lanes, close_j = _blocks(f, ext, "dk")
    pj = _gep(f, "float", row, j)
    _vstore(f, f.tmp(f"fmul {_V} {_vload(f, pj, lanes)}, {_keep16(f, base, j)}"), pj, lanes)
    close_j()
    close_r()
    close_p()


def _const(ty: str, v: int) -> str:
    """A 16-lane integer constant vector (ty: i8, i32, i64; a uint64 spelled signed, as LLVM reads it)."""
    v = v - (1 << 64) if ty == "i64" and v >= 1 << 63 else v
    return f"<{', '.join(f'{ty} {v}' for _ in range(16))}>"


_IOTA64 = f"<{', '.join(f'i64 {x}' for x in range(16))}>"


def _emit_fwd() -> str:
    """Per unit: K^T into scratch; then per tile of MR query rows, only the columns its rows can see
    (`_tile_extent`: half the work of a causal mask): scores, softmax, P V."""
    f = Fn("define void @attn_fwd(ptr noalias %q, ptr noalias %k, ptr noalias %v, ptr noalias %masked, "
           "ptr noalias %o, ptr noalias %st, i64 %L, i64 %S, i64 %D, i64 %Dv, i64 %H, float %scale, float %fill, "
           "i64 %mixed, i64 %offset, float %p, float %keep, i64 %u0, i64 %u1, ptr noalias %scratch) #0")
    sp = f.tmp("and i64 " + f.tmp("add i64 %S, 15") + ", -16")
    kt = "%scratch"
    sbuf = _gep(f, "float", kt, _mul(f, "%D", sp))
    sql, skl, svl, sml, sol = (_stride(f, i) for i in (2, 5, 8, 11, 14))
    has_mask = f.tmp("icmp ne ptr %masked, null")
    skip = f.tmp(f"fcmp oeq float %fill, {_NEG_INF}")     # masked keys weigh nothing only behind -inf
    u, close_u = f.loop("%u0", "%u1", "1", "u")
    base = _unit_bases(f, u, (("q", "float", 0), ("k", "float", 3), ("v", "float", 6), ("masked", "i8", 9),
                              ("o", "float", 12)))
    mbase = f.tmp(f"select i1 {has_mask}, ptr {base['masked']}, ptr null")
    _transpose(f, base["k"], skl, "%S", "%D", kt, sp)
    r0, close_r = f.loop("0", "%L", str(MR), "qt")
    rows = f.tmp(f"call i64 @llvm.smin.i64(i64 {MR}, i64 {f.tmp(f'sub i64 %L, {r0}')})")
    mrow = f.tmp(f"select i1 {has_mask}, ptr {_gep(f, 'i8', mbase, _mul(f, r0, sml))}, ptr null")
    ext = _tile_extent(f, mrow, sml, rows, "%S", skip)
    _product(f, _gep(f, "float", base["q"], _mul(f, r0, sql)), sql, "1", kt, sp, sbuf, sp, rows, ext, "%D", "0")
    _softmax_rows(f, sbuf, sp, rows, ext, mrow, sml, "%scale", "%fill")
    _dropout(f, sbuf, sp, rows, ext, _counter0(f, u, r0))
    _product(f, sbuf, sp, "1", base["v"], svl, _gep(f, "float", base["o"], _mul(f, r0, sol)), sol, rows, "%Dv",
             ext, "0")
    close_r()
    close_u()
    return f.text()


def _emit_bwd() -> str:
    """Per unit: dK, dV zeroed, K^T and V^T into scratch; per block of QB query rows, per tile of MR rows
    (columns up to the tile's extent): P again, dP = dO V^T, dS, dQ = dS K; then per tile of MR keys, dV += P^T dO
    and dK += dS^T Q over the query rows that see those keys (from the first row whose extent passes them)."""
    f = Fn("define void @attn_bwd(ptr noalias %q, ptr noalias %k, ptr noalias %v, ptr noalias %masked, "
           "ptr noalias %go, ptr noalias %dq, ptr noalias %dk, ptr noalias %dv, ptr noalias %st, i64 %L, i64 %S, "
           "i64 %D, i64 %Dv, i64 %H, float %scale, float %fill, i64 %mixed, i64 %offset, float %p, float %keep, "
           "i64 %u0, i64 %u1, ptr noalias %scratch) #0")
    sp = f.tmp("and i64 " + f.tmp("add i64 %S, 15") + ", -16")
    kt = "%scratch"
    vt = _gep(f, "float", kt, _mul(f, "%D", sp))
    pbuf = _gep(f, "float", vt, _mul(f, "%Dv", sp))
    dbuf = _gep(f, "float", pbuf, _mul(f, str(QB), sp))
    exts = f.alloca(f"[{QB} x i64]", "exts")
    emax = f.alloca("i64", "emax")
    sql, skl, svl, sml, sdl = (_stride(f, i) for i in (2, 5, 8, 11, 14))
    has_mask = f.tmp("icmp ne ptr %masked, null")
    skip = f.tmp(f"fcmp oeq float %fill, {_NEG_INF}")     # masked keys weigh nothing only behind -inf
    u, close_u = f.loop("%u0", "%u1", "1", "u")
    base = _unit_bases(f, u, (("q", "float", 0), ("k", "float", 3), ("v", "float", 6), ("masked", "i8", 9),
                              ("go", "float", 12)))
    mbase = f.tmp(f"select i1 {has_mask}, ptr {base['masked']}, ptr null")
    dq = _gep(f, "float", "%dq", _mul(f, u, _mul(f, "%L", "%D")))
    dk = _gep(f, "float", "%dk", _mul(f, u, _mul(f, "%S", "%D")))
    dv = _gep(f, "float", "%dv", _mul(f, u, _mul(f, "%S", "%Dv")))
    _zero(f, dk, "0", _mul(f, "%S", "%D"))
    _zero(f, dv, "0", _mul(f, "%S", "%Dv"))
    _transpose(f, base["k"], skl, "%S", "%D", kt, sp)
    _transpose(f, base["v"], svl, "%S", "%Dv", vt, sp)
    i0, close_i = f.loop("0", "%L", str(QB), "qb")
    rows = f.tmp(f"call i64 @llvm.smin.i64(i64 {QB}, i64 {f.tmp(f'sub i64 %L, {i0}')})")
    f.emit(f"store i64 0, ptr {emax}")
    r0, close_r = f.loop("0", rows, str(MR), "qt")
    tr = f.tmp(f"call i64 @llvm.smin.i64(i64 {MR}, i64 {f.tmp(f'sub i64 {rows}, {r0}')})")
    qi = f.tmp(f"add i64 {i0}, {r0}")
    mrow = f.tmp(f"select i1 {has_mask}, ptr {_gep(f, 'i8', mbase, _mul(f, qi, sml))}, ptr null")
    ext = _tile_extent(f, mrow, sml, tr, "%S", skip)
    r, close_e = f.loop("0", tr, "1", "er")
    f.emit(f"store i64 {ext}, ptr {_gep(f, 'i64', exts, f.tmp(f'add i64 {r0}, {r}'))}")
    close_e()
    was = f.tmp(f"load i64, ptr {emax}")
    f.emit(f"store i64 {f.tmp(f'call i64 @llvm.smax.i64(i64 {ext}, i64 {was})')}, ptr {emax}")
    prow, drow = _gep(f, "float", pbuf, _mul(f, r0, sp)), _gep(f, "float", dbuf, _mul(f, r0, sp))
    _product(f, _gep(f, "float", base["q"], _mul(f, qi, sql)), sql, "1", kt, sp, prow, sp, tr, ext, "%D", "0")
    _softmax_rows(f, prow, sp, tr, ext, mrow, sml, "%scale", "%fill")
    _product(f, _gep(f, "float", base["go"], _mul(f, qi, sdl)), sdl, "1", vt, sp, drow, sp, tr, ext, "%Dv",
             "0")                                                                          # dP = dO V^T
    c0 = _counter0(f, u, qi)
    _dropout(f, drow, sp, tr, ext, c0)                                                     # dP = dP' * keep
    _softmax_grad_rows(f, prow, drow, sp, tr, ext, "%scale", mrow, sml)
    _dropout(f, prow, sp, tr, ext, c0)                                                     # P' for dV
    _product(f, drow, sp, "1", base["k"], skl, _gep(f, "float", dq, _mul(f, qi, "%D")), "%D", tr, "%D", ext,
             "0")                                                                          # dQ = dS K
    close_r()
    top = f.tmp(f"load i64, ptr {emax}")
    r, close_z = f.loop("0", rows, "1", "zr")     # P and dS are 0 past a row's extent: the key tiles read them
    e = f.tmp(f"load i64, ptr {_gep(f, 'i64', exts, r)}")
    _zero(f, _gep(f, "float", pbuf, _mul(f, r, sp)), e, top)
    _zero(f, _gep(f, "float", dbuf, _mul(f, r, sp)), e, top)
    close_z()
    j0, close_j = f.loop("0", top, str(MR), "kt")
    keys = f.tmp(f"call i64 @llvm.smin.i64(i64 {MR}, i64 {f.tmp(f'sub i64 {top}, {j0}')})")
    lo = f.alloca("i64", "lo")
    f.emit(f"store i64 {rows}, ptr {lo}")
    r, close_lo = f.loop("0", rows, "1", "lr")    # the first query row that sees key j0 (rows before it: P = 0)
    e = f.tmp(f"load i64, ptr {_gep(f, 'i64', exts, r)}")
    cur = f.tmp(f"load i64, ptr {lo}")
    hit = f.tmp(f"and i1 {f.tmp(f'icmp sgt i64 {e}, {j0}')}, {f.tmp(f'icmp eq i64 {cur}, {rows}')}")
    f.emit(f"store i64 {f.tmp(f'select i1 {hit}, i64 {r}, i64 {cur}')}, ptr {lo}")
    close_lo()
    first = f.tmp(f"load i64, ptr {lo}")
    kk = f.tmp(f"sub i64 {rows}, {first}")
    pa = _gep(f, "float", pbuf, f.tmp(f"add i64 {_mul(f, first, sp)}, {j0}"))
    da = _gep(f, "float", dbuf, f.tmp(f"add i64 {_mul(f, first, sp)}, {j0}"))
    qf = f.tmp(f"add i64 {i0}, {first}")
    _product(f, pa, "1", sp, _gep(f, "float", base["go"], _mul(f, qf, sdl)), sdl,
             _gep(f, "float", dv, _mul(f, j0, "%Dv")), "%Dv", keys, "%Dv", kk, "1")      # dV += P^T dO
    _product(f, da, "1", sp, _gep(f, "float", base["q"], _mul(f, qf, sql)), sql,
             _gep(f, "float", dk, _mul(f, j0, "%D")), "%D", keys, "%D", kk, "1")         # dK += dS^T Q
    close_j()
    close_i()
    close_u()
    return f.text()


def emit_module(triple: str = "", data_layout: str = "", vector_bits: int = 512) -> str:
    head = module_head(triple, data_layout)
    decls = [f"declare {_V} @llvm.fma.v16f32({_V}, {_V}, {_V})",
             f"declare {_V} @llvm.masked.load.v16f32.p0(ptr, i32, {_M}, {_V})",
             f"declare void @llvm.masked.store.v16f32.p0({_V}, ptr, i32, {_M})",
             f"declare <16 x i8> @llvm.masked.load.v16i8.p0(ptr, i32, {_M}, <16 x i8>)",
             f"declare float @llvm.vector.reduce.fadd.v16f32(float, {_V})",
             f"declare float @llvm.vector.reduce.fmaximum.v16f32({_V})",
             f"declare {_V} @llvm.maximum.v16f32({_V}, {_V})",
             f"declare {_V} @llvm.roundeven.v16f32({_V})",
             "declare i64 @llvm.smin.i64(i64, i64)", "declare i64 @llvm.smax.i64(i64, i64)",
             "declare i16 @llvm.ctlz.i16(i16, i1)"]
    tiles = TILES[512 if vector_bits >= 512 else 256]
    # below AVX-512, whole vectors store plainly (llvm_text.masked_store): AVX2's masked stores made the
    # forward and backward ~30% slower on an AVX2 EPYC
    with masked_moves(vector_bits >= 512):
        parts = head + decls + [_emit_outer(t) for t in tiles] + [_emit_product(tiles)]
        kernels = [_emit_fwd(), _emit_bwd()]
        parts += kernels + [_emit_claiming(k, "u0", "u1") for k in kernels]
    parts.append(ATTRIBUTES)
    return "\n\n".join(parts) + "\n"
