"""How LLVM spells each kernel-IR op: one row per op, keyed by the op's name (ember/ir/ops.py).

    LLVM_UNARY[op](e, x, d)       -> value      e: the kernel emitter (e.b builder, e.m module, e.math)
    LLVM_BINARY[op](e, x, y, d)   -> value      d: the operands' dtype; x, y register values
    convert(b, x, src, dst, m)    numpy astype (ember/codegen/loops.py cast_rule)
    bf16_round(b, v, d)           a bfloat16 result rounded in its float32 register
    combine / combine_minmax / arg_better   reduction updates (float max/min: combine_minmax)

Numerics follow numpy/PyTorch: maximum/minimum propagate NaN (llvm.maximum; the max/min
reductions through a NaN flag, see combine_minmax), remainder and
floor_divide use the floor rule, integer division by zero gives 0, integer overflow wraps,
transcendentals are the inline polynomials of ember/codegen/llvm/math.py (vectorisable).
tests/codegen/test_op_tables.py checks that the tables cover exactly the kernel-IR ops.
"""
from __future__ import annotations

import math

import numpy as np

from ember.codegen.llvm.math import MATH_OPS, intrinsic
from ember.codegen.llvm.target import I1, I32, ir, llvm_type
from ember.codegen.loops import cast_rule, is_unsigned
from ember.ir import dtypes as dt

__all__ = ["LLVM_UNARY", "LLVM_BINARY", "REDUCE_FLAGS", "const", "truth", "convert", "combine", "combine_minmax",
           "arg_better", "bf16_round"]

REDUCE_FLAGS = ("reassoc", "nsz", "contract")   # never nnan/ninf: NaN/inf must propagate


# ================================================================================== scalars
def bf16_round(b, v, d: dt.DType):
    """A float32 register value rounded to the nearest bfloat16 (ties to even; NaN -> quiet NaN), kept
    in float32: eager computes each bfloat16 op in float32 and rounds its result, so do kernels."""
    if d is not dt.bfloat16:
        return v
    bits = b.bitcast(v, I32)
    lsb = b.and_(b.lshr(bits, ir.Constant(I32, 16)), ir.Constant(I32, 1))
    r = b.and_(b.add(bits, b.add(lsb, ir.Constant(I32, 0x7FFF))), ir.Constant(I32, -65536))
    r = b.select(b.fcmp_unordered("uno", v, v), ir.Constant(I32, 0x7FC00000), r)
    return b.bitcast(r, ir.FloatType())


def const(value, d: dt.DType):
    ty = llvm_type(d)
    if d is dt.bool_:
        return ir.Constant(I1, int(bool(value)))
    if d is dt.bfloat16:   # the bfloat16 value, as eager's `full` makes it
        return ir.Constant(ty, float(np.array(float(value), np.float32).astype(d.np).astype(np.float32)))
    if d.is_floating_point:
        return ir.Constant(ty, float(value))
    return ir.Constant(ty, int(value))


def truth(b, x, d: dt.DType):
    """Value != 0 as i1 (NaN is true, like numpy's bool(nan))."""
    if d is dt.bool_:
        return x
    if d.is_floating_point:
        return b.fcmp_unordered("!=", x, ir.Constant(x.type, 0.0))
    return b.icmp_unsigned("!=", x, ir.Constant(x.type, 0))


def _fptosi_x86(b, x, dty):
    """float -> integer as numpy and PyTorch do on x86 (cvttss2si): truncate toward zero; NaN and
    values outside int32 (int64 for an int64 target) give INT_MIN; narrower targets convert through
    int32 and wrap (plain fptosi would be poison out of range)."""
    if x.type == ir.HalfType():
        x = b.fpext(x, ir.FloatType())
    w = 64 if dty.width == 64 else 32
    lo, hi = ir.Constant(x.type, -float(2 ** (w - 1))), ir.Constant(x.type, float(2 ** (w - 1)))
    ok = b.and_(b.fcmp_ordered(">=", x, lo), b.fcmp_ordered("<", x, hi))
    v = b.fptosi(b.select(ok, x, ir.Constant(x.type, 0.0)), ir.IntType(w))
    v = b.select(ok, v, ir.Constant(ir.IntType(w), -(2 ** (w - 1))))
    return v if dty.width == w else b.trunc(v, dty)


def _int_resize(b, x, dty, unsigned: bool):
    if dty.width < x.type.width:
        return b.trunc(x, dty)
    if dty.width == x.type.width:
        return x
    return b.zext(x, dty) if unsigned else b.sext(x, dty)


def _float_resize(b, x, src: dt.DType, dst: dt.DType):
    if dst.itemsize > src.itemsize:
        return b.fpext(x, llvm_type(dst))
    if src is dt.float64 and dst is dt.float16:
        return b.fptrunc(_to_f32_round_to_odd(b, x), llvm_type(dst))
    return b.fptrunc(x, llvm_type(dst))


def _to_f32_round_to_odd(b, x):
    """double -> float rounded to odd (truncate toward zero, lowest bit set when inexact), so that a
    second rounding to float16 equals numpy's direct double -> half rounding.  LLVM lowers a direct
    fptrunc double -> half to a call of __truncdfhf2, which the JIT cannot resolve."""
    f32, i32 = ir.FloatType(), ir.IntType(32)
    f = b.fptrunc(x, f32)                                  # nearest; may round away from zero
    back = b.fpext(f, x.type)
    away = b.fcmp_ordered(">", b.call(_fabs(b), [back]), b.call(_fabs(b), [x]))
    bits = b.bitcast(f, i32)
    bits = b.select(away, b.sub(bits, ir.Constant(i32, 1)), bits)      # one step toward zero
    inexact = b.fcmp_ordered("!=", back, x)
    return b.bitcast(b.select(inexact, b.or_(bits, ir.Constant(i32, 1)), bits), f32)


def _fabs(b):
    return intrinsic(b.module, "fabs", ir.DoubleType(), 1)


_CASTS = {   # (builder, x, src dtype, dst dtype, module) -> value, per ember/codegen/loops.py cast_rule
    "same": lambda b, x, src, dst, m: x,
    "truth": lambda b, x, src, dst, m: truth(b, x, src),
    "float": lambda b, x, src, dst, m: _float_resize(b, x, src, dst),
    "float_int": lambda b, x, src, dst, m: _fptosi_x86(b, x, llvm_type(dst)),
    "int_float": lambda b, x, src, dst, m: (b.uitofp if is_unsigned(src) else b.sitofp)(x, llvm_type(dst)),
    "int": lambda b, x, src, dst, m: _int_resize(b, x, llvm_type(dst), is_unsigned(src)),
}


def convert(b, x, src: dt.DType, dst: dt.DType, m):
    """numpy astype semantics on x86 (float -> int truncates toward zero; NaN and out-of-range
    values give INT_MIN, as numpy and PyTorch do, instead of being undefined). bfloat16 lives in
    float32 registers: convert as float32, then round."""
    s = dt.float32 if src is dt.bfloat16 else src
    t = dt.float32 if dst is dt.bfloat16 else dst
    return bf16_round(b, _CASTS[cast_rule(s, t)](b, x, s, t, m), dst)


# ==================================================================================== unary
def _math(op):
    """An inline polynomial of ember/codegen/llvm/math.py (float32; some float64 ops call libm)."""
    return lambda e, x, d: e.math.call(e.b, op, x)


def _intrinsic(name):
    return lambda e, x, d: e.b.call(intrinsic(e.m, name, x.type, 1), [x])


def _float_only(name):
    """floor/ceil/round/trunc: integers are returned unchanged."""
    return lambda e, x, d: e.b.call(intrinsic(e.m, name, x.type, 1), [x]) if d.is_floating_point else x


def _abs(e, x, d):
    b, ty = e.b, x.type
    if d.is_floating_point:
        return b.call(intrinsic(e.m, "fabs", ty, 1), [x])
    if is_unsigned(d):
        return x
    return b.select(b.icmp_signed("<", x, ir.Constant(ty, 0)), b.sub(ir.Constant(ty, 0), x), x)


def _sign(e, x, d):
    b, ty = e.b, x.type
    if d.is_floating_point:   # (x > 0) - (x < 0): NaN and -0.0 give +0.0, as PyTorch
        zero = ir.Constant(ty, 0.0)
        return b.fsub(b.uitofp(b.fcmp_ordered(">", x, zero), ty), b.uitofp(b.fcmp_ordered("<", x, zero), ty))
    zero = ir.Constant(ty, 0)
    if is_unsigned(d):
        return b.zext(b.icmp_unsigned(">", x, zero), ty)
    return b.sub(b.zext(b.icmp_signed(">", x, zero), ty), b.zext(b.icmp_signed("<", x, zero), ty))


def _isinf(e, x, d):
    if not d.is_floating_point:
        return ir.Constant(I1, 0)
    return e.b.fcmp_ordered("==", e.b.call(intrinsic(e.m, "fabs", x.type, 1), [x]), ir.Constant(x.type, math.inf))


LLVM_UNARY = {
    **{op: _math(op) for op in MATH_OPS if op != "pow"},   # pow is binary
    "sqrt": _intrinsic("sqrt"),
    "rsqrt": lambda e, x, d: e.b.fdiv(ir.Constant(x.type, 1.0), e.b.call(intrinsic(e.m, "sqrt", x.type, 1), [x])),
    "reciprocal": lambda e, x, d: e.b.fdiv(ir.Constant(x.type, 1.0), x),
    "neg": lambda e, x, d: e.b.fneg(x) if d.is_floating_point else e.b.sub(ir.Constant(x.type, 0), x),
    "abs": _abs,
    "sign": _sign,
    "floor": _float_only("floor"),
    "ceil": _float_only("ceil"),
    "round": _float_only("roundeven"),
    "trunc": _float_only("trunc"),
    "logical_not": lambda e, x, d: e.b.not_(truth(e.b, x, d)),
    "isnan": lambda e, x, d: e.b.fcmp_unordered("uno", x, x) if d.is_floating_point else ir.Constant(I1, 0),
    "isinf": _isinf,
}


# =================================================================================== binary
def _cmp(sym):
    def f(e, x, y, d):
        if d.is_floating_point:   # ne is unordered: NaN != x is true, every other comparison with NaN false
            return e.b.fcmp_unordered(sym, x, y) if sym == "!=" else e.b.fcmp_ordered(sym, x, y)
        return e.b.icmp_unsigned(sym, x, y) if is_unsigned(d) else e.b.icmp_signed(sym, x, y)
    return f


def _minmax(op):
    def f(e, x, y, d):
        b = e.b
        if d.is_floating_point:   # llvm.maximum/minimum propagate NaN (numpy semantics) and vectorise
            return b.call(intrinsic(e.m, op, x.type, 2), [x, y])
        if d is dt.bool_:
            return b.or_(x, y) if op == "maximum" else b.and_(x, y)
        name = ("u" if is_unsigned(d) else "s") + ("max" if op == "maximum" else "min")
        return b.call(intrinsic(e.m, name, x.type, 2), [x, y])
    return f


def _arith(fop, iop):
    return lambda e, x, y, d: getattr(e.b, fop if d.is_floating_point else iop)(x, y)


def _pow(e, x, y, d):
    if not d.is_floating_point:
        return _int_pow(e.b, x, y, is_unsigned(d))
    if x.type == ir.DoubleType() or x.type == ir.FloatType():
        return e.math.call(e.b, "pow", x, y)
    raise NotImplementedError(f"pow for {d.name}")


def _remainder(e, x, y, d):
    if d.is_floating_point:
        return _float_remainder(e.b, e.m, x, y)
    return _int_floor_divmod(e.b, x, y, is_unsigned(d), "remainder")


def _floor_divide(e, x, y, d):
    if d.is_floating_point:
        return _float_floor_divide(e.b, e.m, x, y)
    return _int_floor_divmod(e.b, x, y, is_unsigned(d), "floor_divide")


def _div(e, x, y, d):
    if not d.is_floating_point:
        raise NotImplementedError(f"binary div for {d.name}")
    return e.b.fdiv(x, y)


LLVM_BINARY = {
    "add": _arith("fadd", "add"),
    "sub": _arith("fsub", "sub"),
    "mul": _arith("fmul", "mul"),
    "div": _div,
    "pow": _pow,
    "maximum": _minmax("maximum"),
    "minimum": _minmax("minimum"),
    "remainder": _remainder,
    "floor_divide": _floor_divide,
    "eq": _cmp("=="), "ne": _cmp("!="), "lt": _cmp("<"), "le": _cmp("<="), "gt": _cmp(">"), "ge": _cmp(">="),
    "logical_and": lambda e, x, y, d: e.b.and_(truth(e.b, x, d), truth(e.b, y, d)),
    "logical_or": lambda e, x, y, d: e.b.or_(truth(e.b, x, d), truth(e.b, y, d)),
}


# =============================================================================== reductions
def combine(e, op: str, d: dt.DType, acc, v):
    b = e.b
    if d.is_floating_point:
        if op == "sum":
            return b.fadd(acc, v, flags=REDUCE_FLAGS)
        if op == "prod":
            return b.fmul(acc, v, flags=REDUCE_FLAGS)
        return b.call(intrinsic(e.m, "maximum" if op == "max" else "minimum", acc.type, 2), [acc, v])
    if op == "sum":
        return b.add(acc, v)
    if op == "prod":
        return b.mul(acc, v)
    return LLVM_BINARY["maximum" if op == "max" else "minimum"](e, acc, v, d)


def combine_minmax(b, op: str, acc, v, seen_nan):
    """One step of a float max/min reduction: (new accumulator, NaN seen so far).  The accumulator
    is a plain compare-and-select (`nnan nsz`: LLVM vectorises it as one vmaxps a vector) and NaN is
    tracked apart; the renderer returns NaN at the end when one was seen (numpy/PyTorch semantics).
    llvm.maximum, which propagates NaN itself, costs six instructions a vector on x86 and a third
    of the attention softmax.  With `nnan`, a NaN makes the accumulator poison, but then the flag is
    set and the final select never takes the accumulator."""
    flags = ("nnan", "nsz")
    better = b.fcmp_ordered(">" if op == "max" else "<", v, acc, flags=flags)
    return b.select(better, v, acc, flags=flags), b.or_(seen_nan, b.fcmp_unordered("uno", v, v))


def arg_better(b, op: str, d: dt.DType, v, best):
    """argmax/argmin: does v replace the current best?  First occurrence wins; NaN is extreme."""
    if d.is_floating_point:
        better = b.fcmp_ordered(">" if op == "argmax" else "<", v, best)
        first_nan = b.and_(b.fcmp_unordered("uno", v, v), b.fcmp_ordered("ord", best, best))
        return b.or_(better, first_nan)
    sym = ">" if op == "argmax" else "<"
    return b.icmp_unsigned(sym, v, best) if is_unsigned(d) else b.icmp_signed(sym, v, best)


# ===================================================================== numpy integer/float rules
def _float_remainder(b, m, x, y):
    """Python/numpy x % y (npy_remainder): fmod, then move into the divisor's sign; an exact zero
    takes the divisor's sign; NaN stays NaN."""
    zero = ir.Constant(x.type, 0.0)
    r = b.frem(x, y)
    fix = b.and_(b.fcmp_unordered("!=", r, zero),
                 b.xor(b.fcmp_ordered("<", r, zero), b.fcmp_ordered("<", y, zero)))
    r = b.select(fix, b.fadd(r, y), r)
    signed_zero = b.call(intrinsic(m, "copysign", x.type, 2), [zero, y])
    exact = b.and_(b.fcmp_ordered("==", r, zero), b.fcmp_ordered("!=", y, zero))
    return b.select(exact, signed_zero, r)


def _float_floor_divide(b, m, x, y):
    """numpy's npy_floor_divide: (x - fmod(x, y)) / y, corrected to the floor and rounded."""
    ty = x.type
    zero, one, half = ir.Constant(ty, 0.0), ir.Constant(ty, 1.0), ir.Constant(ty, 0.5)
    mod = b.frem(x, y)
    div = b.fdiv(b.fsub(x, mod), y)
    # C's `if (mod)` and `if (div)`: NaN is true (unordered !=), so NaN stays NaN
    adj = b.and_(b.fcmp_unordered("!=", mod, zero),
                 b.xor(b.fcmp_ordered("<", y, zero), b.fcmp_ordered("<", mod, zero)))
    div = b.select(adj, b.fsub(div, one), div)
    fl = b.call(intrinsic(m, "floor", ty, 1), [div])
    fl = b.select(b.fcmp_ordered(">", b.fsub(div, fl), half), b.fadd(fl, one), fl)
    q0 = b.fdiv(x, y)
    res = b.select(b.fcmp_unordered("!=", div, zero), fl,
                   b.call(intrinsic(m, "copysign", ty, 2), [zero, q0]))
    return b.select(b.fcmp_ordered("==", y, zero), q0, res)


def _int_floor_divmod(b, x, y, unsigned: bool, op: str):
    """Integer floor division / modulo with numpy's x // 0 == x % 0 == 0, no UB on INT_MIN // -1."""
    ty = x.type
    zero, one = ir.Constant(ty, 0), ir.Constant(ty, 1)
    y0 = b.icmp_unsigned("==", y, zero)
    if unsigned:
        ys = b.select(y0, one, y)
        res = b.udiv(x, ys) if op == "floor_divide" else b.urem(x, ys)
        return b.select(y0, zero, res)
    minus1 = b.icmp_signed("==", y, ir.Constant(ty, -1))
    ys = b.select(b.or_(y0, minus1), one, y)         # y in {0, -1} handled below
    q, r = b.sdiv(x, ys), b.srem(x, ys)
    fix = b.and_(b.icmp_signed("!=", r, zero), b.icmp_signed("<", b.xor(r, y), zero))
    if op == "floor_divide":
        res = b.sub(q, b.zext(fix, ty))
        res = b.select(minus1, b.sub(zero, x), res)   # wraps for INT_MIN like numpy
    else:
        res = b.select(fix, b.add(r, y), r)
        res = b.select(minus1, zero, res)
    return b.select(y0, zero, res)


def _int_pow(b, x, y, unsigned: bool):
    """x ** y by unrolled square-and-multiply (branch-free, vectorisable); y < 0 gives 1 // x**|y|."""
    ty = x.type
    one, zero = ir.Constant(ty, 1), ir.Constant(ty, 0)
    result, base = one, x
    for bit in range(ty.width - (0 if unsigned else 1)):
        set_ = b.trunc(b.lshr(y, ir.Constant(ty, bit)), I1)
        result = b.select(set_, b.mul(result, base), result)
        base = b.mul(base, base)
    if unsigned:
        return result
    neg = b.icmp_signed("<", y, zero)
    odd = b.trunc(y, I1)
    inv = b.select(b.icmp_signed("==", x, one), one,
                   b.select(b.icmp_signed("==", x, ir.Constant(ty, -1)),
                            b.select(odd, ir.Constant(ty, -1), one), zero))
    return b.select(neg, inv, result)
