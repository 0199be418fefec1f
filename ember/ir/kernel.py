"""Kernel IR: the loop-level program that fusion produces and the code generators consume.

In: built by the fusion pass (ember/passes) or by hand in tests.  Out: `Kernel` / `ExternKernel`
objects, their deterministic text form (`str(kernel)`, `parse_kernel(text)` reads it back), and cost
estimates (`bytes_moved`, `flops`).  Consumers: ember/ir/kernel_eval.py (numpy oracle),
ember/codegen/llvm.py (LLVM IR), ember/runtime (execution).

The model
=========
A `Kernel` runs over an iteration domain `outer + inner`:

* `outer` (a shape, loop variables o0, o1, ...) are parallel loops.  The runtime splits the range of
  the FIRST outer axis across threads, so put a large axis first (a pointwise kernel over a contiguous
  tensor is best written as a 1-D outer domain: outer=[numel]).
* `inner` (a shape, loop variables r0, r1, ..., may be empty) are reduction loops, run once per outer
  point.  The last inner axis (or, with no inner axes, the last outer axis) is the innermost loop:
  make it the contiguous one, it is the one that vectorises.

Buffers (`Buf(name, shape, dtype)`) are the kernel's arguments: inputs are read-only, outputs are
write-only (a kernel never reads its own outputs); all are contiguous row-major arrays.

Index maps.  Each buffer access carries one index expression per buffer dimension.  Index
expressions are small integer trees over the loop variables: `Var` (o<k> / r<k>), `IConst`, and
`IBin` with op '+', '*', '//' or '%' ('//' and '%' take a positive constant divisor and round toward
-inf like Python).  They are built with Python operators: `o(0) * 2 + r(1) - 1`.  This covers
broadcast (leave the variable out: the stride is 0), permute (swap variables), slice
(`start + step*i`), flip (`n - 1 - i`), reshape (`(i // 4) % 3`) and windows (`oh*stride + kh*dil - pad`).
`IGather(buf, index)` is an index whose value is loaded from an integer buffer (embedding / gather /
take).  A dimension indexed by a gather is bounds-checked at run time: an out-of-range value is never
used to read memory; the kernel finishes, reports it and the runtime raises
`IndexError("index 7 is out of bounds for dimension 0 with size 5")`.  With `wrap=True` a negative
index counts from the end first (Python / x[idx] semantics); without it negative is out of range
(torch.gather / embedding semantics).

Scalar expressions form a DAG (share a node by reusing the Python object):

    Load(buf, index, fill=None, masked=None)   read buf[index]; with `fill`, the dims in `masked`
                                               (default: all) are bounds-checked and an out-of-range
                                               point reads `fill` instead (padding: 0, or -inf for
                                               max-pool)
    Const(value, dtype)                        a scalar constant
    IndexValue(index, dtype)                   the value of an index expression (iota, masks such as
                                               causal attention: lt(IndexValue(o1), IndexValue(r0)))
    Unary(op, x)          op in UNARY_OPS
    Binary(op, a, b)      op in BINARY_OPS; a and b must have the same dtype (insert Casts)
    Where(cond, a, b)     cond is bool
    Cast(x, dtype)        numpy astype semantics (float->int truncates; NaN/out-of-range saturate)
    Reduce(op, x)         op in REDUCE_OPS: reduces x over ALL inner axes; its value is one scalar per
                          outer point, usable by later expressions (also inside a later Reduce)

Dtype rules mirror ember/ir/ops.py: arithmetic keeps its operand dtype, comparisons / isnan / isinf /
logical_* give bool, transcendental ops and `div` need floating point, bool arithmetic is not allowed
(cast first; maximum/minimum of bools are or/and).  `maximum`/`minimum`/`reduce.max`/`reduce.min`
propagate NaN (numpy / PyTorch).  `round` is half-to-even, `remainder` and `floor_divide` follow
Python's floor rule; integer division by zero gives 0 (numpy).  Reductions accumulate in their
operand's dtype (cast to f64 / i64 first when you want a wider accumulator); `argmax`/`argmin` give
the row-major index of the first extreme value over the inner domain as int64 (NaN counts as the
extreme, like numpy).

Stores.  `Store(buf, index, value)` writes an output.  A store whose value or index uses an inner
variable is executed inside a final inner loop (after all reductions); one that uses only outer
variables and reduction results is executed once per outer point.  Each output element must be
written at most once per kernel execution (the domain may cover it only partly, e.g. for cat).

Reduction passes.  A Reduce whose operand uses another Reduce runs in a later pass: softmax is
three loops over the inner axis inside one outer iteration (max; sum of exp(x - max); the store).
Reduces that do not depend on each other share a pass (mean and mean of squares).

Example: softmax over the last axis of a [8192, 1024] float32 tensor::

    x, y = Buf("x", (8192, 1024), float32), Buf("y", (8192, 1024), float32)
    v = Load(x, (o(0), r(0)))
    e = Unary("exp", Binary("sub", v, Reduce("max", v)))
    k = Kernel([x], [y], outer=(8192,), inner=(1024,),
               stores=[Store(y, (o(0), r(0)), Binary("div", e, Reduce("sum", e)))], id=0)
    print(k)

    kernel k0_max_sub_exp_sum_div(x: f32[8192,1024]) -> (y: f32[8192,1024]) outer=[8192] inner=[1024] {
      %0 = load x[o0, r0] : f32
      %1 = reduce.max %0 : f32
      %2 = sub %0, %1 : f32
      %3 = exp %2 : f32
      %4 = reduce.sum %3 : f32
      %5 = div %3, %4 : f32
      store y[o0, r0] = %5
    }

Expressions also support Python operators (`v - m`, `e / s`, `x * 0.5`) and the helpers `unary`,
`binary`, `where`, `cast`, `reduce`.

Extern kernels.  `ExternKernel(op, inputs, output, attrs, epilogue)` is a call the runtime makes
through numpy (ember/kernels/blas.py): op in EXTERN_OPS (matmul, bmm, conv2d).  Its optional
`epilogue` is a normal Kernel whose first input is the extern's output buffer (same Buf object) and
which writes the final outputs (bias add, activation): the extern result goes to a scratch buffer
and the epilogue is compiled like any kernel.

All walks are iterative (deep graphs do not hit the recursion limit) and all orders are
deterministic (DFS from the stores, operands left to right), so dumps can be diffed.
"""
from __future__ import annotations

import math
import re
from typing import Iterable, Sequence

import numpy as np

from ember.ir import dtypes as dt
from ember.ir.dtypes import DType

__all__ = [
    "Buf", "IndexExpr", "Var", "IConst", "IBin", "IGather", "o", "r", "as_index",
    "Expr", "Load", "Const", "IndexValue", "Unary", "Binary", "Where", "Cast", "Reduce", "Store",
    "Kernel", "ExternKernel", "unary", "binary", "where", "cast", "reduce", "parse_kernel",
    "UNARY_OPS", "BINARY_OPS", "REDUCE_OPS", "EXTERN_OPS", "topo_order",
]

FLOAT_UNARY = ("exp", "log", "sqrt", "rsqrt", "sin", "cos", "tanh", "sigmoid", "erf", "log1p",
               "expm1", "reciprocal")
SAME_UNARY = ("neg", "abs", "sign", "floor", "ceil", "round", "trunc")
BOOL_UNARY = ("logical_not", "isnan", "isinf")
UNARY_OPS = FLOAT_UNARY + SAME_UNARY + BOOL_UNARY
ARITH_BINARY = ("add", "sub", "mul", "div", "pow", "maximum", "minimum", "remainder", "floor_divide")
CMP_BINARY = ("eq", "ne", "lt", "le", "gt", "ge")
LOGIC_BINARY = ("logical_and", "logical_or")
BINARY_OPS = ARITH_BINARY + CMP_BINARY + LOGIC_BINARY
REDUCE_OPS = ("sum", "max", "min", "prod", "argmax", "argmin")
EXTERN_OPS = ("matmul", "bmm", "conv2d")


# ===================================================================================== buffers
class Buf:
    """A kernel argument: a contiguous row-major array `name: dtype[shape]`."""

    __slots__ = ("name", "shape", "dtype")

    def __init__(self, name: str, shape: Sequence[int], dtype: DType):
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_.]*", name):
            raise ValueError(f"bad buffer name {name!r}")
        self.name = name
        self.shape = tuple(int(s) for s in shape)
        self.dtype = dtype

    @property
    def numel(self) -> int:
        return math.prod(self.shape)

    @property
    def nbytes(self) -> int:
        return self.numel * self.dtype.itemsize

    def __repr__(self) -> str:
        return f"{self.name}: {self.dtype.short}[{','.join(map(str, self.shape))}]"


# ============================================================================ index expressions
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
        self.value = int(value)

    def __repr__(self) -> str:
        return str(self.value)


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
    if isinstance(x, (int, np.integer)):
        return IConst(int(x))
    raise TypeError(f"not an index expression: {x!r}")


def _ibin(op: str, a: IndexExpr, b: IndexExpr) -> IndexExpr:
    """IBin with light constant folding so printed maps stay readable (i*1 -> i, i+0 -> i)."""
    if isinstance(a, IConst) and isinstance(b, IConst):
        x, y = a.value, b.value
        return IConst({"+": x + y, "*": x * y, "//": x // y if y else 0, "%": x % y if y else 0}[op])
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
    out: dict[int, tuple[str, int]] = {}   # id -> (text, precedence)
    for node in _index_postorder(e):
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


def _index_children(e: IndexExpr) -> tuple:
    if isinstance(e, IBin):
        return (e.a, e.b)
    if isinstance(e, IGather):
        return e.index
    return ()


def _index_postorder(root: IndexExpr) -> list:
    """Nodes of an index tree, children before parents (iterative DFS)."""
    order, seen, stack = [], set(), [(root, False)]
    while stack:
        node, done = stack.pop()
        if done:
            order.append(node)
            continue
        if id(node) in seen:
            continue
        seen.add(id(node))
        stack.append((node, True))
        for c in reversed(_index_children(node)):
            stack.append((c, False))
    return order


def index_vars(e: IndexExpr) -> list[Var]:
    """Loop variables used by an index expression (including inside gathers)."""
    return [n for n in _index_postorder(e) if isinstance(n, Var)]


def index_gathers(e: IndexExpr) -> list[IGather]:
    return [n for n in _index_postorder(e) if isinstance(n, IGather)]


# ========================================================================= scalar expressions
def _scalar_dtype_of(value) -> DType:
    if isinstance(value, (bool, np.bool_)):
        return dt.bool_
    if isinstance(value, (int, np.integer)):
        return dt.int64
    return dt.float32


class Expr:
    """A node of the scalar expression DAG.  `.dtype` is its result type."""

    __slots__ = ("dtype",)

    def operands(self) -> tuple:
        return ()

    # Python operators: the other operand may be a Python scalar (it takes this node's dtype)
    def _bin(self, op, other, reverse=False):
        other = other if isinstance(other, Expr) else Const(other, self.dtype)
        return Binary(op, other, self) if reverse else Binary(op, self, other)

    def __add__(self, x): return self._bin("add", x)
    def __radd__(self, x): return self._bin("add", x, True)
    def __sub__(self, x): return self._bin("sub", x)
    def __rsub__(self, x): return self._bin("sub", x, True)
    def __mul__(self, x): return self._bin("mul", x)
    def __rmul__(self, x): return self._bin("mul", x, True)
    def __truediv__(self, x): return self._bin("div", x)
    def __rtruediv__(self, x): return self._bin("div", x, True)
    def __pow__(self, x): return self._bin("pow", x)
    def __neg__(self): return Unary("neg", self)


class Load(Expr):
    __slots__ = ("buf", "index", "fill", "masked")

    def __init__(self, buf: Buf, index: Sequence, fill=None, masked: Sequence[int] | None = None):
        self.buf = buf
        self.index = tuple(as_index(i) for i in index)
        if len(self.index) != len(buf.shape):
            raise ValueError(f"{buf.name} has {len(buf.shape)} dims, indexed with {len(self.index)}")
        self.dtype = buf.dtype
        if fill is None:
            if masked is not None:
                raise ValueError("masked dims need a fill value")
            self.fill, self.masked = None, ()
        else:
            self.fill = _normalise_value(fill, buf.dtype)
            self.masked = tuple(range(len(buf.shape))) if masked is None else tuple(sorted(set(masked)))


class Const(Expr):
    __slots__ = ("value",)

    def __init__(self, value, dtype: DType | None = None):
        self.dtype = dtype or _scalar_dtype_of(value)
        self.value = _normalise_value(value, self.dtype)


def _normalise_value(value, dtype: DType):
    """Round a Python scalar to what the dtype can hold, so the text form is exact."""
    if dtype is dt.bool_:
        return bool(value)
    if dtype.is_floating_point:
        return float(np.array(value, dtype=dtype.np))
    return int(np.array(value).astype(dtype.np))


class IndexValue(Expr):
    __slots__ = ("index",)

    def __init__(self, index, dtype: DType = dt.int64):
        self.index = as_index(index)
        self.dtype = dtype


class Unary(Expr):
    __slots__ = ("op", "x")

    def __init__(self, op: str, x: Expr):
        if op not in UNARY_OPS:
            raise ValueError(f"unknown unary op {op!r}")
        if op in FLOAT_UNARY and not x.dtype.is_floating_point:
            raise TypeError(f"{op} needs a floating point operand, got {x.dtype.name}")
        if op in SAME_UNARY and x.dtype is dt.bool_ and op not in ("abs",):
            raise TypeError(f"{op} is not defined for bool (cast first)")
        self.op, self.x = op, x
        self.dtype = dt.bool_ if op in BOOL_UNARY else x.dtype

    def operands(self):
        return (self.x,)


class Binary(Expr):
    __slots__ = ("op", "a", "b")

    def __init__(self, op: str, a: Expr, b: Expr):
        if op not in BINARY_OPS:
            raise ValueError(f"unknown binary op {op!r}")
        if a.dtype is not b.dtype:
            raise TypeError(f"{op}: operands have different dtypes {a.dtype.name} and {b.dtype.name} (insert a Cast)")
        if op == "div" and not a.dtype.is_floating_point:
            raise TypeError("div (true division) needs floating point operands")
        if op in ARITH_BINARY and a.dtype is dt.bool_ and op not in ("maximum", "minimum"):
            raise TypeError(f"{op} is not defined for bool (cast first)")
        self.op, self.a, self.b = op, a, b
        self.dtype = a.dtype if op in ARITH_BINARY else dt.bool_

    def operands(self):
        return (self.a, self.b)


class Where(Expr):
    __slots__ = ("cond", "a", "b")

    def __init__(self, cond: Expr, a: Expr, b: Expr):
        if cond.dtype is not dt.bool_:
            raise TypeError(f"where: condition must be bool, got {cond.dtype.name}")
        if a.dtype is not b.dtype:
            raise TypeError(f"where: branches have different dtypes {a.dtype.name} and {b.dtype.name}")
        self.cond, self.a, self.b = cond, a, b
        self.dtype = a.dtype

    def operands(self):
        return (self.cond, self.a, self.b)


class Cast(Expr):
    __slots__ = ("x",)

    def __init__(self, x: Expr, dtype: DType):
        self.x, self.dtype = x, dtype

    def operands(self):
        return (self.x,)


class Reduce(Expr):
    __slots__ = ("op", "x")

    def __init__(self, op: str, x: Expr):
        if op not in REDUCE_OPS:
            raise ValueError(f"unknown reduction {op!r}")
        if op in ("sum", "prod") and x.dtype is dt.bool_:
            raise TypeError(f"reduce.{op} of bool: cast to an integer type first")
        self.op, self.x = op, x
        self.dtype = dt.int64 if op in ("argmax", "argmin") else x.dtype

    def operands(self):
        return (self.x,)


def unary(op: str, x: Expr) -> Unary:
    return Unary(op, x)


def binary(op: str, a, b) -> Binary:
    if not isinstance(a, Expr):
        a = Const(a, b.dtype)
    if not isinstance(b, Expr):
        b = Const(b, a.dtype)
    return Binary(op, a, b)


def where(c: Expr, a, b) -> Where:
    if not isinstance(a, Expr):
        a = Const(a, b.dtype)
    if not isinstance(b, Expr):
        b = Const(b, a.dtype)
    return Where(c, a, b)


def cast(x: Expr, dtype: DType) -> Expr:
    return x if x.dtype is dtype else Cast(x, dtype)


def reduce(op: str, x: Expr) -> Reduce:
    return Reduce(op, x)


class Store:
    """Write `value` to output `buf` at `index`."""

    __slots__ = ("buf", "index", "value")

    def __init__(self, buf: Buf, index: Sequence, value: Expr):
        self.buf = buf
        self.index = tuple(as_index(i) for i in index)
        if len(self.index) != len(buf.shape):
            raise ValueError(f"{buf.name} has {len(buf.shape)} dims, indexed with {len(self.index)}")
        if value.dtype is not buf.dtype:
            raise TypeError(f"store to {buf.name} ({buf.dtype.name}) of a {value.dtype.name} value (insert a Cast)")
        self.value = value


# ================================================================================ graph walks
def topo_order(roots: Iterable[Expr]) -> list[Expr]:
    """All expression nodes reachable from roots, operands first; deterministic, iterative."""
    order, seen = [], set()
    for root in roots:
        stack = [(root, False)]
        while stack:
            node, done = stack.pop()
            if done:
                order.append(node)
                continue
            if id(node) in seen:
                continue
            seen.add(id(node))
            stack.append((node, True))
            for c in reversed(node.operands()):
                if id(c) not in seen:
                    stack.append((c, False))
    return order


def node_index_exprs(node: Expr) -> tuple:
    """Index expressions a node evaluates (its loop-variable dependencies)."""
    if isinstance(node, Load):
        return node.index
    if isinstance(node, IndexValue):
        return (node.index,)
    return ()


# ==================================================================================== kernels
class Kernel:
    """A fused loop nest: see the module docstring.

    Derived facts used by the evaluator and code generators (computed once here):
      nodes        expression nodes in topological order
      uses_inner   {id(node): bool} -- the node's value varies with an inner variable
      pass_of      {id(reduce): int} -- 1-based pass in which a Reduce is computed
      n_passes     number of reduction passes
    """

    def __init__(self, inputs: Sequence[Buf], outputs: Sequence[Buf], outer: Sequence[int],
                 inner: Sequence[int] = (), stores: Sequence[Store] = (), name: str | None = None,
                 id: int = 0):
        self.inputs = list(inputs)
        self.outputs = list(outputs)
        self.outer = tuple(int(s) for s in outer)
        self.inner = tuple(int(s) for s in inner)
        self.stores = list(stores)
        self.id = id
        self._analyse()
        self.name = name or self._auto_name()

    @property
    def args(self) -> list[Buf]:
        """Argument order of the compiled function and of the runtime: inputs, then outputs."""
        return self.inputs + self.outputs

    # --------------------------------------------------------------------------- analysis
    def _analyse(self) -> None:
        names = [b.name for b in self.args]
        if len(set(names)) != len(names):
            raise ValueError(f"duplicate buffer names in {names}")
        if not self.outer:
            raise ValueError("a kernel needs at least one outer axis (use outer=[1] for a scalar)")
        in_ids = {id(b) for b in self.inputs}
        out_ids = {id(b) for b in self.outputs}
        self.nodes = topo_order([s.value for s in self.stores])
        self.uses_inner: dict[int, bool] = {}
        self.pass_of: dict[int, int] = {}
        depth: dict[int, int] = {}   # max pass of a Reduce this node depends on (0: none)

        def check_index(idx_exprs, what):
            inner_used = False
            for e in idx_exprs:
                for v in index_vars(e):
                    n = len(self.outer) if v.kind == "o" else len(self.inner)
                    if v.axis >= n:
                        raise ValueError(f"{what} uses {v.name} but the domain has {n} {v.kind}-axes")
                    inner_used |= v.kind == "r"
                for g in index_gathers(e):
                    if id(g.buf) not in in_ids:
                        raise ValueError(f"{what}: gather buffer {g.buf.name} is not a kernel input")
            return inner_used

        for node in self.nodes:
            if isinstance(node, Load):
                if id(node.buf) not in in_ids:
                    raise ValueError(f"load from {node.buf.name}, which is not a kernel input")
                self.uses_inner[id(node)] = check_index(node.index, f"load {node.buf.name}")
                depth[id(node)] = 0
            elif isinstance(node, IndexValue):
                self.uses_inner[id(node)] = check_index([node.index], "index value")
                depth[id(node)] = 0
            elif isinstance(node, Const):
                self.uses_inner[id(node)] = False
                depth[id(node)] = 0
            elif isinstance(node, Reduce):
                if not self.inner:
                    raise ValueError("reduce in a kernel without inner axes")
                p = depth[id(node.x)] + 1
                self.pass_of[id(node)] = p
                depth[id(node)] = p
                self.uses_inner[id(node)] = False
            else:
                ops = node.operands()
                self.uses_inner[id(node)] = any(self.uses_inner[id(c)] for c in ops)
                depth[id(node)] = max(depth[id(c)] for c in ops)
        self.n_passes = max(self.pass_of.values(), default=0)
        for s in self.stores:
            if id(s.buf) not in out_ids:
                raise ValueError(f"store to {s.buf.name}, which is not a kernel output")
            inner_idx = check_index(s.index, f"store {s.buf.name}")
            if self.uses_inner[id(s.value)] and not inner_idx:
                raise ValueError(f"store to {s.buf.name}: the value varies over the inner loop but "
                                 "the index does not (reduce it first)")

    def store_is_inner(self, s: Store) -> bool:
        """True when the store runs inside the final inner loop."""
        return self.uses_inner[id(s.value)] or any(v.kind == "r" for e in s.index for v in index_vars(e))

    def _auto_name(self) -> str:
        ops = []
        for node in self.nodes:
            op = None
            if isinstance(node, (Unary, Binary)):
                op = node.op
            elif isinstance(node, Reduce):
                op = node.op
            elif isinstance(node, Where):
                op = "where"
            if op and op not in ops:
                ops.append(op)
        if not ops:
            ops = ["copy"]
        if len(ops) > 6:
            ops = ops[:6] + [f"{len(ops) - 6}more"]
        return f"k{self.id}_" + "_".join(ops)

    # ------------------------------------------------------------------------------ costs
    @property
    def bytes_moved(self) -> int:
        """Bytes read and written, counting each buffer once (what a perfect cache would move)."""
        return sum(b.nbytes for b in self.args)

    @property
    def flops(self) -> int:
        """Scalar operations executed: each Unary/Binary/Where/Reduce counted once per point where it
        runs (transcendentals count 1 like everything else)."""
        n_outer = math.prod(self.outer)
        n_inner = math.prod(self.inner) if self.inner else 1
        total = 0
        for node in self.nodes:
            if isinstance(node, (Unary, Binary, Where, Reduce)):
                inner = self.uses_inner[id(node)] or isinstance(node, Reduce)
                total += n_outer * (n_inner if inner else 1)
        return total

    # ------------------------------------------------------------------------------- text
    def __str__(self) -> str:
        return format_kernel(self)

    def __repr__(self) -> str:
        return f"<Kernel {self.name} outer={list(self.outer)} inner={list(self.inner)}>"


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
        else:  # pragma: no cover
            raise TypeError(node)
        lines.append(f"  %{i} = {text} : {ty}")
    for s in k.stores:
        idx = ", ".join(format_index(e) for e in s.index)
        lines.append(f"  store {s.buf.name}[{idx}] = {num[id(s.value)]}")
    lines.append("}")
    return "\n".join(lines)


# ===================================================================================== parser
_TOKEN = re.compile(r"\s*(?:(\d+)|([A-Za-z_][A-Za-z0-9_.]*)|(//|[-+*%()\[\],]))")


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


def _parse_bufs(text: str) -> list[Buf]:
    bufs = []
    for m in re.finditer(r"([A-Za-z_][A-Za-z0-9_.]*): (\w+)\[([0-9,]*)\]", text):
        shape = [int(s) for s in m.group(3).split(",") if s]
        bufs.append(Buf(m.group(1), shape, dt.by_name(m.group(2))))
    return bufs


def parse_kernel(text: str) -> Kernel:
    """Read the text form back: `str(parse_kernel(str(k))) == str(k)`."""
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    m = re.fullmatch(r"kernel (\S+)\((.*)\) -> \((.*)\) outer=\[([0-9,]*)\] inner=\[([0-9,]*)\] \{", lines[0])
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
    return Kernel(inputs, outputs, [int(s) for s in m.group(4).split(",") if s],
                  [int(s) for s in m.group(5).split(",") if s], stores, name=name,
                  id=int(km.group(1)) if km else 0)


# ============================================================================ extern kernels
class ExternKernel:
    """A library call (numpy matmul / im2col GEMM) plus an optional fused pointwise epilogue.

    op       'matmul' (a[..., m, k] @ b[..., k, n] with numpy broadcasting; attrs transpose_a /
             transpose_b read the operand as its last-two-dims transpose), 'bmm' (same, 3-D), or
             'conv2d' (x[N,C,H,W], w[O,C/groups,kh,kw], optional bias[O]; attrs stride, padding,
             dilation (pairs), groups)
    inputs   the Bufs the call reads
    output   the Buf the call writes (the scratch result when there is an epilogue)
    epilogue optional Kernel whose inputs[0] is `output`; its outputs are the final results
    Runtime argument order (`.args`): inputs, the epilogue's other inputs, then final outputs.
    """

    def __init__(self, op: str, inputs: Sequence[Buf], output: Buf, attrs: dict | None = None,
                 epilogue: Kernel | None = None, name: str | None = None, id: int = 0):
        if op not in EXTERN_OPS:
            raise ValueError(f"unknown extern op {op!r}")
        self.op, self.inputs, self.output = op, list(inputs), output
        self.attrs = dict(attrs or {})
        self.epilogue = epilogue
        if epilogue is not None and (not epilogue.inputs or epilogue.inputs[0] is not output):
            raise ValueError("the epilogue's first input must be the extern's output buffer")
        self.id = id
        ep = ("_" + epilogue.name.split("_", 1)[1]) if epilogue is not None and "_" in epilogue.name else ""
        self.name = name or f"x{id}_{op}{ep}"

    @property
    def extra_inputs(self) -> list[Buf]:
        return self.epilogue.inputs[1:] if self.epilogue is not None else []

    @property
    def final_outputs(self) -> list[Buf]:
        return self.epilogue.outputs if self.epilogue is not None else [self.output]

    @property
    def args(self) -> list[Buf]:
        return self.inputs + self.extra_inputs + self.final_outputs

    @property
    def flops(self) -> int:
        a, b = self.inputs[0], self.inputs[1]
        if self.op in ("matmul", "bmm"):
            k = a.shape[-2] if self.attrs.get("transpose_a") else a.shape[-1]
            return 2 * self.output.numel * k + (self.epilogue.flops if self.epilogue else 0)
        return 2 * self.output.numel * math.prod(b.shape[1:]) + (self.epilogue.flops if self.epilogue else 0)

    @property
    def bytes_moved(self) -> int:
        return sum(x.nbytes for x in self.args)

    def __str__(self) -> str:
        attrs = ", ".join(f"{k}={v!r}" for k, v in sorted(self.attrs.items()))
        head = (f"extern {self.name} = {self.op}({', '.join(b.name for b in self.inputs)}"
                f"{', ' if attrs else ''}{attrs}) -> {self.output!r}")
        if self.epilogue is None:
            return head
        return head + " epilogue\n" + str(self.epilogue)
