"""Index algebra of the kernel IR, in one module: index expressions, their walks and text, their
ranges, a range-aware simplifier, and movement ops as index maps.

In: integer index expressions over loop variables -- `Var` o<k> (outer axis k) / r<k> (inner axis
k), `IConst`, `IBin` with + * // % (built with Python operators: `o(0) * 2 + r(1) - 1`) and
`IGather` (an index loaded from an integer buffer) -- plus the inclusive ranges of the loop
variables (`domain_ranges(outer, inner)`).  Out:

* `format_index(e)`: infix text (the parser is in ember/ir/kernel_text.py);
* `index_range(e, ranges)`: a sound interval of e's value (used by fusion to drop bounds checks and
  by the CUDA emitter to choose 32- or 64-bit index arithmetic), `linear_coeff(e, var)`;
* `simplify(e, ranges)`: a canonical sum of terms, so chains of reshapes collapse:
  ((o0*12 + o1) // 12) % 4  ->  o0  when o1 < 12 and o0 < 4;
* `map_*`: the index an op's INPUT is read at when its OUTPUT is requested at `idx` (one function
  per movement op: reshape, broadcast, permute, slice, flip, pad, windows).

The simplifier works on linear forms {atom: coefficient} + constant, where an atom is a loop
variable or a non-linear sub-expression (x // c, x % c, a gather).  Two identities do the work:
(q*c + r) // c = q + r // c and (q*c + r) % c = r % c (exact for integers, floor rounding), and
r // c = 0, r % c = r once the interval of r lies in [0, c).  Terms are ordered o0, o1, ..., r0, ...,
then other atoms by their text, so equal indices print equally (fusion compares requests as text).
Constants, coefficients and divisors may be symbolic sizes (ember/ir/symbolic.py): the identities
then apply only where they hold for every value of the symbols, and no guard is taken.
"""
from __future__ import annotations

import math
from typing import TYPE_CHECKING, Sequence

import numpy as np

from ember.ir.sizes import as_size, divides, is_static, sym_str
from ember.ir.symbolic import SymInt
from ember.ir.walk import walk_postorder

if TYPE_CHECKING:
    from ember.ir.kernel import Buf

__all__ = ["IndexExpr", "Var", "IConst", "IBin", "IGather", "o", "r", "as_index", "format_index",
           "index_postorder", "index_vars", "index_gathers",
           "domain_ranges", "index_range", "domain_index_range", "linear_coeff",
           "simplify", "simplify_all", "subst", "key_of",
           "flat_index", "map_reshape", "map_broadcast", "map_permute", "map_slice", "map_flip", "map_pad",
           "map_windows"]

INF = math.inf


# ================================================================= index expressions
class IndexExpr:
    """Integer index arithmetic over loop variables.  Build with + - * // % and ints."""

    __slots__ = ()

    def __add__(self, other):
        return _ibin("+", self, as_index(other))

    def __radd__(self, other):
        return _ibin("+", as_index(other), self)

    def __sub__(self, other):
        return _ibin("+", self, _ibin("*", as_index(other), IConst(-1)))

    def __rsub__(self, other):
        return _ibin("+", as_index(other), _ibin("*", self, IConst(-1)))

    def __neg__(self):
        return _ibin("*", self, IConst(-1))

    def __mul__(self, other):
        return _ibin("*", self, as_index(other))

    def __rmul__(self, other):
        return _ibin("*", as_index(other), self)

    def __floordiv__(self, other):
        return _ibin("//", self, as_index(other))

    def __mod__(self, other):
        return _ibin("%", self, as_index(other))


class Var(IndexExpr):
    """Loop variable: kind 'o' (outer axis) or 'r' (inner / reduction axis), and its axis number."""

    __slots__ = ("kind", "axis")

    def __init__(self, kind: str, axis: int):
        assert kind in ("o", "r")
        self.kind, self.axis = kind, int(axis)

    @property
    def name(self) -> str:
        return f"{self.kind}{self.axis}"

    def __repr__(self) -> str:
        return self.name


class IConst(IndexExpr):
    __slots__ = ("value",)

    def __init__(self, value: int):
        self.value = as_size(value)         # a SymInt for a size that varies between calls

    def __repr__(self) -> str:
        return sym_str(self.value)


class IBin(IndexExpr):
    """a op b, op in '+', '*', '//', '%'.  '//' and '%' need a positive constant divisor (floor rule)."""

    __slots__ = ("op", "a", "b")

    def __init__(self, op: str, a: IndexExpr, b: IndexExpr):
        assert op in ("+", "*", "//", "%")
        if op in ("//", "%") and not (isinstance(b, IConst) and b.value > 0):
            raise ValueError(f"index '{op}' needs a positive constant divisor, got {b!r}")
        self.op, self.a, self.b = op, a, b

    def __repr__(self) -> str:
        return format_index(self)


class IGather(IndexExpr):
    """An index loaded from integer buffer `buf` at `index`; bounds-checked where it is used."""

    __slots__ = ("buf", "index", "wrap")

    def __init__(self, buf: Buf, index: Sequence, wrap: bool = False):
        if not buf.dtype.is_integer:
            raise TypeError(f"gather index buffer {buf.name} must have an integer dtype, got {buf.dtype.name}")
        self.buf = buf
        self.index = tuple(as_index(i) for i in index)
        if len(self.index) != len(buf.shape):
            raise ValueError(f"{buf.name} has {len(buf.shape)} dims, indexed with {len(self.index)}")
        self.wrap = bool(wrap)

    def __repr__(self) -> str:
        return format_index(self)


def o(axis: int) -> Var:
    """Outer loop variable o<axis>."""
    return Var("o", axis)


def r(axis: int) -> Var:
    """Inner (reduction) loop variable r<axis>."""
    return Var("r", axis)


def as_index(x) -> IndexExpr:
    if isinstance(x, IndexExpr):
        return x
    if isinstance(x, (int, np.integer, SymInt)):
        return IConst(as_size(x))
    raise TypeError(f"not an index expression: {x!r}")


def _ibin(op: str, a: IndexExpr, b: IndexExpr) -> IndexExpr:
    """IBin with light constant folding so printed maps stay readable (i*1 -> i, i+0 -> i)."""
    if isinstance(a, IConst) and isinstance(b, IConst):
        x, y = a.value, b.value
        if op == "+":
            return IConst(x + y)
        if op == "*":
            return IConst(x * y)
        return IConst((x // y if op == "//" else x % y) if y else 0)
    if op == "+":
        if isinstance(b, IConst) and b.value == 0:
            return a
        if isinstance(a, IConst) and a.value == 0:
            return b
        # (e + c1) + c2 -> e + (c1 + c2)
        if isinstance(b, IConst) and isinstance(a, IBin) and a.op == "+" and isinstance(a.b, IConst):
            return _ibin("+", a.a, IConst(a.b.value + b.value))
    if op == "*":
        if isinstance(a, IConst):  # constants on the right: i*2, not 2*i
            a, b = b, a
        if isinstance(b, IConst):
            if b.value == 1:
                return a
            if b.value == 0:
                return IConst(0)
            if isinstance(a, IBin) and a.op == "*" and isinstance(a.b, IConst):
                return _ibin("*", a.a, IConst(a.b.value * b.value))
    if op == "//" and isinstance(b, IConst) and b.value == 1:
        return a
    if op == "%" and isinstance(b, IConst) and b.value == 1:
        return IConst(0)
    return IBin(op, a, b)


_IPREC = {"+": 1, "*": 2, "//": 2, "%": 2}


def format_index(e: IndexExpr) -> str:
    """Infix text with minimal parentheses; `a + b*-1` prints as `a - b`.  Iterative."""
    if isinstance(e, Var):              # most indices are bare variables: skip the walk
        return e.name
    out: dict[int, tuple[str, int]] = {}   # id -> (text, precedence)
    for node in index_postorder(e):
        if isinstance(node, Var):
            out[id(node)] = (node.name, 9)
        elif isinstance(node, IConst):
            out[id(node)] = (str(node.value), 9 if node.value >= 0 else 0)
        elif isinstance(node, IGather):
            inner = ", ".join(out[id(i)][0] for i in node.index)
            text = f"{node.buf.name}[{inner}]"
            out[id(node)] = (f"wrap({text})" if node.wrap else text, 9)
        else:
            p = _IPREC[node.op]
            ta, pa = out[id(node.a)]
            b = node.b
            if node.op == "+" and isinstance(b, IBin) and b.op == "*" and isinstance(b.b, IConst) and b.b.value < 0:
                tb, pb = out[id(b)]
                mag = -b.b.value
                tb2 = out[id(b.a)]
                tb2 = tb2[0] if tb2[1] > 2 else f"({tb2[0]})"
                text = f"{ta} - {tb2}" + (f"*{mag}" if mag != 1 else "")
            elif node.op == "+" and isinstance(b, IConst) and b.value < 0:
                text = f"{ta} - {-b.value}"
            else:
                tb, pb = out[id(b)]
                if pa < p:
                    ta = f"({ta})"
                if pb <= p and not (node.op == "+" and pb == p):
                    tb = f"({tb})"
                sep = f" {node.op} " if node.op in ("+", "//", "%") else node.op
                text = f"{ta}{sep}{tb}"
            out[id(node)] = (text, p)
    return out[id(e)][0]




# =============================================================================== walks
def _index_children(e: IndexExpr) -> tuple:
    if isinstance(e, IBin):
        return (e.a, e.b)
    if isinstance(e, IGather):
        return e.index
    return ()


def index_postorder(root: IndexExpr) -> list:
    """Nodes of an index tree, children before parents."""
    return walk_postorder((root,), _index_children)


def index_vars(e) -> list[Var]:
    """Loop variables used by an index expression (including inside gathers); e may be an int."""
    return [n for n in index_postorder(as_index(e)) if isinstance(n, Var)]


def index_gathers(e: IndexExpr) -> list[IGather]:
    return [n for n in index_postorder(e) if isinstance(n, IGather)]


def key_of(idx: Sequence) -> str:
    """The text of an index tuple: equal requests have equal keys (fusion dedups by it)."""
    return ", ".join(format_index(as_index(e)) for e in idx)


def subst(e: IndexExpr, mapping: dict) -> IndexExpr:
    """Replace variables by name (mapping: 'o1' -> IndexExpr)."""
    out: dict[int, IndexExpr] = {}
    for n in index_postorder(as_index(e)):
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


# ============================================================================== ranges
def domain_ranges(outer: Sequence[int], inner: Sequence[int]) -> dict:
    """{var name: (lo, hi)} inclusive, for the loop variables of a domain."""
    rng = {f"o{k}": (0, n - 1) for k, n in enumerate(outer)}
    rng.update({f"r{k}": (0, n - 1) for k, n in enumerate(inner)})
    return rng


def index_range(e: IndexExpr, ranges: dict) -> tuple:
    """Inclusive (lo, hi) of e's value given inclusive variable ranges; unknown variables and
    gathers are unbounded (+-inf)."""
    return _Simplifier(ranges).expr_range(e)


def domain_index_range(e: IndexExpr, outer: Sequence[int], inner: Sequence[int]) -> tuple:
    """index_range over the loop domain outer + inner of a kernel."""
    return index_range(e, domain_ranges(outer, inner))


def linear_coeff(e, var: Var):
    """Coefficient of `var` in an index expression that is affine in it, else None (or 0 if absent)."""
    coeff: dict[int, object] = {}
    for n in index_postorder(e):
        if isinstance(n, Var):
            c = 1 if (n.kind, n.axis) == (var.kind, var.axis) else 0
        elif isinstance(n, IConst):
            c = 0
        elif isinstance(n, IGather):
            c = 0 if not any(isinstance(m, Var) and (m.kind, m.axis) == (var.kind, var.axis)
                             for m in index_postorder(n)) else None
        else:
            a, b = coeff[id(n.a)], coeff[id(n.b)]
            if a is None or b is None:
                c = None
            elif n.op == "+":
                c = a + b
            elif n.op == "*":
                if isinstance(n.b, IConst):
                    c = a * n.b.value
                elif isinstance(n.a, IConst):
                    c = b * n.a.value
                else:
                    c = None if (a or b) else 0
            else:
                c = None if a else 0
        coeff[id(n)] = c
    return coeff[id(e)]


# ================================================================ linear forms, simplify
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


def _fdiv_range(lo, hi, c):
    """(lo // c, hi // c), widened where a symbolic bound may not divide: 0 <= x // c <= x."""
    return tuple((x if abs(x) == INF else x // c) if is_static(x) and is_static(c) or divides(c, x)
                 else (x if up else 0) if x >= 0 and c > 0 else (INF if up else -INF) for x, up in ((lo, 0), (hi, 1)))


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
                return _fdiv_range(lo, hi, atom.b.value)
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
        for n in index_postorder(as_index(e)):
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
        """(q, r) with lin == q*c + r: the terms whose coefficient c divides go to q.  With symbolic
        sizes only what divides for every value of the symbols goes (no guard is taken)."""
        q = {k: [a, co // c] for k, (a, co) in lin.terms.items() if divides(c, co)}
        rest = {k: [a, co] for k, (a, co) in lin.terms.items() if not divides(c, co)}
        k = lin.const
        kq, kr = divmod(k, c) if is_static(k) and is_static(c) else (k // c, 0) if divides(c, k) else (0, k)
        return _Lin(q, kq), _Lin(rest, kr)

    def floordiv(self, lin: _Lin, c: int) -> _Lin:
        if c == 1:
            return lin
        q, r = self._split(lin, c)          # (q*c + r) // c == q + r // c
        lo, hi = self.lin_range(r)
        if lo >= 0 and hi < c:
            return q
        flo, fhi = _fdiv_range(lo, hi, c)
        if lo != -INF and hi != INF and is_static(flo) and is_static(fhi) and abs(flo) != INF and flo == fhi:
            return q.add(_Lin({}, int(flo)))
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
        if isinstance(c, SymInt):       # c = k * (a product of symbols): try d = that product
            (mono, k), = c.poly.items() if len(c.poly) == 1 else ((None, 0),)
            d = SymInt({mono: 1}, c.hint // k) if k > 0 else None
            r2 = self._split(r, d)[1] if d is not None else r
            lo, hi = self.lin_range(r2)
            return d if r2 is not r and len(r2.terms) < len(r.terms) and lo >= 0 and hi < d else 0
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


# ================================================================ movement ops as maps
# Each map takes the index the op's OUTPUT is read at and returns the index its INPUT is read at.
def flat_index(shape, idx) -> IndexExpr:
    """The row-major position of element idx in an array of `shape`."""
    flat: IndexExpr = IConst(0)
    stride = 1
    for k in range(len(shape) - 1, -1, -1):
        if shape[k] != 1:
            flat = as_index(idx[k]) * stride + flat
        stride *= shape[k]
    return flat


def map_reshape(in_shape, out_shape, idx) -> list:
    if 0 in tuple(in_shape):        # an empty tensor: no index is ever read (and none divides by 0)
        return [IConst(0)] * len(in_shape)
    flat = flat_index(out_shape, idx)
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
