"""Symbolic sizes: integers that vary between calls of one compiled program.

A `SymInt` is a polynomial over size symbols (`s0`, `s1`, ...) with integer coefficients, plus its
value in the trace that made it (the *hint*).  Shapes of a dynamic trace hold SymInts where an input
size was marked dynamic; Python arithmetic on them (+ - * and exact // %) stays symbolic, so the
shape rules, fusion and index algebra run unchanged and their results carry the symbols down to the
kernel IR and the generated code, which reads the symbols' values at run time.

Anything that needs a concrete answer decides with the hint and records why, as a *guard* on the
`ShapeEnv` of the compile: `s0 < 5`, `s0 % 4 == 0`, or `int(s0)` (which specialises: `s0 == 64`).
The compiled program is valid exactly where its guards hold, and a call whose sizes break one
compiles again.  Dynamic symbols are assumed >= 2 (as PyTorch does: sizes 0 and 1 specialise when
the trace starts), so `s0 == 1` or `s0 > 0` is decided without a guard.
"""
from __future__ import annotations

import math
import threading
from fractions import Fraction
__all__ = ["SymInt", "ShapeEnv", "Guard", "active", "shape_env", "is_sym", "MIN_DYNAMIC"]

MIN_DYNAMIC = 2     # a dynamic size is at least this (0 and 1 are always specialised)


# ================================================================================ polynomials
# A polynomial is a frozenset-free dict {monomial: coefficient}; a monomial is a sorted tuple of
# symbol names with repetition (("s0", "s0") is s0**2); () is the constant term.

def _poly_add(a: dict, b: dict, sign: int = 1) -> dict:
    out = dict(a)
    for m, c in b.items():
        v = out.get(m, 0) + sign * c
        if v:
            out[m] = v
        else:
            out.pop(m, None)
    return out


def _poly_mul(a: dict, b: dict) -> dict:
    out: dict = {}
    for ma, ca in a.items():
        for mb, cb in b.items():
            m = tuple(sorted(ma + mb))
            v = out.get(m, 0) + ca * cb
            if v:
                out[m] = v
            else:
                out.pop(m, None)
    return out


def _poly_eval(p: dict, values: dict) -> int:
    total = 0
    for m, c in p.items():
        for s in m:
            c *= values[s]
        total += c
    # fractional coefficients come from a division a divisibility guard made exact
    return int(total) if isinstance(total, Fraction) else total


def _poly_min(p: dict) -> int | None:
    """A lower bound over all symbols >= MIN_DYNAMIC, or None when a coefficient is negative
    (outside the constant term)."""
    if any(c < 0 for m, c in p.items() if m):
        return None
    return _poly_eval(p, {s: MIN_DYNAMIC for m in p for s in m})


def _mono_str(m: tuple) -> str:
    parts = []
    for s in sorted(set(m)):
        k = m.count(s)
        parts.append(s if k == 1 else f"{s}**{k}")
    return "*".join(parts)


def _poly_str(p: dict) -> str:
    if not p:
        return "0"
    terms = []
    for m in sorted(p, key=lambda m: (-len(m), m)):
        c = p[m]
        num, den = (abs(c.numerator), c.denominator) if isinstance(c, Fraction) else (abs(c), 1)
        if not m:
            body = str(num)
        elif num == 1:
            body = _mono_str(m)
        else:
            body = f"{num}*{_mono_str(m)}"
        if den != 1:                        # a division a divisibility guard made exact: s0/2
            body += f"/{den}"
        terms.append(("-" if c < 0 else "+", body))
    s = ("-" if terms[0][0] == "-" else "") + terms[0][1]
    for sign, body in terms[1:]:
        s += f" {sign} {body}"
    return s


# ==================================================================================== guards
class Guard:
    """`expr op 0` must hold for the program to be valid (op: == != < <= > >=, or 'divides' for
    `expr % divisor == 0`)."""

    __slots__ = ("poly", "op", "divisor", "why")

    def __init__(self, poly: dict, op: str, divisor: int = 0, why: str = ""):
        self.poly, self.op, self.divisor, self.why = poly, op, divisor, why

    def holds(self, values: dict) -> bool:
        v = _poly_eval(self.poly, values)
        if self.op == "divides":
            return v % self.divisor == 0
        return {"==": v == 0, "!=": v != 0, "<": v < 0, "<=": v <= 0, ">": v > 0, ">=": v >= 0}[self.op]

    def key(self):
        return (tuple(sorted(self.poly.items())), self.op, self.divisor)

    def __str__(self) -> str:
        if self.op == "divides":
            return f"({_poly_str(self.poly)}) % {self.divisor} == 0"
        # move the constant to the right: `s0 - 5 < 0` prints as `s0 < 5`
        p = dict(self.poly)
        c = -p.pop((), 0)
        return f"{_poly_str(p)} {self.op} {c}"

    __repr__ = __str__


class ShapeEnv:
    """The symbols of one compile and the guards its decisions recorded."""

    def __init__(self):
        self.hints: dict[str, int] = {}       # symbol -> value in this trace
        self.sources: dict[str, tuple] = {}   # symbol -> (leaf index, dim) it is read from
        self.guards: list[Guard] = []
        self._seen: set = set()
        # True while the passes run: they compare sizes to match axes, and two sizes that are not
        # the same polynomial must count as different (a guard would only tie the program to the
        # trace's sizes); the trace itself decides with guards, as eager semantics need
        self.structural = False

    def new_symbol(self, hint: int, source: tuple) -> "SymInt":
        name = f"s{len(self.hints)}"
        self.hints[name] = int(hint)
        self.sources[name] = source
        return SymInt({(name,): 1}, int(hint))

    def add(self, poly: dict, op: str, divisor: int = 0, why: str = "") -> None:
        if not any(m for m in poly):          # a constant: nothing to guard
            return
        g = Guard(dict(poly), op, divisor, why)
        k = g.key()
        if k not in self._seen:
            self._seen.add(k)
            self.guards.append(g)

    def check(self, values: dict) -> Guard | None:
        """The first guard that fails for these symbol values, or None."""
        for g in self.guards:
            if not g.holds(values):
                return g
        return None


_local = threading.local()


def shape_env() -> ShapeEnv | None:
    """The ShapeEnv of the compile running on this thread (None outside one)."""
    return getattr(_local, "env", None)


class active:
    """with active(env): ... -- decisions on SymInts record their guards on env."""

    def __init__(self, env: ShapeEnv | None):
        self.env = env

    def __enter__(self):
        self.prev = shape_env()
        _local.env = self.env
        return self.env

    def __exit__(self, *exc):
        _local.env = self.prev


def _guard(poly: dict, op: str, divisor: int = 0, why: str = "") -> None:
    env = shape_env()
    if env is not None:
        env.add(poly, op, divisor, why)


# =================================================================================== SymInt
def _as_poly(x) -> dict | None:
    if isinstance(x, SymInt):
        return x.poly
    if isinstance(x, int) and not isinstance(x, bool):
        return {(): int(x)} if x else {}
    try:
        import numpy as np
        if isinstance(x, np.integer):
            return {(): int(x)} if x else {}
    except ImportError:  # pragma: no cover
        pass
    return None


def _hint(x) -> int:
    return x.hint if isinstance(x, SymInt) else int(x)


def _make(poly: dict, hint: int):
    """A SymInt, or a plain int when no symbol is left."""
    if not any(m for m in poly):
        return poly.get((), 0)
    return SymInt(poly, hint)


class SymInt:
    """An integer size that varies between calls (module docstring)."""

    __slots__ = ("poly", "hint")

    def __init__(self, poly: dict, hint: int):
        self.poly = poly
        self.hint = int(hint)

    # ---- arithmetic that stays symbolic
    def __add__(self, o):
        if isinstance(o, float) and math.isinf(o):
            return o
        p = _as_poly(o)
        return NotImplemented if p is None else _make(_poly_add(self.poly, p), self.hint + _hint(o))

    __radd__ = __add__

    def __sub__(self, o):
        if isinstance(o, float) and math.isinf(o):
            return -o
        p = _as_poly(o)
        return NotImplemented if p is None else _make(_poly_add(self.poly, p, -1), self.hint - _hint(o))

    def __rsub__(self, o):
        if isinstance(o, float) and math.isinf(o):
            return o
        p = _as_poly(o)
        return NotImplemented if p is None else _make(_poly_add(p, self.poly, -1), _hint(o) - self.hint)

    def __mul__(self, o):
        if isinstance(o, float) and math.isinf(o):     # an unbounded range times a size
            return o if self > 0 else -o if self < 0 else math.nan
        p = _as_poly(o)
        return NotImplemented if p is None else _make(_poly_mul(self.poly, p), self.hint * _hint(o))

    __rmul__ = __mul__

    def __neg__(self):
        return _make({m: -c for m, c in self.poly.items()}, -self.hint)

    def __pos__(self):
        return self

    def __abs__(self):
        return self if self >= 0 else -self

    def _divide(self, d):
        """self / d when it divides exactly for every value of the symbols, else None."""
        if isinstance(d, SymInt):
            q = _poly_div(self.poly, d.poly)
            return None if q is None else _make(q, self.hint // d.hint if d.hint else 0)
        d = int(d)
        if d != 0 and all(c % d == 0 for c in self.poly.values()):
            return _make({m: c // d for m, c in self.poly.items()}, self.hint // d)
        return None

    def _over_monomial(self, o):
        """(self / m, c) when o = c*m for a monomial m of symbols dividing every term of self, else None:
        then self // o == (self / m) // c and self % o == ((self / m) % c) * m."""
        if not isinstance(o, SymInt) or len(o.poly) != 1:
            return None
        (mono, c), = o.poly.items()
        q = _poly_div(self.poly, {mono: 1}) if c > 0 else None
        return None if q is None else (_make(q, self.hint * c // o.hint if o.hint else 0), c, o // c)

    def __floordiv__(self, o):
        if _as_poly(o) is None:
            return NotImplemented
        q = self._divide(o)
        if q is not None:
            return q
        split = self._over_monomial(o)
        if split is not None:
            return split[0] // split[1]
        if isinstance(o, int) and o > 0:
            # floor((a*s + b) / d) with d | a: a/d*s + floor(b / d)
            const = self.poly.get((), 0)
            rest = {m: c for m, c in self.poly.items() if m}
            if all(c % o == 0 for c in rest.values()):
                return _make({**{m: c // o for m, c in rest.items()}, **({(): const // o} if const // o else {})},
                             self.hint // o)
            # (x - x % d) / d: exact once the remainder is guarded (x % d == r), as a reshape needs
            r = self % o
            return _make({m: Fraction(c, 1) / o for m, c in _poly_add(self.poly, {(): r}, -1).items()},
                         self.hint // o)
        return self._specialise("//") // _hint(o)

    def __rfloordiv__(self, o):
        if isinstance(o, float) and math.isinf(o):
            return o
        if _as_poly(o) is None:
            return NotImplemented
        if isinstance(o, SymInt):
            return o.__floordiv__(self)
        lo = _poly_min(self.poly)
        if lo is not None and 0 <= int(o) < lo:         # a small number over a size: 0 for every value
            return 0
        return int(o) // self._specialise("//")

    def __mod__(self, o):
        if _as_poly(o) is None:
            return NotImplemented
        if self._divide(o) is not None:
            return 0
        split = self._over_monomial(o)
        if split is not None:
            return (split[0] % split[1]) * split[2]
        if isinstance(o, int) and o > 0:
            rest = {m: c for m, c in self.poly.items() if m}
            if all(c % o == 0 for c in rest.values()):
                return self.poly.get((), 0) % o
            r = self.hint % o               # the remainder the trace saw, guarded: (x - r) % d == 0
            if shape_env() is None:
                raise TypeError(f"symbolic size {self} % {o} outside a compile")
            _guard(_poly_add(self.poly, {(): r}, -1), "divides", o, why="%")
            return r
        return self._specialise("%") % _hint(o)

    def __rmod__(self, o):
        if isinstance(o, SymInt):
            return o.__mod__(self)
        if _as_poly(o) is None:
            return NotImplemented
        return int(o) % self._specialise("%")

    def __truediv__(self, o):
        return self._specialise("/") / (o.hint if isinstance(o, SymInt) else o)

    def __rtruediv__(self, o):
        return o / self._specialise("/")

    def __pow__(self, k):
        if isinstance(k, int) and k >= 0:
            out = 1
            for _ in range(k):
                out = out * self
            return out
        return self._specialise("**") ** k

    def __divmod__(self, o):
        return self // o, self % o

    def __rdivmod__(self, o):
        return o // self, o % self

    # ---- decisions: the hint answers, a guard records it
    def _cmp(self, o, op: str) -> bool:
        if isinstance(o, float) and math.isinf(o):     # range analysis bounds: a size is finite
            return {"==": False, "!=": True, "<": o > 0, "<=": o > 0, ">": o < 0, ">=": o < 0}[op]
        p = _as_poly(o)
        if p is None:
            return NotImplemented
        diff = _poly_add(self.poly, p, -1)
        if not diff:
            return op in ("==", "<=", ">=")
        if not any(m for m in diff):
            c = diff.get((), 0)
            return {"==": c == 0, "!=": c != 0, "<": c < 0, "<=": c <= 0, ">": c > 0, ">=": c >= 0}[op]
        lo = _poly_min(diff)
        if lo is not None and lo > 0:      # diff > 0 for every allowed value: no guard needed
            return op in ("!=", ">", ">=")
        if lo is not None and lo == 0 and op in (">=", "<"):
            return op == ">="
        neg = _poly_min({m: -c for m, c in diff.items()})
        if neg is not None and neg > 0:    # diff < 0 for every allowed value
            return op in ("!=", "<", "<=")
        if neg is not None and neg == 0 and op in ("<=", ">"):
            return op == "<="
        env = shape_env()
        if op in ("==", "!=") and env is not None and env.structural:
            return op == "!="             # after the trace: sizes that are not the same polynomial differ
        hd = self.hint - _hint(o)
        res = {"==": hd == 0, "!=": hd != 0, "<": hd < 0, "<=": hd <= 0, ">": hd > 0, ">=": hd >= 0}[op]
        if op in ("==", "!="):
            _guard(diff, "==" if hd == 0 else "!=")
        else:
            flip = {"<": ">=", "<=": ">", ">": "<=", ">=": "<"}
            _guard(diff, op if res else flip[op])
        return res

    def __eq__(self, o):
        return self._cmp(o, "==")

    def __ne__(self, o):
        return self._cmp(o, "!=")

    def __lt__(self, o):
        return self._cmp(o, "<")

    def __le__(self, o):
        return self._cmp(o, "<=")

    def __gt__(self, o):
        return self._cmp(o, ">")

    def __ge__(self, o):
        return self._cmp(o, ">=")

    def __bool__(self):
        return bool(self._cmp(0, "!="))

    def __hash__(self):
        return hash(tuple(sorted(self.poly.items())))

    def _specialise(self, why: str = "int") -> int:
        """Pin the value to the hint (recorded as a guard): code that needs a Python int.  Outside a
        compile there is no guard to record, and the hint may not be this call's value: an error."""
        env = shape_env()
        if env is None:
            raise TypeError(f"symbolic size {self} used as a Python number ({why}) outside a compile: "
                            "evaluate it for the call's sizes (ember.ir.sizes.evaluate)")
        env.add(_poly_add(self.poly, {(): self.hint}, -1), "==", why=why)
        return self.hint

    def __int__(self):
        return self._specialise("int")

    __index__ = __int__

    def __float__(self):
        return float(self._specialise("float"))

    def __round__(self, n=None):
        return self._specialise("round")

    def __trunc__(self):
        return self._specialise("trunc")

    def __str__(self):
        return _poly_str(self.poly)

    def __repr__(self):
        return f"SymInt({_poly_str(self.poly)}, hint={self.hint})"

    def __reduce__(self):
        return (SymInt, (self.poly, self.hint))


def _poly_div(a: dict, b: dict) -> dict | None:
    """a / b when b is one term (c * monomial) dividing every term of a exactly, else None."""
    if len(b) != 1:
        return None if a != b else {(): 1}
    (mb, cb), = b.items()
    out = {}
    for m, c in a.items():
        rest = list(m)
        for s in mb:
            if s not in rest:
                return None
            rest.remove(s)
        if c % cb:
            return None
        out[tuple(rest)] = c // cb
    return out


# ================================================================================= helpers
def is_sym(x) -> bool:
    return isinstance(x, SymInt)
