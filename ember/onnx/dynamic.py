"""Dynamic axes: which numbers in a traced graph follow the sizes the user marked dynamic.

The tracer sees concrete sizes, so a graph traced at batch 4 says `reshape(shape=[4, 320])`. To
export `dynamic_axes`, the model is traced again with each dynamic size changed alone and then with
all changed, and every integer in the graphs (attributes and node shapes) is fitted to
    value = bias + coef * d1 * d2 * ...        (ints: sizes, slice bounds, reshape targets)
    value = coef / (d1 * d2 * ...)            (floats: the 1/n of a mean over a dynamic axis)
over the sizes `d` that change it; the last trace checks the fit. A `Sym` is such a fitted value;
the exporter turns it into a few ONNX shape ops. A number that fits neither form is an `Unfit`,
an error only if the exported graph needs it.

In:  the graphs of all traces and the sizes each was traced with.
Out: per node of the first graph, its attributes and shape with Syms where values vary.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction


@dataclass(frozen=True)
class Sym:
    """bias + coef * prod(dims), or coef / prod(dims) when `inverse`."""
    dims: tuple            # symbol names, sorted
    coef: object = 1
    bias: object = 0
    inverse: bool = False

    def at(self, sizes: dict):
        p = 1
        for d in self.dims:
            p *= sizes[d]
        return self.coef / p if self.inverse else self.bias + self.coef * p

    @property
    def is_plain(self) -> bool:
        """Exactly one dynamic size (what ONNX can name as a dim_param)."""
        return len(self.dims) == 1 and self.coef == 1 and self.bias == 0 and not self.inverse

    def __str__(self):
        prod = "*".join(self.dims)
        if self.inverse:
            return f"{self.coef}/({prod})"
        s = prod if self.coef == 1 else f"{self.coef}*{prod}"
        return s if not self.bias else f"{s}{self.bias:+}"


@dataclass(frozen=True)
class Unfit:
    """A number that changes with the dynamic sizes in a way the exporter cannot express."""
    values: tuple


def fit(values: list, sizes: list, changed: list):
    """values[t] seen in trace t (traced with sizes[t]); changed[t] = the symbol trace t changed
    alone (None for the first and the last trace). -> a constant, a Sym, or an Unfit."""
    v0 = values[0]
    if all(v == v0 and type(v) is type(v0) for v in values):
        return v0
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
        return Unfit(tuple(values))
    dims = tuple(sorted(c for t, c in enumerate(changed) if c is not None and values[t] != v0))
    if not dims:
        return Unfit(tuple(values))
    base = sizes[0]
    prod0 = math.prod(base[d] for d in dims)
    cands = []
    if isinstance(v0, int):
        if len(dims) == 1:
            t = changed.index(dims[0])
            dd = sizes[t][dims[0]] - base[dims[0]]
            coef = Fraction(values[t] - v0, dd)
            if coef.denominator == 1:
                cands.append(Sym(dims, int(coef), v0 - int(coef) * base[dims[0]]))
        if prod0 and v0 % prod0 == 0:
            cands.append(Sym(dims, v0 // prod0, 0))
    else:
        if prod0:
            cands.append(Sym(dims, v0 / prod0, 0.0))
        cands.append(Sym(dims, v0 * prod0, inverse=True))
    for s in cands:
        if all(_close(s.at(sz), v) for sz, v in zip(sizes, values)):
            return s
    return Unfit(tuple(values))


def _close(a, b) -> bool:
    if isinstance(b, int) and not isinstance(a, float):
        return a == b
    return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-300)


def fit_tree(items: list, sizes, changed):
    """fit() applied through equal-structured lists/tuples/dicts (attrs like pads=[(lo, hi), ...])."""
    v0 = items[0]
    if isinstance(v0, (list, tuple)):
        if any(not isinstance(v, (list, tuple)) or len(v) != len(v0) for v in items):
            return Unfit(tuple(items))
        return type(v0)(fit_tree([v[i] for v in items], sizes, changed) for i in range(len(v0)))
    if isinstance(v0, dict):
        if any(not isinstance(v, dict) or v.keys() != v0.keys() for v in items):
            return Unfit(tuple(items))
        return {k: fit_tree([v[k] for v in items], sizes, changed) for k in v0}
    if isinstance(v0, (int, float)) and not isinstance(v0, bool):
        return fit(items, sizes, changed)
    return v0 if all(v == v0 for v in items) else Unfit(tuple(items))


def uses_unfit(value) -> bool:
    stack = [value]
    while stack:
        v = stack.pop()
        if isinstance(v, Unfit):
            return True
        if isinstance(v, (list, tuple)):
            stack.extend(v)
        elif isinstance(v, dict):
            stack.extend(v.values())
    return False
