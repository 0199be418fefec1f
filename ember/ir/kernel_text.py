"""The text form of the kernel IR: print a Kernel, and read the text back.

In: a `Kernel` (ember/ir/kernel.py).  Out: `format_kernel(k)` (what `str(k)` returns: a header with
the arguments and the domain, one numbered line per expression node in topological order, then the
stores) and `parse_kernel(text)`, its inverse: `str(parse_kernel(str(k))) == str(k)`.  Index
expressions print through ember.ir.index.format_index; docs/kernel-ir.md has an example.
"""
from __future__ import annotations

import math
import re

from ember.ir import dtypes as dt
from ember.ir.dtypes import DType
from ember.ir.index import IConst, IGather, IndexExpr, Var, format_index
from ember.ir.sizes import parse_sym
from ember.ir.kernel import (BINARY_OPS, UNARY_OPS, Binary, Buf, Cast, Const, Expr, IndexValue, Kernel, Load,
                             Random, Reduce, Store, Unary, Where)

__all__ = ["format_kernel", "parse_kernel"]


def _format_value(value, dtype: DType) -> str:
    if dtype is dt.bool_:
        return "true" if value else "false"
    if dtype.is_floating_point:
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(float(value))
    return str(int(value))


def format_kernel(k: Kernel) -> str:
    def sig(bufs):
        return ", ".join(repr(b) for b in bufs)

    lines = [f"kernel {k.name}({sig(k.inputs)}) -> ({sig(k.outputs)}) "
             f"outer=[{','.join(map(str, k.outer))}] inner=[{','.join(map(str, k.inner))}] {{"]
    num: dict[int, str] = {}
    for i, node in enumerate(k.nodes):
        num[id(node)] = f"%{i}"
        ty = node.dtype.short
        if isinstance(node, Load):
            idx = ", ".join(format_index(e) for e in node.index)
            text = f"load {node.buf.name}[{idx}]"
            if node.fill is not None:
                dims = ",".join(map(str, node.masked))
                text += f" if inbounds({dims}) else {_format_value(node.fill, node.dtype)}"
        elif isinstance(node, Const):
            text = f"const {_format_value(node.value, node.dtype)}"
        elif isinstance(node, IndexValue):
            text = f"index {format_index(node.index)}"
        elif isinstance(node, Unary):
            text = f"{node.op} {num[id(node.x)]}"
        elif isinstance(node, Binary):
            text = f"{node.op} {num[id(node.a)]}, {num[id(node.b)]}"
        elif isinstance(node, Where):
            text = f"where {num[id(node.cond)]}, {num[id(node.a)]}, {num[id(node.b)]}"
        elif isinstance(node, Cast):
            text = f"cast {num[id(node.x)]}"
        elif isinstance(node, Reduce):
            text = f"reduce.{node.op} {num[id(node.x)]}"
        elif isinstance(node, Random):
            text = f"random.{node.dist} {num[id(node.seed)]}, {num[id(node.counter)]}"
        else:  # pragma: no cover
            raise TypeError(node)
        lines.append(f"  %{i} = {text} : {ty}")
    for s in k.stores:
        idx = ", ".join(format_index(e) for e in s.index)
        lines.append(f"  store {s.buf.name}[{idx}] = {num[id(s.value)]}")
    lines.append("}")
    return "\n".join(lines)


# ===================================================================================== parser
_TOKEN = re.compile(r"\s*(?:(\d+)|([A-Za-z_][A-Za-z0-9_.]*)|(//|\*\*|[-+*%()\[\],]))")


class _IndexParser:
    """Recursive-descent parser for index expressions (depth is bounded by the text's nesting)."""

    def __init__(self, text: str, bufs: dict):
        self.toks, pos = [], 0
        text = text.strip()
        while pos < len(text):
            m = _TOKEN.match(text, pos)
            if not m or m.end() == pos:
                raise ValueError(f"bad index expression {text!r}")
            self.toks.append(m.group(1) or m.group(2) or m.group(3))
            pos = m.end()
        self.i, self.bufs = 0, bufs

    def peek(self):
        return self.toks[self.i] if self.i < len(self.toks) else None

    def take(self, expect=None):
        t = self.peek()
        if expect is not None and t != expect:
            raise ValueError(f"expected {expect!r}, got {t!r}")
        self.i += 1
        return t

    def expr(self):
        e = self.term()
        while self.peek() in ("+", "-"):
            op = self.take()
            t = self.term()
            e = e + t if op == "+" else e - t
        return e

    def term(self):
        e = self.atom()
        while self.peek() in ("*", "//", "%"):
            op = self.take()
            t = self.atom()
            e = e * t if op == "*" else (e // t if op == "//" else e % t)
        return e

    def atom(self):
        t = self.take()
        if t == "(":
            e = self.expr()
            self.take(")")
            return e
        if t == "-":
            return -self.atom()
        if t.isdigit():
            return IConst(int(t))
        if re.fullmatch(r"[or]\d+", t):
            return Var(t[0], int(t[1:]))
        if re.fullmatch(r"s\d+", t):              # a size symbol (ember/ir/symbolic.py)
            k = int(self.take()) if self.peek() == "**" and self.take() else 1
            return IConst(parse_sym(t) ** k)
        wrap = False
        if t == "wrap":
            self.take("(")
            t, wrap = self.take(), True
        buf = self.bufs[t]
        self.take("[")
        idx = [self.expr()]
        while self.peek() == ",":
            self.take()
            idx.append(self.expr())
        self.take("]")
        if wrap:
            self.take(")")
        return IGather(buf, idx, wrap)


def _parse_index_list(text: str, bufs: dict) -> list[IndexExpr]:
    if not text.strip():            # a 0-d buffer
        return []
    p = _IndexParser(text, bufs)
    out = [p.expr()]
    while p.peek() == ",":
        p.take()
        out.append(p.expr())
    if p.peek() is not None:
        raise ValueError(f"trailing text in index list {text!r}")
    return out


def _parse_value(text: str, dtype: DType):
    text = text.strip()
    if dtype is dt.bool_:
        return text == "true"
    if dtype.is_floating_point:
        return float(text)
    return int(text)


def _sizes(text: str) -> list:
    """A printed shape's sizes: `26,24,s0` or `(64*s0 + 3),2` (sums of symbols are parenthesised)."""
    return [int(s) if s.strip().isdigit() else parse_sym(s) for s in text.split(",") if s.strip()]


def _parse_bufs(text: str) -> list[Buf]:
    bufs = []
    for m in re.finditer(r"([A-Za-z_][A-Za-z0-9_.]*): (\w+)\[([^\]]*)\]", text):
        shape = _sizes(m.group(3))
        bufs.append(Buf(m.group(1), shape, dt.by_name(m.group(2))))
    return bufs


def parse_kernel(text: str) -> Kernel:
    """Read the text form back: `str(parse_kernel(str(k))) == str(k)`."""
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    m = re.fullmatch(r"kernel (\S+)\((.*)\) -> \((.*)\) outer=\[([^\]]*)\] inner=\[([^\]]*)\] \{", lines[0])
    if not m or lines[-1] != "}":
        raise ValueError(f"not a kernel: {lines[0]!r}")
    name = m.group(1)
    inputs, outputs = _parse_bufs(m.group(2)), _parse_bufs(m.group(3))
    bufs = {b.name: b for b in inputs + outputs}
    vals: dict[str, Expr] = {}
    stores = []
    for ln in lines[1:-1]:
        if ln.startswith("store "):
            sm = re.fullmatch(r"store (\S+?)\[(.*)\] = (%\d+)", ln)
            b = bufs[sm.group(1)]
            stores.append(Store(b, _parse_index_list(sm.group(2), bufs), vals[sm.group(3)]))
            continue
        lm = re.fullmatch(r"(%\d+) = (\S+) (.*) : (\w+)", ln)
        if not lm:
            raise ValueError(f"cannot parse {ln!r}")
        res, op, rest, ty = lm.group(1), lm.group(2), lm.group(3), dt.by_name(lm.group(4))
        args = [a.strip() for a in rest.split(",")]
        if op == "load":
            mm = re.fullmatch(r"(\S+?)\[(.*)\](?: if inbounds\(([0-9,]*)\) else (\S+))?", rest)
            b = bufs[mm.group(1)]
            idx = _parse_index_list(mm.group(2), bufs)
            if mm.group(3) is not None:
                masked = [int(d) for d in mm.group(3).split(",") if d]
                node = Load(b, idx, fill=_parse_value(mm.group(4), b.dtype), masked=masked)
            else:
                node = Load(b, idx)
        elif op == "const":
            node = Const(_parse_value(rest, ty), ty)
        elif op == "index":
            node = IndexValue(_parse_index_list(rest, bufs)[0], ty)
        elif op == "cast":
            node = Cast(vals[args[0]], ty)
        elif op == "where":
            node = Where(vals[args[0]], vals[args[1]], vals[args[2]])
        elif op.startswith("reduce."):
            node = Reduce(op[len("reduce."):], vals[args[0]])
        elif op.startswith("random."):
            node = Random(op[len("random."):], vals[args[0]], vals[args[1]], ty)
        elif op in UNARY_OPS:
            node = Unary(op, vals[args[0]])
        elif op in BINARY_OPS:
            node = Binary(op, vals[args[0]], vals[args[1]])
        else:
            raise ValueError(f"unknown op {op!r} in {ln!r}")
        if node.dtype is not ty:
            raise ValueError(f"{ln!r}: computed type {node.dtype.short}")
        vals[res] = node
    km = re.match(r"k(\d+)_", name)
    return Kernel(inputs, outputs, _sizes(m.group(4)), _sizes(m.group(5)), stores, name=name,
                  id=int(km.group(1)) if km else 0)
