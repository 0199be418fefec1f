"""layout: store an internal buffer in the order its producer's loops walk it.

In: a Program after fusion and loop ordering.  Out: the same Program, where an INTERNAL value that
one kernel stores through a permutation of its loop variables (`store buf[o3, o0, o1, o2]`) and only
kernels read (no extern operand, no eager step, no gather, not a program result) gets the physical
layout of that loop order (`buf: [d1, d2, d3, d0]`, `store buf[o0, o1, o2, o3]`); every load of it
has its index permuted the same way.  Values, not layouts, are what the graph defines: a kernel
reads a buffer only through its Load index, so any permutation of the dims computes the same
values as long as every access is permuted alike.

Why: a convolution in the batch-last layout (ember/nn/_functional/conv.py) produces its activations
as [C, *sp, N] while the graph's logical tensors are [N, C, *sp]; a value saved from such a kernel
(ReLU's mask after max-pool) was stored in the logical order, i.e. scattered with stride C*H*W in
the innermost (batch) loop, and every later window read of it gathered with that stride (MNIST's
conv2 im2col: ~30% of copy bandwidth).  A relayout is taken only when it makes more of the
buffer's accesses contiguous along their kernel's innermost loop (weighted by the points each
kernel runs), so a buffer already read contiguously by its consumers keeps its logical layout.

A value that cannot be relaid (a graph input, a GEMM result) but that a kernel reads many times
over (a window gather: at least REUSE loads per element) with its innermost loop walking a dim
other than the last gets a transposed copy with that dim last, made once by a copy kernel placed
before the reader (`transpose_gathers`): the NCHW image under conv1's batch-last im2col was read
with stride H*W in the innermost (batch) loop, 25 times per element.
"""
from __future__ import annotations

import math
from collections import defaultdict

from ember.ir import index as fi
from ember.ir.index import Var, index_gathers
from ember.ir.kernel import (Binary, Buf, Cast, Const, IndexValue, Kernel, Load, Random, Reduce, Store, Unary,
                             Where, topo_order)
from ember.ir.program import EagerStep, ExternStep, KernelStep, Value, ValueKind
from ember.ir.sizes import hint

from .loop_order import contiguous_along

__all__ = ["relayout_program", "permute_buffers", "transpose_gathers", "rebuild_node"]

REUSE = 4      # loads per element of a value above which a strided gather of it gets a transposed copy ...
MIN_BYTES = 64 << 10    # ... when it is this large (a smaller one stays in L1/L2: its gather is cheap)


def _kernels(step):
    """(kernel, value names in kernel.args order, setter) for each kernel-IR kernel of a step."""
    if isinstance(step, KernelStep):
        def put(k, s=step):
            s.kernel = k
        yield step.kernel, list(step.args), put
    elif isinstance(step, ExternStep) and step.kernel.epilogue is not None:
        ext = step.kernel
        names = [step.scratch] + step.args[len(ext.inputs):]

        def put(k, e=ext):
            e.epilogue = k
        yield ext.epilogue, names, put


def _accesses(k: Kernel, bufname: str):
    """(index, is_store) of every load and store of `bufname` in k."""
    out = [(n.index, False) for n in k.nodes if isinstance(n, Load) and n.buf.name == bufname]
    return out + [(s.index, True) for s in k.stores if s.buf.name == bufname]


def _gathered(k: Kernel, bufname: str) -> bool:
    exprs = [e for n in k.nodes if isinstance(n, Load) for e in n.index]
    exprs += [n.index for n in k.nodes if isinstance(n, IndexValue)]
    exprs += [e for s in k.stores for e in s.index]
    return any(g.buf.name == bufname for e in exprs for g in index_gathers(e))


def _loop_perm(index) -> tuple | None:
    """The dims of a store index sorted by the loop axis they hold, when the index is a permutation
    of distinct outer loop variables (else None)."""
    if not index or not all(isinstance(e, Var) and e.kind == "o" for e in index):
        return None
    if len({e.axis for e in index}) != len(index):
        return None
    return tuple(sorted(range(len(index)), key=lambda d: index[d].axis))


def _score(uses, shape) -> int:
    """Points of the uses that walk the buffer contiguously along their kernel's innermost loop."""
    total = 0
    for k, index in uses:
        if k.inner:
            ranges, var = fi.domain_ranges(k.outer, k.inner), Var("r", len(k.inner) - 1)
        else:
            ranges, var = fi.domain_ranges(k.outer, ()), Var("o", len(k.outer) - 1)
        if contiguous_along(shape, index, ranges, var):
            total += math.prod(hint(s) for s in tuple(k.outer) + tuple(k.inner))
    return total


def relayout_program(program) -> list:
    """Permute the layout of the INTERNAL values that gain from it (see the module docstring), in
    place.  Returns the names of the values relaid."""
    stores: dict[str, list] = defaultdict(list)      # value -> [(kernel, store)]
    uses: dict[str, list] = defaultdict(list)        # value -> [(kernel, index)] loads and stores
    blocked: set[str] = set(program.results) | set(program.inputs)
    for v in program.values.values():
        if v.base is not None:
            blocked.add(v.base)
    for step in program.steps:
        if isinstance(step, EagerStep):
            blocked.update(step.reads + step.writes)
            continue
        if isinstance(step, ExternStep):
            blocked.update(step.args[:len(step.kernel.inputs)])
            if step.kernel.epilogue is None:
                blocked.update(step.args)
        for k, names, _ in _kernels(step):
            for buf, name in zip(k.args, names):
                if _gathered(k, buf.name):
                    blocked.add(name)
                for index, is_store in _accesses(k, buf.name):
                    uses[name].append((k, index))
                if buf in k.outputs:
                    stores[name] += [(k, s) for s in k.stores if s.buf is buf]
    perms = {}
    for name, sts in stores.items():
        v = program.values.get(name)
        if v is None or v.kind is not ValueKind.INTERNAL or name in blocked or len(sts) != 1:
            continue
        perm = _loop_perm(sts[0][1].index)
        if perm is None or perm == tuple(range(len(perm))):
            continue
        new_shape = tuple(v.shape[d] for d in perm)
        new_uses = [(k, tuple(index[d] for d in perm)) for k, index in uses[name]]
        if _score(new_uses, new_shape) > _score(uses[name], v.shape):
            perms[name] = perm
    if perms:
        permute_buffers(program, perms)
    return sorted(perms)


def permute_buffers(program, perms: dict) -> None:
    """Give each value `name` of perms the physical layout `[shape[d] for d in perms[name]]`,
    rewriting every kernel's loads and stores of it (the caller checked that only kernel-IR
    kernels touch it, none through a gather)."""
    for name, perm in perms.items():
        v = program.values[name]
        v.shape = tuple(v.shape[d] for d in perm)
    for step in program.steps:
        for k, names, put in _kernels(step):
            touched = {buf.name: perms[n] for buf, n in zip(k.args, names) if n in perms}
            if touched:
                put(_permuted_kernel(k, touched))


def _permuted_kernel(k: Kernel, perms: dict) -> Kernel:
    """k with the buffers named in perms (buffer name -> dim order) in their permuted layout."""
    new_buf = {}
    for b in k.args:
        if b.name in perms:
            new_buf[b.name] = Buf(b.name, tuple(b.shape[d] for d in perms[b.name]), b.dtype)
    memo: dict[int, object] = {}
    for n in topo_order([s.value for s in k.stores]):
        memo[id(n)] = _rebuilt(n, memo, new_buf, perms)
    stores = []
    for s in k.stores:
        if s.buf.name in perms:
            p = perms[s.buf.name]
            stores.append(Store(new_buf[s.buf.name], [s.index[d] for d in p], memo[id(s.value)]))
        else:
            stores.append(Store(s.buf, s.index, memo[id(s.value)]))
    inputs = [new_buf.get(b.name, b) for b in k.inputs]
    outputs = [new_buf.get(b.name, b) for b in k.outputs]
    return Kernel(inputs, outputs, k.outer, k.inner, stores, name=k.name, id=k.id)


def _rebuilt(n, memo, new_buf, perms):
    if isinstance(n, Load) and n.buf.name in perms:
        p = perms[n.buf.name]
        masked = [p.index(d) for d in n.masked] if n.fill is not None else None
        return Load(new_buf[n.buf.name], [n.index[d] for d in p], n.fill, masked)
    return rebuild_node(n, memo)


def rebuild_node(n, memo: dict, index_fn=None):
    """Expression node n over the rebuilt operands in memo (id -> node), its index expressions
    mapped by index_fn; n itself when nothing changed."""
    if isinstance(n, Load):
        if index_fn is None:
            return n
        return Load(n.buf, [index_fn(e) for e in n.index], n.fill, n.masked if n.fill is not None else None)
    if isinstance(n, IndexValue):
        return n if index_fn is None else IndexValue(index_fn(n.index), n.dtype)
    if isinstance(n, Const):
        return n
    ops = [memo[id(c)] for c in n.operands()]
    if all(a is b for a, b in zip(ops, n.operands())):
        return n
    if isinstance(n, Unary):
        return Unary(n.op, *ops)
    if isinstance(n, Binary):
        return Binary(n.op, *ops)
    if isinstance(n, Where):
        return Where(*ops)
    if isinstance(n, Cast):
        return Cast(ops[0], n.dtype)
    if isinstance(n, Reduce):
        return Reduce(n.op, ops[0])
    if isinstance(n, Random):
        return Random(n.dist, ops[0], ops[1], n.dtype)
    raise TypeError(f"unexpected kernel-IR node {type(n).__name__}")

def transpose_gathers(program) -> list:
    """Give each value that a pointwise kernel gathers REUSE+ times per element with a strided
    innermost loop a transposed copy (see the module docstring), in place.  Returns the names of
    the copies made."""
    made: dict = {}          # (value, dim order) -> copy value name
    next_id = 1 + max(((s.kernel.id if not isinstance(s, EagerStep) else s.id) for s in program.steps), default=-1)
    steps = []
    for step in program.steps:
        if isinstance(step, KernelStep) and not step.kernel.inner:
            k = step.kernel
            names = dict(zip((b.name for b in k.args), step.args))
            perms = {}
            for b in k.inputs:
                perm = _gather_perm(k, b)
                if perm is None or _gathered(k, b.name):
                    continue
                key = (names[b.name], perm)
                if key not in made:
                    made[key] = _copy_step(program, names[b.name], perm, next_id, steps)
                    next_id += 1
                perms[b.name] = (perm, made[key])
            if perms:
                step = _read_copies(step, perms)
        steps.append(step)
    program.steps[:] = steps
    return sorted(made.values())


def _gather_perm(k: Kernel, b: Buf) -> tuple | None:
    """The dim order that puts last the one dim the innermost loop walks, when every load of b in k
    walks it along a dim other than the last with step 1 and k runs REUSE+ points per element of b."""
    numel = math.prod(hint(s) for s in b.shape)
    if len(b.shape) < 2 or numel * b.dtype.itemsize < MIN_BYTES or math.prod(hint(s) for s in k.outer) < REUSE * numel:
        return None
    loads = [n for n in k.nodes if isinstance(n, Load) and n.buf is b]
    var = Var("o", len(k.outer) - 1)
    ranges = fi.domain_ranges(k.outer, ())
    dims = set()
    for n in loads:
        if n.fill is not None:
            return None
        walked = [d for d, e in enumerate(n.index) if var.name in {v.name for v in fi.index_vars(e)}]
        if len(walked) != 1 or fi.linear_coeff(fi.simplify(n.index[walked[0]], ranges), var) != 1:
            return None
        dims.add(walked[0])
    if len(dims) != 1 or len(b.shape) - 1 in dims:
        return None
    d = dims.pop()
    return tuple(i for i in range(len(b.shape)) if i != d) + (d,)


def _copy_step(program, name: str, perm: tuple, kid: int, steps: list) -> str:
    """Append to steps a kernel writing value `name` in dim order perm to a new INTERNAL value."""
    v = program.values[name]
    new = _fresh_name(program)
    shape = tuple(v.shape[d] for d in perm)
    program.values[new] = Value(new, shape, v.dtype, ValueKind.INTERNAL, v.node)
    src, dst = Buf(name, v.shape, v.dtype), Buf(new, shape, v.dtype)
    index = [None] * len(perm)
    for pos, d in enumerate(perm):
        index[d] = Var("o", pos)
    body = Load(src, index)
    k = Kernel([src], [dst], shape, (), [Store(dst, [Var("o", i) for i in range(len(shape))], body)], id=kid)
    steps.append(KernelStep(k, [name, new]))
    return new


def _fresh_name(program) -> str:
    used = set(program.values)
    i = len(used)
    while f"buf{i}" in used:
        i += 1
    return f"buf{i}"


def _read_copies(step: KernelStep, perms: dict) -> KernelStep:
    """step reading, for each buffer name of perms, its copy (dim order, value name) instead."""
    k = step.kernel
    new_buf = {}
    for b in k.inputs:
        if b.name in perms:
            p, vname = perms[b.name]
            new_buf[b.name] = Buf(vname, tuple(b.shape[d] for d in p), b.dtype)
    order = {name: p for name, (p, _) in perms.items()}
    memo: dict[int, object] = {}
    for n in topo_order([s.value for s in k.stores]):
        memo[id(n)] = _rebuilt(n, memo, new_buf, order)
    stores = [Store(s.buf, s.index, memo[id(s.value)]) for s in k.stores]
    inputs = [new_buf.get(b.name, b) for b in k.inputs]
    args = [perms[b.name][1] if b.name in perms else a for b, a in zip(k.inputs, step.args)]
    args += step.args[len(k.inputs):]
    nk = Kernel(inputs, k.outputs, k.outer, k.inner, stores, name=k.name, id=k.id)
    return KernelStep(nk, args, step.nodes)
