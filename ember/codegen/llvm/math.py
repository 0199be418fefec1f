"""Transcendental functions as inline, vectorisable LLVM IR (no libm calls inside float32 loops).

In: an llvmlite `ir.Module`; `MathLib(module).call(builder, op, x)` emits a call to an internal,
`alwaysinline` function `ember.<op>.<f32|f64>` defined once per module.  Out: the result value.
After inlining, the loop vectoriser sees straight-line selects/FMAs and vectorises them (a libm call
would keep the loop scalar).  Used by the op table in ember/codegen/llvm/ops.py.

Algorithms (all branch-free: special cases are `select`s, so vector lanes never diverge)
  exp      x = n*ln2 + r, |r| <= ln2/2 (Cody-Waite split of ln2, FMA), e^r by a polynomial
           (degree-6 minimax f32, degree-13 Taylor f64), 2^n applied by llvm.ldexp on AVX-512
           targets (vscalefps: one rounding), else as two exponent-field multiplies; either way
           overflow -> inf and gradual underflow -> subnormal/0 come out of the arithmetic itself.
  log      x = 2^e * m, m in [sqrt(1/2), sqrt(2)), log(m) = f - (f^2/2 - s*(f^2/2 + R(s^2))),
           s = f/(2+f) (fdlibm's form), R Taylor in s^2 (4 terms f32, 10 f64).  Subnormals rescaled.
  log1p    u = 1+x; log(u) * x/(u-1) (Goldberg's correction), x when u == 1.
  expm1    Taylor x + x^2*Q(x) for |x| < 0.5 (no cancellation), exp(x) - 1 otherwise.
  tanh     t = expm1(2|x|), copysign(t / (t + 2), x); |x| clamped (20 f32, 40 f64) so t stays finite.
  sigmoid  1 / (1 + exp(-x)).
  erf      f32 only, in float32, two polynomials and no exp: |x| < 1: x + x*S(x^2) (degree 6, relative
           error); 1 <= |x| < c: 1 - E(u), u = (|x| - m)/h mapping [1, c] onto [-1, 1], E a degree-14
           fit of erfc with absolute error 4e-9 (erf is near 1 there, so absolute error is what
           counts); |x| >= c = erfinv(1 - 2^-25) = 3.8325: +-1 (erf rounds to 1 in float32).
  sin/cos  f32 only, evaluated in double: q = round(x*2/pi), r = x - q*pi/2 with a 33+53-bit split of
           pi/2 (exact products for |q| < 2^20), Taylor sin/cos of degree 13/14 on |r| <= pi/4, quadrant
           select.  Accurate for |x| < ~1.6e6 (|q| < 2^20); beyond that the reduction is not exact:
           results are only guaranteed to lie in [-1, 1] (no Payne-Hanek reduction).
  pow      f32 only, in double: exp(b*log|a|) with C99 special cases (x**0 = 1, 1**y = 1, negative
           base with integer exponent takes the sign of an odd power, non-integer -> nan,
           (-1)**+-inf = 1).
  float64 erf, sin, cos, pow call libm (`erf`, `sin`, `cos`, `pow`): those loops stay scalar for f64.

Measured accuracy (float32 result vs numpy float64 of the same float32 input, rounded to f32, in
ulp of the f32 result; tests/codegen/test_math.py re-measures and enforces the bounds; f64 rows in
units of 1e-16 relative error):

    op        range tested                   max ulp f32   max rel err f64
    exp       [-104, 89]                     0.98          2.2e-16
    log       [1e-45, 3e38] (subnormals)     0.79          2.2e-16
    log1p     (-1, 1e30]                     2.32          4.0e-16
    expm1     [-90, 88]                      1.36          2.8e-16
    tanh      [-20, 20]                      2.19          4.4e-16
    sigmoid   [-90, 90]                      1.99          4.5e-16
    erf       [-6, 6]                        1.10          libm
    sin, cos  [-1e4, 1e4]                    0.50          libm
    pow       base [0, 100], exp [-20, 20]   <= 1          libm
    (ranges mix uniform samples over the range with samples in [-1, 1] and [-1e-3, 1e-3])

Special values: exp(+-inf) = inf/0, exp(large) = inf, exp(-large) = 0, log(0) = -inf, log(<0) = nan,
log(inf) = inf, tanh(+-large) = +-1, sin/cos(inf) = nan; NaN in gives NaN out everywhere.
"""
from __future__ import annotations

import math

import llvmlite.ir as ir

__all__ = ["MathLib", "MATH_OPS", "LIBM_F64"]

F32, F64 = ir.FloatType(), ir.DoubleType()
I32, I64 = ir.IntType(32), ir.IntType(64)

# ops whose float64 version is a libm call (scalar); the runtime resolves these symbols
LIBM_F64 = {"erf": "erf", "sin": "sin", "cos": "cos", "pow": "pow"}


def _taylor_exp(degree):
    """Coefficients of e^r, highest degree first: 1/degree!, ..., 1/1!, 1."""
    return [1.0 / math.factorial(k) for k in range(degree, -1, -1)]


# e^r on |r| <= ln2/2 for float32: a degree-6 minimax fit (relative error 2e-9, Lawson's iteration in
# double, constant term 1 exact), one FMA shorter than the degree-7 Taylor series it replaced
_EXP_F32 = [0.0013843653723597527, 0.00837415549904108, 0.04166800156235695, 0.16666431725025177,
            0.4999999403953552, 1.0, 1.0]

# per-precision constants
_P = {
    "f32": dict(ty=F32, ity=I32, mbits=23, bias=127, exp_hi=89.0, exp_lo=-104.0,
                ln2_hi=0.693359375, ln2_lo=-2.12194440e-4, exp_coef=_EXP_F32,
                log_terms=4, expm1_terms=9, tanh_clamp=20.0, min_normal=2.0 ** -126),
    "f64": dict(ty=F64, ity=I64, mbits=52, bias=1023, exp_hi=710.0, exp_lo=-746.0,
                ln2_hi=6.93147180369123816490e-01, ln2_lo=1.90821492927058770002e-10,
                exp_coef=_taylor_exp(13), log_terms=10, expm1_terms=17, tanh_clamp=40.0,
                min_normal=2.0 ** -1022),
}

# erf in float32 (minimax fits in double by Lawson's iteration, coefficients rounded to float32;
# measured 1.10 ulp max on the test's samples over [-6, 6], 1.17 on a dense grid of 3.6M points).
# |x| < 1: erf(x) = x + x * S(x^2), S = erf(x)/x - 1, so the rounding of the correction term is 8x
# smaller than the result's; 1 <= |x| < ERF_ONE: erf = 1 - E(u) with u = |x| * ERFC_U_SCALE +
# ERFC_U_SHIFT in [-1, 1], E ~ erfc to 4e-9 absolute.  No exp and no division: the exact-GELU
# kernels of a transformer are bound by the FMA pipes, and the previous form (erfc(a) = exp(-a^2) *
# M(a)) needed an exp besides: GPT's GELU forward 495 -> ~300 us on one thread.  (A rational
# x * P(x^2) / Q(x^2) is cheaper still, ~240 us, but measured ~5 ulp in float32.)  Highest degree first.
_ERF_SMALL = [7.89821013642851e-05, -0.0008024354102911802, 0.0051900535742365585, -0.026854808534791313,
              0.11283612428163961, -0.37612628843313434, 0.12837916651004644]
_ERFC_BIG = [-0.0001722742017591372, 4.2693704017437994e-05, 0.0012201139470562339, -0.0015201590722426772,
             -0.002139132237061858, 0.0075208041816949844, -0.007680709473788738, -0.0035579130053520203,
             0.024635327979922295, -0.04323650151491165, 0.046218544244766235, -0.03324202820658684,
             0.015934841707348824, -0.004656471777707338, 0.000632923620287329]
ERF_ONE = 3.832506856900711          # erfinv(1 - 2^-25): from here on float32 erf rounds to +-1
ERFC_U_SCALE, ERFC_U_SHIFT = 0.7060883171835891, -1.706088317183589    # [1, ERF_ONE] -> [-1, 1]
# pi/2 split: PIO2_HI has 33 significant bits, so q*PIO2_HI is exact for |q| < 2^20 (fdlibm)
PIO2_HI = 1.57079632673412561417e+00
PIO2_LO = 6.07710050650619224932e-11


class _FB:
    """Float helpers over an IRBuilder for one float type (plain IEEE ops: no fast-math flags)."""

    def __init__(self, b: ir.IRBuilder, module: ir.Module, ty):
        self.b, self.m, self.ty = b, module, ty
        self.kind = "f32" if ty == F32 else "f64"
        self.P = _P[self.kind]
        self.ity = self.P["ity"]

    def c(self, v):
        return ir.Constant(self.ty, float(v))

    def ic(self, v):
        return ir.Constant(self.ity, int(v))

    def intrinsic(self, name, nargs=1, ty=None):
        return intrinsic(self.m, name, ty or self.ty, nargs)

    def fma(self, a, b, c):
        return self.b.call(self.intrinsic("fma", 3), [a, b, c])

    def horner(self, x, coeffs):
        """coeffs highest degree first; FMA Horner."""
        acc = self.c(coeffs[0])
        for k in coeffs[1:]:
            acc = self.fma(acc, x, self.c(k))
        return acc

    def select(self, cond, a, b):
        return self.b.select(cond, a, b)

    def cmp(self, op, a, b):
        return self.b.fcmp_ordered(op, a, b)

    def isnan(self, x):
        return self.b.fcmp_unordered("uno", x, x)

    def fabs(self, x):
        return self.b.call(self.intrinsic("fabs"), [x])

    def copysign(self, mag, sign):
        return self.b.call(self.intrinsic("copysign", 2), [mag, sign])

    def roundeven(self, x):
        return self.b.call(self.intrinsic("roundeven"), [x])

    def floor(self, x):
        return self.b.call(self.intrinsic("floor"), [x])


def intrinsic(module: ir.Module, name: str, ty, nargs: int):
    """Declare (once) llvm.<name>.<type suffix> taking nargs values of ty."""
    suffix = {F32: "f32", F64: "f64"}.get(ty) or (f"i{ty.width}" if isinstance(ty, ir.IntType) else str(ty))
    full = f"llvm.{name}.{suffix}"
    fn = module.globals.get(full)
    if fn is None:
        fn = ir.Function(module, ir.FunctionType(ty, [ty] * nargs), full)
    return fn


# ---------------------------------------------------------------------------------- emitters
def _exp(f: _FB, lib, x):
    P, b = f.P, f.b
    nan = f.isnan(x)
    xc = f.select(f.cmp(">", x, f.c(P["exp_hi"])), f.c(P["exp_hi"]), x)
    xc = f.select(f.cmp("<", xc, f.c(P["exp_lo"])), f.c(P["exp_lo"]), xc)
    xc = f.select(nan, f.c(0.0), xc)   # keep NaN away from fptosi (poison)
    n = f.roundeven(b.fmul(xc, f.c(1.0 / math.log(2.0))))
    r = f.fma(n, f.c(-P["ln2_hi"]), xc)
    r = f.fma(n, f.c(-P["ln2_lo"]), r)
    p = f.horner(r, P["exp_coef"])
    ni = b.fptosi(n, f.ity)
    if lib.scalef:        # one vscalefps: p * 2^n, rounded once (overflow and subnormals included)
        ldexp = lib.module.globals.get(f"llvm.ldexp.{f.kind}.i32") or ir.Function(
            lib.module, ir.FunctionType(f.ty, [f.ty, I32]), f"llvm.ldexp.{f.kind}.i32")
        res = b.call(ldexp, [p, ni if f.ity == I32 else b.trunc(ni, I32)])
        return f.select(nan, x, res)
    # 2^n as two normal powers of two, so that 2^-150 (subnormal results) and 2^128 (overflow to
    # inf) are reached through rounding of a multiply rather than a broken exponent field.
    n1 = b.ashr(ni, f.ic(1))
    n2 = b.sub(ni, n1)
    s1 = b.bitcast(b.shl(b.add(n1, f.ic(P["bias"])), f.ic(P["mbits"])), f.ty)
    s2 = b.bitcast(b.shl(b.add(n2, f.ic(P["bias"])), f.ic(P["mbits"])), f.ty)
    res = b.fmul(b.fmul(p, s1), s2)
    return f.select(nan, x, res)


def _log(f: _FB, lib, x):
    P, b = f.P, f.b
    mbits, bias = P["mbits"], P["bias"]
    tiny = f.cmp("<", x, f.c(P["min_normal"]))
    xs = f.select(tiny, b.fmul(x, f.c(2.0 ** mbits)), x)
    bits = b.bitcast(xs, f.ity)
    e = b.sub(b.lshr(bits, f.ic(mbits)), f.ic(bias))
    e = b.sub(e, b.select(tiny, f.ic(mbits), f.ic(0)))
    mant = b.or_(b.and_(bits, f.ic((1 << mbits) - 1)), f.ic(bias << mbits))
    m = b.bitcast(mant, f.ty)                                   # [1, 2)
    big = f.cmp(">", m, f.c(math.sqrt(2.0)))
    m = f.select(big, b.fmul(m, f.c(0.5)), m)                   # [sqrt(1/2), sqrt(2))
    e = b.add(e, b.zext(big, f.ity))
    fr = b.fsub(m, f.c(1.0))
    s = b.fdiv(fr, b.fadd(fr, f.c(2.0)))
    z = b.fmul(s, s)
    # R = sum_k 2 z^k / (2k+1), k = 1..K  (Taylor series of 2*atanh(s) - 2s, in z = s^2)
    K = P["log_terms"]
    coeffs = [2.0 / (2 * k + 1) for k in range(K, 0, -1)]
    R = b.fmul(z, f.horner(z, coeffs))
    hfsq = b.fmul(f.c(0.5), b.fmul(fr, fr))
    logm = b.fsub(fr, b.fsub(hfsq, b.fmul(s, b.fadd(hfsq, R))))
    ef = b.sitofp(e, f.ty)
    res = f.fma(ef, f.c(P["ln2_hi"]), f.fma(ef, f.c(P["ln2_lo"]), logm))
    # special values: 0 -> -inf, < 0 -> nan, inf -> inf, nan -> nan
    res = f.select(f.cmp("==", x, f.c(math.inf)), x, res)
    res = f.select(f.cmp("==", x, f.c(0.0)), f.c(-math.inf), res)
    res = f.select(f.cmp("<", x, f.c(0.0)), f.c(math.nan), res)
    return f.select(f.isnan(x), x, res)


def _log1p(f: _FB, lib, x):
    b = f.b
    u = b.fadd(x, f.c(1.0))
    logu = lib.call(b, "log", u)
    res = b.fmul(logu, b.fdiv(x, b.fsub(u, f.c(1.0))))
    res = f.select(f.cmp("==", u, f.c(1.0)), x, res)
    return f.select(f.cmp("==", x, f.c(math.inf)), x, res)


def _expm1(f: _FB, lib, x):
    b = f.b
    n = f.P["expm1_terms"]
    # x + x^2 * (1/2! + x/3! + ... + x^(n-2)/n!)
    q = f.horner(x, [1.0 / math.factorial(k) for k in range(n, 1, -1)])
    small = f.fma(b.fmul(x, x), q, x)
    small = f.select(f.cmp("==", x, f.c(0.0)), x, small)     # expm1(-0.0) = -0.0 (+0 + -0 would be +0)
    big = b.fsub(lib.call(b, "exp", x), f.c(1.0))
    return f.select(f.cmp("<", f.fabs(x), f.c(0.5)), small, big)


def _tanh(f: _FB, lib, x):
    b = f.b
    a = f.fabs(x)
    lim = f.c(f.P["tanh_clamp"])
    a = f.select(f.cmp(">", a, lim), lim, a)    # tanh(lim) rounds to 1; keeps t finite (NaN passes)
    t = lib.call(b, "expm1", b.fmul(a, f.c(2.0)))
    return f.copysign(b.fdiv(t, b.fadd(t, f.c(2.0))), x)


def _sigmoid(f: _FB, lib, x):
    b = f.b
    e = lib.call(b, "exp", b.fneg(x))
    return b.fdiv(f.c(1.0), b.fadd(f.c(1.0), e))


def _erf_f32(f: _FB, lib, x):
    """float32 erf in float32 arithmetic (see _ERF_SMALL): 16 lanes per vector, two short polynomials,
    both evaluated (branch-free) and one selected per lane."""
    b = f.b
    a = f.fabs(x)
    small = f.fma(x, f.horner(b.fmul(x, x), _ERF_SMALL), x)
    am = f.select(f.cmp(">", a, f.c(ERF_ONE)), f.c(ERF_ONE), a)          # NaN stays NaN
    u = f.fma(am, f.c(ERFC_U_SCALE), f.c(ERFC_U_SHIFT))
    big = f.copysign(b.fsub(f.c(1.0), f.horner(u, _ERFC_BIG)), x)
    big = f.select(f.cmp(">=", a, f.c(ERF_ONE)), f.copysign(f.c(1.0), x), big)
    return f.select(f.cmp("<", a, f.c(1.0)), small, big)


def _sincos_f32(f: _FB, lib, x, want_cos):
    b = f.b
    d = _FB(b, f.m, F64)
    xd = b.fpext(x, F64)
    finite = d.cmp("<", d.fabs(xd), d.c(math.inf))
    xs = d.select(finite, xd, d.c(0.0))
    q = d.roundeven(b.fmul(xs, d.c(2.0 / math.pi)))
    rr = d.fma(q, d.c(-PIO2_HI), xs)
    rr = d.fma(q, d.c(-PIO2_LO), rr)
    qsafe = d.select(d.cmp("<", d.fabs(q), d.c(2.0 ** 30)), q, d.c(0.0))
    quad = b.and_(b.fptosi(qsafe, I32), ir.Constant(I32, 3))
    z = b.fmul(rr, rr)
    # sin r = r + r*z*S(z), cos r = 1 + z*C(z)   (Taylor, degrees 13 and 14)
    S = d.horner(z, [(-1) ** k / math.factorial(2 * k + 1) for k in range(6, 0, -1)])
    C = d.horner(z, [(-1) ** k / math.factorial(2 * k) for k in range(7, 0, -1)])
    sin_r = d.fma(b.fmul(rr, z), S, rr)
    cos_r = d.fma(z, C, d.c(1.0))
    if want_cos:
        quad = b.add(quad, ir.Constant(I32, 1))   # cos(x) = sin(x + pi/2)
        quad = b.and_(quad, ir.Constant(I32, 3))
    odd = b.trunc(quad, ir.IntType(1))                       # quadrants 1, 3 use cos
    neg = b.icmp_unsigned(">=", quad, ir.Constant(I32, 2))   # quadrants 2, 3 negate
    v = b.select(odd, cos_r, sin_r)
    v = b.select(neg, b.fneg(v), v)
    # |x| > ~1.6e6: the two-part reduction is no longer exact and r can be far outside [-pi/4, pi/4];
    # such inputs are outside the accuracy promise, but the result stays within [-1, 1]
    v = d.select(d.cmp(">", d.fabs(v), d.c(1.0)), d.copysign(d.c(1.0), v), v)
    v = d.select(finite, v, d.c(math.nan))
    if not want_cos:        # sin(-0.0) = -0.0 (the reduction's fma turns it into +0)
        v = d.select(d.cmp("==", xd, d.c(0.0)), xd, v)
    return b.fptrunc(v, F32)


def _pow_f32(f: _FB, lib, a, e):
    b = f.b
    d = _FB(b, f.m, F64)
    ad, ed = b.fpext(a, F64), b.fpext(e, F64)
    mag = lib.call(b, "exp", b.fmul(ed, lib.call(b, "log", d.fabs(ad))))
    e_int = d.cmp("==", d.floor(ed), ed)
    half = b.fmul(ed, d.c(0.5))
    e_odd = b.and_(e_int, d.cmp("!=", d.floor(half), half))
    sign_neg = b.icmp_signed("<", b.bitcast(ad, I64), ir.Constant(I64, 0))  # signbit: -0 counts
    res = d.select(b.and_(sign_neg, e_odd), b.fneg(mag), mag)
    neg_finite = b.and_(d.cmp("<", ad, d.c(0.0)), d.cmp(">", ad, d.c(-math.inf)))
    res = d.select(b.and_(neg_finite, b.not_(e_int)), d.c(math.nan), res)   # (-8)**(1/3) = nan
    one = d.c(1.0)
    res = d.select(d.cmp("==", ed, d.c(0.0)), one, res)
    res = d.select(d.cmp("==", ad, one), one, res)
    res = d.select(b.and_(d.cmp("==", d.fabs(ad), one), d.cmp("==", d.fabs(ed), d.c(math.inf))), one, res)
    return b.fptrunc(res, F32)


_EMITTERS = {
    "exp": _exp, "log": _log, "log1p": _log1p, "expm1": _expm1, "tanh": _tanh, "sigmoid": _sigmoid,
    "erf": _erf_f32, "sin": lambda f, lib, x: _sincos_f32(f, lib, x, False),
    "cos": lambda f, lib, x: _sincos_f32(f, lib, x, True), "pow": _pow_f32,
}
MATH_OPS = tuple(_EMITTERS)   # the ops MathLib.call emits


class MathLib:
    """Defines and calls ember.<op>.<f32|f64> helpers in one module.  `scalef`: the target has
    AVX-512 (vscalefps/pd), so exp applies 2^n with one `llvm.ldexp` (elsewhere ldexp on vectors
    becomes a libm call per lane, hence the two-multiply form there): exp 8 -> 2 instructions shorter,
    the attention softmax and the GELU backward spend most of their time in it."""

    def __init__(self, module: ir.Module, scalef: bool = False):
        self.module = module
        self.scalef = scalef

    def call(self, builder: ir.IRBuilder, op: str, *args):
        ty = args[0].type
        if ty not in (F32, F64):
            raise NotImplementedError(f"{op} for {ty} (cast to float32/float64 first)")
        return builder.call(self._function(op, ty, len(args)), list(args))

    def _function(self, op: str, ty, nargs: int) -> ir.Function:
        kind = "f32" if ty == F32 else "f64"
        if kind == "f64" and op in LIBM_F64:
            name = LIBM_F64[op]
            fn = self.module.globals.get(name)
            if fn is None:
                fn = ir.Function(self.module, ir.FunctionType(F64, [F64] * nargs), name)
            return fn
        name = f"ember.{op}.{kind}"
        fn = self.module.globals.get(name)
        if fn is not None:
            return fn
        fn = ir.Function(self.module, ir.FunctionType(ty, [ty] * nargs), name)
        fn.linkage = "internal"
        fn.attributes.add("alwaysinline")
        fn.attributes.add("nounwind")
        b = ir.IRBuilder(fn.append_basic_block("entry"))
        f = _FB(b, self.module, ty)
        b.ret(_EMITTERS[op](f, self, *fn.args))
        return fn
