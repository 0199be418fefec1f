"""What the hand-written kernels (the GEMMs of ember/codegen/gemm_bf16.py and gemm_f32.py) share: `Fn`, a
function body of textual LLVM IR built line by line (SSA temporaries, labels, counted loops, if-blocks), and
`Tile`, a register tile of float32 accumulators, masked vector moves for targets with and without native
ones (`masked_load`, `masked_store`, `masked_moves`).  Pure text.

    f = Fn("define void @k(ptr %x, i64 %n) #0")
    i, close = f.loop("0", "%n", "16", "i")
    ...
    close()
    text = f.text()
"""
from __future__ import annotations

import threading
from contextlib import contextmanager
from dataclasses import dataclass

__all__ = ["Fn", "Tile", "V16F", "V16I", "IOTA16", "claims", "mask16", "transpose16", "splat_f32", "splat_i32",
           "splat_i64", "module_head", "ATTRIBUTES", "masked_load", "masked_store", "masked_moves"]

V16F, V16I = "<16 x float>", "<16 x i32>"
IOTA16 = f"<{', '.join(f'i32 {x}' for x in range(16))}>"     # lane numbers 0..15


@dataclass(frozen=True)
class Tile:
    """A register tile: MR rows x NR = 16 * nv columns of float32 accumulators (mr * nv zmm registers)."""
    mr: int
    nv: int

    @property
    def nr(self) -> int:
        return 16 * self.nv

    @property
    def tag(self) -> str:
        return f"{self.mr}x{self.nr}"


_TARGET = threading.local()


@contextmanager
def masked_moves(native: bool):
    """Functions built (Fn) inside this block move vectors under a mask natively (one llvm.masked.* call:
    AVX-512) or, native False (AVX2), plainly when every lane is on (see `masked_load`)."""
    old = getattr(_TARGET, "native", True)
    _TARGET.native = native
    try:
        yield
    finally:
        _TARGET.native = old


class Fn:
    """Textual LLVM IR for one function: SSA temporaries, labels, counted loops (counters live in
    allocas; SROA turns them and the accumulator arrays into registers).  native_masks: how its
    `masked_load` / `masked_store` move vectors (`masked_moves`)."""

    def __init__(self, header: str):
        self.native_masks = getattr(_TARGET, "native", True)
        self.lines = [header + " {", "entry:"]
        self.allocas: list[str] = []
        self.n = 0
        self.cur = "entry"

    def tmp(self, expr: str, hint: str = "t") -> str:
        self.n += 1
        name = f"%{hint}{self.n}"
        self.lines.append(f"  {name} = {expr}")
        return name

    def emit(self, line: str) -> None:
        self.lines.append("  " + line)

    def label(self, name: str) -> None:
        self.lines.append(f"{name}:")
        self.cur = name

    def fresh(self, hint: str) -> str:
        self.n += 1
        return f"{hint}{self.n}"

    def alloca(self, ty: str, hint: str, align: int = 8) -> str:
        self.n += 1
        name = f"%{hint}{self.n}"
        self.allocas.append(f"  {name} = alloca {ty}, align {align}")
        return name

    def loop(self, lo: str, hi: str, step: str, hint: str):
        """for (v = lo; v < hi; v += step): returns (v, close) -- call close() after the body."""
        ctr = self.alloca("i64", hint + ".ctr")
        self.emit(f"store i64 {lo}, ptr {ctr}")
        head, body, done = self.fresh(hint + ".head"), self.fresh(hint + ".body"), self.fresh(hint + ".done")
        self.emit(f"br label %{head}")
        self.label(head)
        v = self.tmp(f"load i64, ptr {ctr}", hint)
        c = self.tmp(f"icmp slt i64 {v}, {hi}")
        self.emit(f"br i1 {c}, label %{body}, label %{done}")
        self.label(body)

        def close():
            nxt = self.tmp(f"add nsw i64 {v}, {step}")
            self.emit(f"store i64 {nxt}, ptr {ctr}")
            self.emit(f"br label %{head}")
            self.label(done)
        return v, close

    def if_(self, cond: str, hint: str):
        """if (cond) { ... }: returns close() to call after the body."""
        then, done = self.fresh(hint + ".then"), self.fresh(hint + ".end")
        self.emit(f"br i1 {cond}, label %{then}, label %{done}")
        self.label(then)

        def close():
            self.emit(f"br label %{done}")
            self.label(done)
        return close

    def text(self) -> str:
        body = self.lines[:2] + self.allocas + self.lines[2:]
        return "\n".join(body + ["  ret void", "}"])


def _lanes(vty: str) -> tuple:
    """(lanes, the element as an intrinsic's name spells it): "<16 x float>" -> (16, "f32")."""
    n, elt = vty.strip("<>").split(" x ")
    return int(n), {"float": "f32", "double": "f64", "half": "f16"}.get(elt, elt)


def masked_load(f: Fn, vty: str, p: str, align: int, mask: str, native: bool | None = None,
                fill: str = "zeroinitializer") -> str:
    """vty (<n x elt>) at p under mask (masked-off lanes `fill`, never read).  native: one llvm.masked.load --
    AVX-512 (BW) has masked moves of every element size.  Else a plain load when every lane is on, the
    masked one only at an edge: AVX2 has no masked moves of bytes and words (LLVM scalarises them, ~1 ns
    an element) and its masked float stores (vmaskmovps) are slow on AMD Zen 2 (a bf16 -> float32 cast of
    1M elements: 640 us with them, 140 us with plain stores)."""
    native = f.native_masks if native is None else native
    n, elt = _lanes(vty)
    call = f"call {vty} @llvm.masked.load.v{n}{elt}.p0(ptr {p}, i32 {align}, <{n} x i1> {mask}, {vty} {fill})"
    if native:
        return f.tmp(call)
    whole, edge, done = f.fresh("whole"), f.fresh("edge"), f.fresh("loaded")
    f.emit(f"br i1 {_all_on(f, mask, n)}, label %{whole}, label %{edge}")
    f.label(whole)
    a = f.tmp(f"load {vty}, ptr {p}, align {align}")
    f.emit(f"br label %{done}")
    f.label(edge)
    b = f.tmp(call)
    f.emit(f"br label %{done}")
    f.label(done)
    return f.tmp(f"phi {vty} [{a}, %{whole}], [{b}, %{edge}]")


def masked_store(f: Fn, vty: str, v: str, p: str, align: int, mask: str, native: bool | None = None) -> None:
    """v (vty) to p under mask; native as for `masked_load`."""
    native = f.native_masks if native is None else native
    n, elt = _lanes(vty)
    call = f"call void @llvm.masked.store.v{n}{elt}.p0({vty} {v}, ptr {p}, i32 {align}, <{n} x i1> {mask})"
    if native:
        f.emit(call)
        return
    whole, edge, done = f.fresh("whole"), f.fresh("edge"), f.fresh("stored")
    f.emit(f"br i1 {_all_on(f, mask, n)}, label %{whole}, label %{edge}")
    f.label(whole)
    f.emit(f"store {vty} {v}, ptr {p}, align {align}")
    f.emit(f"br label %{done}")
    f.label(edge)
    f.emit(call)
    f.emit(f"br label %{done}")
    f.label(done)


def _all_on(f: Fn, mask: str, n: int) -> str:
    return f.tmp(f"icmp eq i{n} {f.tmp(f'bitcast <{n} x i1> {mask} to i{n}')}, -1")


def claims(f: Fn, counter: str, lo: str, hi: str, step: str, hint: str):
    """for (v = lo; v < hi; v += step), each v claimed from the i64 at `counter` -- shared by the threads
    that run the loop, set to lo by their caller: each runs what it claims, as it comes -- or, with a null
    counter, all of it here.  Returns (v, close): call close() after the body."""
    mine = f.alloca("i64", hint + ".mine")
    f.emit(f"store i64 {lo}, ptr {mine}")
    ctr = f.tmp(f"select i1 {f.tmp(f'icmp eq ptr {counter}, null')}, ptr {mine}, ptr {counter}")
    head, body, done = f.fresh(hint + ".claim"), f.fresh(hint + ".body"), f.fresh(hint + ".done")
    f.emit(f"br label %{head}")
    f.label(head)
    v = f.tmp(f"atomicrmw add ptr {ctr}, i64 {step} monotonic, align 8", hint)
    f.emit(f"br i1 {f.tmp(f'icmp slt i64 {v}, {hi}')}, label %{body}, label %{done}")
    f.label(body)

    def close():
        f.emit(f"br label %{head}")
        f.label(done)
    return v, close


def mask16(f: Fn, left: str) -> str:
    """Lanes [0, left) of 16 (left any i64: <= 0 gives none, >= 16 all)."""
    lo = f.tmp(f"call i64 @llvm.smax.i64(i64 {left}, i64 0)")
    lo = f.tmp(f"call i64 @llvm.smin.i64(i64 {lo}, i64 16)")
    return f.tmp(f"icmp slt <16 x i32> {IOTA16}, {splat_i32(f, f.tmp(f'trunc i64 {lo} to i32'))}")


def transpose16(f: Fn, rows: list[str]) -> list[str]:
    """The 16 x 16 transpose of 16 vectors: four stages, each swapping bit p of the row and the lane number
    between the rows r and r + 2^p (two-source shuffles: one unpck / shuf / vpermt2ps each)."""
    rows = list(rows)
    for p in range(4):
        s = 1 << p
        lo = ", ".join(f"i32 {j if not j & s else 16 + j - s}" for j in range(16))
        hi = ", ".join(f"i32 {j + s if not j & s else 16 + j}" for j in range(16))
        for i in range(16):
            if i & s:
                continue
            x, y = rows[i], rows[i + s]
            rows[i] = f.tmp(f"shufflevector <16 x float> {x}, <16 x float> {y}, <16 x i32> <{lo}>")
            rows[i + s] = f.tmp(f"shufflevector <16 x float> {x}, <16 x float> {y}, <16 x i32> <{hi}>")
    return rows


def vec(n: int, elt: str) -> str:
    """The LLVM type of n lanes of elt (n = 1: the scalar)."""
    return elt if n == 1 else f"<{n} x {elt}>"


def widen_bf16(f: Fn, h: str, n: int = 16) -> str:
    """n bf16 words (i16) -> their float32 values (exact)."""
    w = f.tmp(f"zext {vec(n, 'i16')} {h} to {vec(n, 'i32')}")
    s = f.tmp(f"shl {vec(n, 'i32')} {w}, {16 if n == 1 else 'splat (i32 16)'}")
    return f.tmp(f"bitcast {vec(n, 'i32')} {s} to {vec(n, 'float')}")


def round_bf16(f: Fn, v: str, n: int = 16, native: bool = False) -> str:
    """n float32 -> n bf16 words (i16): round to nearest even, NaN -> 0x7FC0, denormals kept -- PyTorch's
    c10::BFloat16 rounding and eager's cast (cvt_f32_bf16), so a product over float32 operands rounded as
    they are packed equals the product over eager's bf16 copies bit for bit.  native (n = 16): one
    vcvtneps2bf16 (AVX512-BF16) instead of ~9 integer ops -- the same rounding, but NaN stays a quiet NaN
    (sign and payload kept) and, like vdpbf16ps, it flushes denormals to zero; at K = 32 the rounding
    took a third of the kernel's time."""
    if native:
        r = f.tmp(f"call <16 x bfloat> @llvm.x86.avx512bf16.cvtneps2bf16.512(<16 x float> {v})")
        return f.tmp(f"bitcast <16 x bfloat> {r} to <16 x i16>")
    vf, vi = vec(n, "float"), vec(n, "i32")

    def k(x: int) -> str:
        return str(x) if n == 1 else f"splat (i32 {x})"
    bits = f.tmp(f"bitcast {vf} {v} to {vi}")
    lsb = f.tmp(f"and {vi} {f.tmp(f'lshr {vi} {bits}, {k(16)}')}, {k(1)}")
    r = f.tmp(f"add {vi} {bits}, {f.tmp(f'add {vi} {lsb}, {k(32767)}')}")
    r = f.tmp(f"lshr {vi} {r}, {k(16)}")
    nan = f.tmp(f"fcmp uno {vf} {v}, {'0.0' if n == 1 else 'zeroinitializer'}")
    r = f.tmp(f"select {vec(n, 'i1')} {nan}, {vi} {k(32704)}, {vi} {r}")
    return f.tmp(f"trunc {vi} {r} to {vec(n, 'i16')}")


def splat_f32(f: Fn, scalar: str) -> str:
    """<16 x float> of one float value."""
    v = f.tmp(f"insertelement {V16F} poison, float {scalar}, i64 0")
    return f.tmp(f"shufflevector {V16F} {v}, {V16F} poison, {V16I} zeroinitializer")


def splat_i32(f: Fn, scalar: str) -> str:
    """<16 x i32> of one i32 value."""
    v = f.tmp(f"insertelement {V16I} poison, i32 {scalar}, i64 0")
    return f.tmp(f"shufflevector {V16I} {v}, {V16I} poison, {V16I} zeroinitializer")


def splat_i64(f: Fn, scalar: str) -> str:
    """<16 x i64> of one i64 value (element offsets of a gather's lanes)."""
    v = f.tmp(f"insertelement <16 x i64> poison, i64 {scalar}, i64 0")
    return f.tmp(f"shufflevector <16 x i64> {v}, <16 x i64> poison, {V16I} zeroinitializer")


# the attribute group every hand-written function carries (#0)
ATTRIBUTES = 'attributes #0 = { nounwind "prefer-vector-width"="512" }'


def module_head(triple: str = "", data_layout: str = "") -> list[str]:
    """A module's target lines (none given: LLVM's defaults)."""
    head = [f'target triple = "{triple}"'] if triple else []
    if data_layout:
        head.append(f'target datalayout = "{data_layout}"')
    return head
