"""loop_order: put the outer axis that most accesses walk contiguously innermost.

In: a Program after fusion.  Out: the same Program, where each pointwise kernel (no inner axes)
whose last outer axis is not the best innermost loop gets its outer axes reordered (a renaming of
the loop variables o0, o1, ...: outer axes are independent, so any order computes the same values).

Why: fusion gives a kernel the domain of one of the values it stores, in that value's logical
order.  A kernel that also stores or reads other buffers through a permutation -- a convolution's
batch-last columns next to an NCHW mask, a transposed copy -- then walks them with a large stride in
its innermost loop, which neither vectorises nor uses whole cache lines (measured here: the epilogue
of the MNIST conv1 GEMM at 2 GB/s).  The score of an axis is the bytes per point of the loads and
stores whose address advances by exactly one element along it; the best axis goes last, the others
keep their order (the first one is what the runtime splits across threads).
"""
from __future__ import annotations

from ember.ir import index as fi
from ember.ir.kernel import (Binary, Cast, Const, IndexValue, Kernel, Load, Random, Store, Unary, Where,
                             topo_order)
from ember.ir.index import Var, index_gathers

__all__ = ["reorder_program", "reorder_kernel", "axis_scores", "flat_address", "contiguous_along"]


def flat_address(shape, index, ranges: dict):
    """The row-major element offset of `index` into an array of `shape`, simplified over the loop
    ranges; None for a 0-d array or an index through a gather."""
    if any(index_gathers(e) for e in index):
        return None
    flat = None
    stride = 1
    for e, n in zip(reversed(index), reversed(shape)):
        term = e * stride if stride != 1 else e
        flat = term if flat is None else flat + term
        stride *= n
    return None if flat is None else fi.simplify(flat, ranges)


def contiguous_along(shape, index, ranges: dict, var: Var) -> bool:
    """True when the address of `index` into `shape` advances by exactly one element along `var`."""
    flat = flat_address(shape, index, ranges)
    return flat is not None and fi.linear_coeff(flat, var) == 1


def axis_scores(k: Kernel) -> list[int]:
    """Bytes per point read or written contiguously along each outer axis."""
    ranges = fi.domain_ranges(k.outer, k.inner)
    scores = [0] * len(k.outer)
    accesses = [(n.buf, n.index) for n in k.nodes if isinstance(n, Load)] + [(s.buf, s.index) for s in k.stores]
    for buf, index in accesses:
        flat = flat_address(buf.shape, index, ranges)
        if flat is None:
            continue
        for axis in range(len(k.outer)):
            if fi.linear_coeff(flat, Var("o", axis)) == 1:
                scores[axis] += buf.dtype.itemsize
    return scores


def reorder_kernel(k: Kernel) -> Kernel:
    """k with its best-scoring outer axis last (k itself when it already is, or has inner axes)."""
    if k.inner or len(k.outer) < 2:
        return k
    scores = axis_scores(k)
    last = len(k.outer) - 1
    best = max(range(len(k.outer)), key=lambda a: (scores[a], a))
    if scores[best] <= scores[last]:
        return k
    order = [a for a in range(len(k.outer)) if a != best] + [best]     # new position -> old axis
    rename = {f"o{old}": Var("o", new) for new, old in enumerate(order)}
    memo: dict[int, object] = {}
    for n in topo_order([s.value for s in k.stores]):
        memo[id(n)] = _renamed(n, memo, rename)
    stores = [Store(s.buf, [fi.subst(e, rename) for e in s.index], memo[id(s.value)]) for s in k.stores]
    return Kernel(k.inputs, k.outputs, [k.outer[a] for a in order], k.inner, stores, name=k.name, id=k.id)


def _renamed(n, memo, rename):
    if isinstance(n, Load):
        return Load(n.buf, [fi.subst(e, rename) for e in n.index], n.fill, n.masked if n.fill is not None else None)
    if isinstance(n, IndexValue):
        return IndexValue(fi.subst(n.index, rename), n.dtype)
    if isinstance(n, Const):
        return n
    if isinstance(n, Unary):
        return Unary(n.op, memo[id(n.x)])
    if isinstance(n, Binary):
        return Binary(n.op, memo[id(n.a)], memo[id(n.b)])
    if isinstance(n, Where):
        return Where(memo[id(n.cond)], memo[id(n.a)], memo[id(n.b)])
    if isinstance(n, Cast):
        return Cast(memo[id(n.x)], n.dtype)
    if isinstance(n, Random):     # its counter is an index expression: renamed above, same values
        return Random(n.dist, memo[id(n.seed)], memo[id(n.counter)], n.dtype)
    raise TypeError(f"loop_order: unexpected node {type(n).__name__} in a pointwise kernel")


def reorder_program(program) -> None:
    """Reorder the loops of every kernel and extern epilogue of `program`, in place."""
    for s in program.steps:
        k = getattr(s, "kernel", None)
        if isinstance(k, Kernel):
            s.kernel = reorder_kernel(k)
        elif k is not None and getattr(k, "epilogue", None) is not None:
            k.epilogue = reorder_kernel(k.epilogue)
