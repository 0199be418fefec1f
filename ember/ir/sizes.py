"""Sizes that may be symbolic: helpers taking a Python int or a `SymInt` (ember/ir/symbolic.py).

    as_size(n)      what shapes hold: a SymInt stays, anything else becomes an int
    hint(n)         the trace's value, no guard: speed heuristics only
    is_static, divides, nonneg, same      questions answered for every value of the symbols (no guard)
    evaluate, substitute                  a size / an attribute tree at given symbol values
    free_symbols, linear_in, size_readers where a program reads its symbols from its inputs
    sym_str, parse_sym                    the text form (`s0`, `64*s0`, `(s0 + 1)`, `s1**2`)
"""
from __future__ import annotations

import math
from fractions import Fraction
from typing import Iterable

from ember.ir.symbolic import SymInt, _as_poly, _make, _poly_add, _poly_div, _poly_eval, _poly_min

__all__ = ["as_size", "hint", "is_static", "divides", "nonneg", "same", "evaluate", "substitute",
           "free_symbols", "linear_in", "size_readers", "sym_str", "parse_sym", "py_size"]


def free_symbols(xs: Iterable) -> set[str]:
    out: set = set()
    for x in xs:
        if isinstance(x, SymInt):
            out |= {s for m in x.poly for s in m}
    return out


def evaluate(x, values: dict) -> int:
    """The value of a size (int or SymInt) for these symbol values."""
    return _poly_eval(x.poly, values) if isinstance(x, SymInt) else x


def sym_str(x) -> str:
    """A size as the IR text prints it: `64`, `s0`, `64*s0`; sums in parentheses (`(s0 + 1)`)."""
    s = str(x)
    return f"({s})" if " " in s else s


def parse_sym(text: str):
    """Inverse of sym_str: an int or a SymInt (hint 0: parsed IR carries no trace values)."""
    text = text.strip()
    if text.startswith("(") and text.endswith(")"):
        text = text[1:-1]
    poly: dict = {}
    for sign, term in _terms(text):
        poly = _poly_add(poly, {tuple(sorted(_powers(term))): sign * _coef(term)})
    return _make(poly, 0)


def _terms(text: str):
    text = text.replace(" ", "")
    out, cur, sign = [], "", 1
    for ch in text:
        if ch in "+-" and cur:
            out.append((sign, cur))
            cur, sign = "", (1 if ch == "+" else -1)
        elif ch in "+-":
            sign = 1 if ch == "+" else -1
        else:
            cur += ch
    if cur:
        out.append((sign, cur))
    return out


def _factors(term: str):
    i, fs = 0, []
    parts = term.split("*")
    while i < len(parts):
        f = parts[i]
        if f == "" and i + 1 < len(parts):        # "**": the next part is a power
            fs[-1] = (fs[-1][0], int(parts[i + 1]))
            i += 2
            continue
        fs.append((f, 1))
        i += 1
    return fs


def _powers(term: str) -> list:
    term = term.partition("/")[0]
    return [s for f, k in _factors(term) if not f.isdigit() for s in [f] * k]


def _coef(term: str):
    term, _, den = term.partition("/")         # s0/2: a division a divisibility guard made exact
    c = math.prod(int(f) ** k for f, k in _factors(term) if f.isdigit())
    return Fraction(c, int(den)) if den else c


def as_size(x):
    """A size as shapes hold it: a SymInt stays symbolic, anything else becomes a Python int."""
    return x if isinstance(x, SymInt) else int(x)


def linear_in(x, sym: str):
    """(c, b) when x == c*sym + b with integers c > 0, b; else None."""
    if not isinstance(x, SymInt):
        return None
    c = x.poly.get((sym,), 0)
    rest = {m: v for m, v in x.poly.items() if m not in ((sym,), ())}
    return (c, x.poly.get((), 0)) if c > 0 and not rest else None


def hint(x):
    """The value in this trace, with no guard: for decisions that only affect speed (a heuristic
    threshold), never for ones that affect the result."""
    return x.hint if isinstance(x, SymInt) else x


def is_static(x) -> bool:
    return not isinstance(x, SymInt)


def divides(c, x) -> bool:
    """c divides x for every value of the symbols (no guard); False when unknown."""
    if not isinstance(c, SymInt) and not isinstance(x, SymInt):
        return c != 0 and x % c == 0
    if isinstance(c, SymInt):
        return isinstance(x, SymInt) and _poly_div(x.poly, c.poly) is not None or x == 0 and not isinstance(x, SymInt)
    return c != 0 and all(v % c == 0 for v in x.poly.values())


def nonneg(x) -> bool:
    """x >= 0 for every value of the symbols (no guard); False when unknown."""
    if not isinstance(x, SymInt):
        return x >= 0
    lo = _poly_min(x.poly)
    return lo is not None and lo >= 0


def same(a, b) -> bool:
    """a == b for every value of the symbols (the same polynomial); no guard is taken."""
    if isinstance(a, SymInt) or isinstance(b, SymInt):
        pa, pb = _as_poly(a), _as_poly(b)
        return pa is not None and pb is not None and not _poly_add(pa, pb, -1)
    return a == b


def size_readers(shapes) -> tuple:
    """(symbols, readers) for a program whose inputs have these shapes: its size symbols, sorted,
    and for each a function of the input arrays returning its value, read from an input dimension
    that is the symbol (or c*symbol + b)."""
    syms = sorted(free_symbols(n for shape in shapes for n in shape), key=lambda s: (len(s), s))
    readers = []
    for sym in syms:
        found = next(((i, d) + lin for i, shape in enumerate(shapes) for d, n in enumerate(shape)
                      if (lin := linear_in(n, sym)) is not None), None)
        if found is None:
            raise ValueError(f"size symbol {sym} is not the size of any input dimension (a dynamic program "
                             "reads its sizes from its inputs)")
        i, d, c, b = found
        readers.append((lambda a, i=i, d=d: a[i].shape[d]) if (c, b) == (1, 0)
                       else (lambda a, i=i, d=d, c=c, b=b: (a[i].shape[d] - b) // c))
    return tuple(syms), tuple(readers)


def substitute(v, values: dict):
    """An attribute, shape or nested tuple/list/dict with the symbols in `values` replaced by their
    values: a size whose symbols all have one becomes an int, others keep the remaining symbols."""
    if isinstance(v, SymInt):
        if all(s in values for m in v.poly for s in m):
            return _poly_eval(v.poly, values)
        out: dict = {}
        for m, c in v.poly.items():
            rest = tuple(s for s in m if s not in values)
            for s in m:
                c = c * values[s] if s in values else c
            out = _poly_add(out, {rest: c})
        return _make(out, v.hint)
    if isinstance(v, tuple):
        return tuple(substitute(x, values) for x in v)
    if isinstance(v, list):
        return [substitute(x, values) for x in v]
    if isinstance(v, dict):
        return {k: substitute(x, values) for k, x in v.items()}
    return v


def py_size(x) -> str:
    """A size as Python source (the executor's generated code): `s0/2` (exact by a guard) becomes
    integer division."""
    if not isinstance(x, SymInt) or not any(isinstance(c, Fraction) for c in x.poly.values()):
        return str(x)
    den = math.lcm(*(getattr(c, "denominator", 1) for c in x.poly.values()))
    return f"(({SymInt({m: int(c * den) for m, c in x.poly.items()}, 0)})//{den})"
