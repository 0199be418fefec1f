"""unroll: compute once what several points of a short outer axis share.

In: a Program after fusion and loop ordering.  Out: the same Program, where a pointwise kernel (no
inner axes) with short outer axes (extent 2..MAX_EXTENT, not the first axis, which the runtime
splits across threads, nor the last, the vector loop) whose values mostly do not depend on them
loses those axes: its body is written once per point of them (the axis variable a constant), with
the nodes that do not depend on them shared, so each is computed once instead of once per point.

Why: the gradient of a max-pool over a convolution's output comes out of fusion as one kernel over
the pre-pool domain [C, H/2, 2, W/2, 2, N], but everything except the final "is this the max"
selection -- the pooled gradient (in MNIST a 25-tap fold of the next convolution's input
gradient), the pool's max and the ReLU mask -- is a function of the pooled position alone: it was
computed 4 times per pooled point (MNIST's conv1 backward epilogue: ~1.3 ms, ~25% of copy
bandwidth).  Stores of the unrolled kernel write each buffer at constant offsets along the removed
axes; the innermost loop is untouched, so every store stays contiguous and vectorised.
"""
from __future__ import annotations

import itertools
import math

from ember.ir import index as fi
from ember.ir.index import IConst, Var, index_vars
from ember.ir.kernel import Const, IndexValue, Kernel, Load, Store, node_index_exprs, topo_order

from .layout import _kernels, rebuild_node

__all__ = ["unroll_program", "unroll_kernel", "MAX_EXTENT", "MAX_COPIES"]

MAX_EXTENT = 4      # an axis this short or shorter may be unrolled ...
MAX_COPIES = 16     # ... while the body is written at most this many times


def unroll_kernel(k: Kernel) -> Kernel:
    """k with its short shared outer axes unrolled (k itself when that does not pay)."""
    if k.inner or len(k.outer) < 3:
        return k
    short = [a for a in range(1, len(k.outer) - 1) if isinstance(k.outer[a], int) and 2 <= k.outer[a] <= MAX_EXTENT]
    # the axes that pay alone, best first, as many as MAX_COPIES allows; then the set must pay too
    gains = {a: _gain(k, {a})[0] for a in short}
    axes: list[int] = []
    for a in sorted((a for a in short if gains[a] > 0), key=lambda a: (-gains[a], a)):
        if math.prod(k.outer[b] for b in axes + [a]) <= MAX_COPIES:
            axes.append(a)
    axes.sort()
    if not axes:
        return k
    gain, depends = _gain(k, set(axes))
    if gain <= 0:
        return k
    keep = [a for a in range(len(k.outer)) if a not in axes]
    rename = {f"o{old}": Var("o", new) for new, old in enumerate(keep)}
    ranges = fi.domain_ranges([k.outer[a] for a in keep], ())
    shared_memo: dict[int, object] = {}
    for n in k.nodes:
        if not depends[id(n)]:
            shared_memo[id(n)] = rebuild_node(n, shared_memo, lambda e: fi.simplify(fi.subst(e, rename), ranges))
    stores = []
    for point in itertools.product(*(range(k.outer[a]) for a in axes)):
        mapping = dict(rename)
        mapping.update({f"o{a}": IConst(c) for a, c in zip(axes, point)})

        def sub(e, mapping=mapping):
            return fi.simplify(fi.subst(e, mapping), ranges)
        memo = dict(shared_memo)
        for n in topo_order([s.value for s in k.stores]):
            if id(n) not in memo:
                memo[id(n)] = rebuild_node(n, memo, sub)
        stores += [Store(s.buf, [sub(e) for e in s.index], memo[id(s.value)]) for s in k.stores]
    return Kernel(k.inputs, k.outputs, [k.outer[a] for a in keep], (), stores, name=k.name, id=k.id)


def _gain(k: Kernel, axes: set) -> tuple[int, dict]:
    """(gain, depends): the weight of the work shared across the points of `axes` minus that of the work that still
    varies along them (loads weigh 2: they are what a memory-bound kernel waits on; index tests
    that become constants once the axes are, nothing); depends: id(node) -> whether it varies
    along `axes`."""
    names = {f"o{a}" for a in axes}
    depends: dict[int, bool] = {}
    folds: dict[int, bool] = {}
    for n in k.nodes:
        used = {v.name for e in node_index_exprs(n) for v in index_vars(e)}
        depends[id(n)] = bool(used & names) or any(depends[id(c)] for c in n.operands())
        if isinstance(n, Load):
            folds[id(n)] = False
        elif isinstance(n, (IndexValue, Const)):
            folds[id(n)] = used <= names
        else:
            folds[id(n)] = all(folds[id(c)] for c in n.operands())
    varying = sum(_weight(n) for n in k.nodes if depends[id(n)] and not folds[id(n)])
    shared = sum(_weight(n) for n in k.nodes if not depends[id(n)])
    return shared - varying, depends


def _weight(n) -> int:
    return 2 if isinstance(n, Load) else 0 if isinstance(n, (IndexValue, Const)) else 1


def unroll_program(program) -> None:
    """Unroll the short shared axes of every kernel and extern epilogue of `program`, in place."""
    for step in program.steps:
        for k, _, put in list(_kernels(step)):
            nk = unroll_kernel(k)
            if nk is not k:
                put(nk)
