"""Elementwise math and reductions as PyTorch spells them, built on the primitives.

This layer does PyTorch's type promotion (casting inputs explicitly, so primitives see equal
dtypes), turns Python scalars into operands, and builds composites (mean, var, logsumexp, norm ...)
out of primitives so the compiler sees and fuses them.
"""
from __future__ import annotations

import builtins
import functools
import math
from collections import namedtuple

import numpy as np

from ..ir import dtypes as dt
from ..ir.symbolic import SymInt
from ..ir.ops import FLOAT_UNARY, norm_dim, norm_dims
from .autocast import autocast_op
from . import autograd as _ag
from . import dispatch as _dispatch
from .dispatch import apply as P
from .tensor import Tensor, _wrap

_Number = (int, float, bool)


def _scalar(v):
    """Python scalars pass through; numpy scalars become Python ones."""
    if isinstance(v, np.generic):
        return v.item()
    return v


_IRANGE = {d: (int(np.iinfo(d.np).min), int(np.iinfo(d.np).max)) for d in dt.ALL if d.is_integer}


def _kind(v):
    return bool if isinstance(v, bool) else int if isinstance(v, int) else float


def cast(x: Tensor, dtype) -> Tensor:
    return x if x.dtype is dtype else P("cast", x, dtype=dtype)


def in_float32(fn=None, *, out_like: int | None = None):
    """Composites on 16-bit floats compute in float32 and round once at the end, as PyTorch's fused
    CPU kernels do (rounding after every primitive would differ from PyTorch in the last bits).

    The wrapped op sees float32 copies of its float16/bfloat16 tensor arguments when they all share
    one 16-bit dtype, and its tensor results are rounded back to it. `out_like=i`: the result takes
    argument i's dtype and the other arguments may be of any float type (layer_norm's bfloat16 input
    with float32 weights). An explicit `dtype=` keyword turns the rounding off (softmax(x, dtype=...))."""
    if fn is None:
        return lambda f: in_float32(f, out_like=out_like)

    @functools.wraps(fn)
    def f(*args, **kwargs):
        low = None
        if out_like is not None:
            a = args[out_like] if len(args) > out_like else None
            low = a.dtype if isinstance(a, Tensor) and a.dtype.is_reduced_float else None
        else:
            for a in args:
                if isinstance(a, Tensor) and a.dtype.is_floating_point:
                    if not a.dtype.is_reduced_float or (low is not None and a.dtype is not low):
                        return fn(*args, **kwargs)
                    low = a.dtype
        if low is None or kwargs.get("dtype") is not None:
            return fn(*args, **kwargs)
        up = [cast(a, dt.float32) if isinstance(a, Tensor) and a.dtype.is_reduced_float else a for a in args]
        kw = {k: cast(v, dt.float32) if isinstance(v, Tensor) and v.dtype.is_reduced_float else v
              for k, v in kwargs.items()}
        out = fn(*up, **kw)

        def down(o):
            return cast(o, low) if isinstance(o, Tensor) and o.dtype is dt.float32 else o
        if isinstance(out, tuple):   # var_mean, std_mean (plain tuples) and named tuples
            vals = [down(o) for o in out]
            return type(out)(*vals) if hasattr(out, "_fields") else tuple(vals)
        return down(out)
    return f


def _round_scalar(a, b, d):
    """PyTorch's add/sub/pow round a Python float operand to a 16-bit tensor's dtype before computing
    (its mul and div do not): x + 0.1 on bfloat16 adds 0.10009765625."""
    if d.is_reduced_float:
        if b.__class__ is float:
            b = float(np.float32(b).astype(d.np))
        elif a.__class__ is float:
            a = float(np.float32(a).astype(d.np))
    return a, b


def promote(a, b):
    """(a, b, dtype) with tensors cast to PyTorch's result type; Python scalars stay scalars."""
    ta, tb = isinstance(a, Tensor), isinstance(b, Tensor)
    if ta and tb:
        da, db = a.dtype, b.dtype
        if da is db:
            return a, b, da
        za, zb = a._data.ndim == 0, b._data.ndim == 0
        if za == zb:
            r = dt.promote_types(da, db)
        else:
            r = dt.result_type([db if za else da], zero_dim_dtypes=[da if za else db])
        return cast(a, r), cast(b, r), r
    if ta or tb:
        t, s = (a, b) if ta else (b, a)
        if t.dtype.is_floating_point and (s.__class__ is float or s.__class__ is int):
            return a, b, t.dtype   # the common case, decided without the general rule below
        s = _scalar(s)
        if not isinstance(s, _Number):
            raise TypeError(f"unsupported operand type: expected a Tensor or a number, got {type(s).__name__}")
        k = _kind(s)
        d = t.dtype
        cat = 0 if k is bool else 1 if k is int else 2
        if cat > d.category:
            d = dt.int64 if cat == 1 else dt.default_float
            t = cast(t, d)
        if d is dt.bool_:
            s = bool(s)
        elif d.is_integer:
            s = int(s)
            lo, hi = _IRANGE[d]
            if not lo <= s <= hi:  # PyTorch wraps an out-of-range scalar into the tensor's dtype
                s = int(np.array(s, dtype=np.int64).astype(d.np))
        return (t, s, d) if ta else (s, t, d)
    from .creation import tensor
    return promote(tensor(a), b)


def _binary(op):
    def f(a, b):
        a, b, _ = promote(a, b)
        return P(op, a, b)
    f.__name__ = op
    return f


add_ = _binary("add")
mul = _binary("mul")
maximum = _binary("maximum")
minimum = _binary("minimum")
remainder = _binary("remainder")
floor_divide = _binary("floor_divide")
eq, ne, lt, le, gt, ge = (_binary(n) for n in ("eq", "ne", "lt", "le", "gt", "ge"))
fmod = None


def add(a, b, alpha=1):
    if alpha != 1:
        b = mul(b, alpha)
    a, b, d = promote(a, b)
    if d.is_reduced_float:
        a, b = _round_scalar(a, b, d)
    return P("add", a, b)


def _is_bool(v):
    return v.dtype is dt.bool_ if isinstance(v, Tensor) else isinstance(v, (bool, np.bool_))


def sub(a, b, alpha=1):
    if _is_bool(a) or _is_bool(b):
        raise RuntimeError("Subtraction, the `-` operator, with a bool tensor is not supported. If you are "
                           "trying to invert a mask, use the `~` or `logical_not()` operator instead.")
    if alpha != 1:
        b = mul(b, alpha)
    a, b, d = promote(a, b)
    if d.is_reduced_float:
        a, b = _round_scalar(a, b, d)
    return P("sub", a, b)


def div(a, b, rounding_mode=None):
    a0, b0 = a, b
    a, b, d = promote(a, b)
    if rounding_mode == "floor":
        return P("floor_divide", a, b)
    if rounding_mode == "trunc":
        if d.is_floating_point:
            return P("trunc", P("div", a, b))
        # exact in integers (a float64 quotient loses int64 digits) and, through floor_divide,
        # raises ZeroDivisionError on a zero divisor as PyTorch does: floor, plus one where the
        # quotient is negative and not exact
        q = P("floor_divide", a, b)
        r = P("remainder", a, b)
        inexact_negative = P("logical_and", P("ne", r, 0), P("ne", P("lt", a, 0) if isinstance(a, Tensor) else a < 0,
                                                              P("lt", b, 0) if isinstance(b, Tensor) else b < 0))
        return P("add", q, cast(inexact_negative, d))
    if not d.is_floating_point:
        # each operand from its own value: uint8 tensor / -1 (or / a 0-d int64 -2) is negative, as in PyTorch
        f = dt.default_float
        a = cast(a0, f) if isinstance(a0, Tensor) else float(_scalar(a0))
        b = cast(b0, f) if isinstance(b0, Tensor) else float(_scalar(b0))
    return P("div", a, b)


true_divide = divide = div
multiply, subtract = mul, sub


@autocast_op("pow")
def pow(a, b):
    if isinstance(a, Tensor) and not isinstance(b, Tensor):
        b = _scalar(b)
        if a.dtype.is_integer and isinstance(b, int) and b < 0:   # also while tracing: compiled code agrees
            raise RuntimeError("Integers to negative integer powers are not allowed.")
        if b == 2 and a.dtype.is_floating_point:
            return P("mul", a, a)
        if b == 1:
            return a * 1
        if b == 0.5 and a.dtype.is_floating_point:
            return P("sqrt", a)
    a, b, d = promote(a, b)
    if d.is_reduced_float:
        a, b = _round_scalar(a, b, d)
    return P("pow", a, b)


def float_power(a, b):
    """pow in double precision: float64 (complex128 for complex) whatever the inputs' dtypes."""
    a = cast(a, dt.float64) if isinstance(a, Tensor) else float(a)
    b = cast(b, dt.float64) if isinstance(b, Tensor) else float(b)
    return pow(a, b)


def _logical(op):
    def f(a, b):
        a = cast(a, dt.bool_) if isinstance(a, Tensor) else bool(a)
        b = cast(b, dt.bool_) if isinstance(b, Tensor) else bool(b)
        return P(op, a, b)
    return f


logical_and = _logical("logical_and")
logical_or = _logical("logical_or")


def logical_xor(a, b):
    a, b = (cast(v, dt.bool_) if isinstance(v, Tensor) else bool(v) for v in (a, b))
    return ne(a, b) if isinstance(a, Tensor) else ne(b, a)


def logical_not(x):
    return P("logical_not", cast(x, dt.bool_))


def bitwise_not(x):
    if x.dtype is dt.bool_:
        return P("logical_not", x)
    return sub(neg(x), 1)


def _bitwise(name, logical):
    def f(a, b):
        ta, other = (a, b) if isinstance(a, Tensor) else (b, a)
        if ta.dtype is dt.bool_ and (other.dtype is dt.bool_ if isinstance(other, Tensor) else isinstance(other, bool)):
            return logical(a, b)           # (bool | 2 is an integer op: tensor([3, 2]), as PyTorch)
        a, b, d = promote(a, b)
        if d.is_floating_point:
            raise RuntimeError(f'"{name}_cpu" not implemented for \'{d.name.capitalize()}\'')
        from .tensor import _wrap
        xp = ta._xp
        return _wrap(getattr(xp, name)(a._data if isinstance(a, Tensor) else a,
                                       b._data if isinstance(b, Tensor) else b), ta.device)
    return f


bitwise_and = _bitwise("bitwise_and", logical_and)
bitwise_or = _bitwise("bitwise_or", logical_or)
bitwise_xor = _bitwise("bitwise_xor", logical_xor)


def where(cond, x=None, y=None):
    if x is None and y is None:
        from .shape_ops import nonzero
        return nonzero(cond, as_tuple=True)
    if not isinstance(cond, Tensor):
        from .creation import tensor
        cond = tensor(cond)
    cond = cast(cond, dt.bool_)
    x, y, _ = promote(x, y)
    if not isinstance(x, Tensor) and not isinstance(y, Tensor):
        x = P("full", shape=(), value=x, dtype=dt.result_type([], scalar_kinds=[_kind(x)]), device=cond.device)
        x, y, _ = promote(x, y)
    return P("where", cond, x, y)


def _float_unary(op):
    def f(x):
        if not x.dtype.is_floating_point:
            x = cast(x, dt.default_float)
        return P(op, x)
    f.__name__ = op
    return f


# one public function per float primitive of ember/ir/ops.py: a new one fails this unpacking until it
# is spelled here
exp, log, sqrt, rsqrt, sin, cos, tanh, sigmoid, erf, log1p, expm1, reciprocal = map(_float_unary, FLOAT_UNARY)
# the ones on an autocast list (cuda: float32)
exp, log, rsqrt, log1p, expm1, reciprocal = (autocast_op(f.__name__)(f)
                                             for f in (exp, log, rsqrt, log1p, expm1, reciprocal))


@autocast_op("log2")
def log2(x):
    return mul(log(x), 1.0 / math.log(2.0))


@autocast_op("log10")
def log10(x):
    return mul(log(x), 1.0 / math.log(10.0))


def exp2(x):
    return exp(mul(x, math.log(2.0)))


@autocast_op("tan")
def tan(x):
    return div(sin(x), cos(x))


def _same_unary(op):
    def f(x):
        return P(op, x)
    f.__name__ = op
    return f


neg, abs, sign, floor, ceil, trunc = (_same_unary(n) for n in ("neg", "abs", "sign", "floor", "ceil", "trunc"))
negative, absolute, fix = neg, abs, trunc


def round(x, decimals=0):
    if decimals == 0:
        return P("round", x)
    s = 10.0 ** decimals
    return div(P("round", mul(x, s)), s)


def frac(x):
    return sub(x, trunc(x))


def isnan(x):
    return P("isnan", x) if x.dtype.is_floating_point else _const_like(x, False)


def isinf(x):
    return P("isinf", x) if x.dtype.is_floating_point else _const_like(x, False)


def isfinite(x):
    if not x.dtype.is_floating_point:
        return _const_like(x, True)
    return logical_not(logical_or(P("isnan", x), P("isinf", x)))


def isposinf(x):
    return logical_and(isinf(x), gt(x, 0))


def isneginf(x):
    return logical_and(isinf(x), lt(x, 0))


def nan_to_num(x, nan=0.0, posinf=None, neginf=None):
    if not x.dtype.is_floating_point:
        return x.clone()
    big = float(np.finfo(x.dtype.np).max)
    x = where(isnan(x), nan, x)
    x = where(isposinf(x), big if posinf is None else posinf, x)
    return where(isneginf(x), -big if neginf is None else neginf, x)


def _const_like(x, value):
    return P("full", shape=tuple(x.shape), value=value, dtype=dt.bool_, device=x.device)


def clamp(x, min=None, max=None):
    if min is None and max is None:
        raise RuntimeError("clamp: At least one of 'min' or 'max' must not be None")
    if min is not None:
        x = maximum(x, min) if isinstance(min, Tensor) else _clamp_scalar(x, min, "max")
    if max is not None:
        x = minimum(x, max) if isinstance(max, Tensor) else _clamp_scalar(x, max, "min")
    return x


def _clamp_scalar(x, v, which):
    # PyTorch: NaN stays NaN with a zero gradient; the gradient flows where x is inside the bound,
    # bound included (x >= min / x <= max)
    x, v, _ = promote(x, v)
    inside = P("ge" if which == "max" else "le", x, v)
    if not x.dtype.is_floating_point:
        return P("where", inside, x, v)
    outside = P("where", P("lt" if which == "max" else "gt", x, v), v, x)   # the bound, or NaN
    return P("where", inside, x, P("stop_gradient", outside))


def _full_as(x, v):
    """A scalar operand of x's kind (primitives take Python scalars beside tensors)."""
    return float(v) if x.dtype.is_floating_point else bool(v) if x.dtype is dt.bool_ else int(v)


clip = clamp


def clamp_min(x, v):
    return clamp(x, min=v)


def clamp_max(x, v):
    return clamp(x, max=v)


@in_float32
def lerp(a, b, w):
    return add(a, mul(sub(b, a), w))


@autocast_op("addcmul")
@in_float32
def addcmul(x, t1, t2, value=1):
    return add(x, mul(mul(t1, t2), value))


@autocast_op("addcdiv")
@in_float32
def addcdiv(x, t1, t2, value=1):
    return add(x, mul(div(t1, t2), value))


def square(x):
    return mul(x, x)


from .relu import relu  # noqa: E402,F401  (ember.relu, Tensor.relu and F.relu: one implementation)


# --------------------------------------------------------------------------------- reductions
_MinMax = namedtuple("minmax", ["values", "indices"])


class return_types:
    max = min = sort = topk = kthvalue = median = mode = _MinMax


def _dims(x, dim):
    if dim is None:
        return None
    if isinstance(dim, (list, tuple)) and len(dim) == 0:
        return None
    dims = norm_dims(dim, x._data.ndim, "reduce")
    return dims if x._data.ndim else None   # a 0-d tensor takes dim 0 / -1 and reduces nothing


def _one_dim(x, dim, op):
    """A single reduction dim as the primitives' dims tuple (None for a 0-d tensor)."""
    d = norm_dim(dim, x._data.ndim, op)
    return (d,) if x._data.ndim else None


@autocast_op("sum")
def sum(x, dim=None, keepdim=False, dtype=None):
    if dtype is not None:
        x = cast(x, dtype)
    elif not x.dtype.is_floating_point:
        x = cast(x, dt.int64)
    return P("sum", x, dims=_dims(x, dim), keepdim=keepdim)


def times_ratio(s, num, den):
    """s * (num / den) for counts of elements (a mean's 1/n, Bessel's n/(n-1)): a constant factor, or,
    when a count is a symbolic size (a dynamic trace), the division by a value of the graph."""
    if not isinstance(num, SymInt) and not isinstance(den, SymInt):
        return P("mul", s, num / den if den else float("nan"))
    count = lambda v: P("full", shape=(), value=v, dtype=s.dtype, device=s.device)  # noqa: E731
    return P("div", s if num == 1 else P("mul", s, count(num)), count(den))


def _numel(x, dims):
    n = 1
    for d in (range(x._data.ndim) if dims is None else dims):
        n *= x.shape[d]
    return n


@in_float32
def mean(x, dim=None, keepdim=False, dtype=None):
    if dtype is not None:
        x = cast(x, dtype)
    if not x.dtype.is_floating_point:
        raise RuntimeError("mean(): could not infer output dtype. Input dtype must be either a floating point "
                           f"or complex dtype. Got: {_tname(x.dtype)}")
    dims = _dims(x, dim)
    n = _numel(x, dims)
    return times_ratio(P("sum", x, dims=dims, keepdim=keepdim), 1, n)


def _tname(d):
    return {"int64": "Long", "int32": "Int", "bool": "Bool", "float32": "Float", "float64": "Double",
            "float16": "Half", "bfloat16": "BFloat16", "int16": "Short", "int8": "Char", "uint8": "Byte"}[d.name]


def _correction(unbiased, correction):
    if correction is not None:
        return correction
    if unbiased is None:
        return 1
    return 1 if unbiased else 0


@in_float32
def var(x, dim=None, unbiased=None, keepdim=False, *, correction=None):
    if isinstance(dim, bool):  # var(x, False): the old positional unbiased
        unbiased, dim = dim, None
    c = _correction(unbiased, correction)
    if not x.dtype.is_floating_point:
        raise RuntimeError("std and var only support floating point and complex dtypes")
    dims = _dims(x, dim)
    n = _numel(x, dims)
    # the mean's own gradient term is sum(x - mean) = 0: detached, the gradient is PyTorch's
    # 2 (x - mean) / (n - c) exactly (also where an infinite input makes the sum NaN)
    m = times_ratio(P("sum", x.detach(), dims=dims, keepdim=True), 1, n)    # detached input: see log_softmax
    d = P("sub", x, m)
    s = P("sum", P("mul", d, d), dims=dims, keepdim=keepdim)
    if n - c > 0:
        return times_ratio(s, 1, n - c)
    return P("div", s, 0.0)   # n <= correction: inf, or nan where the sum is 0 (PyTorch's s / max(0, n - c))


@in_float32
def std(x, dim=None, unbiased=None, keepdim=False, *, correction=None):
    return _sqrt0(var(x, dim, unbiased, keepdim, correction=correction))


def _sqrt0(s):
    """sqrt whose gradient at 0 is 0 (PyTorch's norm and std at zero) instead of inf * 0 = NaN."""
    zero = P("eq", s, 0.0)
    return P("where", zero, P("mul", s, 0.0), P("sqrt", P("where", zero, 1.0, s)))


def _pow0(s, e):
    """s ** e for s >= 0 whose gradient at s = 0 is 0 (PyTorch's norm backward masks the zeros) instead
    of 0 * inf = NaN: the p-norm's |x| ** p for p < 1 and its root of a zero sum."""
    zero = P("eq", s, 0.0)
    return P("where", zero, 0.0 if e > 0 else math.inf, pow(P("where", zero, 1.0, s), e))


def _pnorm(a, p, dim, keepdim):
    """(sum |x| ** p) ** (1 / p) from a = |x|, with PyTorch's zero gradients at zeros."""
    return _pow0(sum(_pow0(a, p), dim, keepdim), 1.0 / p)


@in_float32
def var_mean(x, dim=None, unbiased=None, keepdim=False, *, correction=None):
    return var(x, dim, unbiased, keepdim, correction=correction), mean(x, dim, keepdim)


@in_float32
def std_mean(x, dim=None, unbiased=None, keepdim=False, *, correction=None):
    return std(x, dim, unbiased, keepdim, correction=correction), mean(x, dim, keepdim)


@autocast_op("prod")
def prod(x, dim=None, keepdim=False, dtype=None):
    if dtype is not None:
        x = cast(x, dtype)
    elif not x.dtype.is_floating_point:
        x = cast(x, dt.int64)
    return P("prod", x, dims=None if dim is None else _one_dim(x, dim, "prod"), keepdim=keepdim)


def _all_dims(x, dim):
    """amax/amin reduce all dims as an explicit tuple: dims=None is max()/min(), whose gradient
    also goes to NaN elements (PyTorch's max() and amax() differ there)."""
    dims = _dims(x, dim)
    return tuple(range(x._data.ndim)) if dims is None and x._data.ndim else dims


def amax(x, dim=(), keepdim=False):
    return P("max", x, dims=_all_dims(x, dim), keepdim=keepdim)


def amin(x, dim=(), keepdim=False):
    return P("min", x, dims=_all_dims(x, dim), keepdim=keepdim)


def _argext(op, x, dim, keepdim):
    if dim is None:
        return P(op, x, dims=None, keepdim=keepdim)
    return P(op, x, dims=_one_dim(x, dim, op), keepdim=keepdim)


def argmax(x, dim=None, keepdim=False):
    return _argext("argmax", x, dim, keepdim)


def argmin(x, dim=None, keepdim=False):
    return _argext("argmin", x, dim, keepdim)


def max(x, dim=None, keepdim=False, *, out=None):
    if isinstance(dim, Tensor):
        return maximum(x, dim)
    if dim is None:
        if x.numel() == 0:
            raise RuntimeError("max(): Expected reduction dim to be specified for input.numel() == 0. "
                               "Specify the reduction dim with the 'dim' argument.")
        return P("max", x, dims=None, keepdim=False)
    return _extreme_dim("max", x, dim, keepdim)


def min(x, dim=None, keepdim=False, *, out=None):
    if isinstance(dim, Tensor):
        return minimum(x, dim)
    if dim is None:
        if x.numel() == 0:
            raise RuntimeError("min(): Expected reduction dim to be specified for input.numel() == 0. "
                               "Specify the reduction dim with the 'dim' argument.")
        return P("min", x, dims=None, keepdim=False)
    return _extreme_dim("min", x, dim, keepdim)


def _evenly_shared(x, v):
    """v, the value of some elements of x (detached), with PyTorch's evenly_distribute_backward (median(),
    nanmedian()): the gradient shared by the elements equal to v, or the NaNs when v is NaN. Those
    elements' max (min when v is -inf, which the max's filler would tie) is v, and max()'s VJP splits ties."""
    if not x.dtype.is_floating_point or x.numel() == 0:
        return v
    hit = logical_or(eq(x, v), logical_and(isnan(x), isnan(v)))
    hi = P("max", where(hit, x, -math.inf), dims=None, keepdim=False)
    lo = P("min", where(hit, x, math.inf), dims=None, keepdim=False)
    return where(eq(v, -math.inf), lo, hi)


def _extreme_dim(op, x, dim, keepdim):
    """max/min along a dim: (values, indices). Values are gathered at the indices so the gradient
    goes to the one chosen element on ties, as in PyTorch (amax/amin share it evenly)."""
    d = _one_dim(x, dim, op)
    if d is None:
        return _MinMax(P("cast", x, dtype=x.dtype), P("full", shape=(), value=0, dtype=dt.int64, device=x.device))
    idx = P("arg" + op, x, dims=d, keepdim=True)
    vals = P("gather", x, idx, dim=d[0])
    if not keepdim:
        shape = tuple(n for i, n in enumerate(x.shape) if i != d[0])
        idx, vals = P("reshape", idx, shape=shape), P("reshape", vals, shape=shape)
    return _MinMax(vals, idx)


@autocast_op("logsumexp")
@in_float32
def logsumexp(x, dim=None, keepdim=False):
    if not x.dtype.is_floating_point:
        x = cast(x, dt.default_float)
    dims = _dims(x, dim) if dim is not None else None
    if x.numel() == 0:          # an empty sum: log(0) = -inf (no max to subtract)
        return P("log", sum(P("exp", x), dim, keepdim))
    m = P("max", x.detach(), dims=dims, keepdim=True)          # detached input: see log_softmax
    m = where(isinf(m), _full_as(m, 0.0), m)
    s = P("sum", P("exp", P("sub", x, m)), dims=dims, keepdim=True)
    r = P("add", P("log", s), m)
    if not keepdim:
        from .shape_ops import reshape
        shape = tuple(n for i, n in enumerate(x.shape) if dims is not None and i not in dims)
        r = reshape(r, shape)
    return r


@autocast_op("cumsum")
def cumsum(x, dim, dtype=None):
    if dtype is not None:
        x = cast(x, dtype)
    elif not x.dtype.is_floating_point:
        x = cast(x, dt.int64)
    if x._data.ndim == 0:
        return x * 1
    return P("cumsum", x, dim=norm_dim(dim, x._data.ndim, "cumsum"))


@autocast_op("cumprod")
def cumprod(x, dim, dtype=None):
    """Running products as a product over a (n, n) lower-triangular window of the input (ones above
    the diagonal): exact for zeros, negatives, infinities and NaN, differentiable and traceable, as
    PyTorch's cumprod. O(n^2) along `dim`, fine for the short dims cumprod is used on."""
    if dtype is not None:
        x = cast(x, dtype)
    elif not x.dtype.is_floating_point:
        x = cast(x, dt.int64)
    if x._data.ndim == 0:
        return x * 1
    from .shape_ops import movedim, unsqueeze
    from . import dispatch
    d = norm_dim(dim, x._data.ndim, "cumprod")
    n = x.shape[d]
    if n > 2048 and not x.requires_grad and dispatch.tracer is None:
        from .tensor import _wrap
        return _wrap(x._xp.cumprod(x._data, axis=d), x.device)
    xm = unsqueeze(movedim(x, d, -1), -2)                         # [..., 1, n]
    keep = P("le", P("arange", n=n, start=0, step=1, dtype=dt.int64, device=x.device),
             P("reshape", P("arange", n=n, start=0, step=1, dtype=dt.int64, device=x.device), shape=(n, 1)))
    one = 1.0 if x.dtype.is_floating_point else 1
    rows = P("where", keep, xm, one)                              # [..., n, n]: row i holds x[:i+1]
    return movedim(P("prod", rows, dims=(rows._data.ndim - 1,), keepdim=False), -1, d)


def all(x, dim=None, keepdim=False):
    b = cast(x, dt.bool_)
    if b.numel() == 0 and dim is None:
        return P("full", shape=(), value=True, dtype=dt.bool_, device=x.device)
    return P("min", b, dims=_dims(x, dim), keepdim=keepdim)


def any(x, dim=None, keepdim=False):
    b = cast(x, dt.bool_)
    if b.numel() == 0 and dim is None:
        return P("full", shape=(), value=False, dtype=dt.bool_, device=x.device)
    return P("max", b, dims=_dims(x, dim), keepdim=keepdim)


def count_nonzero(x, dim=None):
    return sum(ne(x, 0), dim)


@autocast_op("norm")
@in_float32
def norm(x, p="fro", dim=None, keepdim=False, dtype=None):
    if dtype is not None:
        x = cast(x, dtype)
    if p == "nuc":                 # the sum of singular values of a matrix (or of `dim`'s pair)
        if dim is None and x.ndim != 2:
            raise RuntimeError(f"norm(p='nuc') expects a 2-D input (or dim=(d0, d1)), got {x.ndim} dims")
        from .lapack import svdvals
        from .shape_ops import movedim, unsqueeze
        d0, d1 = ((-2, -1) if dim is None else dim)
        d0, d1 = d0 % x.ndim, d1 % x.ndim
        r = sum(svdvals(movedim(x, (d0, d1), (-2, -1))), -1)
        if keepdim:
            r = unsqueeze(unsqueeze(r, min(d0, d1)), max(d0, d1))
        return r
    if p == "fro" or p == 2 or p is None:
        if not x.dtype.is_floating_point:
            x = cast(x, dt.default_float)
        return _sqrt0(sum(mul(x, x), dim, keepdim))
    if p == 1:
        return sum(abs(x), dim, keepdim)
    if p == float("inf"):
        return amax(abs(x), () if dim is None else dim, keepdim)
    if p == float("-inf"):
        return amin(abs(x), () if dim is None else dim, keepdim)
    if p == 0:
        return sum(cast(ne(x, 0), x.dtype), dim, keepdim)
    return _pnorm(abs(x), p, dim, keepdim)


@autocast_op("dist")
@in_float32
def dist(a, b, p=2):
    return norm(sub(a, b), p)


@autocast_op("softmax")
@in_float32
def softmax(x, dim, dtype=None):
    if dtype is not None:
        x = cast(x, dtype)
    if not x.dtype.is_floating_point:
        x = cast(x, dt.default_float)
    d = norm_dim(dim, x._data.ndim, "softmax")
    if x.numel() == 0:
        return x * 1
    if _dispatch.tracer is None and x._xp is np and x.dtype in (dt.float32, dt.float64):
        return _softmax_eager(x, d)
    m = P("max", x.detach(), dims=(d,), keepdim=True)          # detached input: see log_softmax
    e = P("exp", P("sub", x, m))
    return P("div", e, P("sum", e, dims=(d,), keepdim=True))


@autocast_op("log_softmax")
@in_float32
def log_softmax(x, dim, dtype=None):
    if dtype is not None:
        x = cast(x, dtype)
    if not x.dtype.is_floating_point:
        x = cast(x, dt.default_float)
    d = norm_dim(dim, x._data.ndim, "log_softmax")
    if x.numel() == 0:
        return x * 1
    if _dispatch.tracer is None and x._xp is np and x.dtype in (dt.float32, dt.float64):
        return _log_softmax_eager(x, d)
    # the max of the detached input: a max recorded and then detached would leave its node and output in a
    # reference cycle holding the whole graph, for the garbage collector to find
    m = P("max", x.detach(), dims=(d,), keepdim=True)
    s = P("sub", x, m)
    return P("sub", s, P("log", P("sum", P("exp", s), dims=(d,), keepdim=True)))


def _softmax_eager(x, d):
    """Eager softmax as one op (SoftmaxBackward0, as PyTorch): the forward's passes in place on one new
    array, and the gradient y * (g - sum(g * y)) from the saved result -- the composite's five nodes kept
    their temporaries and ran ~7 passes backward (~2 ms a layer of the eager GPT step).  Written in ember
    ops when the gradient is differentiated again."""
    a = x._data
    with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
        y = np.asarray(np.subtract(a, a.max(axis=d, keepdims=True)))   # an array even for 0-d x
        np.exp(y, out=y)
        y /= y.sum(axis=d, keepdims=True)
    out = _wrap(y, x.device)
    if _ag.is_grad_enabled() and x.requires_grad:
        def vjp(g, o, x_, dim):
            if g._xp is np and not _ag.is_grad_enabled():
                with np.errstate(invalid="ignore", over="ignore"):
                    t = g._data * o._data
                    t -= o._data * t.sum(axis=dim, keepdims=True)
                return (_wrap(t, g.device),)
            return (P("mul", o, P("sub", g, P("sum", P("mul", g, o), dims=(dim,), keepdim=True))),)
        _dispatch.attach_node(out, "softmax", vjp, {"dim": d}, (x,), _dispatch.OUT)
    return out


def _log_softmax_eager(x, d):
    """Eager log_softmax as one op (LogSoftmaxBackward0, as PyTorch): numpy forward, and the gradient
    g - exp(y) * sum(g) from the saved result -- written in ember ops when it is differentiated again."""
    a = x._data
    with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
        s = a - a.max(axis=d, keepdims=True)
        y = s - np.log(np.exp(s).sum(axis=d, keepdims=True))
    out = _wrap(y, x.device)
    if _ag.is_grad_enabled() and x.requires_grad:
        def vjp(g, o, x_, dim):
            if g._xp is np and not _ag.is_grad_enabled():
                ga = g._data
                with np.errstate(invalid="ignore", over="ignore"):
                    return (_wrap(ga - np.exp(o._data) * ga.sum(axis=dim, keepdims=True), g.device),)
            return (P("sub", g, P("mul", P("exp", o), P("sum", g, dims=(dim,), keepdim=True))),)
        _dispatch.attach_node(out, "log_softmax", vjp, {"dim": d}, (x,), _dispatch.OUT)
    return out


def equal(a, b) -> bool:
    return tuple(a.shape) == tuple(b.shape) and builtins.bool(all(eq(a, b)).item())


def allclose(a, b, rtol=1e-05, atol=1e-08, equal_nan=False) -> bool:
    return builtins.bool(all(isclose(a, b, rtol, atol, equal_nan)).item())


def isclose(a, b, rtol=1e-05, atol=1e-08, equal_nan=False):
    a, b, d = promote(a, b)
    if not d.is_floating_point:
        return eq(a, b)
    diff = abs(sub(a, b))
    tol = add(mul(abs(b), rtol), atol)
    close = logical_or(le(diff, tol), eq(a, b))
    if equal_nan:
        close = logical_or(close, logical_and(isnan(a), isnan(b)))
    return close
