"""The op vocabulary: every primitive's schema (arity, attributes, shape rule, dtype rule).

One table that every layer derives its facts about an op from. Each `OpDef` row holds:
  - the schema: kind, arity, attributes, shape/dtype rule (`infer`), differentiability. Eager mode
    checks inputs with it, the tracer computes result types with it, the IR verifier re-runs it;
  - `ref`: the reference semantics, written once against an array module (`ref(xp, *arrays, **attrs)`
    with xp numpy or cupy). It is the eager kernel unless ember/frontend/prims.py registers one with
    its own speed tricks, the numpy kernel-IR evaluator (ember/ir/kernel_eval.py) and constant
    folding (ember/passes/constant_fold.py);
  - `cost`: what recomputing the op inside another kernel costs fusion (ember/passes/fusion/decide.py);
  - `kernel_op`: whether kernel IR (ember/ir/kernel.py) has the op. KERNEL_UNARY / KERNEL_BINARY /
    KERNEL_REDUCE below are derived from it, and every code generator's op table must cover them
    (tests/codegen/test_op_tables.py).
Nothing here knows about Tensor: rules take and return `TType`s (shape tuple + DType). VJPs are
attached by name in ember/frontend/prims.py.

The primitive set is small in the spirit of JAX's lax: elementwise unary/binary/where, cast,
reductions, movement, indexing, matmul, random, constants. Everything else is a composite.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, NamedTuple

import numpy as np

from . import dtypes as dt
from . import rng
from .dtypes import DType


class TType(NamedTuple):
    """A tensor's type: shape and dtype."""
    shape: tuple
    dtype: DType

    def __str__(self) -> str:
        return f"{self.dtype.short}[{','.join(map(str, self.shape))}]"


class ShapeError(RuntimeError):
    """A shape or dtype rule rejected its inputs (eager, tracer and verifier raise the same)."""


@dataclass(frozen=True)
class OpDef:
    name: str
    kind: str                      # unary binary ternary cast reduce movement index matmul random const
    arity: int | None              # number of tensor inputs; None = variadic (cat)
    attrs: tuple = ()              # attribute names, in printing order
    infer: Callable = None         # (list[TType], attrs dict) -> TType
    differentiable: bool = True
    doc: str = ""
    flags: frozenset = field(default_factory=frozenset)   # e.g. {"random"}, {"eager_only"}
    ref: Callable | None = None    # (xp, *arrays_or_scalars, **attrs) -> array: the op's semantics
    cost: int = 1                  # recompute cost inside a fused kernel (FREE, CHEAP, EXPENSIVE)
    kernel_op: bool = False        # kernel IR has the op


OPS: dict[str, OpDef] = {}

# recompute costs: a pointwise value needed by several kernels is recomputed in each while the cost of
# its producer cone stays within fusion's budget
FREE = 0          # movement: an index map, no arithmetic
CHEAP = 1         # one instruction or a few
EXPENSIVE = 4     # transcendentals, division: tens of instructions


def _def(name, kind, infer, arity=1, attrs=(), differentiable=True, doc="", flags=(), ref=None,
         cost=None, kernel_op=False):
    if cost is None:   # movement ops are index maps in a fused kernel: nothing to recompute
        cost = FREE if kind == "movement" else CHEAP
    OPS[name] = OpDef(name, kind, arity, tuple(attrs), infer, differentiable, doc, frozenset(flags),
                      ref, cost, kernel_op)


def fmt(t: TType) -> str:
    return str(t)


def _err(op, msg, ins=()):
    detail = ", ".join(str(t) for t in ins)
    raise ShapeError(f"{op}: {msg}" + (f" (inputs: {detail})" if detail else ""))


# ----------------------------------------------------------------------------------- helpers
def broadcast_shapes(*shapes, op="broadcast") -> tuple:
    """numpy/PyTorch broadcasting, with PyTorch's error message."""
    nd = max((len(s) for s in shapes), default=0)
    out = [1] * nd
    for s in shapes:
        for i, n in enumerate(s):
            j = nd - len(s) + i
            m = out[j]
            if m == 1:
                out[j] = n
            elif n != 1 and n != m:
                raise ShapeError(
                    f"{op}: The size of tensor a ({m}) must match the size of tensor b ({n}) at "
                    f"non-singleton dimension {i - len(s) + nd}: shapes "
                    + " and ".join(str(list(x)) for x in shapes))
    return tuple(out)


def norm_dim(d: int, ndim: int, op="op") -> int:
    n = max(ndim, 1)
    if not -n <= d < n:
        raise IndexError(f"{op}: Dimension out of range (expected to be in range of [{-n}, {n - 1}], but got {d})")
    return d % n


def norm_dims(dims, ndim, op="op") -> tuple:
    if dims is None:
        return tuple(range(ndim))
    if isinstance(dims, int):
        dims = (dims,)
    out = tuple(sorted({norm_dim(d, ndim, op) for d in dims}))
    if len(out) != len(tuple(dims)):
        raise RuntimeError(f"{op}: dim {tuple(dims)} appears multiple times in the list of dims")
    return out


def _float_required(op, t):
    if not t.dtype.is_floating_point:
        _err(op, f"expected a floating point input, got {t.dtype.name}", [t])


# ------------------------------------------------------------------------------ elementwise
def quiet(ref: Callable) -> Callable:
    """numpy warns on log(0), 0/0 ...; PyTorch returns inf/nan silently, so do the references that
    can meet such inputs. (Not applied to add/mul...: entering errstate costs ~1 us an eager call.)"""
    def q(xp, *a, **kw):
        with np.errstate(all="ignore"):
            return ref(xp, *a, **kw)
    return q


def _erf(xp, x):
    if xp is not np:   # CuPy: the CUDA math library's erf/erff (accurate in both precisions)
        import cupyx.scipy.special
        return cupyx.scipy.special.erf(x).astype(x.dtype, copy=False)
    if x.dtype == np.float64:
        return np.asarray(np.frompyfunc(math.erf, 1, 1)(x), dtype=np.float64)
    # float32/16: Taylor series near 0 (keeps relative accuracy), Numerical Recipes' erfc
    # Chebyshev fit elsewhere (fractional error < 1.2e-7)
    xd = x.astype(np.float64)
    a = np.abs(xd)
    t = 1.0 / (1.0 + 0.5 * a)
    poly = -1.26551223 + t * (1.00002368 + t * (0.37409196 + t * (0.09678418 + t * (-0.18628806 + t * (
        0.27886807 + t * (-1.13520398 + t * (1.48851587 + t * (-0.82215223 + t * 0.17087277))))))))
    erfc = t * np.exp(-a * a + poly)
    far = np.sign(xd) * (1.0 - erfc)
    x2 = xd * xd
    near = xd * (1.1283791670955126 * (1 - x2 / 3 * (1 - x2 * 3 / 10 * (1 - x2 * 5 / 21 * (
        1 - x2 * 7 / 36 * (1 - x2 * 9 / 55))))))
    return np.where(a < 0.5, near, far).astype(x.dtype)


def _sigmoid(xp, x):
    """exp of a non-positive number only: no overflow for large |x|."""
    e = xp.exp(-xp.abs(x))
    return xp.where(x >= 0, 1 / (1 + e), e / (1 + e)).astype(x.dtype, copy=False)


def _sign(xp, x):
    if x.dtype == np.bool_:
        return x.copy()
    if x.dtype.kind == "f":   # PyTorch: sign(nan) is 0, sign(-0.0) is +0.0
        return (x > 0).astype(x.dtype) - (x < 0).astype(x.dtype)
    return xp.sign(x)


def _float_only(fn):
    """floor/ceil/round/trunc return integer inputs unchanged (as PyTorch)."""
    return lambda xp, x: x.copy() if x.dtype.kind in "iub" else fn(xp, x)


def _pow(xp, a, b):
    """Float power; integer power with b < 0 gives 1 // a**|b| (0 unless |a| == 1), as the compiled
    kernels' C-style integer arithmetic does (eager mode raises instead: ember/frontend/prims.py)."""
    if not (isinstance(a, int) or getattr(a, "dtype", np.dtype("f")).kind in "iu") or \
            getattr(b, "dtype", np.dtype("f")).kind not in "iu":      # (a Python int base: 2 ** t)
        return xp.power(a, b)
    neg = b < 0
    res = xp.power(a, xp.where(neg, 0, b))
    if xp.any(neg):
        inv = xp.where(a == 1, 1, xp.where(a == -1, xp.where(xp.abs(b) % 2 == 1, -1, 1), 0))
        res = xp.where(neg, inv.astype(res.dtype), res)
    return res


def _unary_float(name):
    def infer(ins, a):
        _float_required(name, ins[0])
        return ins[0]
    return infer


def _unary_same(ins, a):
    return ins[0]


def _unary_bool(ins, a):
    return TType(ins[0].shape, dt.bool_)


def _binary(name, out_bool):
    def infer(ins, a):
        x, y = ins
        if x.dtype is not y.dtype:
            _err(name, f"expected both inputs to have the same dtype, but got {x.dtype.name} and {y.dtype.name}", ins)
        if name == "div" and not x.dtype.is_floating_point:
            _err(name, "true division needs floating point inputs", ins)
        shape = broadcast_shapes(x.shape, y.shape, op=name)
        return TType(shape, dt.bool_ if out_bool else x.dtype)
    return infer


# dtype rules of the elementwise kernel ops: FLOAT needs a float input, SAME keeps the input's dtype,
# BOOL returns bool; ARITH keeps the operands' dtype, CMP returns bool
FLOAT, SAME, BOOL, ARITH, CMP = "float", "same", "bool", "arith", "cmp"
_BY_RULE: dict[str, list[str]] = {FLOAT: [], SAME: [], BOOL: [], ARITH: [], CMP: []}


def unary(name, dtypes, ref, cost=CHEAP, differentiable=True):
    infer = {FLOAT: _unary_float(name), SAME: _unary_same, BOOL: _unary_bool}[dtypes]
    _BY_RULE[dtypes].append(name)
    _def(name, "unary", infer, ref=ref, cost=cost, kernel_op=True,
         differentiable=differentiable and dtypes != BOOL)


def binary(name, dtypes, ref, cost=CHEAP, differentiable=True):
    _BY_RULE[dtypes].append(name)
    _def(name, "binary", _binary(name, dtypes == CMP), arity=2, ref=ref, cost=cost, kernel_op=True,
         differentiable=differentiable and dtypes != CMP)


unary("exp", FLOAT, quiet(lambda xp, x: xp.exp(x)), EXPENSIVE)
unary("log", FLOAT, quiet(lambda xp, x: xp.log(x)), EXPENSIVE)
unary("sqrt", FLOAT, quiet(lambda xp, x: xp.sqrt(x)), EXPENSIVE)
unary("rsqrt", FLOAT, quiet(lambda xp, x: (1 / xp.sqrt(x)).astype(x.dtype, copy=False)), EXPENSIVE)
unary("sin", FLOAT, quiet(lambda xp, x: xp.sin(x)), EXPENSIVE)
unary("cos", FLOAT, quiet(lambda xp, x: xp.cos(x)), EXPENSIVE)
unary("tanh", FLOAT, lambda xp, x: xp.tanh(x), EXPENSIVE)
unary("sigmoid", FLOAT, quiet(_sigmoid), EXPENSIVE)
unary("erf", FLOAT, quiet(_erf), EXPENSIVE)
unary("log1p", FLOAT, quiet(lambda xp, x: xp.log1p(x)), EXPENSIVE)
unary("expm1", FLOAT, quiet(lambda xp, x: xp.expm1(x)), EXPENSIVE)
unary("reciprocal", FLOAT, quiet(lambda xp, x: xp.reciprocal(x)))
# sign/floor/ceil/round/trunc: gradient 0, as in PyTorch
unary("neg", SAME, lambda xp, x: xp.negative(x))
unary("abs", SAME, lambda xp, x: xp.abs(x))
unary("sign", SAME, _sign)
unary("floor", SAME, _float_only(lambda xp, x: xp.floor(x)))
unary("ceil", SAME, _float_only(lambda xp, x: xp.ceil(x)))
unary("round", SAME, _float_only(lambda xp, x: xp.round(x)))
unary("trunc", SAME, _float_only(lambda xp, x: xp.trunc(x)))
unary("logical_not", BOOL, lambda xp, x: xp.logical_not(x))
unary("isnan", BOOL, lambda xp, x: xp.isnan(x))
unary("isinf", BOOL, lambda xp, x: xp.isinf(x))

binary("add", ARITH, lambda xp, a, b: xp.add(a, b))
binary("sub", ARITH, lambda xp, a, b: xp.subtract(a, b))
binary("mul", ARITH, lambda xp, a, b: xp.multiply(a, b))
binary("div", ARITH, quiet(lambda xp, a, b: xp.true_divide(a, b)), EXPENSIVE)
binary("pow", ARITH, quiet(_pow), EXPENSIVE)
binary("maximum", ARITH, lambda xp, a, b: xp.maximum(a, b))
binary("minimum", ARITH, lambda xp, a, b: xp.minimum(a, b))
# integer x % 0 and x // 0 give 0 (eager mode raises instead, as PyTorch)
binary("remainder", ARITH, quiet(lambda xp, a, b: xp.remainder(a, b)))
binary("floor_divide", ARITH, quiet(lambda xp, a, b: xp.floor_divide(a, b)), differentiable=False)
binary("eq", CMP, lambda xp, a, b: xp.equal(a, b))
binary("ne", CMP, lambda xp, a, b: xp.not_equal(a, b))
binary("lt", CMP, lambda xp, a, b: xp.less(a, b))
binary("le", CMP, lambda xp, a, b: xp.less_equal(a, b))
binary("gt", CMP, lambda xp, a, b: xp.greater(a, b))
binary("ge", CMP, lambda xp, a, b: xp.greater_equal(a, b))
binary("logical_and", CMP, lambda xp, a, b: xp.logical_and(a, b))
binary("logical_or", CMP, lambda xp, a, b: xp.logical_or(a, b))

FLOAT_UNARY, SAME_UNARY, BOOL_UNARY, ARITH_BINARY, CMP_BINARY = (
    tuple(_BY_RULE[r]) for r in (FLOAT, SAME, BOOL, ARITH, CMP))


def _where(ins, a):
    c, x, y = ins
    if c.dtype is not dt.bool_:
        _err("where", f"condition must be bool, got {c.dtype.name}", ins)
    if x.dtype is not y.dtype:
        _err("where", f"expected x and y to have the same dtype, got {x.dtype.name} and {y.dtype.name}", ins)
    return TType(broadcast_shapes(c.shape, x.shape, y.shape, op="where"), x.dtype)


_def("where", "ternary", _where, arity=3, ref=lambda xp, c, x, y: xp.where(c, x, y), kernel_op=True)
_def("stop_gradient", "unary", lambda ins, a: ins[0], differentiable=False, ref=lambda xp, x: x,
     doc="identity whose gradient is zero: a traced detach() (JAX's stop_gradient)")
_def("cast", "cast", lambda ins, a: TType(ins[0].shape, a["dtype"]), attrs=("dtype",),
     ref=lambda xp, x, dtype: x.astype(dtype.np), kernel_op=True)


# ------------------------------------------------------------------------------- reductions
def _reduce(name, out_dtype=None):
    def infer(ins, a):
        x = ins[0]
        dims = norm_dims(a["dims"], len(x.shape), name)
        if name in ("max", "min", "argmax", "argmin") and any(x.shape[d] == 0 for d in dims):
            _err(name, "Expected reduction dim to have non-zero size", ins)
        if a.get("keepdim"):
            shape = tuple(1 if i in dims else n for i, n in enumerate(x.shape))
        else:
            shape = tuple(n for i, n in enumerate(x.shape) if i not in dims)
        return TType(shape, out_dtype or x.dtype)
    return infer


def _axis(dims):
    return None if dims is None else tuple(dims)


def _sum(xp, x, dims, keepdim):
    acc = np.float32 if x.dtype == np.float16 else x.dtype    # float16 sums accumulate in float32
    r = xp.sum(x, axis=None if dims is None else tuple(dims), keepdims=keepdim, dtype=acc)
    return xp.asarray(r).astype(x.dtype, copy=False)


def _arg(name):
    def ref(xp, x, dims, keepdim):
        if dims is None:   # over the flattened input
            r = xp.asarray(getattr(x.reshape(-1), name)())
            return r.reshape((1,) * x.ndim if keepdim else ())
        return xp.asarray(getattr(x, name)(axis=dims[0], keepdims=keepdim))
    return ref


def _reduction(name, ref, out_dtype=None, differentiable=True):
    _def(name, "reduce", _reduce(name, out_dtype), attrs=("dims", "keepdim"), ref=ref, kernel_op=True,
         differentiable=differentiable)


_reduction("sum", _sum)
_reduction("max", lambda xp, x, dims, keepdim: xp.asarray(xp.max(x, axis=_axis(dims), keepdims=keepdim)))
_reduction("min", lambda xp, x, dims, keepdim: xp.asarray(xp.min(x, axis=_axis(dims), keepdims=keepdim)))
_reduction("prod", lambda xp, x, dims, keepdim: xp.asarray(
    xp.prod(x, axis=_axis(dims), keepdims=keepdim, dtype=x.dtype)))
_reduction("argmax", _arg("argmax"), dt.int64, differentiable=False)
_reduction("argmin", _arg("argmin"), dt.int64, differentiable=False)


def _cumsum(ins, a):
    norm_dim(a["dim"], len(ins[0].shape), "cumsum")
    return ins[0]


_def("cumsum", "scan", _cumsum, attrs=("dim",))


# --------------------------------------------------------------------------------- movement
def _reshape(ins, a):
    x = ins[0]
    shape = tuple(a["shape"])
    n = 1
    for s in x.shape:
        n *= s
    m = 1
    for s in shape:
        m *= s
    if n != m or any(s < 0 for s in shape):
        _err("reshape", f"shape '{list(shape)}' is invalid for input of size {n}", ins)
    return TType(shape, x.dtype)


def _permute(ins, a):
    x = ins[0]
    dims = tuple(a["dims"])
    if sorted(dims) != list(range(len(x.shape))):
        _err("permute", f"number of dims don't match or repeated: dims {list(dims)} for shape {list(x.shape)}", ins)
    return TType(tuple(x.shape[d] for d in dims), x.dtype)


def _expand(ins, a):
    x = ins[0]
    shape = tuple(a["shape"])
    if len(shape) < len(x.shape):
        _err("expand", f"the number of sizes provided ({len(shape)}) must be greater or equal to the number "
                       f"of dimensions in the tensor ({len(x.shape)})", ins)
    off = len(shape) - len(x.shape)
    for i, n in enumerate(x.shape):
        if n != 1 and n != shape[off + i]:
            _err("expand", f"The expanded size of the tensor ({shape[off + i]}) must match the existing size "
                           f"({n}) at non-singleton dimension {off + i}.  Target sizes: {list(shape)}", ins)
    return TType(shape, x.dtype)


def _slice(ins, a):
    """slice(starts, stops, steps): per-dimension python-style slice with normalised, in-range
    bounds and positive steps (the frontend normalises; negative steps become flip)."""
    x = ins[0]
    out = []
    for n, s0, s1, st in zip(x.shape, a["starts"], a["stops"], a["steps"]):
        if st <= 0 or not (0 <= s0 <= n) or not (0 <= s1 <= n):
            _err("slice", f"invalid slice {s0}:{s1}:{st} for size {n}", ins)
        out.append(max(0, (s1 - s0 + st - 1) // st))
    return TType(tuple(out), x.dtype)


def _flip(ins, a):
    norm_dims(a["dims"], len(ins[0].shape), "flip")
    return ins[0]


def _pad(ins, a):
    """pad(pads=[(lo, hi) per dim], value): constant padding; negative amounts crop."""
    x = ins[0]
    pads = a["pads"]
    if len(pads) != len(x.shape):
        _err("pad", f"expected {len(x.shape)} (lo, hi) pairs, got {len(pads)}", ins)
    shape = tuple(n + lo + hi for n, (lo, hi) in zip(x.shape, pads))
    if any(s < 0 for s in shape):
        _err("pad", f"resulting padded shape {list(shape)} has a negative size", ins)
    return TType(shape, x.dtype)


def _cat(ins, a):
    if not ins:
        _err("cat", "expected a non-empty list of Tensors")
    ref = ins[0]
    d = norm_dim(a["dim"], len(ref.shape), "cat")
    total = 0
    for t in ins:
        if t.dtype is not ref.dtype:
            _err("cat", f"expected all inputs to have the same dtype, got {ref.dtype.name} and {t.dtype.name}", ins)
        if len(t.shape) != len(ref.shape) or any(m != n for i, (m, n) in enumerate(zip(t.shape, ref.shape)) if i != d):
            _err("cat", f"Sizes of tensors must match except in dimension {d}. "
                        f"Expected size {list(ref.shape)} but got size {list(t.shape)}", ins)
        total += t.shape[d]
    return TType(ref.shape[:d] + (total,) + ref.shape[d + 1:], ref.dtype)


def window_out(n, k, s, d):
    return (n - d * (k - 1) - 1) // s + 1


def _windows(ins, a):
    """windows(kernel, stride, dilation): sliding windows over the last len(kernel) dims.
    [..., H, W] -> [..., oh, ow, kh, kw]  (a view; im2col and pooling are built on it)."""
    x = ins[0]
    k, s, d = a["kernel"], a["stride"], a["dilation"]
    nk = len(k)
    if len(x.shape) < nk:
        _err("windows", f"input needs at least {nk} dims", ins)
    spatial = x.shape[-nk:]
    outs = tuple(window_out(n, kk, ss, dd) for n, kk, ss, dd in zip(spatial, k, s, d))
    if any(o <= 0 for o in outs):
        _err("windows", f"kernel size {list(k)} (dilation {list(d)}) is larger than the (padded) input "
                        f"size {list(spatial)}", ins)
    return TType(x.shape[:-nk] + outs + tuple(k), x.dtype)


def _fold(ins, a):
    """fold(size, kernel, stride, dilation): the adjoint of windows (sums overlapping windows)."""
    x = ins[0]
    nk = len(a["kernel"])
    size = tuple(a["size"])
    batch = x.shape[:-2 * nk]
    return TType(batch + size, x.dtype)


_def("reshape", "movement", _reshape, attrs=("shape",))
_def("permute", "movement", _permute, attrs=("dims",))
_def("expand", "movement", _expand, attrs=("shape",))
_def("slice", "movement", _slice, attrs=("starts", "stops", "steps"))
_def("flip", "movement", _flip, attrs=("dims",))
_def("pad", "movement", _pad, attrs=("pads", "value"))
_def("cat", "movement", _cat, arity=None, attrs=("dim",))
_def("windows", "movement", _windows, attrs=("kernel", "stride", "dilation"))
_def("fold", "movement", _fold, attrs=("size", "kernel", "stride", "dilation"))


# --------------------------------------------------------------------------------- indexing
def _int_index(op, t, ins):
    if t.dtype not in (dt.int64, dt.int32, dt.int16, dt.int8, dt.uint8):
        _err(op, f"expected an integer index tensor (Long), got {t.dtype.name}", ins)


def _take(ins, a):
    """take(dim): out = x.take(idx, axis=dim); idx of any shape replaces dimension dim."""
    x, idx = ins
    _int_index("take", idx, ins)
    d = norm_dim(a["dim"], len(x.shape), "take")
    return TType(x.shape[:d] + idx.shape + x.shape[d + 1:], x.dtype)


def _index_add(ins, a):
    """index_add(dim): out = x with src's slices added at positions idx along dim (idx of any shape)."""
    x, idx, src = ins
    _int_index("index_add", idx, ins)
    d = norm_dim(a["dim"], len(x.shape), "index_add")
    want = x.shape[:d] + idx.shape + x.shape[d + 1:]
    if tuple(src.shape) != want or src.dtype is not x.dtype:
        _err("index_add", f"source must have shape {list(want)} and dtype {x.dtype.name}", ins)
    return x


def _gather(ins, a):
    x, idx = ins
    _int_index("gather", idx, ins)
    d = norm_dim(a["dim"], len(x.shape), "gather")
    if len(idx.shape) != len(x.shape):
        _err("gather", "Index tensor must have the same number of dimensions as input tensor", ins)
    for i, (m, n) in enumerate(zip(idx.shape, x.shape)):
        if i != d and m > n:
            _err("gather", f"Size does not match at dimension {i} expected index {list(idx.shape)} to be "
                           f"smaller than self {list(x.shape)} apart from dimension {d}", ins)
    return TType(idx.shape, x.dtype)


def _scatter(name):
    def infer(ins, a):
        x, idx, src = ins
        _int_index(name, idx, ins)
        d = norm_dim(a["dim"], len(x.shape), name)
        if len(idx.shape) != len(x.shape) or len(src.shape) != len(x.shape):
            _err(name, "Index tensor must have the same number of dimensions as self and src", ins)
        for i, (m, n, k) in enumerate(zip(idx.shape, x.shape, src.shape)):
            if m > k or (i != d and m > n):
                _err(name, f"Expected index {list(idx.shape)} to be smaller than self {list(x.shape)} apart "
                           f"from dimension {d} and to be smaller size than src {list(src.shape)}", ins)
        if src.dtype is not x.dtype:
            _err(name, f"Expected self.dtype to be equal to src.dtype ({x.dtype.name} vs {src.dtype.name})", ins)
        return x
    return infer


_def("take", "index", _take, arity=2, attrs=("dim",))
_def("index_add", "index", _index_add, arity=3, attrs=("dim",))
_def("gather", "index", _gather, arity=2, attrs=("dim",))
_def("scatter_add", "index", _scatter("scatter_add"), arity=3, attrs=("dim",))
_def("scatter", "index", _scatter("scatter"), arity=3, attrs=("dim",))
_def("scatter_reduce", "index", _scatter("scatter_reduce"), arity=3, attrs=("dim", "reduce", "include_self"),
     doc="reduce src into x at index along dim: sum, prod, mean, amax or amin (PyTorch's scatter_reduce)")


def _sort_like(name):
    def infer(ins, a):
        x = ins[0]
        d = norm_dim(a["dim"], len(x.shape), name)
        shape = x.shape
        if name == "topk":
            k = a["k"]
            n = x.shape[d] if x.shape else 1
            if not 0 <= k <= n:
                _err("topk", f"selected index k={k} out of range for dimension of size {n}", ins)
            shape = x.shape[:d] + (k,) + x.shape[d + 1:] if x.shape else ()
        return TType(shape, dt.int64)
    return infer


_def("argsort", "index", _sort_like("argsort"), attrs=("dim", "descending"), differentiable=False)
_def("topk", "index", _sort_like("topk"), attrs=("k", "dim", "largest"), differentiable=False,
     doc="indices of the k largest (or smallest) entries along dim, in sorted order")


# ----------------------------------------------------------------------------------- matmul
def _matmul(ins, a):
    x, y = ins
    if x.dtype is not y.dtype:
        _err("matmul", f"expected both inputs to have the same dtype, but got {x.dtype.name} != {y.dtype.name}", ins)
    if len(x.shape) < 2 or len(y.shape) < 2:
        _err("matmul", "the primitive needs inputs of at least 2 dimensions", ins)
    if x.shape[-1] != y.shape[-2]:
        raise ShapeError(f"matmul: mat1 and mat2 shapes cannot be multiplied "
                         f"({x.shape[-2]}x{x.shape[-1]} and {y.shape[-2]}x{y.shape[-1]})")
    batch = broadcast_shapes(x.shape[:-2], y.shape[:-2], op="matmul")
    return TType(batch + (x.shape[-2], y.shape[-1]), x.dtype)


_def("matmul", "matmul", _matmul, arity=2)


def _addmm(ins, a):
    x, y, bias = ins
    out = _matmul((x, y), a)
    if len(x.shape) != 2 or len(y.shape) != 2:
        _err("addmm", "the primitive takes 2-D matrices", ins)
    if bias.dtype is not x.dtype or tuple(bias.shape) != (y.shape[-1],):
        _err("addmm", f"expected a bias of shape [{y.shape[-1]}] and dtype {x.dtype.name}", ins)
    return out


_def("addmm", "matmul", _addmm, arity=3,
     doc="x @ y + bias[N] rounded once (PyTorch's addmm: a 16-bit product adds its bias before it rounds)")


# -------------------------------------------------------------------------------- attention
def _attention_types(op, ins):
    q, k, v, m, key = ins[:5]
    if not q.dtype.is_floating_point or k.dtype is not q.dtype or v.dtype is not q.dtype:
        _err(op, "query, key and value must have the same floating dtype", ins)
    if m.dtype is not dt.bool_:
        _err(op, "the mask must be bool (True: the score is masked out)", ins)
    if key.dtype is not dt.int64 or key.shape != (2,):
        _err(op, "the dropout key must be i64[2] (seed, offset)", ins)
    if len(q.shape) < 2 or not len(q.shape) == len(k.shape) == len(v.shape):
        _err(op, "query, key and value need the same number of dims, at least 2", ins)
    if q.shape[:-2] != k.shape[:-2] or q.shape[:-2] != v.shape[:-2]:
        _err(op, "query, key and value need the same batch dims", ins)
    if k.shape[-1] != q.shape[-1] or v.shape[-2] != k.shape[-2]:
        _err(op, "key must be [..., S, E] for a query [..., L, E], value [..., S, Ev]", ins)
    broadcast_shapes(m.shape, q.shape[:-1] + (k.shape[-2],), op=op)


def _attention(ins, a):
    """attention(scale, fill, p, keep): dropout(softmax(where(masked, fill, (q @ k^T) * scale))) @ v, one fused op
    (rewritten from that pattern: ember/passes/attention.py; the unfused ops' order of rounding).  fill: -inf,
    or the value a masked_fill wrote.  Dropout (p > 0): the probabilities times `keep` (1/(1-p) as float32)
    where the uniform draw of `key` (seed, offset; counter = offset + the [..., L, S] element's flat index)
    is >= p, else times 0 -- the values F.dropout draws there."""
    _attention_types("attention", ins)
    q, v = ins[0], ins[2]
    return TType(q.shape[:-1] + (v.shape[-1],), q.dtype)


def _attention_grad(ins, a):
    """attention_grad(scale, fill, p, keep): (dq, dk, dv) of attention for the output gradient g, flattened and
    joined into one vector (a node has one value; the VJP slices it)."""
    _attention_types("attention_grad", ins[:5])
    q, k, v, _, _, g = ins
    if g.shape != q.shape[:-1] + (v.shape[-1],) or g.dtype is not q.dtype:
        _err("attention_grad", "the output gradient must match attention's output", ins)
    n = sum(math.prod(t.shape) for t in (q, k, v))
    return TType((n,), q.dtype)


def _softmax_probs(xp, q, k, masked, scale, fill):
    s = xp.matmul(q, xp.swapaxes(k, -1, -2)) * q.dtype.type(scale)
    s = xp.where(masked, q.dtype.type(fill), s)
    e = xp.exp(s - s.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def _dropout_scale(xp, key, shape, dtype, p, keep):
    """The dropout factors (keep or 0) of attention's probabilities: F.dropout's draw, ge, cast, mul."""
    seed, offset = (int(x) for x in key.tolist())
    u = rng.uniform(xp, seed, offset, shape, dtype)
    return (u >= dtype.type(p)).astype(dtype) * dtype.type(keep)


def _attention_ref(xp, q, k, v, masked, key, scale, fill, p, keep):
    probs = _softmax_probs(xp, q, k, masked, scale, fill)
    if p > 0:
        probs = probs * _dropout_scale(xp, key, probs.shape, probs.dtype, p, keep)
    return xp.matmul(probs, v)


def _attention_grad_ref(xp, q, k, v, masked, key, g, scale, fill, p, keep):
    probs = _softmax_probs(xp, q, k, masked, scale, fill)
    dp = xp.matmul(g, xp.swapaxes(v, -1, -2))
    dropped = probs
    if p > 0:
        factor = _dropout_scale(xp, key, probs.shape, probs.dtype, p, keep)
        dropped, dp = probs * factor, dp * factor
    dv = xp.matmul(xp.swapaxes(dropped, -1, -2), g)
    ds = probs * (dp - (probs * dp).sum(axis=-1, keepdims=True)) * q.dtype.type(scale)
    ds = xp.where(masked, q.dtype.type(0), ds)          # where's gradient: 0 at masked scores (NaN rows too)
    dq, dk = xp.matmul(ds, k), xp.matmul(xp.swapaxes(ds, -1, -2), q)
    return xp.concatenate([dq.reshape(-1), dk.reshape(-1), dv.reshape(-1)])


_ATTENTION_ATTRS = ("scale", "fill", "p", "keep")
_def("attention", "attention", _attention, arity=5, attrs=_ATTENTION_ATTRS, ref=quiet(_attention_ref),
     cost=EXPENSIVE)
_def("attention_grad", "attention", _attention_grad, arity=6, attrs=_ATTENTION_ATTRS, differentiable=False,
     ref=quiet(_attention_grad_ref), cost=EXPENSIVE)


# ----------------------------------------------------------------------- random and constants
def _random(ins, a):
    key = ins[0]
    if key.dtype is not dt.int64 or key.shape != (2,):
        _err("random", "key must be i64[2] (seed, offset)", ins)
    if not a["dtype"].is_floating_point:
        _err("random", "random values need a floating dtype", ins)
    return TType(tuple(a["shape"]), a["dtype"])


def _random_ref(xp, key, shape, dtype, dist):
    seed, offset = (int(v) for v in key.tolist())
    draw = rng.uniform if dist == "uniform" else rng.normal
    return draw(xp, seed, offset, tuple(shape), dtype.np)


_def("random", "random", _random, attrs=("shape", "dtype", "dist"), differentiable=False, cost=EXPENSIVE,
     ref=_random_ref,
     flags=("random",), doc="counter-based random numbers from key = (seed, offset); dist uniform|normal "
     "(ember/ir/rng.py; a Random node in kernel IR)")
_def("full", "const", lambda ins, a: TType(tuple(a["shape"]), a["dtype"]), arity=0,
     attrs=("shape", "value", "dtype"), differentiable=False)
_def("arange", "const", lambda ins, a: TType((a["n"],), a["dtype"]), arity=0,
     attrs=("n", "start", "step", "dtype"), differentiable=False)


def _kernel_ops(kind: str) -> tuple:
    return tuple(n for n, d in OPS.items() if d.kind == kind and d.kernel_op)


# the op sets of kernel IR (ember/ir/kernel.py Unary / Binary / Reduce nodes), in table order
KERNEL_UNARY = _kernel_ops("unary")
KERNEL_BINARY = _kernel_ops("binary")
KERNEL_REDUCE = _kernel_ops("reduce")


def infer(op: str, in_types, attrs) -> TType:
    """Run `op`'s shape and dtype rule."""
    try:
        d = OPS[op]
    except KeyError:
        raise ShapeError(f"unknown op {op!r}") from None
    if d.arity is not None and len(in_types) != d.arity:
        raise ShapeError(f"{op}: expected {d.arity} inputs, got {len(in_types)}")
    return d.infer(list(in_types), attrs)
