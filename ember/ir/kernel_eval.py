"""Reference evaluator for kernel IR on numpy arrays: the oracle the code generators are tested against.

In: a `Kernel` (ember/ir/kernel.py) and numpy arrays for its arguments.  Out: the outputs written,
with each op's reference semantics from ember/ir/ops.py (float32 stays float32, NaN propagates,
integer division by zero gives 0).  Evaluation is vectorised: every expression node becomes an array broadcastable to the
whole domain `outer + inner`, so memory use is O(domain size) per live node -- fine for tests, not a
runtime.  Gather indices are bounds-checked and raise the same IndexError as the compiled kernels.

    evaluate(kernel, arrays)        arrays in kernel.args order (inputs, then outputs); writes outputs
    run_kernel(kernel, inputs)      allocates zero-filled outputs, returns them as a list
"""
from __future__ import annotations

from functools import partial
from typing import Sequence

import numpy as np

from ember.ir.kernel import (BINARY_OPS, UNARY_OPS, Binary, Cast, Const, IBin, IConst, IGather, IndexValue,
                             Kernel, Load, Reduce, Unary, Var, Where, _index_postorder)
from ember.ir.ops import OPS

__all__ = ["evaluate", "run_kernel", "UNARY_NP", "BINARY_NP"]


# the numpy spelling of every elementwise kernel op: its reference semantics from the op table
UNARY_NP = {op: partial(OPS[op].ref, np) for op in UNARY_OPS}
BINARY_NP = {op: partial(OPS[op].ref, np) for op in BINARY_OPS}


class _Domain:
    """Loop-variable grids: o<k> varies along axis k, r<k> along axis len(outer)+k."""

    def __init__(self, outer, inner):
        self.outer, self.inner = tuple(outer), tuple(inner)
        self.ndim = len(self.outer) + len(self.inner)
        self.shape = self.outer + self.inner

    def var(self, v: Var) -> np.ndarray:
        axis = v.axis if v.kind == "o" else len(self.outer) + v.axis
        shape = [1] * self.ndim
        shape[axis] = self.shape[axis]
        return np.arange(self.shape[axis], dtype=np.int64).reshape(shape)


def _gather_error(value, dim, size):
    return IndexError(f"index {int(value)} is out of bounds for dimension {dim} with size {size}")


def _eval_index(e, dom: _Domain, arrays: dict) -> np.ndarray:
    vals: dict[int, np.ndarray] = {}
    for node in _index_postorder(e):
        if isinstance(node, Var):
            v = dom.var(node)
        elif isinstance(node, IConst):
            v = np.array(node.value, dtype=np.int64)
        elif isinstance(node, IBin):
            a, b = vals[id(node.a)], vals[id(node.b)]
            v = {"+": np.add, "*": np.multiply, "//": np.floor_divide, "%": np.mod}[node.op](a, b)
        elif isinstance(node, IGather):
            v = _read(node.buf, [vals[id(i)] for i in node.index], arrays).astype(np.int64)
        else:  # pragma: no cover
            raise TypeError(node)
        vals[id(node)] = v
    return vals[id(e)]


def _check_gathers(index_exprs, idx_vals, buf, arrays):
    """Bounds-check (and wrap) every dimension whose index comes from a gather."""
    out = list(idx_vals)
    for d, e in enumerate(index_exprs):
        gathers = [n for n in _index_postorder(e) if isinstance(n, IGather)]
        if not gathers:
            continue
        size = buf.shape[d]
        v = out[d]
        if any(g.wrap for g in gathers):
            v = np.where(v < 0, v + size, v)
        bad = (v < 0) | (v >= size)
        if np.any(bad):
            first_bad = np.broadcast_to(out[d], bad.shape)[bad].ravel()[0]
            raise _gather_error(first_bad, d, size)
        out[d] = v
    return out


def _read(buf, idx, arrays):
    return arrays[buf.name][tuple(idx)]


def evaluate(kernel: Kernel, arrays: Sequence[np.ndarray]) -> None:
    """Run `kernel` on `arrays` (kernel.args order); the output arrays are written in place."""
    if len(arrays) != len(kernel.args):
        raise TypeError(f"{kernel.name} takes {len(kernel.args)} arrays, got {len(arrays)}")
    named = {b.name: a for b, a in zip(kernel.args, arrays)}
    for b, a in zip(kernel.args, arrays):
        if a.shape != b.shape or a.dtype != b.dtype.np:
            raise TypeError(f"{kernel.name}: {b.name} expects {b!r}, got {a.dtype}{list(a.shape)}")
    dom = _Domain(kernel.outer, kernel.inner)
    inner_axes = tuple(range(len(kernel.outer), dom.ndim))
    vals: dict[int, np.ndarray] = {}
    with np.errstate(all="ignore"):
        for node in kernel.nodes:
            vals[id(node)] = _eval_node(node, vals, dom, named, inner_axes)
        for s in kernel.stores:
            idx = [_eval_index(e, dom, named) for e in s.index]
            value = vals[id(s.value)]
            if not s.index:   # a 0-d buffer: the domain has a single point
                named[s.buf.name][()] = np.asarray(value).reshape(-1)[0]
                continue
            # Broadcast value and indices over the part of the domain the store runs over.
            shape = dom.shape if kernel.store_is_inner(s) else dom.outer + (1,) * len(dom.inner)
            arrs = np.broadcast_arrays(np.broadcast_to(value, shape), *[np.broadcast_to(i, shape) for i in idx])
            named[s.buf.name][tuple(arrs[1:])] = arrs[0]


def _eval_node(node, vals, dom, arrays, inner_axes):
    if isinstance(node, Load):
        idx = [_eval_index(e, dom, arrays) for e in node.index]
        idx = _check_gathers(node.index, idx, node.buf, arrays)
        if node.fill is None:
            return _read(node.buf, idx, arrays)
        idx = list(np.broadcast_arrays(*idx))
        valid = np.ones(idx[0].shape, dtype=bool)
        for d in node.masked:
            valid &= (idx[d] >= 0) & (idx[d] < node.buf.shape[d])
        for d in node.masked:
            idx[d] = np.where(valid, idx[d], 0)
        return np.where(valid, _read(node.buf, idx, arrays), np.array(node.fill, dtype=node.dtype.np))
    if isinstance(node, Const):
        return np.array(node.value, dtype=node.dtype.np)
    if isinstance(node, IndexValue):
        return _eval_index(node.index, dom, arrays).astype(node.dtype.np)
    if isinstance(node, Unary):
        x = vals[id(node.x)]
        return np.asarray(UNARY_NP[node.op](x)).astype(node.dtype.np, copy=False)
    if isinstance(node, Binary):
        res = BINARY_NP[node.op](vals[id(node.a)], vals[id(node.b)])
        return np.asarray(res).astype(node.dtype.np, copy=False)
    if isinstance(node, Where):
        return np.where(vals[id(node.cond)], vals[id(node.a)], vals[id(node.b)])
    if isinstance(node, Cast):
        x = vals[id(node.x)]
        return np.asarray(x).astype(node.dtype.np)
    if isinstance(node, Reduce):
        x = np.broadcast_to(vals[id(node.x)], dom.shape)
        if node.op == "sum":
            return np.sum(x, axis=inner_axes, keepdims=True, dtype=x.dtype)
        if node.op == "prod":
            return np.prod(x, axis=inner_axes, keepdims=True, dtype=x.dtype)
        if node.op == "max":
            return np.max(x, axis=inner_axes, keepdims=True)
        if node.op == "min":
            return np.min(x, axis=inner_axes, keepdims=True)
        # argmax/argmin over the flattened inner domain
        flat = x.reshape(dom.outer + (-1,))
        f = np.argmax if node.op == "argmax" else np.argmin
        res = f(flat, axis=-1).astype(np.int64)
        return res.reshape(dom.outer + (1,) * len(dom.inner))
    raise TypeError(node)  # pragma: no cover


def run_kernel(kernel: Kernel, inputs: Sequence[np.ndarray]) -> list[np.ndarray]:
    """Evaluate with freshly allocated (zero-filled) outputs and return them."""
    outs = [np.zeros(b.shape, dtype=b.dtype.np) for b in kernel.outputs]
    evaluate(kernel, list(inputs) + outs)
    return outs
