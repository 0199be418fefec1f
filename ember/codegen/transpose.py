"""A float32 copy kernel that only rotates its buffer's axes, as register-blocked 16 x 16 transposes.

In: a `Kernel` (ember/ir/kernel.py).  Out: `plan(kernel)` -- None, or (A_inner, B) for a kernel that
copies one float32 buffer through a rotation of its axes: `store dst[o0, ..., ok] = load src[oj, ..., ok,
o0, ..., oj-1]`, i.e. dst[A, B] = src[B, A] as 2-D arrays, A the product of the first j outer sizes and
B of the rest -- and `emit(kernel, A_inner, B)`, the LLVM text of the kernel with the generic signature
(ember/codegen/llvm/render.py: `i32 @name(ptr src, ptr dst, ptr err, i64 start, i64 stop)`, [start, stop)
over the first outer axis, so dst rows [start * A_inner, stop * A_inner)).

Why: a convolution's batch-last columns are the NCHW activations transposed ([64, 1440] -> [1440, 64] for
MNIST's conv2 input, and its image for conv1).  The generic loop nest walks the destination contiguously and
the source with a stride of A elements, one scalar load per element: 6-9 GB/s, a quarter of copy bandwidth.
Here 16 source rows of 16 contiguous floats are loaded, transposed in registers (llvm_text.transpose16) and
stored as 16 destination rows of 16 -- whole cache lines both ways.  Edges are masked, and nothing outside
the two buffers is read or written.
"""
from __future__ import annotations

import math

from ember.ir import dtypes as dt
from ember.ir.index import Var
from ember.ir.kernel import Kernel, Load

from .llvm_text import Fn, mask16, masked_store, transpose16

__all__ = ["plan", "emit", "DECLARATIONS"]

_V, _M = "<16 x float>", "<16 x i1>"
DECLARATIONS = (f"declare {_V} @llvm.masked.load.v16f32.p0(ptr, i32, {_M}, {_V})",
                f"declare void @llvm.masked.store.v16f32.p0({_V}, ptr, i32, {_M})",
                "declare i64 @llvm.smin.i64(i64, i64)", "declare i64 @llvm.smax.i64(i64, i64)")
MIN_POINTS = 256         # smaller copies keep the generic loop (a block would be mostly masked lanes)


def _var(e, axis: int) -> bool:
    return isinstance(e, Var) and e.kind == "o" and e.axis == axis


def plan(k: Kernel) -> tuple[int, int] | None:
    """(A_inner, B) when k is a float32 rotation copy (module docstring), else None."""
    if k.symbols or k.inner or len(k.stores) != 1 or len(k.inputs) != 1 or len(k.outputs) != 1:
        return None
    st = k.stores[0]
    ld = st.value
    n = len(k.outer)
    if not isinstance(ld, Load) or ld.fill is not None or ld.dtype is not dt.float32 or n < 2:
        return None
    if ld.buf is not k.inputs[0] or st.buf is not k.outputs[0] or tuple(st.buf.shape) != tuple(k.outer):
        return None
    if not all(_var(e, i) for i, e in enumerate(st.index)) or len(ld.index) != n:
        return None
    for j in range(1, n):       # load index [oj, ..., o(n-1), o0, ..., o(j-1)]
        if all(_var(e, (j + i) % n) for i, e in enumerate(ld.index)):
            a, b = math.prod(k.outer[:j]), math.prod(k.outer[j:])
            if a * b < MIN_POINTS or a < 2 or b < 2:
                return None
            return math.prod(k.outer[1:j]), b
    return None


def emit(k: Kernel, a_inner: int, b: int) -> str:
    """The kernel's definition (LLVM text, `{` on its own line as llvmlite writes it)."""
    src, dst = k.inputs[0].name, k.outputs[0].name
    f = Fn(f'define i32 @"{k.name}"(ptr noalias %"{src}", ptr noalias %"{dst}", ptr noalias %err, i64 %start, '
           "i64 %stop) nounwind")
    a_total = math.prod(k.outer) // b

    a0 = f.tmp(f"mul i64 %start, {a_inner}")
    a1 = f.tmp(f"mul i64 %stop, {a_inner}")
    a, close_a = f.loop(a0, a1, "16", "a")
    cols = mask16(f, f.tmp(f"sub i64 {a1}, {a}"))            # source columns a .. a + 15 inside the range
    blk, close_b = f.loop("0", str(b), "16", "b")
    rows = []
    for i in range(16):                                 # source rows blk + i (past B: no lanes)
        r = f.tmp(f"add i64 {blk}, {i}")
        m = f.tmp(f"select i1 {f.tmp(f'icmp slt i64 {r}, {b}')}, {_M} {cols}, {_M} zeroinitializer")
        r = f.tmp(f"call i64 @llvm.smin.i64(i64 {r}, i64 {b - 1})")
        off = f.tmp(f"add i64 {f.tmp(f'mul i64 {r}, {a_total}')}, {a}")
        p = f.tmp(f'getelementptr float, ptr %"{src}", i64 {off}')
        rows.append(f.tmp(f"call {_V} @llvm.masked.load.v16f32.p0(ptr {p}, i32 4, {_M} {m}, {_V} zeroinitializer)"))
    out_cols = mask16(f, f.tmp(f"sub i64 {b}, {blk}"))       # destination columns blk .. blk + 15 inside B
    last = f.tmp(f"sub i64 {a1}, 1")
    for r, v in enumerate(transpose16(f, rows)):        # destination rows a + r (past the range: no lanes)
        ar = f.tmp(f"add i64 {a}, {r}")
        m = f.tmp(f"select i1 {f.tmp(f'icmp slt i64 {ar}, {a1}')}, {_M} {out_cols}, {_M} zeroinitializer")
        ar = f.tmp(f"call i64 @llvm.smin.i64(i64 {ar}, i64 {last})")
        off = f.tmp(f"add i64 {f.tmp(f'mul i64 {ar}, {b}')}, {blk}")
        p = f.tmp(f'getelementptr float, ptr %"{dst}", i64 {off}')
        masked_store(f, _V, v, p, 4, m)
    close_b()
    close_a()
    head, body = f.text().split(" {\n", 1)
    assert body.endswith("  ret void\n}")
    return head + "\n{\n" + body[:-len("  ret void\n}")] + "  ret i32 0\n}"
