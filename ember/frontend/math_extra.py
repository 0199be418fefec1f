"""More of torch's functions, built from ember ops: special functions (erfc, lgamma, digamma, i0, ndtr,
log_ndtr), integer ops (gcd, lcm, bit shifts), heaviside, sgn / positive / rsub / scalar_tensor,
stacking (column_stack, dstack, row_stack), msort, trapezoid, vander, combinations, mode, nanmedian and
masked_scatter.

In: tensors and PyTorch's arguments. Out: PyTorch's values, dtypes, shapes, gradients and errors.

The special functions are series and recurrences written with ember ops (math_special.py's rules:
every `where` branch gets inputs that are safe for it), evaluated in float64 and cast back, so autograd
differentiates them (lgamma's gradient is digamma, digamma's is polygamma(1)) and ember.compile traces
them. mode reads values on the host (a graph break under ember.compile, as cummax).
"""
from __future__ import annotations

import itertools
import math
from collections import namedtuple

import numpy as np

from ..ir import dtypes as dt
from ..ir.ops import norm_dim
from . import math_ops as M
from . import shape_ops as S
from . import tracing_hooks
from .composites import atleast_3d
from .dispatch import apply as P
from .linalg import sort
from .math_special import _const, _safe, signbit
from .tensor import Tensor

__all__ = ["sgn", "positive", "rsub", "scalar_tensor", "erfc", "lgamma", "digamma", "i0", "ndtr", "log_ndtr",
           "gcd", "lcm", "heaviside", "bitwise_left_shift", "bitwise_right_shift", "column_stack", "dstack",
           "row_stack", "msort", "trapezoid", "trapz", "vander", "combinations", "mode", "nanmedian",
           "masked_scatter"]

_Mode = namedtuple("mode", ["values", "indices"])
_NanMedian = namedtuple("nanmedian", ["values", "indices"])

_LOG_PI = math.log(math.pi)
_HALF_LOG_2PI = 0.5 * math.log(2 * math.pi)
_SQRT_PI = math.sqrt(math.pi)
_SQRT_HALF = math.sqrt(0.5)


# ------------------------------------------------------------------------------- small ones
def sgn(x: Tensor) -> Tensor:
    """torch.sgn: x / |x|, which for real tensors is sign(x)."""
    return M.sign(x)


def positive(x: Tensor) -> Tensor:
    """torch.positive: x itself (bool is refused, as PyTorch's unary +)."""
    if x.dtype is dt.bool_:
        raise RuntimeError("The `+` operator, on a bool tensor is not supported.")
    return x


def rsub(input, other, alpha=1):
    """torch.rsub: other - alpha * input."""
    d = M.promote(input, other)[2]
    if not d.is_floating_point and isinstance(alpha, float):
        raise RuntimeError("For integral input tensors, argument alpha must not be a floating point number.")
    return M.sub(other, input, alpha=alpha)


def scalar_tensor(s, *, dtype=None, device=None, requires_grad=False, **kw):
    """torch.scalar_tensor: a 0-d tensor holding s, in the default float dtype unless dtype says."""
    from .creation import full
    if isinstance(s, Tensor):
        s = s.item()
    return full((), s, dtype=dtype or dt.default_float, device=device, requires_grad=requires_grad)


# ------------------------------------------------------------------------- special functions
def _in_float64(fn):
    """Run fn on x in float64 and return PyTorch's dtype: integers and bool give the default float,
    floats keep theirs (float32 through float64 keeps the series and recurrences below exact enough)."""
    def f(x):
        if not isinstance(x, Tensor):
            from .creation import tensor
            x = tensor(x)
        out = x.dtype if x.dtype.is_floating_point else dt.default_float
        return M.cast(fn(M.cast(x, dt.float64)), out)
    f.__name__ = fn.__name__
    f.__doc__ = fn.__doc__
    return f


def _series(z, coeffs):
    """sum(c_k z^k) for k = 0.. (Horner)."""
    r = _const(z, coeffs[-1])
    for c in reversed(coeffs[:-1]):
        r = M.add(M.mul(r, z), c)
    return r


_ERFC_TAIL = 2.5      # above: a continued fraction (1 - erf would lose the small result's digits)
_ERFC_TERMS = 40      # converged to 4e-15 from 2.5 on


def _erfc_tail_parts(x):
    """(x^2, g) with erfc(x) = exp(-x^2) / g for x >= _ERFC_TAIL: g = sqrt(pi) times the continued
    fraction x + (1/2)/(x + 1/(x + (3/2)/(x + ...))), evaluated bottom up."""
    f = x
    for k in range(_ERFC_TERMS, 0, -1):
        f = M.add(M.div(0.5 * k, f), x)
    return M.mul(x, x), M.mul(f, _SQRT_PI)


def _erfc(x):
    tail = M.ge(x, _ERFC_TAIL)
    xt = M.clamp(_safe(tail, x, _ERFC_TAIL), max=40.0)      # exp(-1600) is 0: no overflow in x^2
    x2, g = _erfc_tail_parts(xt)
    return M.where(tail, M.div(M.exp(M.neg(x2)), g), M.sub(1.0, M.erf(_safe(tail, 0.0, x))))


@_in_float64
def erfc(x):
    """torch.erfc: 1 - erf(x), accurate where it is tiny (a continued fraction for x >= 2.5)."""
    return _erfc(x)


@_in_float64
def ndtr(x):
    """torch.special.ndtr: the standard normal CDF as PyTorch computes it, (1 + erf(x / sqrt(2))) / 2 (so
    0 below about -8.3 where erfc(-x / sqrt(2)) / 2 would still be positive; log_ndtr keeps those)."""
    return M.mul(M.add(M.erf(M.mul(x, _SQRT_HALF)), 1.0), 0.5)


@_in_float64
def log_ndtr(x):
    """torch.special.log_ndtr: log of the normal CDF; for x << 0 the log is taken of the continued
    fraction's parts (the CDF itself underflows below -38), for x > 0 log1p(-ndtr(-x))."""
    t = M.mul(x, -_SQRT_HALF)
    tail = M.ge(t, _ERFC_TAIL)
    tt = M.clamp(_safe(tail, t, _ERFC_TAIL), max=1e150)      # t^2 stays finite
    x2, g = _erfc_tail_parts(tt)
    far = M.sub(M.neg(x2), M.log(M.mul(g, 2.0)))
    far = M.where(M.gt(t, 1e150), _const(t, -math.inf), far)
    neg = M.le(x, 0)
    near = M.log(M.mul(_erfc(_safe(M.logical_and(neg, M.logical_not(tail)), t, 0.0)), 0.5))
    pos = M.log1p(M.mul(_erfc(M.neg(_safe(neg, 0.0, t))), -0.5))
    return M.where(tail, far, M.where(neg, near, pos))


# lgamma / digamma: arguments below 0.5 are reflected (Gamma(x) Gamma(1 - x) = pi / sin(pi x)),
# those below _SHIFT moved up by the recurrence Gamma(z + 1) = z Gamma(z), then Stirling's series
_SHIFT = 10
# B_2k / (2k (2k - 1)): lgamma(w) = (w - 1/2) log w - w + log(2 pi) / 2 + sum c_k w^(1 - 2k)
_STIRLING = (1 / 12, -1 / 360, 1 / 1260, -1 / 1680, 1 / 1188, -691 / 360360, 1 / 156)
# B_2k / 2k: digamma(w) = log w - 1 / (2w) - sum c_k w^(-2k)
_DIGAMMA = (1 / 12, -1 / 120, 1 / 252, -1 / 240, 1 / 132, -691 / 32760, 1 / 12)


def _reflect(x):
    """(reflected, z, r, pole): z = 1 - x where x < 0.5 else x (so z >= 0.5), r = x - round(x) (so
    sin(pi x) and tan(pi x) are those of pi r, exactly), pole: x a non-positive integer."""
    finite = M.isfinite(x)
    reflected = M.logical_and(M.lt(x, 0.5), finite)
    xr = _safe(reflected, x, 0.25)
    r = M.sub(xr, M.round(xr))
    pole = M.logical_and(reflected, M.eq(r, 0))
    z = M.where(reflected, M.sub(1.0, x), _safe(finite, x, 1.0))
    return reflected, z, _safe(pole, 0.25, r), pole


def _shifted(z):
    """(w, small): w = z + _SHIFT where z < _SHIFT (Stirling's series is exact to 1e-16 from 10 on)."""
    small = M.lt(z, _SHIFT)
    return M.where(small, M.add(z, _SHIFT), z), small


@_in_float64
def lgamma(x):
    """torch.lgamma: log |Gamma(x)|; +inf at the poles and at +-inf."""
    reflected, z, r, pole = _reflect(x)
    w, small = _shifted(z)
    inv = M.reciprocal(w)
    r_w = M.add(M.sub(M.mul(M.sub(w, 0.5), M.log(w)), w), _HALF_LOG_2PI)
    r_w = M.add(r_w, M.mul(inv, _series(M.mul(inv, inv), _STIRLING)))
    zs = _safe(small, z, 1.0)
    prod = zs
    for i in range(1, _SHIFT):
        prod = M.mul(prod, M.add(zs, i))
    lg = M.where(small, M.sub(r_w, M.log(prod)), r_w)
    refl = M.sub(M.sub(_LOG_PI, M.log(M.abs(M.sin(M.mul(r, math.pi))))), lg)
    out = M.where(reflected, refl, lg)
    # exact zeros at 1 and 2, as PyTorch (out - out keeps the gradient, digamma there)
    out = M.where(M.logical_or(M.eq(x, 1), M.eq(x, 2)), M.sub(out, out.detach()), out)
    out = M.where(M.logical_or(pole, M.isinf(x)), _const(x, math.inf), out)
    return M.where(M.isnan(x), x, out)


@_in_float64
def digamma(x):
    """torch.digamma: d/dx lgamma(x); -inf at 0, +inf at -0.0, NaN at negative integers and -inf."""
    reflected, z, r, pole = _reflect(x)
    w, small = _shifted(z)
    inv = M.reciprocal(w)
    inv2 = M.mul(inv, inv)
    psi = M.sub(M.sub(M.log(w), M.mul(inv, 0.5)), M.mul(inv2, _series(inv2, _DIGAMMA)))
    zs = _safe(small, z, 1.0)
    for i in range(_SHIFT):
        psi = M.sub(psi, M.where(small, M.reciprocal(M.add(zs, i)), 0.0))
    out = M.where(reflected, M.sub(psi, M.div(math.pi, M.tan(M.mul(r, math.pi)))), psi)
    zero = M.eq(x, 0)
    at_pole = M.where(zero, M.where(signbit(x), _const(x, math.inf), _const(x, -math.inf)), _const(x, math.nan))
    out = M.where(pole, at_pole, out)
    out = M.where(M.isinf(x), M.where(M.gt(x, 0), _const(x, math.inf), _const(x, math.nan)), out)
    return M.where(M.isnan(x), x, out)


_I0_SERIES_MAX = 20.0     # |x| below: the power series (60 terms); above: the asymptotic series (20 terms)
_I0_SERIES_TERMS = 60
_I0_ASYMPTOTIC_TERMS = 20


@_in_float64
def i0(x):
    """torch.i0: the modified Bessel function of the first kind, order 0."""
    small = M.le(M.abs(x), _I0_SERIES_MAX)
    xs = _safe(small, x, 0.0)
    y = M.mul(M.mul(xs, xs), 0.25)
    s = _const(xs, 1.0)
    for k in range(_I0_SERIES_TERMS, 0, -1):      # sum (x^2/4)^k / (k!)^2, nested
        s = M.add(M.mul(M.mul(y, 1.0 / (k * k)), s), 1.0)
    a = M.abs(_safe(small, _I0_SERIES_MAX, x))
    inv8a = M.reciprocal(M.mul(a, 8.0))
    t = _const(a, 1.0)
    term = t
    for k in range(1, _I0_ASYMPTOTIC_TERMS + 1):   # e^a / sqrt(2 pi a) sum ((2k-1)!!)^2 / (k! (8a)^k)
        term = M.mul(M.mul(term, inv8a), (2 * k - 1) ** 2 / k)
        t = M.add(t, term)
    big = M.div(M.mul(M.exp(a), t), M.sqrt(M.mul(a, 2 * math.pi)))
    big = M.where(M.isinf(a), _const(a, math.nan), big)      # PyTorch's i0(+-inf) is NaN
    return M.where(small, s, big)


# ------------------------------------------------------------------------------ integer ops
def _int_operands(name, a, b, *, tensor_other=True):
    """a, b promoted to their integer result dtype (PyTorch's errors for floats and for bool pairs)."""
    if tensor_other and not isinstance(b, Tensor):
        raise TypeError(f"{name}(): argument 'other' (position 2) must be Tensor, not {type(b).__name__}")
    a, b, d = M.promote(a, b)
    if d.is_floating_point or d is dt.bool_:
        raise NotImplementedError(f"\"{name}_cpu\" not implemented for '{M._tname(d)}'")
    from .creation import tensor
    ref = a if isinstance(a, Tensor) else b
    a = a if isinstance(a, Tensor) else tensor(a, dtype=d, device=ref.device)
    b = b if isinstance(b, Tensor) else tensor(b, dtype=d, device=ref.device)
    return a, b, d


def _euclid_steps(d):
    """Euclid's algorithm takes at most log_phi(max) + 2 steps (consecutive Fibonacci numbers are the
    worst case): the fixed loop length that also traces."""
    return int(math.log(2.0 ** (8 * d.itemsize), (1 + 5 ** 0.5) / 2)) + 2


def _widened(a, b, d):
    """8- and 16-bit integers computed in int64 and wrapped back at the end, as C++'s int promotion
    does in PyTorch's kernels (lcm(int8 -40, 27) wraps 1080, not -40 * 27 wrapped then made positive)."""
    return (M.cast(a, dt.int64), M.cast(b, dt.int64)) if d.itemsize < 4 else (a, b)


def gcd(input: Tensor, other: Tensor) -> Tensor:
    """torch.gcd: the greatest common divisor of integers, >= 0 (gcd(0, 0) = 0)."""
    a, b, d = _int_operands("gcd", input, other)
    return M.cast(_gcd(*_widened(a, b, d), d), d)


def _gcd(a, b, d):
    a, b = M.abs(a), M.abs(b)
    eager = not tracing_hooks.tracing(a, b)
    for _ in range(_euclid_steps(d)):
        if eager and not bool(M.any(b)):      # eager: stop once every pair is done
            break
        done = M.eq(b, 0)
        rem = M.remainder(a, _safe(done, 1, b))
        a, b = M.where(done, a, b), M.where(done, 0, rem)
    return a


def lcm(input: Tensor, other: Tensor) -> Tensor:
    """torch.lcm: |a / gcd(a, b) * b|, 0 when either is 0 (wrapping in the dtype, as PyTorch)."""
    a, b, d = _int_operands("lcm", input, other)
    a, b = _widened(a, b, d)
    g = _gcd(a, b, d)
    zero = M.eq(g, 0)
    return M.cast(M.where(zero, 0, M.abs(M.mul(M.floor_divide(a, _safe(zero, 1, g)), b))), d)


def _shift_table(d, n):
    """[1, 2, 4, ..., 2^(n-1)] in dtype d (the top power wraps to the most negative value in a signed
    dtype, which as a factor still shifts left by n - 1)."""
    from .creation import tensor
    return tensor(np.array([1 << k for k in range(n)], dtype=np.uint64).astype(d.np), dtype=d)


def _shift(name, a, b, left):
    a, b, d = _int_operands(name, a, b, tensor_other=False)
    bits = 8 * d.itemsize
    signed = d is not dt.uint8
    # shifts PyTorch computes: left by [0, bits); right by [0, bits - 1) for signed dtypes (further
    # right shifts, and negative counts, fill with the sign bit; left ones give 0)
    n = bits if left or not signed else bits - 1
    ok = M.logical_and(M.ge(b, 0), M.lt(b, n))
    table = _shift_table(d, n).to(a.device)
    p = S.reshape(S.take(table, M.clamp(M.cast(_safe(ok, b, 0), dt.int64), 0, n - 1)), tuple(b.shape))
    if left:
        return M.where(ok, M.mul(a, p), _const(a, 0))
    fill = M.where(M.lt(a, 0), _const(a, -1), _const(a, 0)) if signed else _const(a, 0)
    return M.where(ok, M.floor_divide(a, p), fill)


def bitwise_left_shift(input, other):
    """torch.bitwise_left_shift: input * 2^other, wrapping; 0 for counts outside [0, bits)."""
    return _shift("lshift", input, other, True)


def bitwise_right_shift(input, other):
    """torch.bitwise_right_shift: floor(input / 2^other); the sign fill for counts outside the width."""
    return _shift("rshift", input, other, False)


def heaviside(input: Tensor, values: Tensor) -> Tensor:
    """torch.heaviside: 0 where input < 0 (and NaN), values where input == 0, 1 where input > 0. Not
    differentiable (PyTorch has no derivative for it either)."""
    if not isinstance(values, Tensor):
        raise TypeError(f"heaviside(): argument 'values' (position 2) must be Tensor, not {type(values).__name__}")
    if input.dtype is not values.dtype:
        raise RuntimeError("heaviside is not yet implemented for tensors with different dtypes.")
    x, v = input.detach(), values.detach()
    return M.where(M.eq(x, 0), v, M.cast(M.gt(x, 0), x.dtype))


# ------------------------------------------------------------------------------- stacking
def _nonempty(name, tensors):
    tensors = list(tensors)
    if not tensors:
        raise RuntimeError(f"{name} expects a non-empty TensorList")
    return tensors


def column_stack(tensors) -> Tensor:
    """torch.column_stack: 0-d and 1-d tensors become columns, then hstack."""
    ts = _nonempty("column_stack", tensors)
    return S.cat([S.reshape(t, (t.numel(), 1)) if t.ndim <= 1 else t for t in ts], 1)


def dstack(tensors) -> Tensor:
    """torch.dstack: atleast_3d of each, concatenated along dim 2."""
    ts = _nonempty("dstack", tensors)
    return S.cat([atleast_3d(t) for t in ts], 2)


def row_stack(tensors) -> Tensor:
    """torch.row_stack: an alias of vstack."""
    return S.vstack(_nonempty("row_stack", tensors))


def msort(x: Tensor) -> Tensor:
    """torch.msort: sorted along dim 0."""
    return sort(x, 0)[0] if x.ndim else M.mul(x, 1)


# ------------------------------------------------------------------------------ integration
def trapezoid(y: Tensor, x: Tensor | None = None, *, dx=None, dim: int = -1) -> Tensor:
    """torch.trapezoid / trapz: the trapezoid rule along dim, with sample points x (a 1-d tensor, or one
    broadcastable to y) or a constant spacing dx (default 1)."""
    if x is not None and not isinstance(x, Tensor):
        raise TypeError(f"trapezoid() received an invalid combination of arguments: x must be a Tensor, "
                        f"got {type(x).__name__} (a spacing is passed as dx=)")
    if x is not None and dx is not None:
        raise TypeError("trapezoid() received an invalid combination of arguments: both x and dx given")
    if y.dtype is dt.bool_:
        raise RuntimeError("trapezoid: received a bool input for `y`, but bool is not supported")
    if y.ndim == 0:
        raise IndexError(f"Dimension specified as {dim} but tensor has no dimensions")
    d = norm_dim(dim, y.ndim, "trapezoid")
    n = y.shape[d]
    if n == 0:   # PyTorch: zeros of the reduced shape
        return M.mul(M.sum(M.cast(y, _float_of(y, x)), d), 0)
    pair = M.add(S.narrow(y, d, 1, n - 1), S.narrow(y, d, 0, n - 1))    # y[i + 1] + y[i]
    if x is None:
        return M.mul(M.sum(pair, d), 0.5 * (1 if dx is None else dx))
    if x.ndim == 1:
        if x.shape[0] != n:
            raise RuntimeError("trapezoid: There must be one `x` value for each sample point")
        x = S.reshape(x, tuple(n if i == d else 1 for i in range(y.ndim)))
    dx_dim = d - y.ndim + x.ndim          # x broadcasts against y from the right
    dxs = M.sub(S.narrow(x, dx_dim, 1, n - 1), S.narrow(x, dx_dim, 0, n - 1))
    return M.div(M.sum(M.mul(dxs, pair), d), 2.0)


def _float_of(y, x):
    d = y.dtype if x is None else M.promote(y, x)[2]
    return d if d.is_floating_point else dt.default_float


trapz = trapezoid


# ------------------------------------------------------------------------------ construction
def vander(x: Tensor, N: int | None = None, increasing: bool = False) -> Tensor:
    """torch.vander: columns x^(N-1) ... x^0 (x^0 ... x^(N-1) when increasing), as running products;
    integers and bool give int64."""
    if x.ndim != 1:
        raise RuntimeError("x must be a one-dimensional tensor.")
    n = x.shape[0] if N is None else N
    if n < 0:
        raise RuntimeError("N must be non-negative.")
    if not x.dtype.is_floating_point:
        x = M.cast(x, dt.int64)
    from .creation import ones, zeros
    if n == 0:
        return zeros((x.shape[0], 0), dtype=x.dtype, device=x.device)
    cols = S.cat([ones((x.shape[0], 1), dtype=x.dtype, device=x.device),
                  S.expand(S.unsqueeze(x, 1), (x.shape[0], n - 1))], 1)
    r = M.cumprod(cols, 1)
    return r if increasing else S.flip(r, (1,))


def combinations(input: Tensor, r: int = 2, with_replacement: bool = False) -> Tensor:
    """torch.combinations: the length-r combinations of a 1-d tensor's elements, in itertools' order."""
    if input.ndim != 1:
        raise RuntimeError(f"Expect a 1D vector, but got shape {list(input.shape)}")
    if r < 0:
        raise RuntimeError(f"Expect a non-negative number, but got {r}")
    from .creation import tensor, zeros
    if r == 0:      # PyTorch: an empty 1-d tensor, without a gradient
        return zeros((0,), dtype=input.dtype, device=input.device)
    pick = itertools.combinations_with_replacement if with_replacement else itertools.combinations
    idx = np.array(list(pick(range(input.shape[0]), r)), dtype=np.int64).reshape(-1, r)
    flat = S.index_select(input, 0, tensor(idx.reshape(-1), device=input.device))
    return S.reshape(flat, idx.shape)


# ------------------------------------------------------------------------------ reductions
def mode(input: Tensor, dim: int = -1, keepdim: bool = False):
    """torch.mode: (values, indices) of the most frequent value along dim, the smallest one on ties;
    the index is that of its last occurrence (as PyTorch). NaNs count as distinct values. Reads the
    values on the host; the values are gathered at the indices so the gradient goes there."""
    from .creation import tensor
    if input.ndim == 0:
        norm_dim(dim, 1, "mode")
        return _Mode(M.mul(input, 1), tensor(0, device=input.device))
    d = norm_dim(dim, input.ndim, "mode")
    if input.shape[d] == 0:
        raise IndexError(f"mode(): Expected reduction dim {d} to have non-zero size.")
    tracing_hooks.value_needed(input, "escape")
    a = np.moveaxis(input.detach().cpu().numpy(), d, -1)
    rows = a.reshape(-1, a.shape[-1])
    s = np.sort(rows, axis=1)
    n = s.shape[1]
    pos = np.arange(n)
    with np.errstate(invalid="ignore"):
        new = np.concatenate([np.ones((len(s), 1), bool), s[:, 1:] != s[:, :-1]], axis=1)
    start = np.maximum.accumulate(np.where(new, pos, 0), axis=1)
    best = np.argmax(pos - start, axis=1)                 # the first longest run: the smallest value
    vals = s[np.arange(len(s)), best]
    last = n - 1 - np.argmax((rows == vals[:, None])[:, ::-1], axis=1)
    idx = np.moveaxis(last.reshape(a.shape[:-1] + (1,)), -1, d)
    indices = tensor(np.ascontiguousarray(idx), device=input.device)
    values = P("gather", input, indices, dim=d)
    if not keepdim:
        values, indices = S.squeeze(values, d), S.squeeze(indices, d)
    return _Mode(values, indices)


def _lower_median_position(x, d):
    """The sorted order along d (NaN last, stable) and, keepdim-shaped, the position of the lower
    median of the non-NaN values (0 when all are NaN)."""
    if x.dtype is dt.bool_:
        raise NotImplementedError("\"median_cpu\" not implemented for 'Bool'")
    order = P("argsort", x, dim=d, descending=False)
    k = M.sum(M.logical_not(M.isnan(x)), d, keepdim=True)
    return order, M.clamp(M.floor_divide(M.sub(k, 1), 2), min=0)


def nanmedian(input: Tensor, dim: int | None = None, keepdim: bool = False):
    """torch.nanmedian: the lower median ignoring NaNs (NaN when all are NaN). With dim: (values,
    indices), the index of that element in a stable sort; without: the value, its gradient shared
    evenly by the elements equal to it (as PyTorch)."""
    if dim is None:
        if input.dtype is dt.bool_:
            raise NotImplementedError("\"median_cpu\" not implemented for 'Bool'")
        flat = S.reshape(input, (-1,))
        if flat.shape[0] == 0:      # NaN (PyTorch's integer result is NaN cast: the dtype's minimum)
            fill = math.nan if input.dtype.is_floating_point else int(np.iinfo(input.dtype.np).min)
            return P("full", shape=(), value=fill, dtype=input.dtype, device=input.device)
        order, p = _lower_median_position(flat, 0)
        v = S.reshape(P("gather", flat, P("gather", order, p, dim=0), dim=0), ())
        return M._evenly_shared(flat, v.detach())
    if input.ndim == 0:
        norm_dim(dim, 1, "nanmedian")
        from .creation import tensor
        return _NanMedian(M.mul(input, 1), tensor(0, device=input.device))
    d = norm_dim(dim, input.ndim, "nanmedian")
    if input.shape[d] == 0:
        raise IndexError(f"median(): Expected reduction dim {d} to have non-zero size.")
    order, p = _lower_median_position(input, d)
    indices = P("gather", order, p, dim=d)
    values = P("gather", input, indices, dim=d)
    if not keepdim:
        values, indices = S.squeeze(values, d), S.squeeze(indices, d)
    return _NanMedian(values, indices)


# ------------------------------------------------------------------------------ masked scatter
def masked_scatter(input: Tensor, mask: Tensor, source: Tensor) -> Tensor:
    """torch.masked_scatter: input with the True positions of mask (broadcast) filled, in row-major
    order, from source's leading elements: source[cumsum(mask) - 1] where mask holds."""
    if mask.dtype is not dt.bool_:
        raise RuntimeError(f"masked_scatter_ only supports boolean masks, but got mask with dtype "
                           f"{M._tname(mask.dtype)}")
    if input.dtype is not source.dtype:
        raise RuntimeError(f"masked_scatter: expected self and source to have same dtypes but got "
                           f"{M._tname(input.dtype)} and {M._tname(source.dtype)}")
    shape = S.broadcast_shapes_(tuple(input.shape), tuple(mask.shape))
    x, m = S.expand(input, shape), S.expand(mask, shape)
    pos = M.sub(M.cumsum(S.reshape(m, (-1,)), 0), 1)
    if not tracing_hooks.tracing(mask) and pos.numel() and int(pos[-1].item()) + 1 > source.numel():
        raise RuntimeError("Number of elements of source < number of ones in mask")
    if source.numel() == 0:      # then the mask is all False
        return M.where(m, x, x)
    picked = S.take(source, M.clamp(pos, 0, source.numel() - 1))
    return M.where(m, S.reshape(picked, shape), x)
