"""LLVM IR text of index_add's accumulation: out[a, idx[i], b] += src[a, i, b], rows in index order.

In: nothing (one function per float dtype).  Out: module text for ember/runtime/eager_kernels.py, which
loads it with cpu.NativeLibrary and runs it on `out` (a copy of the input) for the eager kernel of
`index_add` -- the gradient of an embedding lookup, which a compiled training step runs as an eager
step because the kernel IR has no accumulating stores.

    void index_add_f32(ptr out, ptr src, ptr idx, i64 A, i64 I, i64 N, i64 B, i64 b0, i64 b1, ptr status)

`out` is [A, N, B], `src` [A, I, B], `idx` int64[I]; columns b0 <= b < b1 only (a caller may split the
columns between threads: their stores never meet).  Every index is checked before anything is
written: the first one outside [0, N) stops the call with *status = its position + 1.  The inner
loop over b is written as scalar code over contiguous rows; LLVM vectorises it.  Rows are added in
the order of idx, as PyTorch's CPU kernel does, so repeated indices sum in that order.
"""
from __future__ import annotations

from .llvm_text import ATTRIBUTES, Fn, module_head

__all__ = ["emit_module", "FUNCTIONS"]

FUNCTIONS = {"float32": ("index_add_f32", "float"), "float64": ("index_add_f64", "double")}


def _emit(name: str, ty: str) -> str:
    f = Fn(f"define void @{name}(ptr noalias %out, ptr noalias %src, ptr noalias %idx, i64 %A, i64 %I, i64 %N, "
           "i64 %B, i64 %b0, i64 %b1, ptr noalias %status) #0")
    # 1. the indices, all of them, before any store
    i, close = f.loop("0", "%I", "1", "chk")
    j = f.tmp(f"load i64, ptr {f.tmp(f'getelementptr inbounds i64, ptr %idx, i64 {i}')}")
    low, high = f.tmp(f"icmp slt i64 {j}, 0"), f.tmp(f"icmp sge i64 {j}, %N")
    end_if = f.if_(f.tmp(f"or i1 {low}, {high}"), "bad")
    f.emit(f"store i64 {f.tmp(f'add i64 {i}, 1')}, ptr %status")
    f.emit("ret void")
    f.label(f.fresh("dead"))
    end_if()
    close()
    # 2. out[a, idx[i], b0:b1] += src[a, i, b0:b1]
    a, close_a = f.loop("0", "%A", "1", "a")
    out_plane, src_plane = f.tmp(f"mul i64 {a}, %N"), f.tmp(f"mul i64 {a}, %I")
    i, close_i = f.loop("0", "%I", "1", "i")
    j = f.tmp(f"load i64, ptr {f.tmp(f'getelementptr inbounds i64, ptr %idx, i64 {i}')}")
    out_row = f.tmp(f"mul i64 {f.tmp(f'add i64 {out_plane}, {j}')}, %B")
    src_row = f.tmp(f"mul i64 {f.tmp(f'add i64 {src_plane}, {i}')}, %B")
    po = f.tmp(f"getelementptr inbounds {ty}, ptr %out, i64 {out_row}")
    ps = f.tmp(f"getelementptr inbounds {ty}, ptr %src, i64 {src_row}")
    b, close_b = f.loop("%b0", "%b1", "1", "b")
    qo = f.tmp(f"getelementptr inbounds {ty}, ptr {po}, i64 {b}")
    qs = f.tmp(f"getelementptr inbounds {ty}, ptr {ps}, i64 {b}")
    x, y = f.tmp(f"load {ty}, ptr {qo}"), f.tmp(f"load {ty}, ptr {qs}")
    f.emit(f"store {ty} {f.tmp(f'fadd {ty} {x}, {y}')}, ptr {qo}")
    close_b()
    close_i()
    close_a()
    return f.text()


def emit_module(triple: str = "", data_layout: str = "") -> str:
    head = module_head(triple, data_layout)
    parts = head + [_emit(name, ty) for name, ty in FUNCTIONS.values()]
    parts.append(ATTRIBUTES)
    return "\n\n".join(parts) + "\n"
