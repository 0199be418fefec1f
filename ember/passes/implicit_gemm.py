"""implicit_gemm: an im2col that only products read is never stored; the products gather it in place.

In: a scheduled Program (after fusion, loop order, layout and unrolling; before memory planning).
Out: the same Program, where a kernel that only copies elements of one buffer into a matrix that only
matmul externs read as their B operand (plain or transposed) is gone; those externs read its source
instead, with `gather_b=(K, J, L, koff, starts, consts)`: the matrix is [K, J], its columns come in
J / L runs of L consecutive source elements (run r starts at starts[r]), row k adds koff[k] to them or
is the constant of `consts` (koff -1).  ember/kernels/blas.py materializes that on request; the float32
GEMM (ember/runtime/gemm_f32.py) reads it straight from the source, block by block -- a bfloat16 one too
(compiled code under autocast), widening the values in registers.

Why: a convolution is im2col + GEMM (ember/nn/_functional/conv.py).  The MNIST CNN's conv1 columns are
3.7 MB: the kernel writing them took ~0.4-0.5 ms in a training step (a write to memory: ~0.1 ms when it
stays in cache), and the forward product and the weight gradient each read them back from memory.
Gathered in place, the forward product ran in 0.30-0.42 ms instead of ~0.5 (im2col) + ~0.5 (GEMM).  Under
autocast (bf16 columns, AVX2 EPYC) the MNIST training step went from 5.8 to 4.9 ms: conv1's columns (~120 us
to store) and conv2's (~135 us), and again in the backward, are gone, and the bf16 GEMM's packing with them.

What a copy kernel gathers is found by running it, not by reading its index algebra: the kernel (a bf16
one as its float32 twin: bf16 would round the codes) is
evaluated (ember/ir/kernel_eval.py) on a source holding each element's own position (odd codes
base + 2i + 1, exact in float32, base above every integer constant the kernel stores): an output element
holding a code came from that position, any other value is a constant.  Only kernels that move values
are tried (loads and constants chosen by index conditions: no arithmetic on the values, which codes
could not reveal -- relu or abs leave positive codes as they are).  The map must then be separable
(row offset + column offset) with column runs of at least MIN_RUN, constants filling whole rows -- or
the kernel is left alone.  Masked borders (padding), arithmetic or a second input all fail that test.
"""
from __future__ import annotations

from collections import defaultdict

import numpy as np

from ember.ir import dtypes as dt
from ember.ir.kernel import Buf, Cast, Const, Kernel, Load, Store, Where, topo_order
from ember.ir.kernel_eval import evaluate
from ember.ir.program import ExternStep, KernelStep, ValueKind
from ember.ir.sizes import is_static

__all__ = ["implicit_gathers", "gather_map", "MIN_RUN"]

MIN_RUN = 16            # shorter runs would be copied a few floats at a time
MAX_SOURCE = 1 << 22    # codes 2i + 3 stay exact in float32 below 2^24


def implicit_gathers(program) -> int:
    """Rewrite every such im2col (see the module docstring); returns how many kernels went."""
    writer, readers = {}, defaultdict(list)
    for st in program.steps:
        for w in st.writes:
            writer[w] = st
        for p, r in enumerate(st.reads):
            readers[r].append((st, p))
    gone = 0
    for name, users in readers.items():
        v = program.values.get(name)
        prod = writer.get(name)
        if (v is None or v.kind is not ValueKind.INTERNAL or not isinstance(prod, KernelStep)
                or len(prod.kernel.inputs) != 1 or len(prod.kernel.outputs) != 1 or name in program.results):
            continue
        src = program.values[prod.reads[0]]
        if not _candidate(users, v, src, program):
            continue
        view = users[0][0].views.get(1, v.shape)
        desc = gather_map(prod.kernel, tuple(view))
        if desc is None:
            continue
        for st, _ in users:
            st.args[1] = src.name
            st.kernel.inputs[1] = Buf(src.name, src.shape, src.dtype)
            st.views.pop(1, None)
            st.kernel.attrs["gather_b"] = desc
        program.steps.remove(prod)
        del program.values[name]
        gone += 1
    return gone


def _candidate(users, v, src, program) -> bool:
    """Only 2-D float32 (or bfloat16) matmul externs on the CPU read v, as B, all through the same [K, J] view."""
    if (v.dtype not in (dt.float32, dt.bfloat16) or src.dtype is not v.dtype
            or not all(is_static(n) for n in v.shape + src.shape)):     # int() of a size symbol would pin it
        return False
    if src.kind is ValueKind.VIEW or getattr(v.node, "device", "cpu") != "cpu":
        return False
    size = 1
    for n in src.shape:
        size *= int(n)
    if size >= MAX_SOURCE:
        return False
    views = set()
    for st, p in users:
        if not isinstance(st, ExternStep):
            return False
        k = st.kernel
        if (k.op != "matmul" or p != 1 or k.attrs.get("cast_b") or k.attrs.get("bias")
                or k.attrs.get("gather_b") or st.args.count(v.name) != 1):
            return False
        view = tuple(st.views.get(1, v.shape))
        if len(view) != 2 or len(k.inputs[0].shape) != 2:
            return False
        views.add(view)
    return len(views) == 1


def _moves_values_only(kernel) -> bool:
    """Every stored value is a loaded element or a constant, chosen by conditions on indices only: no
    arithmetic on the values.  (relu, abs, clamp or nan_to_num fused into a copy would pass the position
    codes unchanged -- the codes are finite and positive -- and be dropped from real data.)"""
    def has_load(e) -> bool:
        return any(isinstance(n, Load) for n in topo_order([e]))

    def moved(e) -> bool:
        if isinstance(e, (Load, Const)):
            return True
        if isinstance(e, Where):
            return not has_load(e.cond) and moved(e.a) and moved(e.b)
        if isinstance(e, Cast):
            return e.dtype is e.x.dtype and moved(e.x)
        return False
    return all(moved(st.value) for st in kernel.stores)


def _constants(kernel) -> list[float]:
    """The values a value-moving kernel can store besides loaded elements: its constants and fills."""
    out = []
    for n in topo_order([st.value for st in kernel.stores]):
        if isinstance(n, Const):
            out.append(float(n.value))
        elif isinstance(n, Load) and n.fill is not None:
            out.append(float(n.fill))
    return out


def _float32_twin(kernel) -> Kernel:
    """A value-moving kernel over bfloat16 buffers as the same kernel over float32 ones: the position codes
    need float32's 24 bits (bf16 would round them).  Conditions and indices are integer expressions: kept."""
    bufs = {b.name: Buf(b.name, b.shape, dt.float32) if b.dtype is dt.bfloat16 else b
            for b in kernel.inputs + kernel.outputs}

    def buf(b: Buf) -> Buf:
        return bufs[b.name]
    memo: dict = {}

    def twin(e):
        if id(e) not in memo:
            if isinstance(e, Load):
                memo[id(e)] = Load(buf(e.buf), e.index, None if e.fill is None else float(e.fill),
                                   e.masked if e.fill is not None else None)
            elif isinstance(e, Const):
                memo[id(e)] = Const(e.value, dt.float32 if e.dtype is dt.bfloat16 else e.dtype)
            elif isinstance(e, Where):
                memo[id(e)] = Where(e.cond, twin(e.a), twin(e.b))
            else:                                   # a cast to its own dtype (`_moves_values_only`)
                memo[id(e)] = twin(e.x)
        return memo[id(e)]
    stores = [Store(buf(st.buf), st.index, twin(st.value)) for st in kernel.stores]
    return Kernel([buf(b) for b in kernel.inputs], [buf(b) for b in kernel.outputs], kernel.outer, kernel.inner,
                  stores, name=kernel.name)


def gather_map(kernel, view: tuple) -> tuple | None:
    """The gather descriptor of a one-input copy kernel whose output is read as `view` ([K, J]), or None."""
    if not _moves_values_only(kernel):
        return None
    if any(b.dtype is dt.bfloat16 for b in kernel.inputs + kernel.outputs):
        kernel = _float32_twin(kernel)
    src_buf, out_buf = kernel.inputs[0], kernel.outputs[0]
    src_shape = tuple(int(n) for n in src_buf.shape)
    n = int(np.prod(src_shape))
    # codes base + 2i + 1 (odd integers, exact in float32 below 2^24), placed above every integer constant
    # the kernel can store: then a stored value is a loaded element exactly when it is one of the codes
    consts = _constants(kernel)
    if any(c != c for c in consts):
        return None
    base = 2 * int(max([abs(c) for c in consts if c == int(c)] + [0]) // 2 + 1)
    if base + 2 * n >= 1 << 24:
        return None
    codes = (np.arange(n, dtype=np.int32) * 2 + (base + 1)).astype(np.float32).reshape(src_shape)
    out = np.full(tuple(int(d) for d in out_buf.shape), np.nan, np.float32)
    try:
        evaluate(kernel, [codes, out])
    except Exception:  # noqa: BLE001 - anything the evaluator cannot run is not a plain copy
        return None
    first = out.reshape(view)
    if np.isnan(first).any():           # an element the kernel never wrote
        return None
    moved = (first > base) & (first < base + 2 * n) & (np.mod(first, 2) == 1)
    fixed = ~moved
    K, J = view
    const_rows = fixed.all(axis=1)
    if not (moved[~const_rows].all() and (first[const_rows] == first[const_rows][:, :1]).all()):
        return None
    gathered_rows = np.flatnonzero(~const_rows)
    if not len(gathered_rows):
        return None
    pos = (first[gathered_rows].astype(np.int64) - (base + 1)) >> 1
    joff = pos[0] - pos[0, 0]
    koff = pos[:, 0]
    if not (pos == koff[:, None] + joff[None, :]).all():
        return None
    steps = np.flatnonzero(np.diff(joff) != 1)
    L = int(steps[0]) + 1 if len(steps) else J
    if L < MIN_RUN or J % L:
        return None
    starts = joff[::L]
    if not (joff.reshape(-1, L) == starts[:, None] + np.arange(L)).all():
        return None
    full_koff = [-1] * K
    for k, off in zip(gathered_rows.tolist(), koff.tolist()):
        full_koff[k] = off
    consts = tuple((int(k), float(first[k, 0])) for k in np.flatnonzero(const_rows))
    return (K, J, L, tuple(full_koff), tuple(int(s) for s in starts), consts)
