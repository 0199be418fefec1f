"""The one place ember.distributed reaches into ember's Tensor internals (its array, its version
counter, the compile tracer's check), so a refactor of the frontend has one file to update."""
from __future__ import annotations

from ..frontend import tracing_hooks
from ..frontend.tensor import Tensor


def array(t: Tensor):
    """The numpy (CPU) or CuPy (CUDA) array holding t's values; the collective writes into it."""
    return t._data


def written(t: Tensor) -> None:
    """A collective wrote into t: bump its version counter, as an in-place op does."""
    t._vc[0] += 1


def check_not_traced(t: Tensor, what: str) -> None:
    """A collective needs values: inside ember.compile's trace this is a graph break (runs eagerly)."""
    tracing_hooks.value_needed(t, what)


def is_traced(*ts) -> bool:
    return tracing_hooks.tracing(*ts)


def tracing_active() -> bool:
    """True while ember.compile traces a function (DistributedDataParallel then only runs its module)."""
    from ..frontend import dispatch
    return dispatch.tracer is not None


def xp_of(a):
    """numpy or cupy: the array module of an array."""
    import numpy as np
    if isinstance(a, np.ndarray):
        return np
    import cupy
    return cupy


def reachable_leaves(outputs) -> set:
    """ids of the leaf tensors whose gradients the autograd graph of `outputs` reaches (iterative walk;
    DistributedDataParallel's find_unused_parameters)."""
    stack, found, seen = [], set(), set()

    def add(obj):
        if isinstance(obj, Tensor):
            if obj.requires_grad:
                if obj.grad_fn is None:
                    found.add(id(obj))
                else:
                    stack.append(obj.grad_fn)
        elif isinstance(obj, (list, tuple)):
            for o in obj:
                add(o)
        elif isinstance(obj, dict):
            for o in obj.values():
                add(o)
    add(outputs)
    while stack:
        node = stack.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        var = getattr(node, "variable", None)     # an AccumulateGrad: the leaf it feeds
        if var is not None:
            found.add(id(var))
        for nxt in getattr(node, "next_functions", ()) or ():
            if nxt is not None and id(nxt) not in seen:
                stack.append(nxt)
    return found
