"""Index arithmetic for fusion: movement ops as index maps, and a range-aware simplifier.

In: kernel-IR index expressions (ember/ir/kernel.py: Var o<k>/r<k>, IConst, IBin + * // %, IGather)
and the loop ranges of the kernel being built.  Out: the index an op's INPUT is read at when its
OUTPUT is requested at `idx` (one function per movement op), and `simplify(e, ranges)`, which
rewrites an index into a canonical sum of terms so that chains of reshapes collapse:
((o0*12 + o1) // 12) % 4  ->  o0  when o1 < 12 and o0 < 4.

The simplifier works on linear forms {atom: coefficient} + constant, where an atom is a loop
variable or a non-linear sub-expression (x // c, x % c, a gather).  Two identities do the work:
(q*c + r) // c = q + r // c and (q*c + r) % c = r % c (exact for integers, floor rounding), and
r // c = 0, r % c = r once the interval of r lies in [0, c).  Terms are ordered o0, o1, ..., r0, ...,
then other atoms by their text, so equal indices print equally (fusion compares requests as text).
"""
from __future__ import annotations

import math
from typing import Sequence

from ember.ir.kernel import IBin, IConst, IGather, IndexExpr, Var, _index_postorder, as_index, format_index

__all__ = ["simplify", "simplify_all", "subst", "key_of", "vars_of", "domain_ranges",
           "map_reshape", "map_broadcast", "map_permute", "map_slice", "map_flip", "map_pad",
           "map_windows", "index_range"]

INF = math.inf


def domain_ranges(outer: Sequence[int], inner: Sequence[int]) -> dict:
    """{var name: (lo, hi)} inclusive, for the loop variables of a domain."""
    rng = {f"o{k}": (0, n - 1) for k, n in enumerate(outer)}
    rng.update({f"r{k}": (0, n - 1) for k, n in enumerate(inner)})
    return rng


def key_of(idx: Sequence[IndexExpr]) -> str:
    return ", ".join(format_index(as_index(e)) for e in idx)


def vars_of(e: IndexExpr) -> list[Var]:
    return [n for n in _index_postorder(as_index(e)) if isinstance(n, Var)]


def subst(e: IndexExpr, mapping: dict) -> IndexExpr:
    """Replace variables by name (mapping: 'o1' -> IndexExpr)."""
    out: dict[int, IndexExpr] = {}
    for n in _index_postorder(as_index(e)):
        if isinstance(n, Var):
            out[id(n)] = mapping.get(n.name, n)
        elif isinstance(n, IConst):
            out[id(n)] = n
        elif isinstance(n, IGather):
            out[id(n)] = IGather(n.buf, [out[id(i)] for i in n.index], n.wrap)
        else:
            a, b = out[id(n.a)], out[id(n.b)]
            out[id(n)] = {"+": lambda: a + b, "*": lambda: a * b, "//": lambda: a // b, "%": lambda: a % b}[n.op]()
    return out[id(as_index(e))]


# ------------------------------------------------------------------------------ linear forms
class _Lin:
    """sum(coeff * atom) + const; terms: {key: [atom, coeff]} (insertion order irrelevant)."""

    __slots__ = ("terms", "const")

    def __init__(self, terms=None, const=0):
        self.terms = terms or {}
        self.const = const

    def add(self, other: "_Lin") -> "_Lin":
        t = {k: [a, c] for k, (a, c) in self.terms.items()}
        for k, (a, c) in other.terms.items():
            if k in t:
                t[k][1] += c
            else:
                t[k] = [a, c]
        return _Lin({k: v for k, v in t.items() if v[1] != 0}, self.const + other.const)

    def scale(self, s: int) -> "_Lin":
        if s == 0:
            return _Lin()
        return _Lin({k: [a, c * s] for k, (a, c) in self.terms.items()}, self.const * s)

    @property
    def is_const(self) -> bool:
        return not self.terms


def _atom_order(item):
    key, (atom, _) = item
    if isinstance(atom, Var):
        return (0, 0 if atom.kind == "o" else 1, atom.axis, "")
    return (1, 0, 0, key)


def _to_expr(lin: _Lin) -> IndexExpr:
    e = None
    for _, (atom, c) in sorted(lin.terms.items(), key=_atom_order):
        t = atom if c == 1 else atom * c
        e = t if e is None else e + t
    if e is None:
        return IConst(lin.const)
    return e + lin.const if lin.const else e


def _atom(e: IndexExpr) -> _Lin:
    return _Lin({format_index(e): [e, 1]})


def _mul_range(a, b):
    corners = []
    for x in a:
        for y in b:
            if (x == 0 and abs(y) == INF) or (y == 0 and abs(x) == INF):
                corners.append(0)
            else:
                corners.append(x * y)
    return (min(corners), max(corners))


def _fdiv(x, c):
    return x if abs(x) == INF else x // c


class _Simplifier:
    def __init__(self, ranges: dict):
        self.ranges = ranges
        self.cache: dict[str, tuple] = {}

    def atom_range(self, atom: IndexExpr):
        if isinstance(atom, Var):
            return self.ranges.get(atom.name, (-INF, INF))
        if isinstance(atom, IConst):
            return (atom.value, atom.value)
        if isinstance(atom, IBin):
            if atom.op == "//":
                lo, hi = self.expr_range(atom.a)
                c = atom.b.value
                return (_fdiv(lo, c), _fdiv(hi, c))
            if atom.op == "%":
                lo, hi = self.expr_range(atom.a)
                c = atom.b.value
                if lo >= 0 and hi < c:
                    return (lo, hi)
                return (0, c - 1)
            if atom.op == "*":
                return _mul_range(self.expr_range(atom.a), self.expr_range(atom.b))
            if atom.op == "+":
                a, b = self.expr_range(atom.a), self.expr_range(atom.b)
                return (a[0] + b[0], a[1] + b[1])
        return (-INF, INF)

    def expr_range(self, e: IndexExpr):
        return self.lin_range(self.lin(e))

    def lin_range(self, lin: _Lin):
        lo = hi = lin.const
        for atom, c in lin.terms.values():
            a0, a1 = self.atom_range(atom)
            p = _mul_range((a0, a1), (c, c))
            lo, hi = lo + p[0], hi + p[1]
        return (lo, hi)

    def lin(self, e: IndexExpr) -> _Lin:
        vals: dict[int, _Lin] = {}
        for n in _index_postorder(as_index(e)):
            if isinstance(n, Var):
                lo, hi = self.ranges.get(n.name, (-INF, INF))
                vals[id(n)] = _Lin({}, lo) if lo == hi else _atom(n)   # a loop of one iteration
            elif isinstance(n, IConst):
                vals[id(n)] = _Lin({}, n.value)
            elif isinstance(n, IGather):
                idx = [_to_expr(vals[id(i)]) for i in n.index]
                vals[id(n)] = _atom(IGather(n.buf, idx, n.wrap))
            elif n.op == "+":
                vals[id(n)] = vals[id(n.a)].add(vals[id(n.b)])
            elif n.op == "*":
                a, b = vals[id(n.a)], vals[id(n.b)]
                if a.is_const:
                    vals[id(n)] = b.scale(a.const)
                elif b.is_const:
                    vals[id(n)] = a.scale(b.const)
                else:
                    vals[id(n)] = _atom(IBin("*", _to_expr(a), _to_expr(b)))
            elif n.op == "//":
                vals[id(n)] = self.floordiv(vals[id(n.a)], n.b.value)
            else:
                vals[id(n)] = self.mod(vals[id(n.a)], n.b.value)
        return vals[id(as_index(e))]

    def _split(self, lin: _Lin, c: int):
        q = {k: [a, co // c] for k, (a, co) in lin.terms.items() if co % c == 0}
        rest = {k: [a, co] for k, (a, co) in lin.terms.items() if co % c != 0}
        kq, kr = divmod(lin.const, c)
        return _Lin(q, kq), _Lin(rest, kr)

    def floordiv(self, lin: _Lin, c: int) -> _Lin:
        if c == 1:
            return lin
        q, r = self._split(lin, c)          # (q*c + r) // c == q + r // c
        lo, hi = self.lin_range(r)
        if lo >= 0 and hi < c:
            return q
        if lo != -INF and hi != INF and lo // c == hi // c:
            return q.add(_Lin({}, int(lo // c)))
        if len(r.terms) == 1 and r.const == 0:
            (atom, co), = r.terms.values()
            if co == 1 and isinstance(atom, IBin) and atom.op == "//":   # (x // a) // c == x // (a*c)
                return q.add(self.floordiv(self.lin(atom.a), atom.b.value * c))
        d = self._step_divisor(r, c)
        if d:                              # r = d*q2 + r2, 0 <= r2 < d, d | c: r // c == q2 // (c/d)
            q2, _ = self._split(r, d)
            return q.add(self.floordiv(q2, c // d))
        return q.add(_atom(IBin("//", _to_expr(r), IConst(c))))

    def _step_divisor(self, r: _Lin, c: int) -> int:
        """The largest proper divisor d of c such that r = d*q2 + r2 with r2 in [0, d): a reshape
        that splits a merged dim reads (j*R + n) // (s*R) with n < R, which is j // s."""
        for d in sorted((d for d in range(2, c) if c % d == 0), reverse=True)[:32]:
            _, r2 = self._split(r, d)
            if len(r2.terms) == len(r.terms) and r2.const == r.const:
                continue                   # nothing divisible by d: no progress
            lo, hi = self.lin_range(r2)
            if lo >= 0 and hi < d:
                return d
        return 0

    def mod(self, lin: _Lin, c: int) -> _Lin:
        if c == 1:
            return _Lin()
        _, r = self._split(lin, c)          # (q*c + r) % c == r % c
        lo, hi = self.lin_range(r)
        if lo >= 0 and hi < c:
            return r
        if len(r.terms) == 1 and r.const == 0:
            (atom, co), = r.terms.values()
            if co == 1 and isinstance(atom, IBin) and atom.op == "%" and atom.b.value % c == 0:
                return self.mod(self.lin(atom.a), c)     # (x % (k*c)) % c == x % c
        d = self._step_divisor(r, c)
        if d:                              # r = d*q2 + r2, 0 <= r2 < d, d | c: r % c == d*(q2 % (c/d)) + r2
            q2, r2 = self._split(r, d)
            return self.mod(q2, c // d).scale(d).add(r2)
        return _atom(IBin("%", _to_expr(r), IConst(c)))


def simplify(e: IndexExpr, ranges: dict) -> IndexExpr:
    """Canonical, simplified form of index `e` given inclusive variable ranges."""
    s = _Simplifier(ranges)
    return _to_expr(s.lin(e))


def simplify_all(idx: Sequence, ranges: dict) -> tuple:
    s = _Simplifier(ranges)
    return tuple(_to_expr(s.lin(as_index(e))) for e in idx)


def index_range(e: IndexExpr, ranges: dict) -> tuple:
    return _Simplifier(ranges).expr_range(e)


# ------------------------------------------------------------------- movement ops as maps
# Each map takes the index the op's OUTPUT is read at and returns the index its INPUT is read at.
def map_reshape(in_shape, out_shape, idx) -> list:
    flat: IndexExpr = IConst(0)
    stride = 1
    for k in range(len(out_shape) - 1, -1, -1):
        if out_shape[k] != 1:
            flat = as_index(idx[k]) * stride + flat
        stride *= out_shape[k]
    res, stride = [], 1
    strides = []
    for n in reversed(in_shape):
        strides.append(stride)
        stride *= n
    strides.reverse()
    for n, st in zip(in_shape, strides):
        res.append(IConst(0) if n == 1 else (flat // st) % n)
    return res


def map_broadcast(in_shape, out_shape, idx) -> list:
    """Numpy broadcasting (also expand): size-1 input dims read index 0."""
    off = len(out_shape) - len(in_shape)
    return [IConst(0) if n == 1 else as_index(idx[off + j]) for j, n in enumerate(in_shape)]


def map_permute(dims, idx) -> list:
    res = [None] * len(dims)
    for k, d in enumerate(dims):
        res[d] = as_index(idx[k])
    return res


def map_slice(starts, steps, idx) -> list:
    return [as_index(i) * st + s0 for i, s0, st in zip(idx, starts, steps)]


def map_flip(shape, dims, idx) -> list:
    nd = len(shape)
    flipped = {d % max(nd, 1) for d in dims}
    return [(shape[d] - 1) - as_index(i) if d in flipped else as_index(i) for d, i in enumerate(idx)]


def map_pad(pads, idx) -> list:
    return [as_index(i) - lo for i, (lo, _) in zip(idx, pads)]


def map_windows(in_shape, kernel, stride, dilation, idx) -> list:
    nk = len(kernel)
    b = len(in_shape) - nk
    res = [as_index(i) for i in idx[:b]]
    for t in range(nk):
        res.append(as_index(idx[b + t]) * stride[t] + as_index(idx[b + nk + t]) * dilation[t])
    return res
