"""The graph IR's text form: printer and parser, exact inverses of each other.

    graph forward(%x: f32[64,1,28,28], %w: f32[10,1,5,5]) {
      %0 = windows(%x, kernel=[5,5], stride=[1,1], dilation=[1,1]) : f32[64,1,24,24,5,5]   # mnist.py:21
      %1 = mul(%0, %0) : f32[64,1,24,24,5,5]
      %2 = cast(%1, dtype=f16) : f16[64,1,24,24,5,5] @cuda
      return (%1, %2)
      mutate %w <- %1
    }

print_graph(Graph) -> str and parse(str) -> Graph, with parse(print_graph(g)) == g and
print_graph(parse(t)) == t for every t the printer wrote (the canonical form). The parser also
takes non-canonical text (any whitespace, any value names, comments anywhere).

Canonical form:
- One node per line, in Graph.nodes() order. Inputs keep their names; op nodes are %0, %1, ...
- Attributes follow the op's OpDef.attrs order (attributes an op does not declare come after, sorted).
  Spelling: ints `3`, floats by repr so they round-trip exactly (`1.0`, `1e-05`, `inf`, `-inf`, `nan`),
  `true`/`false`, `none`, strings JSON-quoted, dtypes by short name (`f16`), tuples and lists `[a,b]`
  (the parser gives tuples back).
- Result type after " : ", then " @<device>" unless the device is "cpu".
- meta["source"] as a trailing "# file:line" comment; comments line up in one column (lines longer
  than 100 characters keep theirs 3 spaces after the code).
- The header lists all inputs on one line if it fits in 100 characters, else one per line.
- The text ends with a newline; several graphs in a module are separated by a blank line.

parse() re-runs each op's shape/dtype rule and rejects text whose printed type disagrees
(check=False trusts the printed types and admits ops outside ops.OPS). Errors are ParseError
with .line and .col (1-based) and a message quoting the offending line.
"""
from __future__ import annotations

import json
import math
import re
from typing import NamedTuple

import numpy as np

from . import dtypes as dt
from . import ops
from .dtypes import DType
from .graph import PLACEHOLDER, Graph, Node
from .ops import TType
from .symbolic import SymInt
from .sizes import parse_sym, sym_str

__all__ = ["print_graph", "print_module", "format_node", "format_type", "format_attr",
           "parse", "parse_module", "ParseError"]

_WIDTH = 100         # lines up to this long take part in comment alignment / a one-line header
_COMMENT_GAP = 3     # spaces between the longest aligned line and its "#"


# ===================================================================================== printer
def format_type(t: TType, device: str = "cpu") -> str:
    """f32[2,3], plus " @cuda" when the device is not cpu."""
    s = f"{t.dtype.short}[{','.join(sym_str(n) for n in t.shape)}]"
    return s if device == "cpu" else f"{s} @{device}"


def format_attr(v) -> str:
    """One attribute value in its canonical spelling (see module docstring)."""
    if isinstance(v, np.generic):  # numpy scalars print as the Python value they hold
        v = v.item()
    if v is None:
        return "none"
    if isinstance(v, DType):
        return v.short
    if isinstance(v, bool):  # before int: bool is a subclass of int
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, SymInt):
        return sym_str(v)
    if isinstance(v, float):
        return repr(v)   # the shortest string that reads back to the same double; inf, -inf, nan too
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, (tuple, list)):
        return "[" + ",".join(format_attr(x) for x in v) + "]"
    raise TypeError(f"attribute value {v!r} of type {type(v).__name__} has no text form")


def _attr_order(node: Node) -> list[str]:
    opdef = ops.OPS.get(node.op)
    declared = [a for a in (opdef.attrs if opdef else ()) if a in node.attrs]
    extra = sorted(a for a in node.attrs if a not in declared)
    return declared + extra


def _node_code(node: Node) -> str:
    """'%3 = mul(%1, %2) : f32[4]' without indentation or comment."""
    args = [x.name for x in node._inputs]
    args += [f"{k}={format_attr(node.attrs[k])}" for k in _attr_order(node)]
    return f"{node.name} = {node.op}({', '.join(args)}) : {format_type(node.type, node.device)}"


def _source(node: Node) -> str | None:
    src = node.meta.get("source")
    if src is None:
        return None
    return " ".join(str(src).split())  # one line, no stray whitespace: it must read back the same


def format_node(node: Node) -> str:
    """The node's line as printed (without indentation or alignment); used in error messages."""
    if node.op == PLACEHOLDER:
        return f"{node.name}: {format_type(node.type, node.device)}  (graph input)"
    src = _source(node)
    code = _node_code(node)
    return f"{code}   # {src}" if src else code


def print_graph(g: Graph) -> str:
    """The canonical text of one graph, ending in a newline."""
    params = [f"{p.name}: {format_type(p.type, p.device)}" for p in g._inputs]
    header = f"graph {g.name}({', '.join(params)}) {{"
    if len(header) > _WIDTH:
        header = f"graph {g.name}(\n" + ",\n".join("    " + p for p in params) + "\n) {"

    body = []   # (code, comment or None)
    for n in g.nodes():
        if n.op != PLACEHOLDER:
            body.append(("  " + _node_code(n), _source(n)))
    commented = [len(code) for code, src in body if src and len(code) <= _WIDTH]
    column = max(commented, default=0) + _COMMENT_GAP

    lines = [header]
    for code, src in body:
        if src:
            code = code.ljust(max(column, len(code) + _COMMENT_GAP)) + "# " + src
        lines.append(code)
    lines.append("  return (" + ", ".join(x.name for x in g._outputs) + ")")
    for ph, v in g._mutations:
        lines.append(f"  mutate {ph.name} <- {v.name}")
    lines.append("}")
    return "\n".join(lines) + "\n"


def print_module(graphs) -> str:
    """Several graphs (forward, backward, ...) as one text, separated by blank lines."""
    return "\n".join(print_graph(g) for g in graphs)


# ====================================================================================== parser
class ParseError(ValueError):
    """Bad IR text. .line and .col are 1-based; str() shows the line with a caret under the spot."""

    def __init__(self, msg: str, line: int, col: int, text_line: str = ""):
        self.msg, self.line, self.col = msg, line, col
        where = f"\n  {text_line}\n  {' ' * (col - 1)}^" if text_line else ""
        super().__init__(f"{line}:{col}: {msg}{where}")


class _Tok(NamedTuple):
    kind: str    # NAME VALUE INT FLOAT STRING COMMENT PUNCT EOF
    text: str
    line: int
    col: int


_TOKEN_RE = re.compile(r"""
    (?P<NL>\n)
  | (?P<WS>[ \t\r]+)
  | (?P<COMMENT>\#[^\n]*)
  | (?P<VALUE>%[A-Za-z0-9_.]+)
  | (?P<SYM>(?:\d+\*)?s\d+(?:\*\*\d+)?(?:\*s\d+(?:\*\*\d+)?)*\b|\(\s*-?(?:\d+\*)?s\d+[^()%\n]*\))
  | (?P<FLOAT>-?(?:\d+\.\d*(?:[eE][+-]?\d+)?|\d+[eE][+-]?\d+)|-inf\b)
  | (?P<INT>-?\d+)
  | (?P<NAME>[A-Za-z_][A-Za-z0-9_.]*)
  | (?P<STRING>"(?:[^"\\\n]|\\.)*")
  | (?P<PUNCT><-|[()\[\]{},:=@])
""", re.VERBOSE)


def _tokenize(text: str, lines: list[str]) -> list[_Tok]:
    toks = []
    pos, line, line_start = 0, 1, 0
    while pos < len(text):
        m = _TOKEN_RE.match(text, pos)
        col = pos - line_start + 1
        if m is None:
            raise ParseError(f"unexpected character {text[pos]!r}", line, col, lines[line - 1])
        kind = m.lastgroup
        if kind == "NL":
            line, line_start = line + 1, m.end()
        elif kind != "WS":
            toks.append(_Tok(kind, m.group(), line, col))
        pos = m.end()
    toks.append(_Tok("EOF", "", line, pos - line_start + 1))
    return toks


_KEYWORD_VALUES = {"true": True, "false": False, "none": None, "inf": math.inf, "nan": math.nan}


class _Parser:
    """Recursive descent over a token list; one instance per text. Comments are skipped except the
    one that trails a node on the node's own line, which becomes meta["source"]."""

    def __init__(self, text: str, check: bool):
        self.lines = text.split("\n")
        self.toks = _tokenize(text, self.lines)
        self.i = 0
        self.check = check

    # --- token helpers ---------------------------------------------------------------------
    # self.i is the index of the first token not consumed yet, which may be a comment: peek()
    # looks past comments without consuming them, so node() can still find a trailing one.
    def _next_index(self) -> int:
        j = self.i
        while self.toks[j].kind == "COMMENT":
            j += 1
        return j

    def peek(self) -> _Tok:
        return self.toks[self._next_index()]

    def next(self) -> _Tok:
        j = self._next_index()
        self.i = j + 1
        return self.toks[j]

    def error(self, msg: str, tok: _Tok) -> ParseError:
        text_line = self.lines[tok.line - 1] if tok.line - 1 < len(self.lines) else ""
        return ParseError(msg, tok.line, tok.col, text_line)

    def expect(self, text: str) -> _Tok:
        t = self.next()
        if t.kind != "PUNCT" or t.text != text:
            raise self.error(f"expected {text!r}, got {_describe(t)}", t)
        return t

    def expect_kind(self, kind: str, what: str) -> _Tok:
        t = self.next()
        if t.kind != kind:
            raise self.error(f"expected {what}, got {_describe(t)}", t)
        return t

    def accept(self, text: str) -> bool:
        """Consume the punctuation `text` if it comes next."""
        t = self.peek()
        if t.kind == "PUNCT" and t.text == text:
            self.next()
            return True
        return False

    # --- grammar ---------------------------------------------------------------------------
    def module(self) -> list[Graph]:
        graphs = []
        while self.peek().kind != "EOF":
            graphs.append(self.graph())
        return graphs

    def graph(self) -> Graph:
        t = self.next()
        if t.text != "graph" or t.kind != "NAME":
            raise self.error(f"expected 'graph', got {_describe(t)}", t)
        name = self.expect_kind("NAME", "a graph name")
        g = Graph(name.text)
        env: dict[str, Node] = {}   # printed name -> node
        self.expect("(")
        if not self.accept(")"):
            while True:
                self.param(g, env)
                if self.accept(")"):
                    break
                self.expect(",")
        self.expect("{")
        returned = False
        while True:
            t = self.peek()
            if t.kind == "PUNCT" and t.text == "}":
                self.next()
                break
            if t.kind == "NAME" and t.text == "return":
                if returned:
                    raise self.error("second 'return' in graph", t)
                self.next()
                g.set_outputs(self.return_values(env))
                returned = True
            elif t.kind == "NAME" and t.text == "mutate":
                self.next()
                self.mutation(g, env)
            elif t.kind == "VALUE":
                self.node(g, env)
            else:
                raise self.error(f"expected a node, 'return', 'mutate' or '}}', got {_describe(t)}", t)
        if not returned:
            raise self.error(f"graph {g.name} has no 'return'", t)
        return g

    def param(self, g: Graph, env: dict) -> None:
        t = self.expect_kind("VALUE", "an input name like %x")
        if t.text in env:
            raise self.error(f"{t.text} is defined twice", t)
        self.expect(":")
        ttype = self.type()
        device = self.device()
        env[t.text] = g.placeholder(t.text[1:], ttype, device)

    def type(self) -> TType:
        t = self.expect_kind("NAME", "a dtype like f32")
        try:
            dtype = dt.by_name(t.text)
        except TypeError:
            raise self.error(f"unknown dtype {t.text!r}", t) from None
        self.expect("[")
        shape = []
        if not self.accept("]"):
            while True:
                n = self.next()
                if n.kind == "SYM":             # a size that varies between calls: s0, 64*s0, (s0 + 1)
                    shape.append(parse_sym(n.text))
                elif n.kind != "INT":
                    raise self.error(f"expected a dimension size, got {_describe(n)}", n)
                elif int(n.text) < 0:
                    raise self.error("negative dimension size", n)
                else:
                    shape.append(int(n.text))
                if self.accept("]"):
                    break
                self.expect(",")
        return TType(tuple(shape), dtype)

    def device(self) -> str:
        if not self.accept("@"):
            return "cpu"
        dev = self.expect_kind("NAME", "a device name").text
        if self.accept(":"):  # cuda:1
            dev += ":" + self.expect_kind("INT", "a device index").text
        return dev

    def value_ref(self, env: dict) -> Node:
        t = self.expect_kind("VALUE", "a value like %3")
        if t.text not in env:
            raise self.error(f"{t.text} is not defined (values must be defined before use)", t)
        return env[t.text]

    def return_values(self, env: dict) -> list[Node]:
        self.expect("(")
        outs = []
        if not self.accept(")"):
            while True:
                outs.append(self.value_ref(env))
                if self.accept(")"):
                    break
                self.expect(",")
        return outs

    def mutation(self, g: Graph, env: dict) -> None:
        target_tok = self.peek()
        target = self.value_ref(env)
        if target.op != PLACEHOLDER:
            raise self.error(f"mutation target {target_tok.text} is not a graph input", target_tok)
        self.expect("<-")
        g.add_mutation(target, self.value_ref(env))

    def node(self, g: Graph, env: dict) -> None:
        name = self.next()
        if name.text in env:
            raise self.error(f"{name.text} is defined twice", name)
        self.expect("=")
        op_tok = self.expect_kind("NAME", "an op name")
        opdef = ops.OPS.get(op_tok.text)
        if opdef is None and (self.check or op_tok.text == PLACEHOLDER):
            raise self.error(f"unknown op {op_tok.text!r}", op_tok)

        # Arguments: values first, then name=value attributes.
        args: list[Node] = []
        attrs: dict = {}
        self.expect("(")
        if not self.accept(")"):
            while True:
                t = self.peek()
                if t.kind == "VALUE":
                    if attrs:
                        raise self.error("value arguments must come before attributes", t)
                    args.append(self.value_ref(env))
                else:
                    key = self.expect_kind("NAME", "a value or an attribute name=")
                    if key.text in attrs:
                        raise self.error(f"attribute {key.text!r} given twice", key)
                    if self.check and key.text not in opdef.attrs:
                        raise self.error(f"{op_tok.text} has no attribute {key.text!r} "
                                         f"(it takes: {', '.join(opdef.attrs) or 'none'})", key)
                    self.expect("=")
                    attrs[key.text] = self.attr_value()
                if self.accept(")"):
                    break
                self.expect(",")
        self.expect(":")
        type_tok = self.peek()
        ttype = self.type()
        device = self.device()
        last_line = self.toks[self.i - 1].line

        if self.check:
            ttype = self._check_node(op_tok, opdef, args, attrs, ttype, type_tok)

        meta = {}
        # The comment trailing this node on its own line is the user's source location.
        t = self.toks[self.i]
        if t.kind == "COMMENT" and t.line == last_line:
            meta["source"] = t.text[1:].strip()
            self.i += 1
        env[name.text] = g.add(op_tok.text, args, attrs, ttype, device, meta)

    def _check_node(self, op_tok, opdef, args, attrs, ttype, type_tok) -> TType:
        """Arity, attributes and the shape/dtype rule; returns the type when they agree."""
        op = op_tok.text
        if opdef.arity is not None and len(args) != opdef.arity:
            raise self.error(f"{op} takes {opdef.arity} value argument(s), got {len(args)}", op_tok)
        missing = [a for a in opdef.attrs if a not in attrs]
        if missing:
            raise self.error(f"{op} is missing attribute(s) {', '.join(missing)}", op_tok)
        try:
            inferred = ops.infer(op, [a.type for a in args], attrs)
        except Exception as e:  # the rules raise ShapeError, IndexError, RuntimeError, KeyError ...
            raise self.error(f"{op}: {e}", op_tok) from None
        inferred = TType(tuple(inferred.shape), inferred.dtype)
        if inferred != ttype:
            raise self.error(f"type mismatch: text says {format_type(ttype)} but {op} infers "
                             f"{format_type(inferred)}", type_tok)
        return inferred

    def attr_value(self):
        t = self.next()
        if t.kind == "INT":
            return int(t.text)
        if t.kind == "SYM":
            return parse_sym(t.text)
        if t.kind == "FLOAT":
            return float(t.text)
        if t.kind == "STRING":
            try:
                return json.loads(t.text)
            except ValueError:
                raise self.error(f"bad string literal {t.text}", t) from None
        if t.kind == "NAME":
            if t.text in _KEYWORD_VALUES:
                return _KEYWORD_VALUES[t.text]
            try:
                return dt.by_name(t.text)
            except TypeError:
                raise self.error(f"unknown name {t.text!r} (expected a number, true/false/none, "
                                 f"inf/nan, a dtype, a \"string\" or a [list])", t) from None
        if t.kind == "PUNCT" and t.text == "[":
            # Nested lists without recursion: a stack of the lists being filled. after_comma says
            # an item must come next ("[1,]" is an error, "[]" is not).
            stack: list[list] = [[]]
            after_comma = False
            while True:
                t2 = self.peek()
                item_done = bool(stack[-1]) and not after_comma
                if t2.kind == "PUNCT" and t2.text == "]" and not after_comma:
                    self.next()
                    done = tuple(stack.pop())
                    if not stack:
                        return done
                    stack[-1].append(done)
                elif item_done:
                    self.expect(",")
                    after_comma = True
                elif t2.kind == "PUNCT" and t2.text == "[":
                    self.next()
                    stack.append([])
                    after_comma = False
                else:
                    stack[-1].append(self.attr_value())
                    after_comma = False
        raise self.error(f"expected an attribute value, got {_describe(t)}", t)


def _describe(t: _Tok) -> str:
    return "end of input" if t.kind == "EOF" else repr(t.text)


def parse_module(text: str, check: bool = True) -> list[Graph]:
    """All graphs in `text`, in order. check=False trusts printed types and admits unknown ops."""
    return _Parser(text, check).module()


def parse(text: str, check: bool = True) -> Graph:
    """The single graph in `text` (ParseError if there are none or several)."""
    p = _Parser(text, check)
    graphs = p.module()
    if len(graphs) != 1:
        tok = p.toks[-1]
        raise p.error(f"expected exactly one graph, found {len(graphs)}", tok)
    return graphs[0]
