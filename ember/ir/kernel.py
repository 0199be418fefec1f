"""Kernel IR: the loop-level program that fusion produces and the code generators consume.

In: built by the fusion pass (ember/passes/fusion) or by hand in tests.  Out: `Kernel` /
`ExternKernel` objects with their derived facts (topological node order, which nodes vary over the
inner loop, reduction passes) and cost estimates (`bytes_moved`, `flops`).  Consumers:
ember/ir/kernel_eval.py (numpy oracle), ember/codegen (LLVM IR, CUDA C), ember/runtime.

The specification (domains, index maps, scalar expressions, stores, reduction passes, externs, with
an example) is docs/kernel-ir.md.  Index expressions and their algebra live in ember/ir/index.py
(re-exported here); the text form (`str(kernel)`, `parse_kernel`) in ember/ir/kernel_text.py.
"""
from __future__ import annotations

import math
import re
from typing import Iterable, Sequence

import numpy as np

from ember.ir import dtypes as dt
from ember.ir.dtypes import DType
from ember.ir.index import (IBin, IConst, IGather, IndexExpr, Var, as_index, index_gathers,  # noqa: F401
                            index_postorder, index_vars, o, r)
from ember.ir.ops import (ARITH_BINARY, BOOL_UNARY, EXPENSIVE, FLOAT_UNARY, KERNEL_BINARY, KERNEL_REDUCE,
                          KERNEL_UNARY, OPS, SAME_UNARY)
from ember.ir.rng import DISTS
from ember.ir.sizes import as_size, free_symbols, sym_str
from ember.ir.walk import walk_postorder

__all__ = [
    "Buf", "IndexExpr", "Var", "IConst", "IBin", "IGather", "o", "r", "as_index",
    "Expr", "Load", "Const", "IndexValue", "Unary", "Binary", "Where", "Cast", "Reduce", "Random", "Store",
    "Kernel", "ExternKernel", "unary", "binary", "where", "cast", "reduce",
    "UNARY_OPS", "BINARY_OPS", "REDUCE_OPS", "EXTERN_OPS", "topo_order",
]

# The code generators and the numpy oracle walk index trees through this name.
_index_postorder = index_postorder

# the op sets are derived from the op table (ember/ir/ops.py rows with kernel_op)
UNARY_OPS = KERNEL_UNARY
BINARY_OPS = KERNEL_BINARY
REDUCE_OPS = KERNEL_REDUCE
EXTERN_OPS = ("matmul", "bmm", "conv2d")
WORK_EXPENSIVE = 16     # `Kernel.work`: scalar instructions of a transcendental (erf, exp: a polynomial or two)
WORK_ROUNDING = 4       # and of a rounding to bf16 / float16


# ===================================================================================== buffers
class Buf:
    """A kernel argument: a contiguous row-major array `name: dtype[shape]`."""

    __slots__ = ("name", "shape", "dtype")

    def __init__(self, name: str, shape: Sequence[int], dtype: DType):
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_.]*", name):
            raise ValueError(f"bad buffer name {name!r}")
        self.name = name
        self.shape = tuple(as_size(s) for s in shape)
        self.dtype = dtype

    @property
    def numel(self) -> int:
        return math.prod(self.shape)

    @property
    def nbytes(self) -> int:
        return self.numel * self.dtype.itemsize

    def __repr__(self) -> str:
        return f"{self.name}: {self.dtype.short}[{','.join(map(sym_str, self.shape))}]"


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


class Random(Expr):
    """A counter-based random value (ember/ir/rng.py): the word of int64 `counter` under int64 `seed`,
    made a uniform [0, 1) value (float16: 11 random bits, float32: 24, float64: 53) or a standard
    normal (float64, Box-Muller).  A pure function of its operands: the same (seed, counter) gives the same value."""
    __slots__ = ("dist", "seed", "counter")

    def __init__(self, dist: str, seed: Expr, counter: Expr, dtype: DType):
        if dist not in DISTS:
            raise ValueError(f"unknown distribution {dist!r} (expected one of {', '.join(DISTS)})")
        if seed.dtype is not dt.int64 or counter.dtype is not dt.int64:
            raise TypeError(f"random.{dist}: seed and counter must be int64, got {seed.dtype.name} and "
                            f"{counter.dtype.name}")
        allowed = (dt.float16, dt.float32, dt.float64) if dist == "uniform" else (dt.float64,)
        if dtype not in allowed:
            raise TypeError(f"random.{dist} gives {' or '.join(d.name for d in allowed)}, not {dtype.name} "
                            "(cast the result)")
        self.dist, self.seed, self.counter = dist, seed, counter
        self.dtype = dtype

    def operands(self):
        return (self.seed, self.counter)


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
def _operands(node: Expr) -> tuple:
    return node.operands()


def topo_order(roots: Iterable[Expr]) -> list[Expr]:
    """All expression nodes reachable from roots, operands first; deterministic, iterative."""
    return walk_postorder(roots, _operands)


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
        self.outer = tuple(as_size(s) for s in outer)
        self.inner = tuple(as_size(s) for s in inner)
        self.stores = list(stores)
        self.id = id
        self._analyse()
        self.name = name or self._auto_name()

    @property
    def args(self) -> list[Buf]:
        """Argument order of the compiled function and of the runtime: inputs, then outputs."""
        return self.inputs + self.outputs

    @property
    def symbols(self) -> tuple:
        """The size symbols (ember/ir/symbolic.py) the kernel's extents, buffers and indices hold,
        sorted: the generated function takes one integer argument for each."""
        syms = free_symbols(self.outer + self.inner + tuple(s for b in self.args for s in b.shape))
        for node in self.nodes:
            for e in node_index_exprs(node):
                syms |= free_symbols(n.value for n in index_postorder(e) if isinstance(n, IConst))
        for st in self.stores:
            for e in st.index:
                syms |= free_symbols(n.value for n in index_postorder(e) if isinstance(n, IConst))
        return tuple(sorted(syms, key=lambda s: (len(s), s)))

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
            elif isinstance(node, Random):
                op = "rand" if node.dist == "uniform" else "randn"     # torch's names
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
        """Scalar operations executed: each Unary/Binary/Where/Reduce/Random counted once per point where
        it runs (transcendentals and random values count 1 like everything else)."""
        n_outer = math.prod(self.outer)
        n_inner = math.prod(self.inner) if self.inner else 1
        total = 0
        for node in self.nodes:
            if isinstance(node, (Unary, Binary, Where, Reduce, Random)):
                inner = self.uses_inner[id(node)] or isinstance(node, Reduce)
                total += n_outer * (n_inner if inner else 1)
        return total

    @property
    def work(self) -> int:
        """`flops` weighted by what each op costs in instructions (a transcendental ~16, a rounding to a
        16-bit float ~4): the CPU runtime's measure for splitting a kernel across threads.  Counted as
        flops, a bf16 GELU (half float32's bytes, erf counted once) stayed on one thread, 2.8x slower."""
        n_outer = math.prod(self.outer)
        n_inner = math.prod(self.inner) if self.inner else 1
        total = 0
        for node in self.nodes:
            if isinstance(node, (Unary, Binary, Where, Reduce, Random)):
                w = WORK_EXPENSIVE if isinstance(node, Random) or (
                    isinstance(node, (Unary, Binary)) and OPS[node.op].cost >= EXPENSIVE) else 1
            elif isinstance(node, Cast) and node.dtype.is_reduced_float:
                w = WORK_ROUNDING
            else:
                continue
            inner = self.uses_inner[id(node)] or isinstance(node, Reduce)
            total += w * n_outer * (n_inner if inner else 1)
        return total

    # ------------------------------------------------------------------------------- text
    def __str__(self) -> str:
        # kernel_text.py imports this module (as text.py imports graph.py): import late to avoid a cycle
        from ember.ir.kernel_text import format_kernel
        return format_kernel(self)

    def __repr__(self) -> str:
        return f"<Kernel {self.name} outer={list(self.outer)} inner={list(self.inner)}>"


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
