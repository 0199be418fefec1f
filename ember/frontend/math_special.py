"""Elementwise functions built from the primitives: inverse trigonometric and hyperbolic functions,
erfinv, hypot, logaddexp, xlogy, copysign, angle conversions.

In: tensors (integer inputs are computed in the default float dtype, float16/bfloat16 in float32 and rounded
back, as PyTorch does). Out: tensors with PyTorch's values, NaN/inf behaviour and gradients.

Each function is a composite of ember ops (exp, log1p, sqrt, where ...), so autograd differentiates
it and ember.compile fuses it into one kernel without new primitives. Two rules keep the gradients
right:
  - every `where` branch is evaluated on inputs that are safe for it (`_safe`): an unselected branch
    that divides by zero would otherwise send 0 * inf = NaN into the gradient;
  - odd functions are written on the signed input near 0 (|x| has gradient 0 at 0).
"""
from __future__ import annotations

import math

from ..ir import dtypes as dt
from . import math_ops as M
from .dispatch import apply as P
from .tensor import Tensor

_LN2 = math.log(2.0)
_PI = math.pi

__all__ = ["atan", "atan2", "asin", "acos", "sinh", "cosh", "asinh", "acosh", "atanh", "erfinv", "hypot",
           "logaddexp", "logaddexp2", "xlogy", "copysign", "deg2rad", "rad2deg", "sinc", "logit", "signbit",
           "arctan", "arctan2", "arcsin", "arccos", "arcsinh", "arccosh", "arctanh"]


def _as_float(x):
    """(x in a float dtype the formulas run in, the dtype to return)."""
    if not isinstance(x, Tensor):
        from .creation import tensor
        x = tensor(x)
    if not x.dtype.is_floating_point:
        return M.cast(x, dt.default_float), dt.default_float
    if x.dtype.is_reduced_float:     # float16 / bfloat16
        return M.cast(x, dt.float32), x.dtype
    return x, x.dtype


def _float_fn(fn):
    """Run fn in a float dtype and cast the result back (float16 / bfloat16 compute in float32)."""
    def f(x):
        y, out = _as_float(x)
        return M.cast(fn(y), out)
    f.__name__ = fn.__name__
    f.__doc__ = fn.__doc__
    return f


def _float_pair(a, b):
    """Two operands promoted like PyTorch's float binary ops (ints -> default float). An integer result
    type converts each operand from its own value, not through that type (uint8 tensor and -1: -1.0)."""
    pa, pb, d = M.promote(a, b)
    if d.is_floating_point and not d.is_reduced_float:
        return pa, pb, d
    if d.is_reduced_float:
        a, b, work = pa, pb, dt.float32
    else:
        work = dt.default_float
    a = M.cast(a, work) if isinstance(a, Tensor) else float(M._scalar(a))
    b = M.cast(b, work) if isinstance(b, Tensor) else float(M._scalar(b))
    return a, b, (d if d.is_reduced_float else work)


def _safe(cond, x, fill):
    """x where cond holds, `fill` elsewhere: the input of a branch that is only used where cond."""
    return M.where(cond, x, fill)


def _const(like, value):
    """A tensor of like's shape, dtype and device filled with value (exact in like's dtype, where a
    scalar-scalar `where` would round the value through the default dtype)."""
    return P("full", shape=tuple(like.shape), value=value, dtype=like.dtype, device=like.device)


def signbit(x):
    """True where the sign bit is set: x < 0, and -0.0 (1 / -0.0 is -inf). NaN counts as positive."""
    if not x.dtype.is_floating_point:
        return M.lt(x, 0)
    zero_neg = M.logical_and(M.eq(x, 0), M.lt(M.reciprocal(x.detach()), 0))
    return M.logical_or(M.lt(x, 0), zero_neg)


# -------------------------------------------------------------------------------- arc tangent
# Cephes atan: range reduction to |u| <= 0.66 and a (4, 5) rational in u^2 (relative error 2e-16)
_ATAN_P = (-8.750608600031904122785e-01, -1.615753718733365076637e+01, -7.500855792314704667340e+01,
           -1.228866684490136173410e+02, -6.485021904942025371773e+01)
_ATAN_Q = (2.485846490142306297962e+01, 1.650270098316988542046e+02, 4.328810604912902668951e+02,
           4.853903996359136964868e+02, 1.945506571482613964425e+02)
_MOREBITS = 6.123233995736765886130e-17
_T3P8 = 2.41421356237309504880      # tan(3 pi / 8)


def _poly(z, coeffs, leading_one=False):
    r = z + coeffs[0] if leading_one else M.mul(z, coeffs[0]) + coeffs[1]
    for c in coeffs[1 if leading_one else 2:]:
        r = M.add(M.mul(r, z), c)
    return r


def _atan(x):
    a = M.abs(x)
    s = M.sign(x)
    big = M.gt(a, _T3P8)
    mid = M.logical_and(M.gt(a, 0.66), M.logical_not(big))
    # the branch inputs: -1/x for |x| > tan(3pi/8), (|x| - 1)/(|x| + 1) signed for the middle, x itself
    # near 0 (written without |x| so the gradient at 0 is 1)
    u_big = M.neg(M.reciprocal(_safe(big, x, 1.0)))
    xm = _safe(mid, x, 1.0)
    sm = _safe(mid, s, 1.0)
    u_mid = M.div(M.sub(xm, sm), M.add(M.mul(sm, xm), 1.0))
    u = M.where(big, u_big, M.where(mid, u_mid, x))
    z = M.mul(u, u)
    r = M.add(M.mul(u, M.div(M.mul(z, _poly(z, _ATAN_P)), _poly(z, _ATAN_Q, leading_one=True))), u)
    def by_branch(v_big, v_mid):
        return M.mul(s, M.where(big, _const(x, v_big), _const(x, v_mid)))
    moved = M.add(M.add(r, by_branch(_MOREBITS, 0.5 * _MOREBITS)), by_branch(_PI / 2, _PI / 4))   # low bits first
    r = M.where(M.eq(x, 0), x, r)                         # atan(-0.0) = -0.0 (u * (+0) would lose the sign)
    return M.where(M.logical_or(big, mid), moved, r)


atan = _float_fn(_atan)
atan.__doc__ = "torch.atan: the arc tangent, in (-pi/2, pi/2)."


def atan2(input, other):
    """torch.atan2(input, other): the angle of the point (other, input), in [-pi, pi], with C's
    signed-zero and infinity conventions (atan2(0, -0.0) = pi, atan2(inf, inf) = pi/4)."""
    y, x, out = _float_pair(input, other)
    if not isinstance(y, Tensor) or not isinstance(x, Tensor):
        ref = y if isinstance(y, Tensor) else x
        y = y if isinstance(y, Tensor) else _const(ref, y)
        x = x if isinstance(x, Tensor) else _const(ref, x)
    both_inf = M.logical_and(M.isinf(x), M.isinf(y))
    x = M.where(both_inf, M.sign(x), x)      # atan2(+-inf, +-inf) is atan2(+-1, +-1)
    y = M.where(both_inf, M.sign(y), y)
    swap = M.gt(M.abs(y), M.abs(x))           # divide by the larger magnitude: |t| <= 1
    both_zero = M.logical_and(M.eq(x, 0), M.eq(y, 0))
    # at y = x = 0: t = y * 0 keeps y's zero sign and gives the zero gradient PyTorch gives there
    num = M.where(both_zero, M.mul(_safe(both_zero, y, 0.0), 0.0), _safe(swap, 0.0, y))
    t_small = M.div(num, _safe(M.logical_or(swap, both_zero), 1.0, x))
    t_big = M.div(_safe(swap, x, 0.0), _safe(swap, y, 1.0))
    r_small = _atan(t_small)                  # |y| <= |x|: atan(y/x), moved by pi when x < 0
    neg_y = signbit(y)
    neg_x = signbit(x)
    r_small = M.where(neg_x, M.add(r_small, M.where(neg_y, _const(y, -_PI), _const(y, _PI))), r_small)
    r_big = M.sub(M.where(neg_y, _const(y, -_PI / 2), _const(y, _PI / 2)), _atan(t_big))   # |y| > |x|: pi/2 - atan(x/y)
    return M.cast(M.where(swap, r_big, r_small), out)


def _sqrt_1mx2(x):
    """sqrt(1 - x^2) as sqrt((1 - x)(1 + x)): no cancellation near |x| = 1."""
    return M.sqrt(M.mul(M.sub(1.0, x), M.add(x, 1.0)))


@_float_fn
def asin(x):
    """torch.asin: NaN outside [-1, 1]."""
    return atan2(x, _sqrt_1mx2(x))


@_float_fn
def acos(x):
    """torch.acos: NaN outside [-1, 1]."""
    return atan2(_sqrt_1mx2(x), x)


# ------------------------------------------------------------------------------- hyperbolic
@_float_fn
def sinh(x):
    """torch.sinh: (e^x - e^-x)/2 from expm1 (accurate near 0), e^(|x| - ln 2) for large |x| (finite as
    long as the result is)."""
    big = M.gt(M.abs(x), 20.0)
    xs = _safe(big, 0.0, x)
    small = M.mul(M.sub(M.expm1(xs), M.expm1(M.neg(xs))), 0.5)
    xb = _safe(big, x, 21.0)
    large = M.mul(M.sign(xb), M.exp(M.sub(M.abs(xb), _LN2)))
    return M.where(big, large, small)


@_float_fn
def cosh(x):
    """torch.cosh: e + 1/(4e) with e = e^(|x| - ln 2)."""
    e = M.exp(M.sub(M.abs(x), _LN2))
    return M.add(e, M.div(0.25, e))


_ASINH_BIG = 2.0 ** 28   # above this sqrt(1 + x^2) == |x| in float64: asinh(x) = log(2|x|)


@_float_fn
def asinh(x):
    """torch.asinh: log1p(x + x^2 / (1 + sqrt(1 + x^2))) (no cancellation), odd, log(2|x|) when huge."""
    a = M.abs(x)
    big = M.gt(a, _ASINH_BIG)
    near0 = M.lt(a, 0.5)

    def f(v):   # asinh for v >= 0 or |v| < 0.5 (both keep the log1p argument free of cancellation)
        v2 = M.mul(v, v)
        return M.log1p(M.add(v, M.div(v2, M.add(M.sqrt(M.add(v2, 1.0)), 1.0))))
    small = f(_safe(near0, x, 0.0))          # signed: the gradient at 0 is 1
    mid = M.mul(M.sign(x), f(_safe(M.logical_or(near0, big), 1.0, a)))
    huge = M.mul(M.sign(x), M.add(M.log(_safe(big, a, 1.0)), _LN2))
    return M.where(near0, small, M.where(big, huge, mid))


@_float_fn
def acosh(x):
    """torch.acosh: log1p(t + sqrt(2t + t^2)) with t = x - 1; NaN below 1."""
    big = M.gt(x, _ASINH_BIG)
    ok = M.ge(x, 1.0)
    t = M.sub(_safe(M.logical_and(ok, M.logical_not(big)), x, 1.0), 1.0)
    r = M.log1p(M.add(t, M.sqrt(M.add(M.mul(t, 2.0), M.mul(t, t)))))
    huge = M.add(M.log(_safe(big, x, 1.0)), _LN2)
    r = M.where(big, huge, r)
    return M.where(ok, r, M.where(M.isnan(x), x, float("nan")))


@_float_fn
def atanh(x):
    """torch.atanh: (log1p(x) - log1p(-x)) / 2; +-inf at +-1, NaN outside [-1, 1]."""
    return M.mul(M.sub(M.log1p(x), M.log1p(M.neg(x))), 0.5)


# ---------------------------------------------------------------------------------- erfinv
# PyTorch's calc_erfinv: a rational first guess (central |y| <= 0.7, tail otherwise), then two
# Newton steps on erf(x) = y
_EI_A = (0.886226899, -1.645349621, 0.914624893, -0.140543331)
_EI_B = (-2.118377725, 1.442710462, -0.329097515, 0.012229801)
_EI_C = (-1.970840454, -1.624906493, 3.429567803, 1.641345311)
_EI_D = (3.543889200, 1.637067800)
_TWO_OVER_SQRT_PI = 2.0 / math.sqrt(math.pi)


def _horner(z, coeffs):
    """coeffs[0] + coeffs[1] z + ... (lowest order first)."""
    r = M.add(M.mul(z, coeffs[-1]), coeffs[-2])
    for c in reversed(coeffs[:-2]):
        r = M.add(M.mul(r, z), c)
    return r


def _newton_erfinv(x, y):
    return M.sub(x, M.div(M.sub(M.erf(x), y), M.mul(M.exp(M.neg(M.mul(x, x))), _TWO_OVER_SQRT_PI)))


def erfinv(x):
    """torch.erfinv: the inverse of erf on (-1, 1); +-inf at +-1, NaN outside. float16/float32 are
    computed in float64 (erf's float32 approximation would limit the Newton steps)."""
    y, out = _as_float(x)
    y = M.cast(y, dt.float64)
    a = M.abs(y)
    inside = M.lt(a, 1.0)
    ys = _safe(inside, y, 0.0)
    central = M.le(M.abs(ys), 0.7)
    yc = _safe(central, ys, 0.0)
    z = M.mul(yc, yc)
    x_c = M.div(M.mul(yc, _horner(z, _EI_A)), M.add(M.mul(_horner(z, _EI_B), z), 1.0))
    yt = _safe(central, 0.9, ys)
    zt = M.sqrt(M.neg(M.log(M.mul(M.sub(1.0, M.abs(yt)), 0.5))))
    x_t = M.div(M.mul(M.sign(yt), _horner(zt, _EI_C)), M.add(M.mul(_horner(zt, _EI_D), zt), 1.0))
    x0 = M.where(central, x_c, x_t).detach()
    x1 = _newton_erfinv(x0, ys.detach()).detach()
    # the last Newton step carries the gradient: d/dy of it is sqrt(pi)/2 exp(x1^2), erfinv's derivative
    r = _newton_erfinv(x1, ys)
    edge = M.where(M.eq(a, 1.0), M.where(M.gt(y, 0), _const(y, math.inf), _const(y, -math.inf)),
                   _const(y, math.nan))
    r = M.where(inside, r, M.where(M.isnan(y), y, edge))
    return M.cast(r, out)


# ---------------------------------------------------------------------------------- binary
def hypot(input, other):
    """torch.hypot: sqrt(a^2 + b^2) without overflow or underflow in the squares."""
    a, b, out = _float_pair(input, other)
    aa, ab = M.abs(a), M.abs(b)
    m = M.maximum(aa, ab)
    n = M.minimum(aa, ab)
    zero = M.eq(m, 0)
    ms = _safe(zero, 1.0, m)
    q = M.div(n, ms)
    r = M.mul(ms, M.sqrt(M.add(M.mul(q, q), 1.0)))
    r = M.where(zero, M.mul(m, 1.0), r)
    r = M.where(M.logical_or(M.isinf(aa), M.isinf(ab)), _const(r, math.inf), r)   # hypot(inf, nan) = inf
    return M.cast(r, out)


def logaddexp(input, other):
    """torch.logaddexp: log(e^a + e^b) = max + log1p(e^-|a - b|); equal infinities return themselves."""
    a, b, out = _float_pair(input, other)
    return M.cast(_logaddexp(a, b, M.exp, 1.0), out)


def logaddexp2(input, other):
    """torch.logaddexp2: log2(2^a + 2^b)."""
    a, b, out = _float_pair(input, other)
    return M.cast(_logaddexp(a, b, lambda v: M.exp(M.mul(v, _LN2)), 1.0 / _LN2), out)


def _logaddexp(a, b, exp, scale):
    m = M.maximum(a, b)
    same_inf = M.logical_and(M.isinf(m), M.eq(a, b))
    d = M.sub(_safe(same_inf, 0.0, a), _safe(same_inf, 0.0, b))
    r = M.add(m, M.mul(M.log1p(exp(M.neg(M.abs(d)))), scale))
    return M.where(same_inf, m, r)


def xlogy(input, other):
    """torch.xlogy: x * log(y), 0 where x == 0 (unless y is NaN)."""
    x, y, out = _float_pair(input, other)
    if not isinstance(x, Tensor):
        x = _const(y, x)
    x0 = M.eq(x, 0)
    r = M.mul(x, M.log(_safe(x0, 1.0, y)) if isinstance(y, Tensor) else
              (math.log(y) if y > 0 else (-math.inf if y == 0 else math.nan)))
    r = M.where(x0, 0.0, r)
    if isinstance(y, Tensor):
        r = M.where(M.isnan(y), y, r)
    elif y != y:
        r = _const(r, math.nan)
    return M.cast(r, out)


def copysign(input, other):
    """torch.copysign: |input| with the sign of other (including -0.0); the result is float."""
    a, b, out = _float_pair(input, other)
    if not isinstance(a, Tensor):
        a = _const(b, a)
    neg = signbit(b) if isinstance(b, Tensor) else (math.copysign(1.0, b) < 0)
    mag = M.abs(a)
    r = M.where(neg, M.neg(mag), mag) if isinstance(neg, Tensor) else (M.neg(mag) if neg else mag)
    return M.cast(r, out)


@_float_fn
def deg2rad(x):
    """torch.deg2rad: x * pi / 180."""
    return M.mul(x, _PI / 180.0)


@_float_fn
def rad2deg(x):
    """torch.rad2deg: x * 180 / pi."""
    return M.mul(x, 180.0 / _PI)


@_float_fn
def sinc(x):
    """torch.sinc: sin(pi x) / (pi x), 1 at 0."""
    zero = M.eq(x, 0)
    px = M.mul(_safe(zero, 1.0, x), _PI)
    return M.where(zero, _const(x, 1.0), M.div(M.sin(px), px))


def logit(input, eps=None):
    """torch.logit: log(p / (1 - p)), p clamped to [eps, 1 - eps] when eps is given."""
    p, out = _as_float(input)
    if eps is not None:
        p = M.clamp(p, eps, 1.0 - eps)
    return M.cast(M.log(M.div(p, M.sub(1.0, p))), out)


arctan, arctan2, arcsin, arccos = atan, atan2, asin, acos
arcsinh, arccosh, arctanh = asinh, acosh, atanh

